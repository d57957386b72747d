"""What both drivers' peers share: the protocol core built from the options, what it negotiated, the
table that routes its events to the driver, and the plain-message queue. No I/O."""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, NoReturn

from .core.connection import CallSink, Connection, ResultSink, Role
from .core.errors import AuthenticationFailed, InvalidArguments, InvalidResult, PayloadTooLarge, RemoteError
from .core.events import (
    CallReceived,
    CancelReceived,
    CreditReceived,
    DeadlinePassed,
    ErrorReceived,
    HandshakeComplete,
    ItemsReceived,
    MessageReceived,
    PongReceived,
    ResultReceived,
    ShutdownAcknowledged,
    ShutdownRequested,
    StreamEnded,
)
from .core.handshake import Hello, token_among
from .core.interface import Interface, Procedure, error_record
from .core.logs import RateLimitedLog
from .core.protocol_core import ProtocolCore
from .net.credentials import Credentials, peer_credentials, size_unix_buffers
from .net.tls import subject_of
from .options import Options
from .wires.ipfi_rust_core import IpfiRustCore
from .wires.libipc_core import LibipcCore

log = logging.getLogger("ipfi.server")
connections_log = logging.getLogger("ipfi.connections")
_failures = RateLimitedLog(logging.getLogger("ipfi.procedures"), burst=20, period=10.0)
_violations = RateLimitedLog(logging.getLogger("ipfi.peer"), burst=20, period=10.0)


_HANDLER_NAMES: dict[type, str] = {
    ResultReceived: "_on_result",
    ErrorReceived: "_on_error",
    ItemsReceived: "_on_items",
    StreamEnded: "_on_end",
    CallReceived: "_on_call",
    CancelReceived: "_on_cancel",
    DeadlinePassed: "_on_cancel",
    CreditReceived: "_on_credit",
    MessageReceived: "_on_message",
    PongReceived: "_on_pong",
    HandshakeComplete: "_on_handshake",
    ShutdownRequested: "_on_shutdown_request",
    ShutdownAcknowledged: "_on_shutdown_ack",
}


_peer_numbers = itertools.count(1)


def new_core(role: Role, options: Options, peer_id: str) -> ProtocolCore:
    """The protocol core ``options.protocol`` names."""
    if options.protocol == "ipfi-rust":
        return IpfiRustCore(role, limits=options.limits, peer_id=peer_id, remote_indices=options.remote_indices)
    if options.protocol == "libipc":
        return LibipcCore(role, limits=options.limits, peer_id=peer_id)
    return Connection(
        role,
        limits=options.limits,
        codecs=options.codecs,
        channels=options.channels,
        auth_token=options.client_token() if role is Role.CLIENT else None,
        peer_id=peer_id,
        rpc=options.rpc,
        binary_views=options.binary_views,
        custom_types=options.custom_types,
        schemas=options.schemas,
        keepalive=options.keepalive,
        keepalive_timeout=options.keepalive_timeout,
    )


def next_peer_id() -> str:
    """A server's id for a new connection, unique on this machine while the process lives (its pid,
    then a count), so that a host with several plugins, each a server of one connection, tells them
    apart; the client learns it from the handshake, so both ends' logs name a connection alike."""
    return f"peer-{os.getpid()}-{next(_peer_numbers)}"


