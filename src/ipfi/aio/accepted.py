"""A listening socket for asyncio's servers that can end what they accepted but no protocol owns yet."""

from __future__ import annotations

import contextlib
import socket
import weakref
from typing import Any


class ListenerKeepingAccepted(socket.socket):
    """A listening socket that remembers, weakly, the sockets asyncio's own loop accepts through it.

    A ``tls://`` or ``wss://`` connection belongs to no protocol until its TLS handshake is done,
    and asyncio before 3.13 (``Server.abort_clients``) has no way to end it: a client that connects
    and never says hello would outlive the server's ``close()`` until its handshake's deadline, and
    hold up ``Server.wait_closed`` (3.12+) as long. (uvloop accepts on the descriptor itself, so
    nothing is kept there: its ``wait_closed`` does not wait for such connections, and they end at
    their deadline.)
    """

    __slots__ = ("accepted",)

    def __init__(self, listening: socket.socket) -> None:
        """Takes over ``listening`` (which is left detached)."""
        super().__init__(listening.family, listening.type, listening.proto, fileno=listening.detach())
        self.accepted: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def accept(self) -> tuple[socket.socket, Any]:
        connection, address = super().accept()
        self.accepted.add(connection)
        return connection, address

    def end_accepted(self) -> None:
        """Shut down every accepted socket still open: their transports see the end and close."""
        for connection in list(self.accepted):
            with contextlib.suppress(OSError):  # (closed already)
                connection.shutdown(socket.SHUT_RDWR)
