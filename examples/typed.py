"""Type hints as contracts: a server whose procedures take and return dataclasses, and a client that
calls them through a typed proxy (a typing.Protocol that mypy checks).

    python examples/typed.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import ipfi


@dataclasses.dataclass
class Point:
    x: float
    y: float


iface = ipfi.Interface()


@iface.procedure
async def midpoint(a: Point, b: Point) -> Point:
    """The point halfway between two points (they arrive as Points, not maps)."""
    return Point((a.x + b.x) / 2, (a.y + b.y) / 2)


@iface.procedure
async def path(start: Point, steps: int) -> AsyncIterator[Point]:
    """Points one step apart to the right."""
    for step in range(steps):
        yield Point(start.x + step, start.y)


class Geometry(Protocol):
    """What the client expects of the server: mypy checks each call against it."""

    async def midpoint(self, a: Point, b: Point) -> Point: ...
    def path(self, start: Point, steps: int) -> AsyncIterator[Point]: ...


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        address = f"unix:{Path(directory) / 'geometry.sock'}"
        async with await ipfi.serve(address, iface), ipfi.connect(address) as peer:
            geometry = peer.proxy(Geometry)
            print("midpoint:", await geometry.midpoint(Point(0, 0), Point(2, 4)))
            print("path:", [point async for point in geometry.path(Point(0, 1), 3)])
            try:
                await peer.call("midpoint", {"x": 0, "y": 0}, {"x": "two", "y": 4})
            except ipfi.InvalidArguments as refused:
                print("refused:", refused)


if __name__ == "__main__":
    asyncio.run(main())
