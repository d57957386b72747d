"""Events produced by the protocol core (:class:`ipfi.core.connection.Connection`) from received bytes
and from its timers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import RemoteError, RemoteProtocolError
from .handshake import Hello


@dataclass(slots=True)
class HandshakeComplete:
    """The connection is open. ``hello`` is what the peer sent (its auth token included)."""

    hello: Hello
    rpc: bool


@dataclass(slots=True)
class CallReceived:
    """The peer calls a procedure; ``call_id`` is 0 for a notification (no reply expected).

    ``procedure`` is what the connection's ``procedures`` table holds for the name called (a driver
    puts its interface's procedures there), or the name itself where no table was set.
    """

    call_id: int
    procedure: Any
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None
    has_input: bool


@dataclass(slots=True)
class ResultReceived:
    call_id: int
    value: Any


@dataclass(slots=True)
class ErrorReceived:
    call_id: int
    #: The peer's error reply, or what went wrong decoding the reply (the call fails with it).
    error: RemoteError | RemoteProtocolError


@dataclass(slots=True)
class ItemsReceived:
    """Stream items: output of a call this side made, or input of a call this side serves."""

    call_id: int
    items: list[Any]


@dataclass(slots=True)
class StreamEnded:
    call_id: int


@dataclass(slots=True)
class CancelReceived:
    call_id: int


@dataclass(slots=True)
class DeadlinePassed:
    """The deadline of call ``call_id``, served here, has passed: the core has already answered it
    with ``DeadlineExceeded``; the driver stops the procedure (a later result is dropped)."""

    call_id: int


@dataclass(slots=True)
class CreditReceived:
    """The consumer of stream ``call_id`` allows more items (see :meth:`Connection.credit`)."""

    call_id: int


@dataclass(slots=True)
class MessageReceived:
    """A plain frame on a non-RPC channel.

    ``payload`` is ``bytes``; a frame of 256 KiB or more that arrived in pieces is its own
    ``bytearray`` instead (it was filled in place, and a copy to ``bytes`` would double the work).
    """

    channel: int
    payload: bytes | bytearray


@dataclass(slots=True)
class PongReceived:
    """The answer to this side's oldest ping still unanswered (see ``send_ping``)."""

    round_trip: float


@dataclass(slots=True)
class ShutdownRequested:
    """The peer asked to end the connection; the core has already queued ``shutdown_ack`` unless forced."""

    force: bool


@dataclass(slots=True)
class ShutdownAcknowledged:
    pass


Event = (
    HandshakeComplete
    | CallReceived
    | ResultReceived
    | ErrorReceived
    | ItemsReceived
    | StreamEnded
    | CancelReceived
    | DeadlinePassed
    | CreditReceived
    | MessageReceived
    | PongReceived
    | ShutdownRequested
    | ShutdownAcknowledged
)
