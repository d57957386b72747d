"""The blocking, thread-safe driver: the same protocol, no event loop.

>>> # with ipfi.sync.connect("unix:calc.sock") as peer:
>>> #     peer.call("add", 1, 2)
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Unpack

from ..core.connection import Role
from ..core.interface import Interface
from ..options import OptionArgs, make_options
from .client import open_client
from .links import SocketLink
from .peer import Peer
from .reconnect import ReconnectingPeer, reconnecting
from .server import Server, serve


def connect(address: str, iface: Interface | None = None, *, workers: int = 4, **options: Unpack[OptionArgs]) -> Peer:
    """Connect to ``address`` and complete the handshake; usable as a context manager.

    With ``iface``, the peer may call this side back: a reader thread and ``workers`` threads serve it.
    Without, no thread is started: callers read their own replies.

    Raises ``OSError`` from the wire (``ConnectionRefusedError`` where nothing listens),
    :class:`~ipfi.HandshakeError`, :class:`~ipfi.HandshakeTimeout` (a ``TimeoutError``),
    :class:`~ipfi.AddressError` (a ``ValueError``) for a bad address, ``ValueError`` for bad options.
    """
    return open_client(address, iface, workers, make_options(**options), background_reader=iface is not None)


def pair(
    client_iface: Interface | None = None,
    server_iface: Interface | None = None,
    *,
    workers: int = 4,
    **options: Unpack[OptionArgs],
) -> tuple[Peer, Peer]:
    """Two connected peers in this process, over a socket pair: ``(client, server)``, handshake done.

    Each side with an interface gets a reader thread and ``workers`` threads to serve it. Raises
    :class:`~ipfi.HandshakeError` (or :class:`~ipfi.HandshakeTimeout`) if the handshake fails.
    """
    settings = make_options(**options)
    client_end, server_end = socket.socketpair()

    def executor(iface: Interface | None) -> ThreadPoolExecutor | None:
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ipfi-worker") if iface else None

    server = Peer(
        SocketLink(server_end), Role.SERVER, server_iface, settings, executor=executor(server_iface), owns_executor=True
    )
    client = Peer(
        SocketLink(client_end), Role.CLIENT, client_iface, settings, executor=executor(client_iface), owns_executor=True
    )
    server.open(background_reader=True)
    try:
        client.open(background_reader=client_iface is not None)
    except BaseException:
        server.close(timeout=0.0)
        raise
    return client, server


__all__ = ["Peer", "ReconnectingPeer", "Server", "connect", "pair", "reconnecting", "serve"]
