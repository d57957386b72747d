"""WebSocket wires for the asyncio driver: a client's connection, and a server's, each carrying one
peer's byte stream (see :mod:`ipfi.net.websocket`)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from ssl import SSLContext
from typing import Any

from ..net.addresses import Address
from ..net.listeners import BACKLOG
from ..net.tls import client_arguments as tls_client_arguments
from ..net.websocket import CONNECTION_OPTIONS, TextMessage, messages_of, url_of
from ..options import Options
from .peer import Peer
from .transports import CallbackTransport


async def connect_websocket(peer: Peer, address: Address, options: Options) -> None:
    """Open ``address`` (``ws://``/``wss://``) and connect ``peer`` to it. Raises ``OSError``,
    ``ssl.SSLError``, ``TimeoutError`` or the library's ``InvalidHandshake`` (a refused upgrade)."""
    from websockets.asyncio.client import connect

    timeout = options.limits.handshake_timeout
    tls = tls_client_arguments(address.scheme, address.host, options.ssl, timeout)
    websocket = await connect(
        url_of(address),
        ssl=tls.get("ssl"),
        server_hostname=tls.get("server_hostname"),
        open_timeout=timeout,
        **CONNECTION_OPTIONS,
    )
    attach(peer, websocket)


def attach(peer: Peer, websocket: Any) -> CallbackTransport:
    """``peer``'s transport over an open ``websocket`` (either side's)."""

    async def received() -> AsyncIterator[bytes]:
        async for message in websocket:
            if isinstance(message, str):
                await websocket.close(TextMessage.close_code, TextMessage.close_reason)
                raise TextMessage()
            yield message

    async def send(data: bytes) -> None:
        for message in messages_of(data):
            await websocket.send(message)

    extra = {
        "peername": websocket.remote_address,
        "sockname": websocket.local_address,
        "path": websocket.request.path if websocket.request is not None else None,
        "peercert": websocket.transport.get_extra_info("peercert"),
        "websocket": websocket,
    }
    return CallbackTransport(peer, received(), send, extra=extra, closer=websocket.close)


async def serve_websockets(
    sock: socket.socket,
    admit: Callable[[Any], Awaitable[None]],
    *,
    ssl: SSLContext | None,
    handshake_timeout: float,
    max_openings: int,
    refused: Callable[[int], None],
    serves: Callable[[str], object] = lambda path: True,
) -> tuple[Any, Callable[[], None]]:
    """A ``websockets`` server on listening ``sock`` (with TLS where ``ssl`` is given):
    ``admit(websocket)`` serves each connection (returning when it has ended); a request whose path
    ``serves`` refuses (``False``) gets 404. At most ``max_openings`` opening handshakes at once,
    each within ``handshake_timeout`` seconds: a client past that is closed as it comes
    (``refused(count)`` told). And what ends the handshakes under way, for after the server's
    ``close()`` (websockets leaves them to their deadline, which its ``wait_closed()`` waits for)."""
    from websockets.asyncio.server import ServerConnection, serve

    opening: set[ServerConnection] = set()  # (between connection_made and the handshake's end)

    class Connection(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if len(opening) >= max_openings:
                refused(len(opening))
                self.transport.abort()
            else:
                opening.add(self)

        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            try:
                await super().handshake(*args, **kwargs)
            finally:
                opening.discard(self)

    def check_path(connection: Any, request: Any) -> Any:
        if serves(request.path) is False:
            return connection.respond(404, "no ipfi service at this path\n")
        return None

    server = await serve(
        admit,
        sock=sock,
        ssl=ssl,
        process_request=check_path,
        open_timeout=handshake_timeout,
        backlog=BACKLOG,  # (asyncio listens again on the socket, with 100 unless told)
        create_connection=Connection,
        **CONNECTION_OPTIONS,
    )

    def end_openings() -> None:
        for connection in list(opening):
            connection.transport.abort()

    return server, end_openings
