"""What a gateway costs, and many WebSocket clients through one.

    python -m benchmarks.gateway [--calls N] [--clients N] [--calls-per-client N]

A service (``service:bench``, asyncio driver on uvloop) and a gateway run in processes of their
own, as deployed; the clients in this one.

1. Sequential calls of ``add(1, 2)``: calls/s and median latency straight to the service (a Unix
   socket), through ``ipfi gateway`` over ``tcp://``, and over ``ws://``. Ratios in one run.
2. ``--clients`` concurrent WebSocket clients through one gateway, each connecting and making
   ``--calls-per-client`` calls: how many calls came back right (none may be lost), and how long
   the whole took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import ipfi

from .processes import allow_many_files

SERVICE = """
import ipfi
iface = ipfi.Interface()

@iface.procedure
def add(a: int, b: int) -> int:
    return a + b
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def started(directory: Path) -> Iterator[dict[str, str]]:
    """The service and two gateways (tcp, ws) in processes of their own; their addresses."""
    (directory / "bench_service.py").write_text(SERVICE)
    environment = {**os.environ, "IPFI_RUNDIR": str(directory / "run"), "PYTHONPATH": str(directory)}
    tcp, ws = free_port(), free_port()
    ipfi_command = [sys.executable, "-m", "ipfi"]
    commands = [
        [*ipfi_command, "serve", "bench_service:iface", "service:bench"],
        [*ipfi_command, "gateway", f"tcp://127.0.0.1:{tcp}", "service:bench"],
        [*ipfi_command, "gateway", f"ws://127.0.0.1:{ws}", "service:bench"],
    ]
    processes = [subprocess.Popen(command, env=environment, stderr=subprocess.DEVNULL) for command in commands]
    os.environ["IPFI_RUNDIR"] = environment["IPFI_RUNDIR"]
    try:
        yield {
            "direct": "service:bench",
            "gateway tcp": f"tcp://127.0.0.1:{tcp}",
            "gateway ws": f"ws://127.0.0.1:{ws}/",
        }
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


async def reachable(address: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            async with ipfi.connect(address) as peer:
                await peer.call("add", 1, 2)
                return
        except (OSError, ipfi.IpfiError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def sequential(address: str, calls: int) -> tuple[float, float]:
    """Calls per second, and the median latency in microseconds."""
    latencies = []
    async with ipfi.connect(address) as peer:
        for _ in range(200):
            await peer.call("add", 1, 2)
        began = time.perf_counter()
        for _ in range(calls):
            start = time.perf_counter()
            await peer.call("add", 1, 2)
            latencies.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - began
    return calls / elapsed, statistics.median(latencies) * 1e6


async def crowd(address: str, clients: int, calls_each: int) -> tuple[int, int, float]:
    """``clients`` WebSocket clients at once, each making ``calls_each`` calls: (right answers,
    calls made, seconds)."""

    async def one(number: int) -> int:
        async with ipfi.connect(address, limits=ipfi.Limits(handshake_timeout=60)) as peer:
            results = [await peer.call("add", number, index) for index in range(calls_each)]
            return sum(result == number + index for index, result in enumerate(results))

    began = time.perf_counter()
    right = await asyncio.gather(*(one(number) for number in range(clients)))
    return sum(right), clients * calls_each, time.perf_counter() - began


async def main(arguments: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory, started(Path(directory)) as addresses:
        for address in addresses.values():
            await reachable(address)
        print(f"sequential add(1, 2), {arguments.calls} calls each (service and gateways in their own processes)")
        print(f"{'path':<14} {'calls/s':>9} {'median µs':>10} {'vs direct':>10}")
        direct = None
        for name, address in addresses.items():
            rate, median = await sequential(address, arguments.calls)
            direct = direct or rate
            print(f"{name:<14} {rate:>9,.0f} {median:>10.0f} {rate / direct:>10.2f}")
        if arguments.clients:
            right, made, seconds = await crowd(addresses["gateway ws"], arguments.clients, arguments.calls_per_client)
            lost = made - right
            print(
                f"{arguments.clients} concurrent WebSocket clients through one gateway, {arguments.calls_per_client}"
                f" calls each: {right}/{made} right, {lost} lost, {seconds:.1f} s"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--calls-per-client", type=int, default=10)
    allow_many_files()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
