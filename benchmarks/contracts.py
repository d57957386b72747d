"""What checking type hints costs, and the libraries that could check them.

    python -m benchmarks.contracts

1. Streams, in one process (both ends on one uvloop loop: ratios in one run, not timings): items/s
   of an ``async def`` generator and a plain generator yielding 16-byte ``bytes``, typed (ipfi's
   default) and with ``check_types=False``.
2. Microseconds per check of one value by msgspec.convert, pydantic's TypeAdapter and typeguard's
   check_type, strict modes, for those installed (``pip install pydantic typeguard`` to compare).
Round trips are counted in instructions by ``python -m benchmarks.instructions [--untyped]``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
import time
import timeit
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

import ipfi

ITEM = b"x" * 16


def _interface(check_types: bool) -> ipfi.Interface:
    iface = ipfi.Interface(check_types=check_types)

    @iface.procedure
    async def async_items(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield ITEM

    @iface.procedure
    def items(count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield ITEM

    return iface


async def _items_per_second(check_types: bool, name: str, count: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        address = f"unix:{Path(directory) / 'c.sock'}"
        async with await ipfi.serve(address, _interface(check_types)), ipfi.connect(address) as peer:
            best = 0.0
            for _ in range(5):
                started = time.perf_counter()
                async for _ in peer.stream(name, count):
                    pass
                best = max(best, count / (time.perf_counter() - started))
            return best


async def streams(count: int = 200_000) -> None:
    print("| procedure | typed items/s | untyped items/s | typed / untyped |\n|---|---:|---:|---:|")
    for name in ("async_items", "items"):
        typed, untyped = [], []
        for _ in range(2):  # (interleaved: a slow moment of the machine hits both)
            typed.append(await _items_per_second(True, name, count))
            untyped.append(await _items_per_second(False, name, count))
        print(f"| {name} | {max(typed):,.0f} | {max(untyped):,.0f} | {max(typed) / max(untyped):.2f} |")


@dataclasses.dataclass
class Point:
    x: int
    y: int


CASES: dict[str, tuple[Any, Any]] = {
    "int": (int, 5),
    "list[int] of 10": (list[int], list(range(10))),
    "a dataclass from a map": (Point, {"x": 1, "y": 2}),
    "dict[str, list[float]]": (dict[str, list[float]], {"a": [1.0, 2.0], "b": [3.0]}),
}


def _micros(check: Callable[[], Any], number: int = 100_000) -> str:
    return f"{min(timeit.repeat(check, number=number, repeat=3)) / number * 1e6:.2f}"


def checkers() -> None:
    pydantic = importlib.import_module("pydantic") if importlib.util.find_spec("pydantic") else None
    typeguard = importlib.import_module("typeguard") if importlib.util.find_spec("typeguard") else None
    print("\n| value | msgspec.convert | pydantic TypeAdapter | typeguard.check_type |\n|---|---:|---:|---:|")
    for name, (hint, value) in CASES.items():
        row = [name, _micros(lambda: msgspec.convert(value, hint, strict=True))]  # noqa: B023
        if pydantic is None:
            row.append("not installed")
        else:
            adapter = pydantic.TypeAdapter(hint)
            strict = hint is not Point  # (strict mode refuses a map for a dataclass)
            row.append(_micros(lambda: adapter.validate_python(value, strict=strict)))  # noqa: B023
        if typeguard is None:
            row.append("not installed")
        elif hint is Point:
            row.append("checks only, does not rebuild")
        else:
            row.append(_micros(lambda: typeguard.check_type(value, hint)))  # noqa: B023
        print(f"| {' | '.join(row)} |")


def main() -> None:
    import uvloop

    uvloop.run(streams())
    checkers()


if __name__ == "__main__":
    main()