class PeerBase:
    """The negotiated facts of one connection, read from its protocol core, and how its events
    reach the driver: each driver defines the ``_on_*`` handlers named in ``_handlers``."""

    #: What the driver does with a call received (the arguments of CallReceived) and with the
    #: result of a call made here: the core's sinks, so the hot path makes no event record.
    _call_received: CallSink
    _result_received: ResultSink
    _on_error: Callable[[ErrorReceived], None]
    _on_items: Callable[[ItemsReceived], None]
    _on_end: Callable[[StreamEnded], None]
    _on_cancel: Callable[[CancelReceived | DeadlinePassed], None]
    _handlers: ClassVar[dict[type, Callable[[Any, Any], None]]]
    _on_credit: Callable[[CreditReceived], None]
    _on_pong: Callable[[PongReceived], None]
    _on_handshake: Callable[[HandshakeComplete], None]
    _on_shutdown_request: Callable[[ShutdownRequested], None]
    _on_shutdown_ack: Callable[[ShutdownAcknowledged], None]

    def __init__(self, role: Role, interface: Interface | None, options: Options, peer_id: str | None) -> None:
        self.interface = interface
        self.options = options
        self._core = new_core(role, options, peer_id or next_peer_id())
        self._core.procedures = interface.callable if interface is not None else {}
        self._core.call_sink = self._call_received
        self._core.result_sink = self._result_received
        #: The peer process's pid, uid and gid over a Unix socket (``None`` over other wires).
        self.credentials: Credentials | None = None
        #: The child process of an ``exec:`` connection (``None`` over other wires): its ``pid``,
        #: ``returncode`` and ``wait()`` (asyncio's ``Process`` shape in the asyncio driver,
        #: ``subprocess.Popen`` in the blocking one).
        self.process: Any = None
        self._messages: list[MessageReceived] = []  # (at most Limits.max_queued_messages; a deque costs 760 bytes)
        self._message_sink: Callable[[Any, MessageReceived], None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        #: Which handler acts on which event of the core: functions of the class, called with the
        #: peer (bound methods kept on the peer would make a reference cycle of every connection).
        cls._handlers = {event: getattr(cls, name) for event, name in _HANDLER_NAMES.items()}

    def _admit(self, sock: Any) -> bool:
        """Size the socket's buffers, record the peer's credentials; False if ``allow_uids`` shuts it out."""
        size_unix_buffers(sock, self.options.unix_buffer_size)
        self.credentials = peer_credentials(sock)
        allowed = self.options.allow_uids
        if self._core.role is Role.CLIENT or allowed is None:
            return True
        if self.credentials is not None and self.credentials.uid in allowed:
            return True
        log.warning("refusing a connection from %s: uid not in allow_uids", self.credentials or "an unknown peer")
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Details of the wire, as asyncio's transports give them: ``"peername"``, ``"sockname"``,
        ``"socket"``; ``default`` where the wire has none."""
        raise NotImplementedError

    def _remote(self) -> str:
        """Who is at the other end, for logs."""
        if self.credentials is not None:
            return f"pid {self.credentials.pid} uid {self.credentials.uid}"
        name = self.get_extra_info("peername")
        if isinstance(name, tuple):
            return ":".join(str(part) for part in name[:2])
        return str(name) if name else "an unnamed peer"

    def _log_opened(self) -> None:
        if self._core.role is Role.SERVER:
            connections_log.info("accepted %s from %s", self.peer_id, self._remote())
        else:
            connections_log.info("connected to %s as %s", self._remote(), self.peer_id)

    def _log_closed(self, reason: BaseException) -> None:
        if self._core.peer_hello is not None:  # (only connections that opened, as they were logged)
            connections_log.info("%s closed: %s", self.peer_id, reason)

    def _failed(
        self, procedure: Procedure, exc: Exception, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[str, str, Any, str | None]:
        """A procedure raised ``exc``: log it (a WARNING with the traceback, rate-limited across
        all peers; not arguments that did not fit, nor a RemoteError raised on purpose, but a
        result that broke its procedure's hint, which is the procedure's fault) and return
        the error reply's type, message, data and (with ``send_tracebacks``) traceback."""
        remote_type, message, data = error_record(procedure, exc, args, kwargs)
        if isinstance(exc, InvalidResult) or (
            not isinstance(exc, RemoteError) and remote_type != InvalidArguments.wire_type
        ):
            _failures.warning(
                "peer %s: procedure %s raised %s", self.peer_id, procedure.name, remote_type, exc_info=exc
            )
        text = "".join(traceback.format_exception(exc)) if self.options.send_tracebacks else None
        return remote_type, message, data, text

    def _collected_too_many(self, call_id: int, count: int) -> PayloadTooLarge | None:
        """Under ``call()``, ``count`` items of a streamed result are in: past the limit, the
        stream is cancelled and the error returned is the call's."""
        limit = self.options.limits.max_collected_items
        if count <= limit:
            return None
        self._core.send_cancel(call_id)
        return PayloadTooLarge(
            f"a streamed result of more than {limit} items (Limits.max_collected_items): iterate stream() instead"
        )

    def _report_violation(self, exc: Exception) -> None:
        """One line for a peer that broke the protocol (its connection is closed): rate-limited
        across all peers, so that an attacker opening connection after connection cannot flood
        the log; what it sent appears in the message only cut and escaped."""
        _violations.warning("peer %s: %s: %s; closing the connection", self.peer_id or "?", type(exc).__name__, exc)

    def _check_authenticated(self) -> Awaitable[Any] | None:
        """At the handshake: a server's ``tokens`` and ``authenticate`` may refuse the peer (the
        connection ends; the client is told why: :meth:`_refuse` raises). An ``async def``
        ``authenticate``'s verdict is returned, to be awaited and given to :meth:`_judge`."""
        options = self.options
        if self._core.role is not Role.SERVER or not options.authenticates:
            return None
        if options.tokens is not None and not token_among(self.auth_token, options.tokens):
            self._refuse("no token" if self.auth_token is None else "a token the server does not accept")
        if options.authenticate is None:
            return None
        verdict = options.authenticate(self)
        if inspect.isawaitable(verdict):
            return verdict
        self._judge(verdict)
        return None

    def _judge(self, verdict: Any) -> None:
        """``authenticate``'s verdict: raises :class:`AuthenticationFailed` unless it is true."""
        if not verdict:
            self._refuse("refused by the server's authenticate()")

    def _refuse(self, reason: str) -> NoReturn:
        refused = AuthenticationFailed(f"{self.peer_id}: {reason}")
        self._core.refuse(refused)
        raise refused

    def _on_call(self, event: CallReceived) -> None:
        """A call read together with other messages, so returned as an event."""
        self._call_received(event.call_id, event.procedure, event.args, event.kwargs, event.timeout, event.has_input)

    def _on_result(self, event: ResultReceived) -> None:
        self._result_received(event.call_id, event.value)

    # -- plain messages: queued here, or handed to a server's event feed -----------------------

    def _on_message(self, event: MessageReceived) -> None:
        if self._core.reading_paused:
            self._pause_for_messages()
        if self._message_sink is not None:
            self._message_sink(self, event)
        else:
            self._messages.append(event)
            self._message_arrived()

    def _divert_messages(self, sink: Callable[[Any, MessageReceived], None]) -> None:
        """Hand this peer's plain frames, queued and future, to ``sink`` (a server's event feed),
        which calls :meth:`_message_taken` for each it consumes."""
        self._message_sink = sink
        while self._messages:
            sink(self, self._messages.pop(0))

    def _take_message(self, channel: int | None) -> MessageReceived | None:
        """The first queued message on ``channel`` (any channel if ``None``), taken off the queue."""
        index = first_on(self._messages, channel)
        if index is None:
            return None
        message = self._messages[index]
        del self._messages[index]
        return message

    def _message_taken(self, size: int) -> None:
        if self._core.message_taken(size):
            self._resume_for_messages()

    def _pause_for_messages(self) -> None:
        """Too many plain messages wait to be taken: stop reading the peer."""

    def _resume_for_messages(self) -> None:
        """Half of the queue's limits are free again: read the peer again."""

    def _message_arrived(self) -> None:
        """A message was queued: wake whoever waits in ``receive``."""

    # -- negotiated facts ------------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        """The server-assigned id of this connection (``peer-N``)."""
        return self._core.peer_id

    @property
    def hello(self) -> Hello | None:
        """The peer's hello (seen by a server) or reply (seen by a client), once the handshake is done."""
        return self._core.peer_hello

    @property
    def auth_token(self) -> str | None:
        """The token a client sent in its hello (server side only); never logged."""
        hello = self._core.peer_hello
        return hello.auth_token if hello is not None else None

    @property
    def channels(self) -> tuple[int, ...]:
        """The negotiated channels."""
        return self._core.channels

    @property
    def forwarded_for(self) -> dict[str, str] | None:
        """Server side: whom a gateway (``ipfi gateway``) relays this connection for: ``remote``
        (its address), ``tls_subject`` (its certificate's subject), ``path`` (its WebSocket path).
        ``None`` for a client that came directly. Trust it only where only gateways connect."""
        hello = self._core.peer_hello
        return hello.forwarded_for if hello is not None else None

    @property
    def tls_subject(self) -> str | None:
        """The subject of the certificate the peer presented over ``tls://`` (``CN=alice,O=...``),
        verified against the CA this side trusts; ``None`` without one."""
        return subject_of(self.get_extra_info("peercert"))

    @property
    def codec(self) -> str | None:
        """The negotiated codec, or ``None`` for a plain framed peer."""
        return self._core.codec.name if self._core.codec else None


def first_on(messages: Sequence[MessageReceived], channel: int | None) -> int | None:
    """Where the first queued message on ``channel`` (any channel if ``None``) is, if there is one."""
    if channel is None:
        return 0 if messages else None
    for index, message in enumerate(messages):
        if message.channel == channel:
            return index
    return None
