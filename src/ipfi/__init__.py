"""ipfi: bidirectional, streaming RPC and framed messaging over any byte stream.

>>> import ipfi
>>> iface = ipfi.Interface()
>>> @iface.procedure
... async def add(a: int, b: int) -> int:
...     return a + b

Serve it with ``await ipfi.serve("unix:calc.sock", iface)``; call it with
``async with ipfi.connect("unix:calc.sock") as peer: await peer.call("add", 1, 2)``.
"""

from . import sync
from .addresses import Address, parse_address
from .aio import CallStream, Message, Peer, Proxy, Server, accept_stream, connect, connect_stream, pair, run, serve
from .credentials import Credentials
from .errors import (
    AddressError,
    AddressInUse,
    AddressTooLong,
    Busy,
    Cancelled,
    ConnectionLost,
    DeadlineExceeded,
    FrameError,
    HandshakeError,
    HandshakeTimeout,
    InheritedConnection,
    InvalidArguments,
    InvalidMagic,
    IpfiError,
    PayloadTooLarge,
    ProcedureNotFound,
    ProtocolError,
    RemoteError,
)
from .interface import Interface, current_peer
from .limits import Limits
from .options import Options
from .server_events import Connected, Disconnected, FdReady, Received, ServerEvent, TimerFired

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AddressError",
    "AddressInUse",
    "AddressTooLong",
    "Busy",
    "CallStream",
    "Cancelled",
    "Connected",
    "ConnectionLost",
    "Credentials",
    "DeadlineExceeded",
    "Disconnected",
    "FdReady",
    "FrameError",
    "HandshakeError",
    "HandshakeTimeout",
    "InheritedConnection",
    "Interface",
    "InvalidArguments",
    "InvalidMagic",
    "IpfiError",
    "Limits",
    "Message",
    "Options",
    "PayloadTooLarge",
    "Peer",
    "ProcedureNotFound",
    "ProtocolError",
    "Proxy",
    "Received",
    "RemoteError",
    "Server",
    "ServerEvent",
    "TimerFired",
    "__version__",
    "accept_stream",
    "connect",
    "connect_stream",
    "current_peer",
    "pair",
    "parse_address",
    "run",
    "serve",
    "sync",
]
