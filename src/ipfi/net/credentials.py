"""Unix sockets at connection time: the kernel's record of the peer's pid, uid and gid, and the size of
the socket's buffers; the size of an ``exec:`` child's pipes."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

try:
    import fcntl
except ImportError:  # (Windows)
    fcntl = None  # type: ignore[assignment]

_UCRED = struct.Struct("3i")

#: (None where Python has no Unix sockets: Windows.)
_AF_UNIX: Final = getattr(socket, "AF_UNIX", None)
#: (None where pipes cannot be resized: any system but Linux.)
_SET_PIPE_SIZE: Final[int | None] = getattr(fcntl, "F_SETPIPE_SZ", None)
#: Whether :func:`size_pipes` can size pipes here (Linux).
PIPES_SIZABLE: Final = _SET_PIPE_SIZE is not None


@dataclass(frozen=True, slots=True)
class Credentials:
    """The peer process as the kernel saw it when the connection was made (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> Credentials | None:
    """The credentials of a connected Unix socket's peer; ``None`` for other sockets, and where the
    kernel's record is not ``SO_PEERCRED`` (Linux's; macOS keeps another, not read yet)."""
    if sock is None or sock.family != _AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    return Credentials(*_UCRED.unpack(raw))


def size_unix_buffers(sock: Any, size: int | None) -> None:
    """Ask the kernel for ``size`` bytes of send and of receive buffer on a Unix socket (it caps them
    at ``net.core.wmem_max`` / ``rmem_max``). TCP keeps the kernel's autotuning, which a fixed size
    would turn off."""
    if size is None or sock is None or sock.family != _AF_UNIX:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def size_pipes(fds: Iterable[int], size: int | None) -> None:
    """Ask the kernel for ``size`` bytes of buffer in each pipe (Linux's ``F_SETPIPE_SZ``, rounded up
    to a power of two pages). A pipe keeps its size (64 KiB) where the kernel refuses: past
    ``fs.pipe-max-size`` (1 MiB by default) for a process without ``CAP_SYS_RESOURCE``, or once the
    user's pipes hold ``fs.pipe-user-pages-soft`` (64 MiB by default); and on other systems."""
    if size is None or _SET_PIPE_SIZE is None:
        return
    for fd in fds:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _SET_PIPE_SIZE, size)
