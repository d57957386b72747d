"""A blocking server: an accept thread, a reader thread per connection, a bounded pool of workers."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Unpack

from ..core.connection import Role
from ..core.interface import Interface
from ..core.logs import RateLimitedLog
from ..net.addresses import Address, parse_address
from ..net.listeners import ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, OUT_OF_RESOURCES, Listener
from ..net.tls import server_arguments as tls_server_arguments
from ..net.websocket import interfaces_by_path, require_websockets
from ..options import OptionArgs, Options, make_options
from ..server_events import TimersAndFds
from .event_feed import EventFeed
from .links import Link, SocketLink, stdio_link
from .loop_thread import LoopThread
from .peer import Peer
from .tls_link import tls_link
from .websocket_link import WebSocketLink, accept_websocket

log = logging.getLogger("ipfi.sync")


class Server(TimersAndFds):
    """Serves one interface to every connection: plain functions in each connection's reader thread;
    blocking ones, generators and procedures fed a stream in a pool of worker threads.

    Accepting starts at once (in a thread); :meth:`serve_forever` blocks until :meth:`close`.
    """

    def __init__(
        self,
        address: Address,
        iface: Interface | Mapping[str, Interface | None] | None,
        options: Options,
        *,
        workers: int = 16,
    ) -> None:
        self.address = address
        #: Which interface a connection gets, by its WebSocket path ("" for other wires).
        self._serves = interfaces_by_path(address, iface)
        self.interface = self._interface_at("")
        self.options = options.for_scheme(address.scheme)
        self.connections: set[Peer] = set()
        self._handshaking: set[socket.socket] = set()  # accepted, their handshakes under way
        self._connections_lock = threading.Lock()  # connections and _handshaking
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ipfi-worker")
        self._loop_thread = LoopThread("ipfi-async")  # for async def procedures; started at first use
        self._closed = threading.Event()
        self._listener: Listener | None = None
        self._acceptor: threading.Thread | None = None
        self._feed: EventFeed | None = None
        self._refusals = RateLimitedLog(log, burst=1, period=10.0)
        tls = tls_server_arguments(address.scheme, self.options.ssl, self.options.limits.handshake_timeout)
        self._tls: ssl.SSLContext | None = tls.get("ssl")

    def start(self) -> Server:
        if self.address.scheme == "stdio":
            self._add(stdio_link())
            return self
        if self.address.is_websocket:
            require_websockets()
        self._listener = Listener.open(self.address, mode=self.options.mode, authenticated=self.options.authenticates)
        self._acceptor = threading.Thread(target=self._accept_forever, name="ipfi-accept", daemon=True)
        self._acceptor.start()
        log.info("serving %s", self.bound_address)
        return self

    @property
    def bound_address(self) -> str:
        """The address clients can use, with the real port of a ``tcp://host:0`` server."""
        return self._listener.bound_address if self._listener is not None else str(self.address)

    def _accept_forever(self) -> None:
        assert self._listener is not None
        backoff = 0.0
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.sock.accept()
            except OSError as exc:
                if self._closed.is_set() or exc.errno not in OUT_OF_RESOURCES:
                    return  # closed
                # Out of fds or memory (EMFILE, ENFILE...): the next connection to end frees one, so
                # wait a little, longer each time, and accept again.
                backoff = min(ACCEPT_BACKOFF_MAX, backoff * 2 or ACCEPT_BACKOFF_MIN)
                self._refusals.warning("server %s: cannot accept: %s; retrying in %.2f s", self.address, exc, backoff)
                self._closed.wait(backoff)
                continue
            backoff = 0.0
            # Handshakes under way count (each holds a thread); a WebSocket client is refused after
            # its opening handshake rather than now, with a close code that says why.
            if self._full(len(self._handshaking) if self.address.is_websocket else None):
                sock.close()
            elif self._tls is None and not self.address.is_websocket:
                self._add(SocketLink(sock))
            else:  # (the handshakes in a thread of its own: a slow client holds up nobody)
                with self._connections_lock:
                    self._handshaking.add(sock)
                threading.Thread(target=self._open, args=(sock,), name="ipfi-handshake", daemon=True).start()

    def _full(self, count: int | None = None) -> bool:
        """Whether ``count`` (by default the connections and the handshakes under way) has reached
        ``max_connections``; logged, at most once in a while."""
        if count is None:
            count = len(self.connections) + len(self._handshaking)
        if count < self.options.limits.max_connections:
            return False
        self._refusals.warning("server %s: max_connections (%d) reached; refusing connections", self.address, count)
        return True

    def _open(self, sock: socket.socket) -> None:
        """In a thread of its own: the TLS handshake, the WebSocket opening handshake, or both, then
        the connection served (its reader is another thread: this one ends)."""
        timeout = self.options.limits.handshake_timeout
        path = ""
        try:
            link: Link = (
                SocketLink(sock)
                if self._tls is None
                else tls_link(sock, self._tls, server_side=True, server_hostname=None, timeout=timeout)
            )
            if self.address.is_websocket:
                websocket = accept_websocket(link, self._serves, timeout)
                if websocket is None:
                    return  # (answered with an HTTP error)
                link, path = websocket, websocket.extra["path"]
        except (OSError, ssl.SSLError) as exc:  # (SSLError and TimeoutError are OSErrors; named for the reader)
            if not self._closed.is_set():
                self._refusals.warning("server %s: a handshake failed: %s", self.address, exc)
            return
        finally:
            with self._connections_lock:
                self._handshaking.discard(sock)
        if isinstance(link, WebSocketLink) and self._full(len(self.connections)):
            link.shutdown(1013, "the server is full")
            link.close()
        else:
            self._add(link, self._interface_at(path))

    def _interface_at(self, path: str) -> Interface | None:
        served = self._serves(path)
        return None if isinstance(served, bool) else served

    def _add(self, link: Link, interface: Interface | None = None) -> None:
        peer = Peer(link, Role.SERVER, interface or self.interface, self.options, executor=self._executor)
        peer.on_open, peer.on_close = self._peer_opened, self._peer_closed
        peer.loop_thread = self._loop_thread
        with self._connections_lock:
            closed = self._closed.is_set()  # (checked with the lock that close() takes its peers under)
            if not closed:
                self.connections.add(peer)
        if closed:
            link.shutdown()
            link.close()
            return
        peer.open(background_reader=True)
        if self._closed.is_set():  # (close() took its peers while this one opened)
            peer.close(timeout=0.0)

    def _peer_opened(self, peer: Peer) -> None:
        if self._feed is not None:
            self._feed.peer_opened(peer)

    def _peer_closed(self, peer: Peer) -> None:
        with self._connections_lock:
            self.connections.discard(peer)
        if self._feed is not None:
            self._feed.peer_closed(peer)
        if self.address.scheme == "stdio":
            self._closed.set()

    # -- the event API ---------------------------------------------------------------------------------

    def events(self) -> EventFeed:
        """The server's events for one thread's ``for`` loop, until the server is closed and its peers are gone.

        Yields :class:`~ipfi.Connected`, :class:`~ipfi.Disconnected`, :class:`~ipfi.Received` (a plain
        frame; from now on plain frames come here instead of to ``peer.receive()``),
        :class:`~ipfi.TimerFired` and :class:`~ipfi.FdReady`. Peers already connected are reported first.
        """
        with self._connections_lock:
            if self._feed is None:
                self._feed = EventFeed(lambda: self._closed.is_set() and not self.connections)
            feed = self._feed
            peers = list(self.connections)
        for peer in peers:
            if peer.is_open and peer not in feed:
                feed.peer_opened(peer)
        return feed

    def serve_forever(self) -> None:
        """Block until the server is closed (for ``stdio:``, until its one connection ends)."""
        self._closed.wait()

    def close(self) -> None:
        """Stop accepting, close every connection, wait for running procedures and threads."""
        self._closed.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
            self._listener.close()
        if self._acceptor is not None:
            self._acceptor.join()
        with self._connections_lock:
            peers = list(self.connections)
            for sock in self._handshaking:  # (their handshakes fail at once; their threads end)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for peer in peers:
            peer.close(timeout=0.0)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._loop_thread.close()
        if self._feed is not None:
            self._feed.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(
    address: str,
    iface: Interface | Mapping[str, Interface | None] | None,
    *,
    workers: int = 16,
    **options: Unpack[OptionArgs],
) -> Server:
    """Listen on ``address`` and serve ``iface``, with ``workers`` threads for procedures that block.

    Options: see :class:`~ipfi.Options`. Raises :class:`~ipfi.AddressInUse` where another server
    listens (or holds the service's lock), :class:`~ipfi.AddressError` for a bad address, ``OSError``
    from the system (e.g. ``PermissionError``), ``ValueError`` for bad options.
    """
    return Server(parse_address(address), iface, make_options(**options), workers=workers).start()
