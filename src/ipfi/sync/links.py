"""Blocking byte links: a socket, or a pair of pipes (stdio, a child's stdin/stdout)."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, Final, Protocol

from ..core.codecs import Buffer
from ..net.hangup import wait_readable


class Link(Protocol):
    """What the blocking driver needs from a wire."""

    #: Details of the wire, named as asyncio's transports name them (``"peername"``...).
    extra: dict[str, Any]

    def recv_into(self, buffer: memoryview) -> int:
        """Block until bytes arrive and write them into ``buffer``; returns their count, 0 at EOF.
        Raises ``OSError`` if the wire broke (or another thread closed it): the end, too."""
        ...

    def send(self, data: Buffer) -> None:
        """Write all of ``data``; raises ``OSError`` if the wire is gone."""
        ...

    def send_pieces(self, pieces: list[Buffer]) -> None:
        """:meth:`send` of the pieces one after the other, in as few system calls as the wire allows
        (a large binary among them is not copied)."""
        ...

    def readable(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for bytes (or EOF) to read."""
        ...

    def shutdown(self) -> None:
        """End the connection so that a thread blocked in :meth:`recv` returns."""
        ...

    def fileno(self) -> int | None:
        """The fd read from (``None`` if there is none to watch for the peer leaving)."""
        ...

    def close(self) -> None: ...


class SocketLink:
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.extra: dict[str, Any] = {"socket": sock, "sockname": sock.getsockname()}
        with contextlib.suppress(OSError):  # (a peer that already left has no name)
            self.extra["peername"] = sock.getpeername()
        # The socket's own methods, not wrappers: these run for every call.
        self.recv_into: Callable[[memoryview], int] = sock.recv_into
        self.send: Callable[[Buffer], None] = sock.sendall
        self._sendmsg: Callable[[list[Buffer]], int] | None = getattr(sock, "sendmsg", None)

    def send_pieces(self, pieces: list[Buffer]) -> None:
        # One sendmsg for all: a reader wakes to a message's headers and the start of its binary
        # together, and can receive that binary in place (FrameDecoder.split_at).
        if self._sendmsg is None:  # (Windows)
            send_each(self.send, pieces)
        else:
            write_all(self._sendmsg, pieces)

    def readable(self, timeout: float | None) -> bool:
        fd = self.sock.fileno()
        return fd < 0 or wait_readable(fd, timeout)  # a closed socket "reads" its EOF at once

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def fileno(self) -> int | None:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


_READV: Final[Callable[[int, list[memoryview]], int] | None] = getattr(os, "readv", None)
_WRITEV: Final[Callable[[int, list[Buffer]], int] | None] = getattr(os, "writev", None)
#: Pieces given to one gathering write at most (Linux's IOV_MAX is 1024; POSIX promises 16).
_PIECES_PER_WRITE: Final = 16


def write_all(write: Callable[[list[Buffer]], int], pieces: list[Buffer]) -> None:
    """All of ``pieces`` through ``write`` (``sendmsg``, ``writev``), which may write part of them."""
    left = pieces
    while left:
        batch = left[:_PIECES_PER_WRITE]
        written = write(batch)
        left = left[len(batch) :]
        if written < sum(map(len, batch)):  # (a blocking socket's sendmsg writes all, at once)
            left = _unwritten(batch, written) + left


def _unwritten(pieces: list[Buffer], written: int) -> list[Buffer]:
    """What is left of ``pieces`` once ``written`` bytes of them are written."""
    for index, piece in enumerate(pieces):
        if written < len(piece):
            return [memoryview(piece)[written:], *pieces[index + 1 :]]
        written -= len(piece)
    return []


def send_each(send: Callable[[Buffer], None], pieces: list[Buffer]) -> None:
    for piece in pieces:
        send(piece)


class PipeLink:
    """Read from one fd, write to another; owns a child process when given one."""

    def __init__(self, read_fd: int, write_fd: int, process: subprocess.Popen[bytes] | None = None) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.process = process
        self.extra: dict[str, Any] = {"peername": "stdio"}
        if process is not None:
            self.extra["peername"] = f"{_command(process.args)} (pid {process.pid})"
        self._closed = False

    def recv_into(self, buffer: memoryview) -> int:
        if _READV is not None:
            return _READV(self.read_fd, [buffer])
        data = os.read(self.read_fd, len(buffer))  # (Windows has no readv: one copy more)
        buffer[: len(data)] = data
        return len(data)

    def send(self, data: Buffer) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.write_fd, view) :]

    def send_pieces(self, pieces: list[Buffer]) -> None:
        if _WRITEV is None:  # (Windows)
            send_each(self.send, pieces)
        else:
            write_all(partial(_WRITEV, self.write_fd), pieces)

    def readable(self, timeout: float | None) -> bool:
        return wait_readable(self.read_fd, timeout)

    def fileno(self) -> int | None:
        return self.read_fd

    def shutdown(self) -> None:
        # Closing our writing end tells the other side we are done: a child then exits, which ends
        # our read with EOF. (close() reaps the child, killing one that lingers.)
        if self.write_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.process is not None:
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _command(args: Any) -> str:
    return "exec:" + (shlex.join(args) if isinstance(args, (list, tuple)) else str(args))


def stdio_link() -> PipeLink:
    """This process's stdin/stdout; fd 1 becomes stderr so stray prints cannot corrupt frames."""
    write_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout.flush()
    return PipeLink(os.dup(0), write_fd)
