"""An ``exec:`` connection's transport: a child process spoken to over its stdin and stdout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, cast

from ..net.credentials import size_pipes
from .transports import ByteReceiver, Data, _PipesTransport


class _ChildSubprocess(Protocol):
    """What a child is driven through: asyncio's transport (on Windows) or :class:`_SpawnedChild`."""

    def get_pid(self) -> int: ...
    def get_returncode(self) -> int | None: ...
    def send_signal(self, signal: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


class ChildProcess:
    """The child process behind an ``exec:`` connection (``peer.process``), shaped as asyncio's
    ``asyncio.subprocess.Process``: ``pid``, ``returncode`` (``None`` while it runs; ``-N`` when
    signal N ended it), ``await wait()``, ``send_signal``, ``terminate``, ``kill``."""

    def __init__(self, process: _ChildSubprocess, exited: asyncio.Future[None], args: tuple[str, ...]):
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


class ChildProcessTransport(_PipesTransport):
    """Talks to a spawned child over its stdin/stdout; its stderr goes where ``stderr`` says
    (inherited by default).

    Closing closes the child's stdin; a child that does not exit within ``exit_timeout`` is killed.
    """

    def __init__(self, exit_timeout: float = 2.0) -> None:
        super().__init__()
        self._process: _ChildSubprocess | None = None
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
        process: _ChildSubprocess
        if os.name == "nt":  # (the proactor loop wants pipes of its own making: overlapped, unsized)
            pipe = asyncio.subprocess.PIPE
            process, _ = await loop.subprocess_exec(lambda: child_protocol, *argv, stdin=pipe, stdout=pipe, **child)
            transport.writer = cast(asyncio.WriteTransport, process.get_pipe_transport(0))
            transport.reader = cast(asyncio.ReadTransport, process.get_pipe_transport(1))
        else:
            process, transport.writer, transport.reader = await _spawn_through_own_pipes(
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
        if self.reader is not None:  # (a grandchild may still hold the child's stdout open)
            self.reader.close()


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


async def _spawn_through_own_pipes(
    child_protocol: _ChildProtocol, argv: tuple[str, ...], size: int | None, child: dict[str, Any]
) -> tuple[_SpawnedChild, asyncio.WriteTransport, asyncio.ReadTransport]:
    """Start ``argv`` with ``subprocess.Popen`` on a stdin and a stdout pipe made (and sized) here,
    reported to ``child_protocol`` as ``subprocess_exec`` reports its own.

    Not ``subprocess_exec``: uvloop's (libuv's spawn) leaves the child a second copy of each of its
    stdio descriptors (libuv/libuv#3716), and a child holding one does not end its pipe when it
    closes its stdin or stdout: a write to it did not fail, nor did its reader see an end. Popen
    closes all but 0, 1 and 2, on every loop."""
    loop = asyncio.get_running_loop()
    child_stdin, to_child = os.pipe()
    from_child, child_stdout = os.pipe()
    size_pipes((to_child, from_child), size)
    ours = [os.fdopen(to_child, "wb", buffering=0), os.fdopen(from_child, "rb", buffering=0)]
    popen: subprocess.Popen[bytes] | None = None
    writer: asyncio.WriteTransport | None = None
    try:
        try:
            # (in the loop, as asyncio's own subprocess_exec starts its Popen: a fork and an exec)
            popen = subprocess.Popen(argv, stdin=child_stdin, stdout=child_stdout, **child)  # noqa: ASYNC220
        finally:
            os.close(child_stdin)
            os.close(child_stdout)
        process = _SpawnedChild(popen, loop, child_protocol.process_exited)
        writer, _ = await loop.connect_write_pipe(lambda: _ChildPipe(child_protocol, 0), ours[0])
        reader, _ = await loop.connect_read_pipe(lambda: _ChildPipe(child_protocol, 1), ours[1])
    except BaseException:  # (cancelled, say: the child goes too, first)
        if popen is not None:
            popen.kill()  # (nothing once it has been reaped; reaped by its watcher, or by subprocess)
        if writer is not None:
            writer.close()
        for pipe in ours:
            # (uvloop closes the fd of a pipe it failed to connect, not its file object: EBADF here)
            with contextlib.suppress(OSError):
                pipe.close()
        raise
    return process, writer, reader


class _SpawnedChild:
    """A child started with ``subprocess.Popen``, through what ipfi uses of an
    ``asyncio.SubprocessTransport``; ``exited`` is called on the loop once it has exited and has been
    reaped (its ``returncode`` set). The exit is watched through a pidfd where the kernel gives one
    (Linux 5.3+; the fd is closed at the exit), elsewhere by a thread that waits for it."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, exited: Callable[[], object]):
        self._popen = popen
        self._loop = loop
        self._exited = exited
        try:
            pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # (not Linux, or before 5.3)
            threading.Thread(target=self._wait_in_thread, name=f"ipfi-wait-{popen.pid}", daemon=True).start()
        else:
            # (closed at the exit, or once this is collected: a loop closed before the child exited
            # forgets its reader, and would leak the fd)
            self._release_pidfd = weakref.finalize(self, os.close, pidfd)
            loop.add_reader(pidfd, self._pidfd_ready, pidfd)

    def _pidfd_ready(self, pidfd: int) -> None:
        self._loop.remove_reader(pidfd)
        self._release_pidfd()
        self._popen.wait()  # (exited: this reaps it at once)
        self._exited()

    def _wait_in_thread(self) -> None:
        self._popen.wait()
        with contextlib.suppress(RuntimeError):  # (the loop closed meanwhile)
            self._loop.call_soon_threadsafe(self._exited)

    def get_pid(self) -> int:
        return self._popen.pid

    def get_returncode(self) -> int | None:
        return self._popen.returncode

    def send_signal(self, signal: int) -> None:
        """``ProcessLookupError`` once it has exited (as asyncio's transports raise)."""
        if self._popen.returncode is not None:
            raise ProcessLookupError(f"process {self._popen.pid} has exited")
        self._popen.send_signal(signal)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """(Nothing to release: the exit is still watched, so that the child is reaped.)"""


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
