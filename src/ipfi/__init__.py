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
from .aio import (
    CallStream,
    Message,
    Opening,
    Peer,
    Proxy,
    ReconnectingPeer,
    Server,
    accept_stream,
    connect,
    connect_stream,
    pair,
    reconnecting,
    run,
    serve,
)
from .aio.gateway import Gateway, gateway
from .core.codecs import CustomType, Unencodable
from .core.errors import (
    AddressError,
    AddressInUse,
    AddressTooLong,
    AuthenticationFailed,
    Busy,
    Cancelled,
    ConnectionLost,
    DeadlineExceeded,
    FrameError,
    FrameTooLarge,
    HandshakeError,
    HandshakeTimeout,
    IdleTimeout,
    InheritedConnection,
    InvalidArguments,
    InvalidMagic,
    InvalidResult,
    InvalidState,
    IpfiError,
    KeepaliveTimeout,
    LocalProtocolError,
    NotOnThisPlatform,
    PayloadTooLarge,
    ProcedureNotFound,
    ProtocolError,
    RemoteError,
    RemoteProtocolError,
    RemoteTraceback,
    SchemaError,
)
from .core.interface import CallContext, Interface, current_call, current_peer
from .core.limits import Limits
from .core.relay import GatewayLimits
from .net.addresses import Address, parse_address
from .net.credentials import Credentials
from .net.tls import client_context as tls_client_context
from .net.tls import server_context as tls_server_context
from .options import OptionArgs, Options
from .proxy import Caller
from .reconnect_policy import Reconnect
from .schemas import Schemas
from .server_events import Connected, Disconnected, FdReady, Received, ServerEvent, TimerFired

__version__ = "0.2.0.dev0"  # (the one place the version is written: pyproject.toml reads it)

__all__ = [
    "Address",
    "AddressError",
    "AddressInUse",
    "AddressTooLong",
    "AuthenticationFailed",
    "Busy",
    "CallContext",
    "CallStream",
    "Caller",
    "Cancelled",
    "Connected",
    "ConnectionLost",
    "Credentials",
    "CustomType",
    "DeadlineExceeded",
    "Disconnected",
    "FdReady",
    "FrameError",
    "FrameTooLarge",
    "Gateway",
    "GatewayLimits",
    "HandshakeError",
    "HandshakeTimeout",
    "IdleTimeout",
    "InheritedConnection",
    "Interface",
    "InvalidArguments",
    "InvalidMagic",
    "InvalidResult",
    "InvalidState",
    "IpfiError",
    "KeepaliveTimeout",
    "Limits",
    "LocalProtocolError",
    "Message",
    "NotOnThisPlatform",
    "Opening",
    "OptionArgs",
    "Options",
    "PayloadTooLarge",
    "Peer",
    "ProcedureNotFound",
    "ProtocolError",
    "Proxy",
    "Received",
    "Reconnect",
    "ReconnectingPeer",
    "RemoteError",
    "RemoteProtocolError",
    "RemoteTraceback",
    "SchemaError",
    "Schemas",
    "Server",
    "ServerEvent",
    "TimerFired",
    "Unencodable",
    "__version__",
    "accept_stream",
    "connect",
    "connect_stream",
    "current_call",
    "current_peer",
    "gateway",
    "pair",
    "parse_address",
    "reconnecting",
    "run",
    "serve",
    "sync",
    "tls_client_context",
    "tls_server_context",
]
