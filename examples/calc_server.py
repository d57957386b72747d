"""A small ipfi server: python examples/calc_server.py unix:/tmp/calc.sock"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import ipfi

iface = ipfi.Interface()


@iface.procedure
def add(a: int, b: int) -> int:
    """Add two numbers (a plain function runs inline on the event loop)."""
    return a + b


@iface.procedure
async def mul(a: int, b: int) -> int:
    return a * b


@iface.procedure
def divide(a: float, b: float) -> float:
    return a / b


@iface.procedure
async def count(n: int) -> AsyncIterator[int]:
    """Stream 0..n-1."""
    for i in range(n):
        yield i


@iface.procedure
async def total(items: AsyncIterator[int]) -> int:
    """Sum a stream the client sends (a client stream arrives as the first argument)."""
    return sum([item async for item in items])


@iface.procedure
async def call_me_back(name: str) -> str:
    """Call the client's own ``greet`` procedure."""
    peer = ipfi.current_peer()
    return str(await peer.call("greet", name))


async def main(address: str) -> None:
    async with await ipfi.serve(address, iface) as server:
        await server.serve_forever()


if __name__ == "__main__":
    ipfi.run(main(sys.argv[1] if len(sys.argv) > 1 else "unix:/tmp/ipfi-calc.sock"))
