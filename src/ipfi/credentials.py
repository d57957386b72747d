"""Who is on the other end of a Unix socket: the kernel's record of the peer's pid, uid and gid."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The peer process as the kernel saw it when the connection was made (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> Credentials | None:
    """The credentials of a connected Unix socket's peer; ``None`` for other sockets or platforms."""
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    return Credentials(*_UCRED.unpack(raw))
