"""Blocking-client benchmark: sequential echo(16 bytes) over a Unix socket, server in another process.

    python benchmarks/sync_echo.py [--calls N] [--repeat R] [--pin]

Rows: a raw blocking socket echo with a 4-byte length prefix (the floor), the ipfi blocking client
against an ipfi blocking server, and against an ipfi asyncio server on uvloop. Medians of R runs.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ipfi

PAYLOAD = b"0123456789abcdef"
_LENGTH = struct.Struct("<I")
HERE = Path(__file__).resolve().parent


def _echo(value: bytes) -> bytes:
    return value


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _serve_raw_blocking(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    print("ready", flush=True)

    def echo_connection(sock: socket.socket) -> None:
        with sock:
            try:
                while True:
                    (length,) = _LENGTH.unpack(_recv_exactly(sock, 4))
                    sock.sendall(_LENGTH.pack(length) + _recv_exactly(sock, length))
            except ConnectionError:
                return

    while True:
        sock, _ = listener.accept()
        threading.Thread(target=echo_connection, args=(sock,), daemon=True).start()


def _serve_ipfi_sync(path: str) -> None:
    iface = ipfi.Interface()
    iface.add(_echo, name="echo")
    with ipfi.sync.serve(f"unix:{path}", iface) as server:
        print("ready", flush=True)
        server.serve_forever()


def _raw_client(path: str) -> Callable[[], object]:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    frame = _LENGTH.pack(len(PAYLOAD)) + PAYLOAD

    def call() -> bytes:
        sock.sendall(frame)
        (length,) = _LENGTH.unpack(_recv_exactly(sock, 4))
        return _recv_exactly(sock, length)

    return call


def _ipfi_client(path: str) -> Callable[[], object]:
    peer = ipfi.sync.connect(f"unix:{path}")
    return lambda: peer.call("echo", PAYLOAD)


SERVERS = {
    "raw blocking socket": ([sys.executable, __file__, "--serve", "raw"], _raw_client),
    "ipfi sync -> sync server": ([sys.executable, __file__, "--serve", "ipfi-sync"], _ipfi_client),
    "ipfi sync -> asyncio+uvloop": (
        [sys.executable, str(HERE / "echo.py"), "--uvloop", "--serve", "ipfi"],
        _ipfi_client,
    ),
}


def _one(name: str, calls: int, pin: bool) -> tuple[float, float]:
    command, make_client = SERVERS[name]
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bench.sock")
        full = [*command, path]
        if pin:
            full = ["taskset", "-c", "0", *full]
            os.sched_setaffinity(0, {0})
        env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
        server = subprocess.Popen(full, stdout=subprocess.PIPE, env=env)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
            call = make_client(path)
            for _ in range(calls // 10):
                call()
            latencies = []
            start = time.perf_counter()
            for _ in range(calls):
                began = time.perf_counter()
                call()
                latencies.append(time.perf_counter() - began)
            rate = calls / (time.perf_counter() - start)
            return rate, statistics.median(latencies)
        finally:
            server.kill()
            server.wait()
            if pin:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pin", action="store_true", help="run client and server on CPU 0")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, path = args.serve
        (_serve_raw_blocking if kind == "raw" else _serve_ipfi_sync)(path)
        return
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in SERVERS}
    for _ in range(args.repeat):
        for name, results in runs.items():
            results.append(_one(name, args.calls, args.pin))
    print(
        f"sequential echo of 16 bytes, blocking client, Unix socket, {'pinned to CPU 0' if args.pin else 'unpinned'}, "
        f"median of {args.repeat} x {args.calls} calls"
    )
    print(f"{'':30}{'calls/s':>10}{'p50 us':>9}{'vs floor':>10}")
    floor = statistics.median(rate for rate, _ in runs["raw blocking socket"])
    for name, results in runs.items():
        rate = statistics.median(r for r, _ in results)
        p50 = statistics.median(p for _, p in results) * 1e6
        print(f"{name:30}{rate:>10,.0f}{p50:>9.1f}{rate / floor:>10.0%}")


if __name__ == "__main__":
    main()
