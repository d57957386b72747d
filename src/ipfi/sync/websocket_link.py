"""WebSocket wires for the blocking driver: a link over a ``websockets`` sync connection, either
side's (see :mod:`ipfi.net.websocket`)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

from ..core.codecs import Buffer
from ..net.addresses import Address
from ..net.tls import client_arguments as tls_client_arguments
from ..net.tls import server_arguments as tls_server_arguments
from ..net.websocket import CONNECTION_OPTIONS, TextMessage, messages_of, url_of
from ..options import Options
from .links import send_each

_NOTHING = memoryview(b"")


class WebSocketLink:
    """A :class:`~ipfi.sync.links.Link` over a ``websockets.sync`` connection: a received message
    is handed out in as many reads as the reader's buffer needs."""

    def __init__(self, websocket: Any) -> None:
        self._websocket = websocket
        self._left = _NOTHING  # what the last message still holds
        self._pending: BaseException | None = None  # the end that readable() saw, for the next read
        self.extra: dict[str, Any] = {
            "peername": websocket.remote_address,
            "sockname": websocket.local_address,
            "path": websocket.request.path if websocket.request is not None else None,
            "websocket": websocket,
        }
        with contextlib.suppress(AttributeError, ValueError):  # (wss: the socket is an SSLSocket)
            self.extra["peercert"] = websocket.socket.getpeercert()

    def _next_message(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` for a message; False if none came. The end is kept for a read."""
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        try:
            message = self._websocket.recv(timeout)
        except TimeoutError:
            return False
        except ConnectionClosedOK:
            self._pending = EOFError()
            return True
        except ConnectionClosed as exc:
            self._pending = ConnectionResetError(str(exc))
            return True
        if isinstance(message, str):
            self._pending = TextMessage()
        else:
            self._left = memoryview(message)
        return True

    def recv_into(self, buffer: memoryview) -> int:
        while not self._left:
            pending, self._pending = self._pending, None
            if isinstance(pending, EOFError):
                return 0
            if pending is not None:
                raise pending
            self._next_message(None)
        count = min(len(buffer), len(self._left))
        buffer[:count] = self._left[:count]
        self._left = self._left[count:]
        return count

    def send(self, data: Buffer) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for message in messages_of(data):
                self._websocket.send(message)
        except ConnectionClosed as exc:
            raise ConnectionResetError(str(exc)) from None

    def send_pieces(self, pieces: list[Buffer]) -> None:
        send_each(self.send, pieces)

    def readable(self, timeout: float | None) -> bool:
        return bool(self._left) or self._pending is not None or self._next_message(timeout)

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self._websocket.socket.shutdown(socket.SHUT_RDWR)

    def fileno(self) -> int | None:
        return None  # (its socket is read by the library's own thread: nothing to watch here)

    def close(self) -> None:
        self._websocket.close()


def connect_websocket(address: Address, options: Options) -> WebSocketLink:
    """Open ``address`` (``ws://``/``wss://``). Raises ``OSError``, ``ssl.SSLError``,
    ``TimeoutError`` or the library's ``InvalidHandshake`` (a refused upgrade)."""
    from websockets.sync.client import connect

    timeout = options.limits.handshake_timeout
    tls = tls_client_arguments(address.scheme, address.host, options.ssl, timeout)
    opening = connect(
        url_of(address),
        ssl=tls.get("ssl"),
        server_hostname=tls.get("server_hostname"),
        open_timeout=timeout,
        **CONNECTION_OPTIONS,
    )
    # A context manager yielding the connection (websockets 17 warns when it is not entered; the
    # link closes it, as the connection's own __exit__ would).
    return WebSocketLink(opening.__enter__())


def serve_websockets(
    sock: socket.socket,
    address: Address,
    options: Options,
    admit: Callable[[Any], None],
    serves: Callable[[str], object],
) -> Any:
    """A ``websockets`` sync server on listening ``sock`` (run its ``serve_forever`` in a thread):
    ``admit(websocket)`` serves each connection in a thread of its own, returning when it has
    ended; a request whose path ``serves`` refuses (``False``) gets 404."""
    from websockets.sync.server import serve

    def check_path(connection: Any, request: Any) -> Any:
        if serves(request.path) is False:
            return connection.respond(404, "no ipfi service at this path\n")
        return None

    tls = tls_server_arguments(address.scheme, options.ssl, options.limits.handshake_timeout)
    return serve(
        admit,
        sock=sock,
        ssl=tls.get("ssl"),
        process_request=check_path,
        open_timeout=options.limits.handshake_timeout,
        **CONNECTION_OPTIONS,
    )
