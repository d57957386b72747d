"""The asyncio driver (see :mod:`ipfi` for the names most programs use)."""

from ..proxy import Proxy
from .connect import Opening, Server, accept_stream, connect, connect_stream, pair, serve
from .peer import CallStream, Message, Peer
from .reconnect import ReconnectingPeer, reconnecting
from .run import run

__all__ = [
    "CallStream",
    "Message",
    "Opening",
    "Peer",
    "Proxy",
    "ReconnectingPeer",
    "Server",
    "accept_stream",
    "connect",
    "connect_stream",
    "pair",
    "reconnecting",
    "run",
    "serve",
]
