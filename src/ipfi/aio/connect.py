"""Opening connections and servers by address, and over memory or any byte source/sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, Unpack

from ..core.connection import Role
from ..core.errors import AddressError, HandshakeTimeout
from ..core.interface import Interface
from ..core.logs import RateLimitedLog
from ..net.addresses import Address, parse_address
from ..net.listeners import BACKLOG, Listener
from ..net.services import not_running
from ..net.tls import client_arguments as tls_client_arguments
from ..net.tls import server_arguments as tls_server_arguments
from ..net.websocket import interfaces_by_path, require_websockets
from ..options import OptionArgs, Options, make_options
from ..server_events import TimersAndFds
from .accepted import ListenerKeepingAccepted
from .child_process import ChildProcessTransport
from .event_feed import EventFeed
from .peer import Peer, new_peer
from .transports import CallbackTransport, MemoryTransport, PipePairTransport
from .websocket import attach, connect_websocket, serve_websockets

log = logging.getLogger("ipfi.aio")


class Opening:
    """A connection being opened: ``await`` it for the :class:`Peer`, or use it as ``async with`` to
    have the peer closed gracefully (:meth:`Peer.aclose`) afterwards.

    Awaiting it raises what opening raises: ``OSError`` from the wire (``ConnectionRefusedError``
    where nothing listens), :class:`~ipfi.HandshakeError` if the handshake is refused or malformed,
    :class:`~ipfi.HandshakeTimeout` (a ``TimeoutError``) if it takes longer than
    ``Limits.handshake_timeout``, :class:`~ipfi.AddressError` (a ``ValueError``) for a bad address.
    """

    def __init__(self, opener: Coroutine[Any, Any, Peer]) -> None:
        self._opener = opener
        self._peer: Peer | None = None

    def __await__(self) -> Generator[Any, None, Peer]:
        return self._opener.__await__()

    async def __aenter__(self) -> Peer:
        self._peer = await self._opener
        return self._peer

    async def __aexit__(self, *exc_info: object) -> None:
        if self._peer is not None:
            await self._peer.aclose()


async def _handshaken(peer: Peer) -> Peer:
    try:
        await asyncio.wait_for(peer.wait_opened(), peer.options.limits.handshake_timeout)
    except TimeoutError:
        await _given_up(peer)
        raise HandshakeTimeout(f"no handshake reply within {peer.options.limits.handshake_timeout} s") from None
    except Exception:
        await _given_up(peer)
        raise
    except BaseException:  # (cancelled: an exec: child is killed at once, not waited for)
        peer.abort()
        if peer.process is not None:
            with contextlib.suppress(ProcessLookupError):  # (it has exited)
                peer.process.kill()
        raise
    return peer


async def _given_up(peer: Peer) -> None:
    """The handshake failed: close; over ``exec:``, also wait until the child has exited (killed at
    once after a protocol error or the core's handshake deadline, else 2 s after its stdin closed)
    and been reaped, as the blocking driver's connect does: that was otherwise due on a loop the
    program may end right then, leaving a zombie or a child that ignores its stdin running."""
    peer.abort()
    if peer.process is not None:
        await peer.wait_closed()


def connect(address: str, iface: Interface | None = None, **options: Unpack[OptionArgs]) -> Opening:
    """Connect to ``address`` (``unix:``, ``tcp://``, ``stdio:``, ``exec:``) and complete the handshake.

    ``iface`` is what this side offers the peer (it may call back). Options: see :class:`~ipfi.Options`.
    """
    return Opening(_connect(parse_address(address), iface, make_options(**options)))


async def _connect(address: Address, iface: Interface | None, options: Options) -> Peer:
    options = options.for_scheme(address.scheme)
    loop = asyncio.get_running_loop()
    # (Only a socket's transport lets a peer switch it to reading large frames in place, as it does on
    # uvloop: a WebSocket's, a pipe's and a child's only push bytes. The server's are made so too.)
    on_socket = (address.is_unix or address.is_tcp) and not address.is_websocket
    peer = new_peer(Role.CLIENT, iface, options) if on_socket else Peer(Role.CLIENT, iface, options)
    if address.is_websocket:
        require_websockets()
        await connect_websocket(peer, address, options)
    elif address.is_unix:
        try:
            await loop.create_unix_connection(lambda: peer, address.socket_file())
        except FileNotFoundError:
            raise not_running(address) from None
    elif address.is_tcp:
        tls = tls_client_arguments(address.scheme, address.host, options.ssl, options.limits.handshake_timeout)
        transport, _ = await loop.create_connection(lambda: peer, address.host, address.port, **tls)
        _set_nodelay(transport)
    elif address.scheme == "stdio":
        await _open_stdio(peer)
    else:
        transport = await ChildProcessTransport.spawn(
            peer, address.argv, pipe_size=options.unix_buffer_size, **options.spawns
        )
        peer.process = transport.child
    return await _handshaken(peer)


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _open_stdio(peer: Peer) -> None:
    # Frames own the original fd 1 from here on; fd 1 becomes stderr, so a stray print(), even one
    # still buffered from before, goes to stderr instead of corrupting the frames.
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout.flush()
    frames_in = os.fdopen(os.dup(0), "rb", buffering=0)
    await PipePairTransport.open(peer, frames_in, frames_out, {"peername": "stdio"})


def connect_stream(
    source: AsyncIterable[bytes],
    sink: Callable[[bytes], Awaitable[None] | None],
    iface: Interface | None = None,
    **options: Unpack[OptionArgs],
) -> Opening:
    """Connect as the client over any byte source (async iterable of chunks) and sink (callable)."""
    return Opening(_over_callbacks(Role.CLIENT, source, sink, iface, make_options(**options)))


def accept_stream(
    source: AsyncIterable[bytes],
    sink: Callable[[bytes], Awaitable[None] | None],
    iface: Interface | None = None,
    **options: Unpack[OptionArgs],
) -> Opening:
    """Like :func:`connect_stream`, as the server side (waits for the client's hello)."""
    return Opening(_over_callbacks(Role.SERVER, source, sink, iface, make_options(**options)))


async def _over_callbacks(
    role: Role,
    source: AsyncIterable[bytes],
    sink: Callable[[bytes], Awaitable[None] | None],
    iface: Interface | None,
    options: Options,
) -> Peer:
    peer = Peer(role, iface, options)
    CallbackTransport(peer, source, sink)
    return await _handshaken(peer)


async def pair(
    client_iface: Interface | None = None, server_iface: Interface | None = None, **options: Unpack[OptionArgs]
) -> tuple[Peer, Peer]:
    """Two connected peers in this process, over memory: ``(client, server)``."""
    settings = make_options(**options)
    client = Peer(Role.CLIENT, client_iface, settings)
    server = Peer(Role.SERVER, server_iface, settings)
    client_end, server_end = MemoryTransport("memory:server"), MemoryTransport("memory:client")
    client_end.protocol, server_end.protocol = client, server
    client_end.other, server_end.other = server_end, client_end
    server.connection_made(server_end)
    client.connection_made(client_end)
    await asyncio.gather(_handshaken(client), _handshaken(server))
    return client, server


class Server(TimersAndFds):
    """Serves one :class:`~ipfi.Interface` to every connection on one address.

    >>> # async with await ipfi.serve("unix:/tmp/calc.sock", iface) as server:
    >>> #     await server.serve_forever()
    """

    def __init__(
        self, address: Address, iface: Interface | Mapping[str, Interface | None] | None, options: Options
    ) -> None:
        self.address = address
        #: Which interface a connection gets, by its WebSocket path ("" for other wires).
        self._serves = interfaces_by_path(address, iface)
        self.interface = self._interface_at("")
        self.options = options.for_scheme(address.scheme)
        self.connections: set[Peer] = set()
        self._accepting: weakref.WeakSet[Peer] = weakref.WeakSet()  # made by the factory, not yet connected
        self._listener: Listener | None = None
        self._server: asyncio.Server | None = None  # (or websockets' server: the same close and wait_closed)
        self._end_openings: Callable[[], None] | None = None  # (websockets' server: its handshakes under way)
        self._tls_listening: ListenerKeepingAccepted | None = None  # (its TLS handshakes under way)
        self._stdio_peer: Peer | None = None
        self._feed: EventFeed | None = None
        self._stopped = False
        self._closed = asyncio.get_running_loop().create_future()
        self._refusals = RateLimitedLog(log, burst=1, period=10.0)

    def _new_peer(self) -> asyncio.BaseProtocol:
        count = len(self.connections) + len(self._accepting)
        if count >= self.options.limits.max_connections:
            self._refused(count)
            return _Refuser()
        return self._adopt(new_peer(Role.SERVER, self.interface, self.options))

    def _refused(self, count: int) -> None:
        self._refusals.warning("server %s: max_connections (%d) reached; refusing connections", self.address, count)

    def _interface_at(self, path: str) -> Interface | None:
        served = self._serves(path)
        return None if isinstance(served, bool) else served

    async def _serve_websocket(self, websocket: Any) -> None:
        """One WebSocket connection, for as long as it lasts."""
        if len(self.connections) >= self.options.limits.max_connections:
            self._refused(len(self.connections))
            await websocket.close(1013, "the server is full")
            return
        peer = self._adopt(Peer(Role.SERVER, self._interface_at(websocket.request.path), self.options))
        attach(peer, websocket)
        await peer.wait_closed()

    def _adopt(self, peer: Peer) -> Peer:
        # Counted from the start (asyncio may accept several before the first is connected), but
        # among the connections once connected: a TLS client whose handshake fails never is, and
        # the weak set forgets its peer by itself.
        self._accepting.add(peer)
        peer.watcher = self
        return peer

    def _peer_made(self, peer: Peer) -> None:
        self._accepting.discard(peer)
        self.connections.add(peer)

    def _peer_opened(self, peer: Peer) -> None:
        if self._feed is not None:
            self._feed.peer_opened(peer)

    def _peer_closed(self, peer: Peer) -> None:
        self.connections.discard(peer)
        if self._feed is not None:
            self._feed.peer_closed(peer)

    # -- the event API ---------------------------------------------------------------------------------

    def events(self) -> EventFeed:
        """The server's events for one ``async for``, until the server is closed and its peers are gone.

        Yields :class:`~ipfi.Connected`, :class:`~ipfi.Disconnected`, :class:`~ipfi.Received` (a plain
        frame; from now on plain frames come here instead of to ``peer.receive()``),
        :class:`~ipfi.TimerFired` and :class:`~ipfi.FdReady`. Peers already connected are reported first.
        """
        if self._feed is None:
            self._feed = EventFeed(lambda: self._stopped and not self.connections)
        feed = self._feed
        for peer in list(self.connections):
            if peer.is_open and peer not in feed:
                feed.peer_opened(peer)
        return feed

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        address = self.address
        if address.scheme == "stdio":
            peer = self._stdio_peer = self._adopt(Peer(Role.SERVER, self.interface, self.options))
            await _open_stdio(peer)
            return
        if address.scheme == "exec":
            raise AddressError(f"cannot serve on {address}: exec addresses are for connect()")
        options = self.options
        tls = tls_server_arguments(address.scheme, options.ssl, options.limits.handshake_timeout)
        listener = self._listener = Listener.open(address, mode=options.mode, authenticated=options.authenticates)
        try:
            if tls:
                listener.sock = self._tls_listening = ListenerKeepingAccepted(listener.sock)
            if address.is_websocket:
                require_websockets()
                self._server, self._end_openings = await serve_websockets(
                    listener.sock,
                    self._serve_websocket,
                    ssl=tls.get("ssl"),
                    handshake_timeout=options.limits.handshake_timeout,
                    max_openings=options.limits.max_connections,
                    refused=self._refused,
                    serves=self._serves,
                )
            elif address.is_unix:
                self._server = await loop.create_unix_server(self._new_peer, sock=listener.sock, backlog=BACKLOG)
            else:
                self._server = await loop.create_server(self._new_peer, sock=listener.sock, backlog=BACKLOG, **tls)
        except BaseException:
            listener.close()
            raise
        log.info("serving %s", self.bound_address)

    @property
    def bound_address(self) -> str:
        """The address clients can use, with the real port of a ``tcp://host:0`` server."""
        return self._listener.bound_address if self._listener is not None else str(self.address)

    async def serve_forever(self) -> None:
        """Run until :meth:`close` (or, for ``stdio:``, until the one connection ends)."""
        if self._stdio_peer is not None:
            await self._stdio_peer.wait_closed()
            self.close()
        await asyncio.shield(self._closed)

    def close(self) -> None:
        """Stop accepting and close every connection (their pending calls raise ``ConnectionLost``)."""
        self._stopped = True
        if self._feed is not None:
            self._feed.close()  # timers and fds; the iteration itself ends once the peers are gone
            self._feed.wake()
        if self._server is not None:
            self._server.close()
        if self._end_openings is not None:
            self._end_openings()
        if (
            self._listener is not None and not self.address.is_websocket
        ):  # (websockets' server closes its socket itself)
            self._listener.close()
        for peer in list(self.connections):
            peer.abort()
        if self._tls_listening is not None:
            self._tls_listening.end_accepted()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        peers = list(self.connections)
        await asyncio.gather(*(peer.wait_closed() for peer in peers))
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


class _Refuser(asyncio.Protocol):
    """Closes a connection over the server's limit at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def serve(
    address: str, iface: Interface | Mapping[str, Interface | None] | None, **options: Unpack[OptionArgs]
) -> Server:
    """Listen on ``address`` and serve ``iface`` to every connection. Options: see :class:`~ipfi.Options`.
    On a ``ws://``/``wss://`` address without a path, ``iface`` may map paths to interfaces (a
    request for any other path gets HTTP 404).

    Raises :class:`~ipfi.AddressInUse` where another server listens (or holds the service's lock),
    :class:`~ipfi.AddressError` for a bad address, ``OSError`` from the system (e.g.
    ``PermissionError``), ``ValueError`` for bad options.
    """
    server = Server(parse_address(address), iface, make_options(**options))
    await server.start()
    return server
