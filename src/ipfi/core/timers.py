"""The core's clock: call deadlines, the handshake deadline, keepalive pings, the idle timeout, and
giving back the memory one large message grew.

A part of :class:`~ipfi.core.connection.Connection`, after aioquic: the core says when it next needs
the clock (:meth:`Timers.next_timer`) and what happens then (:meth:`Timers.handle_timer`); a driver
keeps one timer per connection and re-arms it whenever :attr:`Timers.timer_moved` is set. Time is the
injected ``clock``'s (``time.monotonic`` by default), never read on the hot path: a read only sets a
flag, which the next tick turns into "heard at".
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any, Final

from . import wire
from .calls import Call, Entry
from .codecs import Body, Codec
from .errors import DeadlineExceeded, HandshakeTimeout, IdleTimeout, KeepaliveTimeout
from .events import DeadlinePassed, ErrorReceived, Event
from .frames import CONTROL, FrameDecoder
from .handshake import PING, encode_control
from .limits import Limits
from .state import HANDSHAKE, OPEN, State

_EMPTY: Final = b""
#: How long a connection keeps the memory a large message grew (a large frame's buffer, the packer's)
#: for the next one, once none follows: then it is given back.
LARGE_BUFFERS_KEPT_FOR: Final = 0.5


class Timers:
    """Everything on the connection that happens at a time rather than on a byte."""

    limits: Limits
    state: State
    peer_id: str
    #: Set when :meth:`next_timer` may have become earlier: the driver re-arms its timer (and clears it).
    timer_moved: bool
    _clock: Callable[[], float]
    _calls: dict[int, Entry]
    _serving: int
    _running_notifications: int
    _deadlines: list[tuple[float, int]]
    _handshake_deadline: float | None
    _keepalive: float | None
    _silence_limit: float | None
    _tick: float | None
    _next_tick: float | None
    _last_heard: float
    _heard: bool
    _pings: list[float | None]
    _release_buffers_at: float | None
    _pack_items: Callable[[Sequence[Any]], bytes]
    decoder: FrameDecoder
    codec: Codec | None
    # Of the other parts of the connection:
    _queue_frame: Callable[[int, bytes | bytearray | memoryview], None]
    _queue_id_message: Callable[[int, int, Body], None]
    _queue_error: Callable[[int, str, str], None]

    def _start_watch(self, now: float) -> None:
        """The connection is open: keepalive and idle ticks start (if either is set)."""
        self._handshake_deadline = None
        self._last_heard = now
        self._heard = False
        if self._tick is not None:
            self._next_tick = now + self._tick
        self.timer_moved = True

    def _start_deadline(self, call: Call, timeout: float) -> None:
        call.deadline = deadline = self._clock() + timeout
        heapq.heappush(self._deadlines, (deadline, call.call_id))
        self.timer_moved = True

    def _large_buffers_used(self) -> None:
        """A large message was received or sent: its buffers are kept a while for the next one."""
        self._release_buffers_at = self._clock() + LARGE_BUFFERS_KEPT_FOR
        self.timer_moved = True

    def deadline_of(self, call_id: int) -> float | None:
        """When call ``call_id`` (made or served here) must be answered, on the core's clock."""
        entry = self._calls.get(call_id)
        return entry.deadline if type(entry) is Call else None

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` should next be called (on the core's clock), or ``None``."""
        deadlines = self._deadlines
        while deadlines:  # forget the deadlines of calls that have ended
            when, call_id = deadlines[0]
            entry = self._calls.get(call_id)
            if type(entry) is Call and entry.deadline == when:
                break
            heapq.heappop(deadlines)
        moments = (self._handshake_deadline, self._next_tick, self._release_buffers_at)
        times = [when for when in moments if when is not None]
        if deadlines:
            times.append(deadlines[0][0])
        return min(times) if times else None

    def handle_timer(self, now: float | None = None) -> list[Event]:
        """Do what is due at ``now`` (default: the clock's time). Returns the events it makes:
        :class:`~ipfi.events.ErrorReceived` with :class:`DeadlineExceeded` for a call made here whose
        deadline passed (a CANCEL is queued), :class:`~ipfi.events.DeadlinePassed` for a call served
        here (its ``DeadlineExceeded`` reply is queued: the driver stops the procedure).

        Raises :class:`HandshakeTimeout`, :class:`KeepaliveTimeout` or :class:`IdleTimeout` when the
        connection must end; the driver then closes it with that error.
        """
        if now is None:
            now = self._clock()
        if self.state is HANDSHAKE and self._handshake_deadline is not None and now >= self._handshake_deadline:
            raise HandshakeTimeout(f"no handshake within {self.limits.handshake_timeout} s")
        events: list[Event] = []
        deadlines = self._deadlines
        calls = self._calls
        while deadlines and deadlines[0][0] <= now:
            when, call_id = heapq.heappop(deadlines)
            entry = calls.get(call_id)
            if type(entry) is not Call or entry.deadline != when:
                continue
            del calls[call_id]
            if entry.outgoing:
                self._queue_id_message(wire.CANCEL, call_id, _EMPTY)
                events.append(ErrorReceived(call_id, DeadlineExceeded(f"call {call_id} did not answer in time")))
            else:
                self._serving -= 1
                self._queue_error(call_id, DeadlineExceeded.wire_type, "the call's deadline passed")
                events.append(DeadlinePassed(call_id))
        if self._next_tick is not None and now >= self._next_tick and self.state is OPEN:
            self._watch(now)
        if self._release_buffers_at is not None and now >= self._release_buffers_at:
            self._release_buffers_at = None
            self.decoder.release_spare()
            if self.codec is not None:
                self.codec.release_buffers()
                self._pack_items = self.codec.items_packer()
        return events

    def _watch(self, now: float) -> None:
        """A keepalive/idle tick: ping a silent peer, or end the connection."""
        if self._heard:
            self._heard = False
            self._last_heard = now
        silent = now - self._last_heard
        if self._silence_limit is not None and silent >= self._silence_limit:
            raise KeepaliveTimeout(f"keepalive: the peer was silent for {silent:.1f} s")
        idle = self.limits.idle_timeout
        if idle is not None and silent >= idle and not self._calls and not self._running_notifications:
            raise IdleTimeout(f"idle timeout: nothing received for {silent:.1f} s and no call in flight")
        if self._keepalive is not None and silent >= self._keepalive and None not in self._pings:
            self._pings.append(None)  # a keepalive ping: its pong is nobody's answer
            self._queue_frame(CONTROL, encode_control(PING))
        assert self._tick is not None
        self._next_tick = now + self._tick
