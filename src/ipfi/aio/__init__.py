"""The asyncio driver (see :mod:`ipfi` for the names most programs use)."""

from ..proxy import Proxy
from .connect import Server, accept_stream, connect, connect_stream, pair, serve
from .peer import CallStream, Message, Peer
from .run import run

__all__ = [
    "CallStream",
    "Message",
    "Peer",
    "Proxy",
    "Server",
    "accept_stream",
    "connect",
    "connect_stream",
    "pair",
    "run",
    "serve",
]
