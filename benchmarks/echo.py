"""Echo micro-benchmark: sequential and 64-in-flight calls over a Unix socket, server in another process.

    python benchmarks/echo.py [--calls N] [--repeat R] [--uvloop] [--pin]

Reports calls/s for ipfi (asyncio driver) next to a raw asyncio Protocol echo with a 4-byte length
prefix (the floor: same loop, same transport, no RPC), medians over ``--repeat`` runs.
``--pin`` runs both processes on CPU 0, which removes the cross-CPU wake-up cost from latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import ipfi

PAYLOAD = b"0123456789abcdef"  # 16 bytes
IN_FLIGHT = 64
_LENGTH = struct.Struct("<I")
T = TypeVar("T")


# -- servers (run in a child process) ---------------------------------------------------------------


def _echo(value: bytes) -> bytes:
    return value


class _RawEcho(asyncio.Protocol):
    """Length-prefixed echo: what any RPC over this transport must at least pay."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        offset = 0
        out = []
        while len(buffer) - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            end = offset + 4 + length
            if end > len(buffer):
                break
            out.append(bytes(buffer[offset:end]))
            offset = end
        del buffer[:offset]
        if out:
            self.transport.writelines(out)


async def _serve(kind: str, path: str) -> None:
    if kind == "ipfi":
        iface = ipfi.Interface()
        iface.add(_echo, name="echo")
        server = await ipfi.serve(f"unix:{path}", iface)
    else:
        await asyncio.get_running_loop().create_unix_server(_RawEcho, path)
    print("ready", flush=True)
    await asyncio.Event().wait()
    del server


# -- clients ----------------------------------------------------------------------------------------


class _RawClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiters: list[asyncio.Future[bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            end = offset + 4 + length
            if end > len(buffer):
                break
            self.waiters.pop(0).set_result(bytes(buffer[offset + 4 : end]))
            offset = end
        del buffer[:offset]

    def echo(self, payload: bytes) -> asyncio.Future[bytes]:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.transport.write(_LENGTH.pack(len(payload)) + payload)
        return future


async def _measure(call: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float]:
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    sequential = calls / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(calls // IN_FLIGHT):
        await asyncio.gather(*(call() for _ in range(IN_FLIGHT)))
    concurrent = (calls // IN_FLIGHT) * IN_FLIGHT / (time.perf_counter() - start)
    return sequential, concurrent


async def _run_client(kind: str, path: str, calls: int) -> tuple[float, float]:
    if kind == "ipfi":
        async with ipfi.connect(f"unix:{path}") as peer:
            await _measure(lambda: peer.call("echo", PAYLOAD), calls // 10)  # warm-up
            return await _measure(lambda: peer.call("echo", PAYLOAD), calls)
    _, client = await asyncio.get_running_loop().create_unix_connection(_RawClient, path)
    await _measure(lambda: client.echo(PAYLOAD), calls // 10)
    result = await _measure(lambda: client.echo(PAYLOAD), calls)
    client.transport.close()
    return result


def _run_loop(coroutine: Coroutine[Any, Any, T], use_uvloop: bool) -> T:
    return ipfi.run(coroutine, use_uvloop=use_uvloop)


def _one(kind: str, calls: int, use_uvloop: bool, pin: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bench.sock")
        command = [sys.executable, __file__, "--serve", kind, path] + (["--uvloop"] if use_uvloop else [])
        if pin:
            command = ["taskset", "-c", "0", *command]
            os.sched_setaffinity(0, {0})
        server = subprocess.Popen(command, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
            return _run_loop(_run_client(kind, path, calls), use_uvloop)
        finally:
            server.kill()
            server.wait()
            if pin:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


ROOT = Path(__file__).resolve().parents[1] / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--pin", action="store_true", help="run client and server on CPU 0")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _run_loop(_serve(*args.serve), args.uvloop)
        return
    results: dict[str, list[tuple[float, float]]] = {"raw": [], "ipfi": []}
    for _ in range(args.repeat):
        for kind, runs in results.items():
            runs.append(_one(kind, args.calls, args.uvloop, args.pin))
    loop_name = "uvloop" if args.uvloop else "asyncio"
    print(
        f"echo of 16 bytes over a Unix socket, {loop_name}, {'pinned to CPU 0' if args.pin else 'unpinned'}, "
        f"median of {args.repeat} x {args.calls} calls"
    )
    print(f"{'':10}{'sequential calls/s':>22}{'64 in flight calls/s':>24}")
    medians = {kind: [statistics.median(run[i] for run in runs) for i in (0, 1)] for kind, runs in results.items()}
    for kind, (sequential, concurrent) in medians.items():
        print(f"{kind:10}{sequential:>22,.0f}{concurrent:>24,.0f}")
    raw = medians["raw"]
    print(f"{'ipfi/raw':10}{medians['ipfi'][0] / raw[0]:>22.0%}{medians['ipfi'][1] / raw[1]:>24.0%}")


if __name__ == "__main__":
    main()
