"""The procedures of the behaviour suite, built afresh for each test (see Record), in the test's
process or, for the ``exec:`` wire, in the child that serves them."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import ipfi


class Record:
    """What the procedures of one test saw (a fresh one per test: nothing is shared)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.started = threading.Event()
        self.released = threading.Event()
        self.seen: list[Any] = []


#: Set by one call of context_probe: a later call must not see it (each call has a context of its own).
probe_var: contextvars.ContextVar[Any] = contextvars.ContextVar("probe_var", default=None)


class QuotaExceeded(Exception):
    """A user's exception that declares data for the wire."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over the quota of {limit}")
        self.limit = limit

    def __ipfi_data__(self) -> dict[str, int]:
        return {"limit": self.limit}


def interface(driver: str, record: Record) -> ipfi.Interface:
    """The procedures every behaviour test calls, for a server of ``driver``."""
    iface = ipfi.Interface()
    blocking = driver == "blocking"

    @iface.procedure
    def add(a: int, b: int) -> int:
        return a + b

    @iface.procedure
    def fail(message: str) -> None:
        raise ValueError(message)

    @iface.procedure
    async def count(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @iface.procedure
    async def then_unencodable() -> AsyncIterator[Any]:
        yield 1
        yield 2
        yield object()  # (no codec carries it)
        yield 3

    @iface.procedure
    async def then_raises() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise ValueError("no third")

    @iface.procedure
    async def forever() -> AsyncIterator[int]:
        record.started.set()
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.001)
        finally:
            record.stopped.set()

    @iface.procedure
    async def noted_count() -> AsyncIterator[int]:
        """Counts for ever, noting each number in ``record.seen`` as it is produced."""
        i = 0
        while True:
            record.seen.append(i)
            yield i
            i += 1

    @iface.procedure
    async def lockstep(count: int) -> AsyncIterator[int]:
        """Yields each number once the consumer has noted the one before in ``record.seen``."""
        for i in range(count):
            yield i
            deadline = time.monotonic() + 2
            while len(record.seen) <= i:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"item {i} did not reach the consumer")
                await asyncio.sleep(0.001)

    @iface.procedure
    async def wait_for_cancel(seconds: float) -> str:
        record.started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            record.stopped.set()
            raise
        return "finished"

    @iface.procedure
    async def time_left(suspend: bool = False) -> float | None:
        if suspend:  # (other calls run meanwhile: the call found after is still this one)
            await asyncio.sleep(0.05)
        return ipfi.current_call().time_left()

    @iface.procedure(blocking=True)
    def time_left_in_thread() -> float | None:
        return ipfi.current_call().time_left()

    @iface.procedure
    async def times_left(count: int) -> AsyncIterator[float | None]:
        for _ in range(count):
            await asyncio.sleep(0)
            yield ipfi.current_call().time_left()

    @iface.procedure
    async def in_a_task_of_its_own() -> str:
        """What current_call() does in a task an async def procedure starts (not in it)."""

        async def started() -> str:
            try:
                ipfi.current_call()
            except LookupError:
                return "not found"
            return "found"

        return await asyncio.create_task(started())

    @iface.procedure
    async def note(value: Any) -> None:
        await asyncio.sleep(0.001)  # still running when the next ones arrive
        record.seen.append(value)

    @iface.procedure
    async def notes(count: int) -> list[Any]:
        for _ in range(500):
            if len(record.seen) >= count:
                break
            await asyncio.sleep(0.01)
        return record.seen

    @iface.procedure
    async def slow_add(a: int, b: int) -> int:
        await asyncio.sleep(0.001)
        return a + b

    @iface.procedure
    async def context_probe(value: Any, suspend: bool) -> dict[str, Any]:
        seen = probe_var.get()
        probe_var.set(value)
        async with asyncio.timeout(5):  # (needs a current task)
            if suspend:
                await asyncio.sleep(0)
        task = asyncio.current_task()
        return {"seen": seen, "in_a_task": task is not None, "deadline": ipfi.current_call().time_left() is not None}

    @iface.procedure
    def where() -> dict[str, Any]:
        return {"pid": os.getpid(), "cwd": os.getcwd(), "marker": os.environ.get("IPFI_TEST_MARKER")}

    @iface.procedure
    def echo(value: Any) -> Any:
        return value

    @iface.procedure
    def over_quota(limit: int) -> None:
        try:
            {}["quota"]
        except KeyError as exc:
            raise QuotaExceeded(limit) from exc

    @iface.procedure
    def keywords(**given: Any) -> dict[str, Any]:
        return given

    @iface.procedure
    async def keyword_items(timeout: float, input: str) -> AsyncIterator[Any]:
        yield timeout
        yield input

    @iface.procedure
    def large_items(count: int, size: int) -> Iterator[bytes]:
        """``count`` binaries of ``size`` bytes, each made as it is asked for."""
        for _ in range(count):
            yield bytes(size)

    @iface.procedure
    def push(channel: int, payload: bytes) -> None:
        ipfi.current_peer().send(channel, payload)

    # A producer that yields some items, then waits for something its consumer does: a plain
    # generator that blocks for the blocking driver, an async generator that awaits for asyncio.

    def waited(done: Callable[[], bool]) -> Iterator[None]:
        """Yields (to sleep a little between) until ``done()``; raises TimeoutError after 3 s."""
        deadline = time.monotonic() + 3
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("what the producer waited for did not happen")
            yield

    # Blocking generators: they run in worker threads (with the asyncio driver, as marked with
    # blocking=True). Registered as NAME_in_thread for every driver; the blocking driver's NAME too.

    def burst_then_wait(count: int) -> Iterator[int]:
        """Yields ``count`` numbers at once, then ``-1`` once the consumer has noted them all."""
        yield from range(count)
        for _ in waited(lambda: len(record.seen) >= count):
            time.sleep(0.001)
        yield -1

    def refused_then_waits() -> Iterator[Any]:
        """Yields 1, then what no codec carries; then, once ``record.released``, counts on."""
        try:
            yield 1
            yield object()
            for _ in waited(record.released.is_set):
                time.sleep(0.001)
            yield from range(2, 1000)
        finally:
            record.stopped.set()

    def refused_then_ends() -> Iterator[Any]:
        """Yields 1, then what no codec carries, then 2 after a while (never sent), and ends."""
        yield 1
        yield object()
        time.sleep(0.05)
        yield 2

    def forever_in_thread() -> Iterator[int]:
        record.started.set()
        try:
            for i in itertools.count():
                yield i
                time.sleep(0.001)
        finally:
            record.stopped.set()

    def noted_count_in_thread() -> Iterator[int]:
        """Counts for ever, noting each number in ``record.seen`` as it is produced."""
        for i in itertools.count():
            record.seen.append(i)
            yield i

    def lockstep_in_thread(count: int) -> Iterator[int]:
        """Yields each number once the consumer has noted the one before in ``record.seen``."""
        for i in range(count):
            yield i
            for _ in waited(lambda: len(record.seen) > i):  # noqa: B023 (waited in this turn)
                time.sleep(0.001)

    for function in (burst_then_wait, refused_then_waits, refused_then_ends):
        iface.procedure(name=f"{function.__name__}_in_thread", blocking=True)(function)
        if blocking:
            iface.procedure(function)

    def count_in_thread(n: int) -> Iterator[int]:
        yield from range(n)

    def then_raises_in_thread() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("no third")

    for function in (
        forever_in_thread,
        noted_count_in_thread,
        lockstep_in_thread,
        count_in_thread,
        then_raises_in_thread,
    ):
        iface.procedure(blocking=True)(function)

    if blocking:

        @iface.procedure
        def call_back(name: str) -> Any:
            return ipfi.current_peer().call(name, "from the server")

        @iface.procedure
        def total(items: Iterator[int]) -> int:
            return sum(items)

        @iface.procedure
        def noted_total(items: Iterator[int]) -> int:
            """The sum, noting each item in ``record.seen`` as it arrives."""
            for item in items:
                record.seen.append(item)
            return sum(record.seen)

        @iface.procedure
        def drain(channel: int) -> bytes:
            return bytes(ipfi.current_peer().receive(channel, timeout=5).payload)

    else:

        @iface.procedure(name="burst_then_wait")
        async def burst_then_wait_async(count: int) -> AsyncIterator[int]:
            for i in range(count):
                yield i
            for _ in waited(lambda: len(record.seen) >= count):
                await asyncio.sleep(0.001)
            yield -1

        @iface.procedure(name="refused_then_waits")
        async def refused_then_waits_async() -> AsyncIterator[Any]:
            try:
                yield 1
                yield object()
                for _ in waited(record.released.is_set):
                    await asyncio.sleep(0.001)
                for i in range(2, 1000):
                    yield i
            finally:
                record.stopped.set()

        @iface.procedure(name="refused_then_ends")
        async def refused_then_ends_async() -> AsyncIterator[Any]:
            """The same, ignoring the cancellation it then gets (as it should not)."""
            yield 1
            yield object()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(5)
            yield 2

        @iface.procedure(name="call_back")
        async def call_back_async(name: str) -> Any:
            return await ipfi.current_peer().call(name, "from the server")

        @iface.procedure(name="total")
        async def total_async(items: AsyncIterator[int]) -> int:
            return sum([item async for item in items])

        @iface.procedure(name="noted_total")
        async def noted_total_async(items: AsyncIterator[int]) -> int:
            async for item in items:
                record.seen.append(item)
            return sum(record.seen)

        @iface.procedure(name="drain")
        async def drain_async(channel: int) -> bytes:
            return bytes((await ipfi.current_peer().receive(channel, timeout=5)).payload)

    return iface
