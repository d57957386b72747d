"""Transports for wires that are not one socket: a pipe pair, memory, user callbacks (a child process:
child_process.py).

Each presents the ``asyncio.Transport`` surface a :class:`~ipfi.aio.peer.Peer` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

log = logging.getLogger("ipfi.aio")

Data = bytes | bytearray | memoryview


class ByteReceiver(Protocol):
    """The asyncio protocol these transports drive: it is handed bytes (``data_received``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool | None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...


class _ForwardingProtocol(asyncio.Protocol):
    """Hands a pipe's events to the peer protocol."""

    def __init__(self, target: ByteReceiver, on_lost: Callable[[Exception | None], None]) -> None:
        self._target = target
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        self._target.data_received(data)

    def eof_received(self) -> bool:
        self._target.eof_received()
        return False

    def pause_writing(self) -> None:
        self._target.pause_writing()

    def resume_writing(self) -> None:
        self._target.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)


class _PipesTransport(asyncio.Transport):
    """What the pipe-based transports share: ``writer`` is the pipe we write to, ``reader`` the one
    we read from."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self.writer: asyncio.WriteTransport | None = None
        self.reader: asyncio.ReadTransport | None = None
        self._closing = False

    def pause_reading(self) -> None:
        if self.reader is not None:
            self.reader.pause_reading()

    def resume_reading(self) -> None:
        if self.reader is not None:
            self.reader.resume_reading()

    def write(self, data: Data) -> None:
        if self.writer is not None and not self._closing:
            self.writer.write(data)

    def writelines(self, list_of_data: Iterable[Data]) -> None:
        if self.writer is not None and not self._closing:
            self.writer.writelines(list_of_data)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return self.writer.get_write_buffer_size() if self.writer is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.writer.get_write_buffer_limits() if self.writer is not None else (0, 0)

    @property
    def joins_writes(self) -> bool:
        """Whether the pipe's transport is asyncio's own (the standard loop's, on every Python), which
        joins what ``writelines`` is given and keeps what a write leaves in one ``bytearray``, moved to
        its start after every later write: a peer then writes large messages a slice at a time
        (``ipfi.aio.peer._PacedWriter``). uvloop's takes them as they are."""
        return self.writer is not None and type(self.writer).writelines is asyncio.WriteTransport.writelines


class PipePairTransport(_PipesTransport):
    """A duplex transport made of a read pipe and a write pipe (stdio, a child's stdin/stdout)."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._protocol: ByteReceiver | None = None
        self._lost = False

    @classmethod
    async def open(
        cls, protocol: ByteReceiver, read_pipe: Any, write_pipe: Any, extra: dict[str, Any] | None = None
    ) -> PipePairTransport:
        loop = asyncio.get_running_loop()
        transport = cls(extra)
        transport._protocol = protocol
        transport.writer, _ = await loop.connect_write_pipe(
            lambda: _ForwardingProtocol(protocol, transport._side_lost), write_pipe
        )
        # The protocol learns of its transport before the reading side exists: nothing may arrive
        # before connection_made (uvloop's read pipe delivers what is there even when paused at once).
        protocol.connection_made(transport)
        transport.reader, _ = await loop.connect_read_pipe(
            lambda: _ForwardingProtocol(protocol, transport._side_lost), read_pipe
        )
        if transport._closing:  # (closed in between: the reading side closes with it)
            transport.reader.close()
        return transport

    def _side_lost(self, exc: Exception | None) -> None:
        # Either side ending ends the connection: close the other one too.
        self.close()
        if not self._lost and self._protocol is not None:
            self._lost = True
            self._protocol.connection_lost(exc)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for side in (self.writer, self.reader):
            if side is not None:
                side.close()

    def abort(self) -> None:
        self._closing = True
        if self.writer is not None:
            self.writer.abort()
        if self.reader is not None:
            self.reader.close()


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory pair: writes are delivered to the other end on the next loop turn."""

    def __init__(self, name: str) -> None:
        super().__init__({"peername": name})
        self.protocol: ByteReceiver | None = None
        self.other: MemoryTransport | None = None
        self._closing = False
        self._paused = False
        self._backlog: deque[bytes] = deque()
        self._loop = asyncio.get_running_loop()

    def write(self, data: Data) -> None:
        other = self.other
        if self._closing or other is None or other._closing:
            return
        self._loop.call_soon(other._deliver, bytes(data))

    def writelines(self, list_of_data: Iterable[Data]) -> None:
        self.write(b"".join(list_of_data))

    def _deliver(self, data: bytes) -> None:
        if self._closing or self.protocol is None:
            return
        if self._paused:
            self._backlog.append(data)
        else:
            self.protocol.data_received(data)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        while self._backlog and not self._paused and not self._closing:
            self._deliver(self._backlog.popleft())

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        other = self.other
        if other is not None:
            self._loop.call_soon(other._peer_closed)
        if self.protocol is not None:
            self._loop.call_soon(self.protocol.connection_lost, None)

    def _peer_closed(self) -> None:
        if self.protocol is not None and not self._closing:
            self.protocol.eof_received()
        self.close()

    def abort(self) -> None:
        self.close()


class CallbackTransport(asyncio.Transport):
    """A connection over any byte source and sink.

    ``source`` is an async iterable of byte chunks (any sizes, down to one byte); its end is EOF.
    ``sink(data)`` is called in order with each outgoing chunk and may return an awaitable.
    """

    def __init__(
        self,
        protocol: ByteReceiver,
        source: AsyncIterable[bytes],
        sink: Callable[[bytes], Awaitable[None] | None],
        *,
        extra: dict[str, Any] | None = None,
        closer: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """``closer`` ends what ``source`` and ``sink`` come from (a WebSocket), once the
        connection is done, whichever side ended it."""
        super().__init__(extra or {"peername": "stream"})
        self._protocol = protocol
        self._sink = sink
        self._closer = closer
        self._closing = False
        self._outgoing: deque[bytes] = deque()
        self._has_outgoing = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read(source))
        self._writer = loop.create_task(self._write())
        protocol.connection_made(self)

    async def _read(self, source: AsyncIterable[bytes]) -> None:
        error: Exception | None = None
        try:
            async for chunk in source:
                await self._resume.wait()
                if self._closing:
                    break
                self._protocol.data_received(bytes(chunk))
            else:
                self._protocol.eof_received()
        except Exception as exc:
            error = exc
        await self._finish(error)

    async def _write(self) -> None:
        try:
            while True:
                await self._has_outgoing.wait()
                while self._outgoing:
                    result = self._sink(self._outgoing.popleft())
                    if result is not None:
                        await result
                self._has_outgoing.clear()
        except Exception as exc:
            await self._finish(exc)

    async def _finish(self, error: Exception | None) -> None:
        first = not self._closing
        self._closing = True
        if self._writer is not asyncio.current_task():
            self._writer.cancel()
        if first or error is not None:
            await self._close_source()
            self._protocol.connection_lost(error)

    async def _close_source(self) -> None:
        """The connection ends once what it came over has closed (a WebSocket's closing handshake)."""
        closer, self._closer = self._closer, None
        if closer is not None:
            with contextlib.suppress(Exception):  # (it may have broken already: that ends it too)
                await closer()

    def write(self, data: Data) -> None:
        if not self._closing:
            self._outgoing.append(bytes(data))
            self._has_outgoing.set()

    def writelines(self, list_of_data: Iterable[Data]) -> None:
        self.write(b"".join(list_of_data))

    def pause_reading(self) -> None:
        self._resume.clear()

    def resume_reading(self) -> None:
        self._resume.set()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._reader.cancel()
        asyncio.get_running_loop().create_task(self._drain_and_stop())

    async def _drain_and_stop(self) -> None:
        try:
            while self._outgoing:
                result = self._sink(self._outgoing.popleft())
                if result is not None:
                    await result
        finally:
            self._writer.cancel()
            await self._close_source()
            self._protocol.connection_lost(None)

    def abort(self) -> None:
        self._outgoing.clear()
        self.close()
