"""The least an RPC written in Python does, on the asyncio floor's loop, transport and framing: a
reference for what pure Python can reach, not a library.

Each call is a msgpack record ``[id, name, args]`` answered by ``[id, result]``; the server looks the
name up in a table and runs an ``async def`` procedure as a Task (started eagerly where asyncio can,
3.12+, as ipfi does), the client waits on a future per call found by its id. A stream is an async
generator on the server, each item packed on its own and sent 256 to a write as one record
``[id, [item, ...]]`` (``[id, None]`` ends it), read on the client through an async iterator. What it
leaves out, and ipfi does: a handshake, limits of any kind, errors, cancellation, deadlines, flow
control, type checks, the other codecs, the core's state machine.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgpack

from .raw_aio import _Framed, connect_protocol, serve_protocol
from .raw_framing import LENGTH

IS_ASYNC = True
ITEM = b"x" * 16
BATCH = 256  # items per write, as ipfi's drivers write theirs (ITEMS_PER_TURN)
_EAGER = sys.version_info >= (3, 12)


async def _echo(value: bytes) -> bytes:
    return value


async def _items(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield ITEM


def _echo_plain(value: bytes) -> bytes:
    return value


PROCEDURES: dict[str, Callable[..., Any]] = {"echo": _echo, "items": _items}
#: Procedures called inline, their reply written at once (no Task): empty unless configured ``def``.
PLAIN_PROCEDURES: dict[str, Callable[..., Any]] = {}


def configure(variant: str) -> None:
    """``def``: ``echo`` a plain function, called inline. Against the default, what a Task costs."""
    if variant != "def":
        raise ValueError(f"unknown variant {variant!r}")
    PLAIN_PROCEDURES["echo"] = _echo_plain


def _framed(record: Any) -> list[bytes]:
    body = msgpack.packb(record)
    return [LENGTH.pack(len(body)), body]


class _Server(_Framed):
    def __init__(self) -> None:
        self.running: dict[int, asyncio.Task[None]] = {}  # (a task nobody references may be collected)

    def frame(self, header: int, payload: bytearray | bytes) -> None:
        call_id, name, args = msgpack.unpackb(payload)
        plain = PLAIN_PROCEDURES.get(name)
        if plain is not None:
            self.transport.writelines(_framed([call_id, plain(*args)]))
            return
        procedure = PROCEDURES[name]
        runner = self._stream(call_id, procedure(*args)) if name == "items" else self._call(call_id, procedure, args)
        loop = asyncio.get_running_loop()
        if _EAGER:
            task = asyncio.Task(runner, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            if task.done():
                return
        else:
            task = loop.create_task(runner)
        self.running[call_id] = task

    async def _call(self, call_id: int, procedure: Callable[..., Any], args: list[Any]) -> None:
        self.transport.writelines(_framed([call_id, await procedure(*args)]))
        self.running.pop(call_id, None)

    async def _stream(self, call_id: int, items: AsyncIterator[Any]) -> None:
        packb = msgpack.packb
        batch: list[bytes] = []
        async for item in items:
            batch.append(packb(item))
            if len(batch) == BATCH:
                self._send_batch(call_id, batch)
                batch = []
        if batch:
            self._send_batch(call_id, batch)
        self.transport.writelines(_framed([call_id, None]))
        self.running.pop(call_id, None)

    def _send_batch(self, call_id: int, batch: list[bytes]) -> None:
        # [id, [item, ...]]: the two array headers, then the items as packed
        head = b"\x92" + msgpack.packb(call_id) + b"\xdc" + len(batch).to_bytes(2, "big")
        body = head + b"".join(batch)
        self.transport.writelines([LENGTH.pack(len(body)), body])


async def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    await serve_protocol(_Server, endpoint, ready)


class Client(_Framed):
    def __init__(self) -> None:
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.streams: dict[int, asyncio.Queue[list[Any] | None]] = {}

    def frame(self, header: int, payload: bytearray | bytes) -> None:
        call_id, value = msgpack.unpackb(payload)
        stream = self.streams.get(call_id)
        if stream is not None:
            stream.put_nowait(value)
        else:
            self.waiting.pop(call_id).set_result(value)

    def call(self, name: str, *args: Any) -> asyncio.Future[Any]:
        self.next_id += 1
        future = self.waiting[self.next_id] = asyncio.get_running_loop().create_future()
        self.transport.writelines(_framed([self.next_id, name, args]))
        return future

    def echo(self, payload: bytes) -> asyncio.Future[Any]:
        return self.call("echo", payload)

    async def in_flight(self, payload: bytes, depth: int) -> None:
        await asyncio.gather(*[self.call("echo", payload) for _ in range(depth)])

    async def items(self, count: int) -> AsyncIterator[Any]:
        self.next_id += 1
        call_id = self.next_id
        queue = self.streams[call_id] = asyncio.Queue()
        self.transport.writelines(_framed([call_id, "items", [count]]))
        try:
            while (batch := await queue.get()) is not None:
                for item in batch:
                    yield item
        finally:
            del self.streams[call_id]

    async def stream(self, count: int) -> int:
        received = 0
        async for _ in self.items(count):
            received += 1
        return received

    def close(self) -> None:
        self.transport.close()


async def connect(endpoint: tuple[str, Any]) -> Client:
    return await connect_protocol(Client, endpoint)
