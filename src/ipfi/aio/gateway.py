"""A gateway (libIPC's "protocol daemons"): clients from the network (``tcp://``, ``tls://``,
``ws://``, ``wss://``) each get their own connection to a local service (``service:NAME``,
``unix:PATH``, ``libipc:NAME``), and their frames are relayed as they are. With the target
``libipc:`` alone it is libIPC's TCP daemon: each client sends the name of a libIPC service first,
the gateway answers ``OK``, and libIPC's frames pass both ways.

The gateway reads each client's hello, checks its token (``tokens=``) and, if it may pass, hands
the service that hello with ``forwarded_for`` saying who the client is (its address, TLS subject,
WebSocket path). From then on bytes pass unchanged both ways; the client's are counted in frames
(never copied or re-encoded) against the limits (:class:`~ipfi.GatewayLimits`). A plain ipcprims
client passes as an ipfi one does.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.errors import AddressError, HandshakeError, RemoteProtocolError
from ..core.logs import RateLimitedLog, shown
from ..core.negotiation import refusal
from ..core.relay import FrameScanner, GatewayLimits, HelloReader, RateLimit, forwarded, refused
from ..net.addresses import Address, parse_address
from ..net.listeners import BACKLOG, Listener
from ..net.services import check_name_form
from ..net.tls import server_arguments as tls_server_arguments
from ..net.tls import subject_of
from ..net.websocket import TextMessage, messages_of, require_websockets
from .accepted import ListenerKeepingAccepted
from .websocket import serve_websockets

log = logging.getLogger("ipfi.gateway")
#: The target that makes a gateway libIPC's TCP daemon: each client names its service first.
LIBIPC_BY_NAME = "libipc:"
_READ_SIZE = 256 * 1024

Receive = Callable[[], Awaitable[bytes]]  # the next bytes from the client; b"" at its end
Send = Callable[[bytes], Awaitable[None]]


class Gateway:
    """Relays clients on ``listen`` to the service at ``target`` (see the module's docstring).

    ``tokens``: the tokens a client must present (``None``: any client passes); ``ssl``: the server
    context for ``tls://`` and ``wss://``.
    """

    def __init__(
        self,
        listen: str,
        target: str,
        *,
        tokens: frozenset[str] | set[str] | None = None,
        ssl: ssl.SSLContext | None = None,
        limits: GatewayLimits | None = None,
    ) -> None:
        self.listen = parse_address(listen)
        if not self.listen.is_tcp:
            raise AddressError(f"a gateway listens on tcp://, tls://, ws:// or wss://, not {self.listen}")
        #: ``libipc:`` alone: each client names its libIPC service first, as to libIPC's TCP daemon.
        self.names_from_clients = target == LIBIPC_BY_NAME
        self.target = Address("libipc") if self.names_from_clients else parse_address(target)
        if not (self.target.is_unix or self.target.scheme == "tcp"):
            raise AddressError(f"a gateway relays to service:, unix:, libipc: or tcp://, not {self.target}")
        if isinstance(tokens, str):
            raise TypeError("tokens: a collection of tokens, not one string")
        self.tokens = None if tokens is None else frozenset(tokens)
        self.limits = limits or GatewayLimits()
        self._tls = tls_server_arguments(self.listen.scheme, ssl, self.limits.hello_timeout)
        self.clients: set[asyncio.Task[Any]] = set()
        self._listener: Listener | None = None
        self._server: Any = None
        self._end_openings: Callable[[], None] | None = None  # (its WebSocket handshakes under way)
        self._tls_listening: ListenerKeepingAccepted | None = None  # (its TLS handshakes under way)
        self._closed = asyncio.get_running_loop().create_future()
        self._refusals = RateLimitedLog(log, burst=5, period=10.0)

    async def start(self) -> None:
        listen = self.listen
        if listen.is_websocket:
            require_websockets()
        listener = self._listener = Listener.open(listen, authenticated=self.tokens is not None)
        if self._tls:
            listener.sock = self._tls_listening = ListenerKeepingAccepted(listener.sock)
        if listen.is_websocket:
            self._server, self._end_openings = await serve_websockets(
                listener.sock,
                self._serve_websocket,
                ssl=self._tls.get("ssl"),
                handshake_timeout=self.limits.hello_timeout,
                max_openings=self.limits.max_clients,
                refused=self._refused,
            )
        else:
            sock = listener.sock
            self._server = await asyncio.start_server(self._serve_stream, sock=sock, backlog=BACKLOG, **self._tls)
        log.info("gateway %s -> %s", self.bound_address, self.target)

    @property
    def bound_address(self) -> str:
        """The address clients use, with the real port of a ``:0`` one."""
        return self._listener.bound_address if self._listener is not None else str(self.listen)

    # -- one client ------------------------------------------------------------------------------

    async def _serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        async def receive() -> bytes:
            return await reader.read(_READ_SIZE)

        identity = {"remote": _address_text(writer.get_extra_info("peername"))}
        try:
            await self._relay(receive, send, identity, writer.get_extra_info("peercert"))
        finally:
            writer.close()

    async def _serve_websocket(self, websocket: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        async def send(data: bytes) -> None:
            for message in messages_of(data):
                await websocket.send(message)

        async def receive() -> bytes:
            try:
                message = await websocket.recv()
            except ConnectionClosed:
                return b""
            if isinstance(message, str):
                raise TextMessage()
            return message  # type: ignore[no-any-return]

        identity = {"remote": _address_text(websocket.remote_address), "path": websocket.request.path}
        await self._relay(receive, send, identity, websocket.transport.get_extra_info("peercert"))

    def _refused(self, count: int) -> None:
        self._refusals.warning("gateway %s: max_clients (%d) reached; refusing clients", self.bound_address, count)

    async def _relay(self, receive: Receive, send: Send, identity: dict[str, str], certificate: Any) -> None:
        if len(self.clients) >= self.limits.max_clients:
            self._refused(len(self.clients))
            return
        task = asyncio.current_task()
        assert task is not None
        self.clients.add(task)
        subject = subject_of(certificate)
        if subject is not None:
            identity["tls_subject"] = subject
        try:
            await (self._pass_named if self.names_from_clients else self._pass)(receive, send, identity)
        except (RemoteProtocolError, OSError, TimeoutError) as exc:  # (ConnectionError is an OSError)
            remote = identity["remote"]
            self._refusals.warning("gateway %s: client %s: %s: %s", self.bound_address, remote, type(exc).__name__, exc)
        finally:
            self.clients.discard(task)

    async def _pass(self, receive: Receive, send: Send, identity: dict[str, str]) -> None:
        limits = self.limits
        reader = HelloReader(limits.max_hello)
        async with asyncio.timeout(limits.hello_timeout):
            while (whole := reader.feed(await receive() or _ended())) is None:
                pass
        hello, rest = whole
        error = refused(hello, self.tokens)
        if error is not None:
            told = refusal(hello, "gateway", error)
            if told is not None:
                await send(told)
            raise error
        target_reader, target_writer = await self._open_target()
        try:
            scanner = FrameScanner(limits.max_frame_payload)
            scanner.feed(rest)
            target_writer.write(forwarded(hello, identity) + rest)
            await self._both_ways(receive, send, scanner, target_reader, target_writer)
        finally:
            target_writer.close()

    async def _pass_named(self, receive: Receive, send: Send, identity: dict[str, str]) -> None:
        """libIPC's TCP daemon: the client's first bytes name the service, the gateway answers
        "OK", then libIPC's frames pass as they are (counted in bytes only)."""
        async with asyncio.timeout(self.limits.hello_timeout):
            first = await receive() or _ended()
        try:
            name = check_name_form(first.strip(b"\0\r\n ").decode())
        except (UnicodeDecodeError, AddressError):
            raise HandshakeError(f"libIPC's TCP daemon expected a service name, got {shown(first)}") from None
        reader, writer = await self._open_target(Address("libipc", name=name))
        try:
            await send(b"OK")
            await self._both_ways(receive, send, None, reader, writer)
        finally:
            writer.close()

    async def _both_ways(
        self,
        receive: Receive,
        send: Send,
        scanner: FrameScanner | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Relay until either side ends; raises what ended it, if it was an error."""
        inbound = asyncio.ensure_future(self._client_to_service(receive, scanner, writer))
        outbound = asyncio.ensure_future(_service_to_client(reader, send))
        done, pending = await asyncio.wait((inbound, outbound), return_when=asyncio.FIRST_COMPLETED)
        for other in pending:
            other.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for finished in done:
            finished.result()

    async def _open_target(self, target: Address | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target = target or self.target
        if target.is_unix:
            return await asyncio.open_unix_connection(target.socket_file())
        return await asyncio.open_connection(target.host, target.port)

    async def _client_to_service(
        self, receive: Receive, scanner: FrameScanner | None, writer: asyncio.StreamWriter
    ) -> None:
        limits = self.limits
        frames = None if limits.frames_per_second is None else RateLimit(limits.frames_per_second)
        volume = None if limits.bytes_per_second is None else RateLimit(limits.bytes_per_second)
        while data := await receive():
            count = 0 if scanner is None else scanner.feed(data)  # (raises past the frame limit, or for no frames)
            writer.write(data)
            await writer.drain()
            delay = max(
                0.0 if frames is None else frames.delay(count), 0.0 if volume is None else volume.delay(len(data))
            )
            if delay:  # over its rate: this client is read more slowly
                await asyncio.sleep(delay)

    # -- lifetime ----------------------------------------------------------------------------------

    async def serve_forever(self) -> None:
        await asyncio.shield(self._closed)

    def close(self) -> None:
        """Stop accepting, and end every client's relay (and so its connection to the service)."""
        if self._server is not None:
            self._server.close()
        if self._listener is not None and not self.listen.is_websocket:  # (websockets closes its socket)
            self._listener.close()
        for task in list(self.clients):
            task.cancel()
        if self._end_openings is not None:
            self._end_openings()
        if self._tls_listening is not None:
            self._tls_listening.end_accepted()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.gather(*self.clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


async def _service_to_client(reader: asyncio.StreamReader, send: Send) -> None:
    while data := await reader.read(_READ_SIZE):
        await send(data)


def _ended() -> bytes:
    raise HandshakeError("the client left before its hello was whole")


def _address_text(name: Any) -> str:
    if isinstance(name, tuple):
        return ":".join(str(part) for part in name[:2])
    return str(name)


async def gateway(
    listen: str,
    target: str,
    *,
    tokens: frozenset[str] | set[str] | None = None,
    ssl: ssl.SSLContext | None = None,
    limits: GatewayLimits | None = None,
) -> Gateway:
    """Start a :class:`Gateway` from ``listen`` to ``target``. Raises :class:`~ipfi.AddressError`
    for addresses a gateway cannot use, :class:`~ipfi.AddressInUse`, ``OSError``, and
    ``ImportError`` for ``ws://`` without the websockets library."""
    started = Gateway(listen, target, tokens=tokens, ssl=ssl, limits=limits)
    await started.start()
    return started
