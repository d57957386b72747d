"""What the cores of the other systems' wires share: no handshake (open as soon as connected),
bytes queued for the driver, deadlines of calls made here kept on this side, and no ping, credit
or ipfi control messages. Each core presents :class:`~ipfi.core.protocol_core.ProtocolCore`, so
both drivers run it as they run ipfi's own. No I/O."""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final

from ..core.codecs import Buffer, Codec
from ..core.contracts import ItemCheck
from ..core.errors import (
    ConnectionLost,
    DeadlineExceeded,
    HandshakeError,
    InvalidState,
    LocalProtocolError,
)
from ..core.events import CallReceived, ErrorReceived, Event, HandshakeComplete, ResultReceived
from ..core.handshake import Hello
from ..core.limits import Limits
from ..core.message_queue import QueuedMessages
from ..core.protocol_core import Decoder
from ..core.reading import CallSink, ProcedureTable, ResultSink
from ..core.state import Role

log = logging.getLogger("ipfi.wires")

#: The credit a stream has on a wire without flow control: the transport's own back-pressure
#: (``pause_writing``) and the drivers' turns are what pace a producer there.
NO_CREDIT_LIMIT: Final = 1 << 30


class ForeignCore(QueuedMessages):
    """The shared part of a core for a wire that is not ipfi's (see the module's docstring)."""

    #: The ``protocol=`` name of the wire, and the one its errors and hello carry.
    protocol: ClassVar[str]
    #: The wire's incremental decoder (its ``idle`` says whether a message is cut short).
    decoder: Decoder

    def __init__(
        self, role: Role, *, limits: Limits, peer_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.role = role
        self.limits = limits
        self.peer_id = peer_id
        self.procedures: ProcedureTable = {}
        self.call_sink: CallSink = CallReceived
        self.result_sink: ResultSink = ResultReceived
        self.closed_here = False
        self.defer_verdict = False  # (no hello to answer: nothing waits)
        self.calls_held = False
        self.timer_moved = False
        self.reading_paused = False
        self.refusal: bytes | None = None
        self.is_open = False
        self.has_output = False
        self.item_bytes_queued = 0
        self.peer_hello: Hello | None = None
        self.messages_queued = 0
        self.message_bytes_queued = 0
        self._clock = clock
        self._out: list[Buffer] = []
        self._close_reason = ""
        self._deadlines: list[tuple[float, int]] = []  # (when, call id) of calls made here, a heap
        self._deadline_of: dict[int, float] = {}

    # -- what every core offers ------------------------------------------------------------------

    @property
    def channels(self) -> tuple[int, ...]:
        return ()

    @property
    def codec(self) -> Codec | None:
        return None

    def start(self) -> list[Event]:
        """Open at once: these wires have no handshake."""
        self.is_open = True
        self.peer_hello = Hello(self.channels, protocol=self.protocol, version="", peer_id=self.peer_id)
        return [HandshakeComplete(self.peer_hello, rpc=self.codec is not None)]

    def receive_binaries_whole(self) -> None:
        """(Nothing is received in place on these wires: see :meth:`receive_target`.)"""

    def receive_target(self) -> None:
        """Bytes are always pushed (:meth:`receive_from`): no large frame is filled in place."""
        return

    def received_into(self, count: int) -> list[Event]:
        raise LocalProtocolError(f"{self.protocol}: nothing is received in place (receive_target is None)")

    def receive_eof(self) -> None:
        """The peer closed its side. Raises :class:`ConnectionLost` naming what was cut off."""
        leftover = not self.decoder.idle
        self.close("connection closed by peer")
        if leftover:
            raise ConnectionLost(f"connection closed by peer in the middle of a {self.protocol} message")
        raise ConnectionLost("connection closed by peer")

    def release_held(self) -> list[Event] | None:
        return None

    def refuse(self, error: HandshakeError) -> None:
        """There is no hello to answer: a refused peer's connection just closes."""

    def accept(self) -> list[Event]:
        """There is no hello to answer: nothing waited."""
        return []

    def data_to_send(self) -> list[Buffer]:
        out, self._out = self._out, []
        self.has_output = False
        self.item_bytes_queued = 0
        return out

    def _queue(self, data: Buffer) -> None:
        self._out.append(data)
        self.has_output = True

    def _check_open(self) -> None:
        if not self.is_open:
            if self.closed_here:
                raise InvalidState("the connection was closed by this side")
            raise ConnectionLost(self._close_reason or "connection closed")

    def _not_on_this_wire(self, what: str) -> LocalProtocolError:
        return LocalProtocolError(f"{self.protocol}'s wire has no {what}")

    # -- deadlines of calls made here (the peer is not told: these wires carry none) ----------------

    def _start_deadline(self, call_id: int, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        when = self._clock() + timeout
        self._deadline_of[call_id] = when
        heapq.heappush(self._deadlines, (when, call_id))
        self.timer_moved = True

    def next_timer(self) -> float | None:
        deadlines = self._deadlines
        while deadlines and self._deadline_of.get(deadlines[0][1]) != deadlines[0][0]:
            heapq.heappop(deadlines)  # the call ended before its deadline
        return deadlines[0][0] if deadlines else None

    def handle_timer(self) -> list[Event]:
        now = self._clock()
        events: list[Event] = []
        while (when := self.next_timer()) is not None and when <= now:
            _, call_id = heapq.heappop(self._deadlines)
            del self._deadline_of[call_id]
            self._forget_call(call_id)
            events.append(ErrorReceived(call_id, DeadlineExceeded("the call's deadline passed")))
        return events

    def _call_ended(self, call_id: int) -> None:
        self._deadline_of.pop(call_id, None)

    def _forget_call(self, call_id: int) -> None:
        """A call made here is abandoned (cancelled, or past its deadline): its answer is dropped."""

    # -- what these wires do not have -----------------------------------------------------------

    def finish_notification(self) -> None:
        """Notifications never arrive on these wires: nothing to count."""

    def deadline_of(self, call_id: int) -> float | None:
        return None

    def credit(self, call_id: int) -> int:
        return NO_CREDIT_LIMIT

    def grant_credit(self, call_id: int, credit: int) -> None:
        """No flow control on these wires: the grant is not sent."""

    def send_notify(self, name: str, args: Any, kwargs: dict[str, Any] | None = None) -> None:
        raise self._not_on_this_wire("notifications (a call without a reply)")

    def send_ping(self) -> None:
        raise self._not_on_this_wire("ping")

    def close(self, reason: str = "") -> None:
        """Forget every call; later sends raise :class:`ConnectionLost` (with ``reason``), or
        :class:`InvalidState` once the driver has set :attr:`closed_here`."""
        self.is_open = False
        self._close_reason = self._close_reason or reason
        self._deadlines.clear()
        self._deadline_of.clear()
        self.call_sink = CallReceived
        self.result_sink = ResultReceived

    def open_output_stream(self, call_id: int, item_check: ItemCheck | None = None) -> None:
        raise self._not_on_this_wire("streams")
