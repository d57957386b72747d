"""What both drivers' peers share: the protocol core built from the options, and what it negotiated."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .credentials import Credentials, peer_credentials, size_unix_buffers
from .events import CallReceived, MessageReceived, ResultReceived
from .handshake import Hello
from .interface import Interface, Procedure
from .options import Options
from .protocol import CallSink, Connection, ResultSink, Role

log = logging.getLogger("ipfi.server")


class PeerBase:
    """The negotiated facts of one connection, read from its protocol core, and how calls and
    results reach the driver."""

    #: What the driver does with a call received (the arguments of CallReceived) and with the
    #: result of a call made here: the core's sinks, so the hot path makes no event record.
    _call_received: CallSink
    _result_received: ResultSink

    def __init__(self, role: Role, interface: Interface | None, options: Options, peer_id: str) -> None:
        self.interface = interface
        #: The procedure a call names, or ``None`` (looked up for every call received).
        self.procedure: Callable[[str], Procedure | None] = interface.find if interface is not None else _no_procedure
        self.options = options
        self._core = Connection(
            role,
            limits=options.limits,
            codecs=options.codecs,
            channels=options.channels,
            auth_token=options.auth_token if role is Role.CLIENT else None,
            peer_id=peer_id,
            rpc=options.rpc,
            binary_views=options.binary_views,
        )
        self._core.call_sink = self._call_received
        self._core.result_sink = self._result_received
        #: The peer process's pid, uid and gid over a Unix socket (``None`` over other wires).
        self.credentials: Credentials | None = None

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

    def _on_call(self, event: CallReceived) -> None:
        """A call read together with other messages, so returned as an event."""
        self._call_received(event.call_id, event.name, event.args, event.kwargs, event.timeout, event.has_input)

    def _on_result(self, event: ResultReceived) -> None:
        self._result_received(event.call_id, event.value)

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
    def codec(self) -> str | None:
        """The negotiated codec, or ``None`` for a plain framed peer."""
        return self._core.codec.name if self._core.codec else None


def _no_procedure(_: str) -> None:
    return None


def first_on(messages: Sequence[MessageReceived], channel: int | None) -> int | None:
    """Where the first queued message on ``channel`` (any channel if ``None``) is, if there is one."""
    if channel is None:
        return 0 if messages else None
    for index, message in enumerate(messages):
        if message.channel == channel:
            return index
    return None
