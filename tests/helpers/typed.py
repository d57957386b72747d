"""An interface whose procedures use every kind of hint ``ipfi stubs`` writes (see test_stubs.py)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal, NamedTuple, TypedDict

import msgspec

import ipfi

iface = ipfi.Interface()


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Span(TypedDict):
    start: datetime.datetime
    id: uuid.UUID


class Pair(NamedTuple):
    left: int
    right: str


class Item(msgspec.Struct):
    name: str
    price: decimal.Decimal
    tags: list[str] = []


@iface.procedure
def add(a: int, b: int) -> int:
    """Add two "numbers"."""
    return a + b


@iface.procedure
def greet(name: str, punctuation: str | None = None) -> str:
    return f"hello {name}{punctuation or ''}"


@iface.procedure
async def move(p: Point, /, dx: float, *, color: Color = Color.RED) -> Point:
    return Point(p.x + int(dx), p.y)


@iface.procedure
def spans(
    s: Span,
    pair: Pair,
    items: list[Item],
    kind: Literal["a", "b"],
    data: bytes,
    extra: dict[str, tuple[int, str]] | None = None,
) -> list[Span]:
    return [s]


@iface.procedure
async def count(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@iface.procedure(name="math.untyped")
def untyped(x, *args, **kw):  # type: ignore[no-untyped-def]
    return x


@iface.procedure
def anything(*values: Any, **options: Any) -> dict[str, Any]:
    return {"values": list(values), "options": options}
