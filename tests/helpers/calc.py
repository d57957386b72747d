"""The interface most tests serve; also run as a server process: python -m tests.helpers.calc ADDRESS."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ipfi

iface = ipfi.Interface()
started: list[str] = []  # names of procedures that began (in-process tests look)
cancelled: list[str] = []


@iface.procedure
def add(a: int, b: int) -> int:
    return a + b


@iface.procedure
def echo(value: Any) -> Any:
    return value


@iface.procedure
async def aecho(value: Any) -> Any:
    return value


@iface.procedure
def fail(message: str) -> None:
    raise ValueError(message)


@iface.procedure
def refuse() -> None:
    raise ipfi.Busy("try later", data={"retry_after": 1})


@iface.procedure
async def sleep(seconds: float, tag: str = "") -> str:
    started.append(tag)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.append(tag)
        raise
    return tag


@iface.procedure(blocking=True)
def blocking_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@iface.procedure
async def count(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@iface.procedure
def count_sync(n: int) -> Iterator[int]:
    yield from range(n)


@iface.procedure
async def total(items: AsyncIterator[int]) -> int:
    return sum([item async for item in items])


@iface.procedure
async def double(items: AsyncIterator[int]) -> AsyncIterator[int]:
    async for item in items:
        yield item * 2


@iface.procedure
async def call_back(name: str, *args: Any) -> Any:
    return await ipfi.current_peer().call(name, *args)


@iface.procedure
def unencodable() -> object:
    return object()


@iface.procedure
def pid() -> int:
    return os.getpid()


@iface.procedure
def total_sync(items: Iterator[int]) -> int:
    return sum(items)


@iface.procedure
def double_sync(items: Iterator[int]) -> Iterator[int]:
    for item in items:
        yield item * 2


@iface.procedure
def call_back_sync(name: str, *args: Any) -> Any:
    """For the blocking driver: its current peer's call() blocks."""
    return ipfi.current_peer().call(name, *args)


@iface.procedure
def whoami() -> int:
    """Which peer object called (run inline, in the reader's context)."""
    return id(ipfi.current_peer())


@iface.procedure
async def awhoami() -> int:
    """The same from a task, after the reader has served other connections meanwhile."""
    await asyncio.sleep(0.01)
    return id(ipfi.current_peer())


async def callers_are_told_apart(address: str) -> None:
    """Three clients of one server call in turn and at once: each procedure sees its own caller."""
    async with await ipfi.serve(address, iface) as server:
        clients = [await ipfi.connect(address) for _ in range(3)]
        try:
            ids = [await client.call("whoami") for client in clients]
            assert sorted(ids) == sorted(id(peer) for peer in server.connections)
            assert len(set(ids)) == 3
            for _ in range(3):
                for client, expected in zip(clients, ids, strict=True):
                    assert await client.call("whoami") == expected
            together = [client.call(name) for _ in range(5) for client in clients for name in ("whoami", "awhoami")]
            assert await asyncio.gather(*together) == [expected for _ in range(5) for expected in ids for _ in (1, 2)]
        finally:
            for client in clients:
                await client.aclose()


produced = [0]


@iface.procedure
async def count_tracked(n: int) -> AsyncIterator[int]:
    """Like count, and records how far the producer got (see ``produced_so_far``)."""
    produced[0] = 0
    for i in range(n):
        produced[0] = i + 1
        yield i


@iface.procedure
def produced_so_far() -> int:
    return produced[0]


async def main(address: str) -> None:
    async with await ipfi.serve(address, iface) as server:
        print("ready", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
