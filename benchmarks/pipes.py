"""Echoes over ``exec:``: a child serving an ``async def echo`` on the standard loop over its stdin and
stdout, and a client of each kind in this process (the asyncio driver on the standard loop and on
uvloop, the blocking driver).

    python -m benchmarks.pipes [--repeat 3] [--quick]

Prints the median MiB/s of sequential 1 MiB and 16 MiB echoes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ipfi
import ipfi.sync

#: (echoes, size): each echo sends and receives ``size`` bytes.
ECHOES = ((200, 1 << 20), (15, 16 << 20))
QUICK = ((4, 1 << 20), (2, 16 << 20))
CHILD = f"exec:{sys.executable} -m benchmarks.pipes --child"


def _child() -> None:
    iface = ipfi.Interface()

    @iface.procedure
    async def echo(value: bytes) -> bytes:
        return value

    async def serve() -> None:
        async with await ipfi.serve("stdio:", iface) as server:
            await server.serve_forever()

    asyncio.run(serve())


def _rate(count: int, size: int, seconds: float) -> float:
    return count * size / (1 << 20) / seconds


async def _echoes_async(echoes: tuple[tuple[int, int], ...]) -> list[float]:
    async with ipfi.connect(CHILD) as peer:
        return [await _timed(count, size, peer.call) for count, size in echoes]


async def _timed(count: int, size: int, call: Callable[..., Awaitable[Any]]) -> float:
    payload = b"x" * size
    await call("echo", payload)
    started = time.perf_counter()
    for _ in range(count):
        await call("echo", payload)
    return _rate(count, size, time.perf_counter() - started)


def _echoes_blocking(echoes: tuple[tuple[int, int], ...]) -> list[float]:
    rates = []
    with ipfi.sync.connect(CHILD) as peer:
        for count, size in echoes:
            payload = b"x" * size
            peer.call("echo", payload)
            started = time.perf_counter()
            for _ in range(count):
                peer.call("echo", payload)
            rates.append(_rate(count, size, time.perf_counter() - started))
    return rates


def _clients() -> dict[str, Callable[[tuple[tuple[int, int], ...]], list[float]]]:
    clients: dict[str, Callable[[tuple[tuple[int, int], ...]], list[float]]] = {
        "ipfi asyncio": lambda echoes: asyncio.run(_echoes_async(echoes)),
    }
    try:
        import uvloop
    except ImportError:
        pass
    else:
        clients["ipfi uvloop"] = lambda echoes: uvloop.run(_echoes_async(echoes))
    clients["ipfi blocking"] = _echoes_blocking
    return clients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few echoes, once")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        _child()
        return
    echoes, repeat = (QUICK, 1) if arguments.quick else (ECHOES, arguments.repeat)
    print(f"# exec: echoes, Python {sys.version.split()[0]} (medians of {repeat}; the child on the standard loop)\n")
    print("| client | " + " | ".join(f"{size >> 20} MiB MiB/s" for _, size in echoes) + " |")
    print("|---|" + "---:|" * len(echoes))
    for name, run in _clients().items():
        runs = [run(echoes) for _ in range(repeat)]
        medians = [statistics.median(column) for column in zip(*runs, strict=True)]
        print(f"| {name} | " + " | ".join(f"{rate:,.0f}" for rate in medians) + " |")


if __name__ == "__main__":
    main()
