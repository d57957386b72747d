"""Transports for wires that are not one socket: a pipe pair, a child process, memory, user callbacks.

Each presents the ``asyncio.Transport`` surface a :class:`~ipfi.aio.peer.Peer` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol, cast

from ..net.credentials import PIPES_SIZABLE, size_pipes

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


class _WritePipeTransport(asyncio.Transport):
    """The write side shared by the pipe-based transports: ``writer`` is the pipe we write to."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self.writer: asyncio.WriteTransport | None = None
        self._closing = False

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


class PipePairTransport(_WritePipeTransport):
    """A duplex transport made of a read pipe and a write pipe (stdio, a child's stdin/stdout)."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self.reader: asyncio.ReadTransport | None = None
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

    def pause_reading(self) -> None:
        if self.reader is not None:
            self.reader.pause_reading()

    def resume_reading(self) -> None:
        if self.reader is not None:
            self.reader.resume_reading()

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


class ChildProcess:
    """The child process behind an ``exec:`` connection (``peer.process``), shaped as asyncio's
    ``asyncio.subprocess.Process``: ``pid``, ``returncode`` (``None`` while it runs; ``-N`` when
    signal N ended it), ``await wait()``, ``send_signal``, ``terminate``, ``kill``."""

    def __init__(self, process: asyncio.SubprocessTransport, exited: asyncio.Future[None], args: tuple[str, ...]):
        self._process = process
        self._exited = exited
        self.args = args

    @property
    def pid(self) -> int:
        return self._process.get_pid()

    @property
    def returncode(self) -> int | None:
        return self._process.get_returncode()

    async def wait(self) -> int:
        """Wait for the child to exit; returns its exit status (see ``returncode``)."""
        await asyncio.shield(self._exited)
        return cast(int, self._process.get_returncode())

    def send_signal(self, signal: int) -> None:
        """Send ``signal``; ``ProcessLookupError`` if it has exited."""
        self._process.send_signal(signal)

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def __repr__(self) -> str:
        return f"<ChildProcess pid={self.pid} returncode={self.returncode} args={self.args!r}>"


class ChildProcessTransport(_WritePipeTransport):
    """Talks to a spawned child over its stdin/stdout; its stderr goes where ``stderr`` says
    (inherited by default).

    Closing closes the child's stdin; a child that does not exit within ``exit_timeout`` is killed.
    """

    def __init__(self, exit_timeout: float = 2.0) -> None:
        super().__init__()
        self._process: asyncio.SubprocessTransport | None = None
        self._stdout: asyncio.ReadTransport | None = None
        self._exit_timeout = exit_timeout
        self.child: ChildProcess | None = None
        #: Set once the child closed its stdin: what a write then does instead (see _ChildProtocol).
        self.unheard: Callable[[], object] | None = None

    @classmethod
    async def spawn(
        cls,
        protocol: ByteReceiver,
        argv: tuple[str, ...],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stderr: Any = None,
        pipe_size: int | None = None,
    ) -> ChildProcessTransport:
        """Start ``argv`` and connect ``protocol`` to it, through pipes of ``pipe_size`` bytes where
        pipes can be sized (see :func:`~ipfi.net.credentials.size_pipes`; ``None``: the system's).
        Raises ``OSError`` (``FileNotFoundError`` for a program that does not exist) as
        ``subprocess`` does."""
        loop = asyncio.get_running_loop()
        transport = cls()
        exited = loop.create_future()
        child_protocol = _ChildProtocol(protocol, transport, exited)
        child = {"stderr": stderr, "env": env, "cwd": cwd}
        if pipe_size is None or not PIPES_SIZABLE:
            pipe = asyncio.subprocess.PIPE
            process, _ = await loop.subprocess_exec(lambda: child_protocol, *argv, stdin=pipe, stdout=pipe, **child)
            # (uvloop's pipe transports have these methods without being asyncio's classes: no isinstance)
            transport.writer = cast(asyncio.WriteTransport, process.get_pipe_transport(0))
            transport._stdout = cast(asyncio.ReadTransport, process.get_pipe_transport(1))
        else:
            process, transport.writer, transport._stdout = await _spawn_through_sized_pipes(
                child_protocol, argv, pipe_size, child
            )
        transport._process = process
        transport.child = ChildProcess(process, exited, argv)
        protocol.connection_made(transport)
        child_protocol.connected()  # what the child wrote before now reaches the protocol only now
        return transport

    def write(self, data: Data) -> None:
        if self.unheard is not None:
            self.unheard()
        else:
            super().write(data)

    def writelines(self, list_of_data: Iterable[Data]) -> None:
        if self.unheard is not None:
            self.unheard()
        else:
            super().writelines(list_of_data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername" and self.child is not None:
            return f"exec:{shlex.join(self.child.args)} (pid {self.child.pid})"
        return super().get_extra_info(name, default)

    def pause_reading(self) -> None:
        if self._stdout is not None:
            self._stdout.pause_reading()

    def resume_reading(self) -> None:
        if self._stdout is not None:
            self._stdout.resume_reading()

    def close(self) -> None:
        if self._closing or self._process is None:
            return
        self._closing = True
        if self.writer is not None:
            self.writer.close()
        asyncio.get_running_loop().call_later(self._exit_timeout, self._kill_if_alive)

    def abort(self) -> None:
        self.close()
        self._kill_if_alive()

    def _kill_if_alive(self) -> None:
        process = self._process
        if process is None:
            return
        if process.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        process.close()
        if self._stdout is not None:  # (a grandchild may still hold the child's stdout open)
            self._stdout.close()


class _ChildPipe(asyncio.Protocol):
    """The child's stdin (fd 0) or stdout (fd 1), reported to :class:`_ChildProtocol` as the pipes of
    ``subprocess_exec`` report to a ``SubprocessProtocol``."""

    def __init__(self, child: _ChildProtocol, fd: int) -> None:
        self._child = child
        self._fd = fd

    def data_received(self, data: bytes) -> None:
        self._child.pipe_data_received(self._fd, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._child.pipe_connection_lost(self._fd, exc)

    def pause_writing(self) -> None:
        self._child.pause_writing()

    def resume_writing(self) -> None:
        self._child.resume_writing()


async def _spawn_through_sized_pipes(
    child_protocol: _ChildProtocol, argv: tuple[str, ...], size: int, child: dict[str, Any]
) -> tuple[asyncio.SubprocessTransport, asyncio.WriteTransport, asyncio.ReadTransport]:
    """``subprocess_exec`` with stdin and stdout pipes made and sized here (uvloop's pipe transports
    do not tell their fds, and the child should start with them sized), reported to
    ``child_protocol`` as its own pipes would be. (Not on Windows, whose loop wants overlapped
    pipes: pipes cannot be sized there anyway.)"""
    loop = asyncio.get_running_loop()
    child_stdin, to_child = os.pipe()
    from_child, child_stdout = os.pipe()
    size_pipes((to_child, from_child), size)
    ours = [os.fdopen(to_child, "wb", buffering=0), os.fdopen(from_child, "rb", buffering=0)]
    process: asyncio.SubprocessTransport | None = None
    writer: asyncio.WriteTransport | None = None
    try:
        try:
            process, _ = await loop.subprocess_exec(
                lambda: child_protocol, *argv, stdin=child_stdin, stdout=child_stdout, **child
            )
        finally:
            os.close(child_stdin)
            os.close(child_stdout)
        writer, _ = await loop.connect_write_pipe(lambda: _ChildPipe(child_protocol, 0), ours[0])
        reader, _ = await loop.connect_read_pipe(lambda: _ChildPipe(child_protocol, 1), ours[1])
    except BaseException:
        if writer is not None:
            writer.close()
        for pipe in ours:
            pipe.close()
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.close()
        raise
    return process, writer, reader


_STDOUT_GRACE = 0.5  # seconds the child's stdout may stay open after it exited


class _ChildProtocol(asyncio.SubprocessProtocol):
    def __init__(self, target: ByteReceiver, transport: ChildProcessTransport, exited: asyncio.Future[None]) -> None:
        self._target = target
        self._transport = transport
        self._exited = exited
        self._lost = False
        self._stdout_open = True
        self._early: list[Callable[[], None]] | None = []  # events before connected(), replayed then

    def connected(self) -> None:
        early, self._early = self._early, None
        for event in early or ():
            event()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd == 1 and isinstance(data, bytes):
            if self._early is not None:
                self._early.append(lambda: self._target.data_received(data))
            else:
                self._target.data_received(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self._early is not None:
            self._early.append(lambda: self.pipe_connection_lost(fd, exc))
        elif fd == 1:  # the child's stdout ended: it exited or closed it
            self._stdout_open = False
            self._target.eof_received()
            self._lost_once(exc)
        elif fd == 0 and exc is not None:  # writing to the child failed (it died)
            self._lost_once(exc)
        elif fd == 0 and not self._transport.is_closing():
            # The child closed its stdin (asyncio's pipe transport tells before a write fails, and
            # drops what it is given after): what the child still writes is read, and the next
            # write ends the connection, as a write that fails does.
            lost = BrokenPipeError("the child closed its standard input")
            loop = asyncio.get_running_loop()
            self._transport.unheard = lambda: loop.call_soon(self._lost_once, lost)

    def process_exited(self) -> None:
        if not self._exited.done():
            self._exited.set_result(None)
        if self._early is not None:
            self._early.append(self.process_exited)
        elif not self._stdout_open:
            self._lost_once(None)
        else:
            # The exit can be seen before the last bytes the child wrote are read from its stdout
            # (an error message, say): the end waits for the pipe's end, or for a grandchild that
            # holds the pipe open, a moment.
            asyncio.get_running_loop().call_later(_STDOUT_GRACE, self._lost_once, None)

    def pause_writing(self) -> None:
        self._target.pause_writing()

    def resume_writing(self) -> None:
        self._target.resume_writing()

    def _lost_once(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._transport.close()
            self._target.connection_lost(exc)


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
