"""Streams served by the asyncio driver from a blocking generator (``@procedure(blocking=True)``, run in
worker threads), beside the same generator run on the loop and an async generator.

    python -m benchmarks.blocking_streams [--items N] [--repeat 3] [--quick]

Client and server in this process, on uvloop, over a Unix socket in a temporary directory; prints
the median items/s of each producer, and the blocking generator's share of the plain one's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import uvloop

import ipfi

PRODUCERS = ("async generator", "generator on the loop", "blocking generator")


def _interface() -> ipfi.Interface:
    iface = ipfi.Interface()

    @iface.procedure(name="async generator")
    async def counting(count: int) -> AsyncIterator[int]:
        for number in range(count):
            yield number

    @iface.procedure(name="generator on the loop")
    def numbers(count: int) -> Iterator[int]:
        yield from range(count)

    iface.procedure(name="blocking generator", blocking=True)(numbers)
    return iface


async def _measure(items: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ipfi-bench-") as directory:
        address = f"unix:{os.path.join(directory, 's')}"
        async with await ipfi.serve(address, _interface()), await ipfi.connect(address) as peer:
            rates: dict[str, list[float]] = {name: [] for name in PRODUCERS}
            for _ in range(repeat):
                for name in PRODUCERS:
                    start = time.perf_counter()
                    received = [item async for item in peer.stream(name, items)]
                    rates[name].append(len(received) / (time.perf_counter() - start))
            return {name: statistics.median(figures) for name, figures in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few items, once")
    args = parser.parse_args()
    items, repeat = (2_000, 1) if args.quick else (args.items, args.repeat)
    medians = uvloop.run(_measure(items, repeat))
    print(f"# streams of {items:,} integers served by the asyncio driver (uvloop), medians of {repeat}\n")
    print("| producer | items/s |")
    print("|---|---:|")
    for name, rate in medians.items():
        print(f"| {name} | {rate:,.0f} |")
    share = medians["blocking generator"] / medians["generator on the loop"]
    print(f"\nblocking generator / generator on the loop: {share:.2f}")


if __name__ == "__main__":
    main()
