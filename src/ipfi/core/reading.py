"""Reading: received bytes to frames, frames to messages (fragments joined), messages to events.

A part of :class:`~ipfi.core.connection.Connection`. The fast path, a read that holds exactly one
whole RPC message, sits in :meth:`Reading.receive_from` beside the general path it shortcuts (the
frame decoder); ``tests/test_core_paths.py`` feeds the same bytes through both and compares.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final, Protocol

from . import wire
from .calls import AWAITING_REPLY, RUNNING, Call, Entry
from .codecs import Buffer, Codec, JoiningBinary, compact_json
from .errors import (
    ConnectionLost,
    FrameTooLarge,
    HandshakeError,
    InvalidArguments,
    InvalidMagic,
    RemoteProtocolError,
    remote_error_from_wire,
)
from .events import (
    CallReceived,
    CancelReceived,
    CreditReceived,
    ErrorReceived,
    Event,
    HandshakeComplete,
    ItemsReceived,
    PongReceived,
    ResultReceived,
    ShutdownAcknowledged,
    ShutdownRequested,
    StreamEnded,
)
from .frames import CONTROL, ERROR, HEADER_SIZE, LARGE_FRAME, MAGIC, FrameDecoder, PayloadWithBinary
from .handshake import PING, PONG, SHUTDOWN_ACK, SHUTDOWN_FORCE, SHUTDOWN_REQUEST, encode_control, parse_control
from .limits import Limits
from .logs import RateLimitedLog, shown
from .message_queue import QueuedMessages
from .negotiation import MAX_WINDOW
from .state import CLOSED, HANDSHAKE, OPEN, State

log = logging.getLogger("ipfi.core")

_ID_SIZE: Final = wire.ID_HEADER.size
_unpack_id = wire.ID_HEADER.unpack_from
_unpack_frame_start = struct.Struct("<2sIHB").unpack_from  # a frame's header and its first byte
_MAGIC: Final = MAGIC
_RPC: Final = wire.RPC_CHANNEL
# Message kinds and flags as module constants: the hot path reads them once per message.
_CALL: Final = wire.CALL
_NOTIFY: Final = wire.NOTIFY
_RESULT: Final = wire.RESULT
_FRAGMENT: Final = wire.PART  # kinds from here on are fragments
_FLAG_KWARGS: Final = wire.FLAG_KWARGS
_FLAG_INPUT: Final = wire.FLAG_INPUT
_CALL_SIZE: Final = wire.CALL_HEADER.size
_unpack_call = wire.CALL_HEADER.unpack_from
_CALL_KINDS: Final = frozenset({wire.CALL, wire.NOTIFY})
_SMALL: Final = 4096  # a body below this is copied out of its message (cheaper than a view)
_AWAITING: Final = AWAITING_REPLY
_RUNNING: Final = RUNNING


class PayloadCheck(Protocol):
    """What checks plain frames as they arrive (:class:`ipfi.Schemas`): why a payload may not
    travel on a channel, or ``None``."""

    def __contains__(self, channel: object, /) -> bool: ...
    def check(self, channel: int, payload: bytes | bytearray | memoryview, /) -> str | None: ...


class ProcedureTable(Protocol):
    """What a connection looks a called name up in (a ``dict`` of a driver's procedures)."""

    def get(self, name: str, /) -> Any: ...
    def values(self) -> Iterable[Any]: ...


#: What takes a call read on the fast path: the arguments of :class:`CallReceived`, in order.
CallSink = Callable[[int, Any, list[Any], dict[str, Any], float | None, bool], Event | None]
#: What takes a result read on the fast path: the arguments of :class:`ResultReceived`.
ResultSink = Callable[[int, Any], Event | None]


def binary_start(codec: Codec, channel: int, head: memoryview, length: int) -> int | None:
    """:attr:`FrameDecoder.split_at` of a connection speaking ``codec``: where the data of a large
    binary that ends a CALL's arguments (not its keywords) or a RESULT begins, if the codec sees
    one in ``head``. (Whether this frame is a message of its own or a fragment is judged when it is
    handled: a fragment's kind is never a CALL's or a RESULT's.)"""
    if channel != _RPC or not head:
        return None
    kind = head[0]
    if kind == _RESULT:
        body = _ID_SIZE
    elif kind in _CALL_KINDS and len(head) >= _CALL_SIZE:
        _, _, flags, _, name_length = _unpack_call(head)
        if flags & _FLAG_KWARGS:
            return None
        body = _CALL_SIZE + name_length
    else:
        return None
    if len(head) < body:
        return None
    start = codec.binary_start(head[body:], length - body)
    return None if start is None else body + start


class Reading(QueuedMessages):
    """``receive_data`` and everything it decodes."""

    role_is_client: bool
    limits: Limits
    state: State
    rpc: bool
    codec: Codec | None
    channels: tuple[int, ...]
    peer_id: str
    decoder: FrameDecoder
    call_sink: CallSink
    result_sink: ResultSink
    procedures: ProcedureTable
    _log: RateLimitedLog | None
    #: Checks plain frames as they arrive (``None``: none are checked).
    schemas: PayloadCheck | None
    calls_held: bool
    _binaries_whole: bool
    _pending_reply: bytes | None
    _held_call: tuple[int, Buffer] | None
    _held_frames: list[tuple[int, bytes | bytearray]]
    _calls: dict[int, Entry]
    _serving: int
    _running_notifications: int
    _max_calls: int
    _own_parity: int
    _window: int
    _plain_rpc: bool
    _heard: bool
    _parts: bytearray | list[memoryview]
    _parts_size: int
    _in_parts: bool
    _pings: list[float | None]
    _control_window_start: float
    _control_count: int
    _clock: Callable[[], float]
    # Of the other parts of the connection:
    _accept_hello: Callable[[bytes], HandshakeComplete]
    _accept_reply: Callable[[bytes], HandshakeComplete]
    _queue_frame: Callable[[int, bytes | bytearray | memoryview], None]
    _queue_error: Callable[[int, str, str], None]
    _refuse_unknown: Callable[[int, str], None]
    _refuse_undecodable: Callable[[int, str, RemoteProtocolError], None]
    _large_buffers_used: Callable[[], None]
    send_cancel: Callable[[int], None]
    send_error: Callable[[int, str, str], None]
    _start_deadline: Callable[[Call, float], None]
    close: Callable[[], None]
    owns: Callable[[int], bool]
    _closed_error: Callable[[], ConnectionLost]

    @property
    def log(self) -> RateLimitedLog:
        """Lines about this peer's misbehaviour, limited in rate (made at the first: most peers
        never need one)."""
        if self._log is None:
            self._log = RateLimitedLog(log, clock=self._clock)
        return self._log

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed received bytes, in any chunking; returns the events they complete.

        For any bytes, in any state, it raises only these: :class:`~ipfi.errors.RemoteProtocolError`
        or one of its subclasses (the peer broke the protocol: close the connection), and
        :class:`~ipfi.errors.ConnectionLost` once the connection is closed.
        """
        return self.receive_from(data, len(data))

    def receive_from(self, buffer: bytes | bytearray | memoryview, count: int) -> list[Event]:
        """:meth:`receive_data` of the first ``count`` bytes of ``buffer``, which the caller may
        reuse once this returns (nothing is kept from it)."""
        self._heard = True
        decoder = self.decoder
        if self._plain_rpc and decoder.idle and count > HEADER_SIZE:
            # The fast path: calls and replies, one whole message in one read.
            magic, length, channel, kind = _unpack_frame_start(buffer)
            if (
                length == count - HEADER_SIZE
                and channel == _RPC
                and kind < _FRAGMENT
                and magic == _MAGIC
                and length <= decoder.max_payload
            ):
                message = bytes(buffer[HEADER_SIZE:count])
                if kind == _CALL:
                    event = self._handle_call(kind, message, self.call_sink)
                else:
                    event = self._handle_message(message, self.result_sink)
                return [] if event is None else [event]
            if length >= LARGE_FRAME and count - HEADER_SIZE < length <= decoder.max_payload and magic == _MAGIC:
                # The first read of a large frame: the rest is received in place (receive_target).
                decoder.start_large(channel, length, memoryview(buffer)[HEADER_SIZE:count])
                return []
        if self.state is OPEN:
            frames = decoder.feed(buffer if count == len(buffer) else buffer[:count])
            if self.calls_held or self._pending_reply is not None:  # (a read under way when it paused)
                self._held_frames += frames
                return []
            return self._handle_frames(frames)
        if self.state is CLOSED:
            raise self._closed_error()
        decoder.append(buffer[:count])
        try:
            frame = decoder.next_frame()
        except InvalidMagic:
            raise HandshakeError(self._stranger()) from None
        if frame is None:
            return []
        channel, payload = frame
        if channel != CONTROL:
            raise HandshakeError(f"handshake: first frame arrived on channel {channel}, not 0")
        events: list[Event] = [self._accept_reply(payload) if self.role_is_client else self._accept_hello(payload)]
        if self._pending_reply is not None:  # (the verdict is deferred: see accept())
            self._held_frames += decoder.feed(b"")
            return events
        events += self._handle_frames(decoder.feed(b""))
        return events

    def receive_binaries_whole(self) -> None:
        """Have a large binary that ends a message received into the memory of a ``bytes`` of its
        own, which the decoded value then holds (rather than a copy): for a driver that lets go of
        every view :meth:`receive_target` gave before it calls the :meth:`received_into` that
        completes the frame, as both drivers do (the asyncio one waits for uvloop to let go of its
        own view, a loop turn). Otherwise the ``bytes`` is copied then, at more memory for nothing."""
        self._binaries_whole = True
        self._split_binaries()

    def _split_binaries(self) -> None:
        """Once the handshake has chosen the codec (see :meth:`receive_binaries_whole`)."""
        if self._binaries_whole and self.rpc and self.codec is not None:
            # (a function of the codec, not a method of this connection: no reference cycle)
            self.decoder.split_at = partial(binary_start, self.codec)

    def receive_target(self) -> memoryview | None:
        """Where the next received bytes may be written in place: the rest of a large frame being
        received, or ``None`` (then pass them to :meth:`receive_data`). See :meth:`received_into`."""
        return self.decoder.fill_target()

    def received_into(self, count: int) -> list[Event]:
        """``count`` bytes were written into :meth:`receive_target`'s view."""
        if self.state is not OPEN:
            raise self._closed_error()
        self._heard = True
        frames = self.decoder.filled(count)
        if not frames:  # (more of the frame to come)
            return []
        if self.calls_held or self._pending_reply is not None:
            self._held_frames += frames
            return []
        return self._handle_frames(frames)

    def receive_eof(self) -> None:
        """The peer closed its side. Raises :class:`ConnectionLost` naming what was cut off."""
        leftover = self.decoder.buffered
        was = self.state
        if was is HANDSHAKE and leftover and self.decoder.peek(2) != MAGIC[:leftover]:
            message = self._stranger()
            self.close()
            raise ConnectionLost(message)
        self.close()
        if leftover:
            raise ConnectionLost(f"connection closed by peer in the middle of a frame ({leftover} bytes)")
        if was is HANDSHAKE:
            raise ConnectionLost("connection closed by peer during the handshake")

    def _stranger(self) -> str:
        """What to say of a peer whose first bytes are not a frame: what they were, and the usual
        reason for them."""
        first = shown(self.decoder.peek(80))
        return (
            f"the peer's first bytes are not an ipfi (ipcprims) frame: {first}. Is it an ipfi peer? A program"
            " reached through exec: or stdio: must not write to its standard output before it serves"
            " (print to stderr instead)"
        )

    def _handle_frames(self, frames: list[tuple[int, bytes | bytearray]]) -> list[Event]:
        events: list[Event] = []
        rpc = self.rpc
        remaining = iter(frames)
        for channel, payload in remaining:
            if channel == _RPC and rpc:
                kind = payload[0] if payload and not self._in_parts else _FRAGMENT
                if type(payload) is PayloadWithBinary and kind != _FRAGMENT:  # (see split_at)
                    event = self._handle_split(payload)
                elif kind == _CALL:  # the common cases: a whole message
                    event = self._handle_call(kind, payload)
                elif kind < _FRAGMENT:
                    event = self._handle_message(payload)
                else:
                    event = self._handle_rpc(payload)
                if self.calls_held:  # at the concurrency limit: the rest waits for release_held()
                    self._held_frames = list(remaining)
                elif type(payload) is bytearray and payload is not self._parts:
                    # Decoded, or copied into the first fragment's buffer: only views of it
                    # (binary_views) may live on.
                    self.decoder.recycle(payload)
                    self._large_buffers_used()
            elif channel == CONTROL:
                event = self._handle_control(payload)
            elif channel in self.channels:
                checks = self.schemas
                if checks is not None and channel in checks and not self._passes(checks, channel, payload):
                    continue
                event = self._queue_message_event(channel, payload)
            else:
                raise RemoteProtocolError(f"frame on channel {channel}, which was not negotiated")
            if event is not None:
                events.append(event)
        return events

    def release_held(self) -> list[Event] | None:
        """Once a call served here has ended: the call and frames held back at the concurrency
        limit (see :attr:`calls_held`), as events, as far as the limit now allows (``None`` if it
        allows none yet). Raises what :meth:`receive_data` raises."""
        if not self.calls_held or self._serving + self._running_notifications >= self._max_calls:
            return None
        self.calls_held = False
        held = self._held_call
        assert held is not None
        self._held_call = None
        kind, message = held
        event = self._handle_split(message) if type(message) is PayloadWithBinary else self._handle_call(kind, message)
        events = [] if event is None else [event]
        frames, self._held_frames = self._held_frames, []
        if self.calls_held:
            self._held_frames = frames
            return events
        events += self._handle_frames(frames)
        self._plain_rpc = self.rpc and self.state is OPEN and not self._in_parts and not self.calls_held
        return events

    def _passes(self, checks: PayloadCheck, channel: int, payload: bytes | bytearray) -> bool:
        """Whether a plain frame may be delivered; one that may not is answered on ERROR (not one
        that came on ERROR: two checking peers would answer each other forever) and dropped."""
        reason = checks.check(channel, payload)
        if reason is None:
            return True
        self.log.warning("peer %s: a frame on channel %d refused: %s", self.peer_id, channel, reason)
        if channel != ERROR and ERROR in self.channels:
            self._queue_frame(ERROR, compact_json({"error": f"schema validation error: {reason}"}).encode())
        return False

    def _handle_control(self, payload: bytes | bytearray) -> Event | None:
        now = self._clock()
        if now - self._control_window_start >= 1.0:
            self._control_window_start = now
            self._control_count = 0
        self._control_count += 1
        if self._control_count > self.limits.control_frames_per_second:
            raise RemoteProtocolError(
                f"control flood: more than {self.limits.control_frames_per_second} control frames in a second"
            )
        kind, _ = parse_control(payload)
        if kind == PING:
            self._queue_frame(CONTROL, encode_control(PONG))
            return None
        if kind == PONG:  # answers the oldest ping; keepalive's (None) and unasked-for ones make no event
            sent = self._pings.pop(0) if self._pings else None
            return None if sent is None else PongReceived(now - sent)
        if kind == SHUTDOWN_REQUEST:
            self._queue_frame(CONTROL, encode_control(SHUTDOWN_ACK))
            return ShutdownRequested(force=False)
        if kind == SHUTDOWN_FORCE:
            return ShutdownRequested(force=True)
        return ShutdownAcknowledged()

    def _handle_split(self, message: PayloadWithBinary) -> Event | None:
        """A CALL, NOTIFY or RESULT whose last binary was received into a ``bytes`` of its own:
        handled as any, by a codec that joins that binary to what it decodes (so that the paths
        every message takes test nothing more for this one). (One that interrupts a fragmented
        message goes to :meth:`_handle_rpc`, which refuses it, as any.)"""
        codec = self.codec
        assert codec is not None
        self.codec = JoiningBinary(codec, message.binary)
        try:
            kind = message[0]
            return self._handle_message(message) if kind == _RESULT else self._handle_call(kind, message)
        finally:
            self.codec = codec

    def _handle_rpc(self, payload: bytes | bytearray) -> Event | None:
        if not payload:
            raise RemoteProtocolError("empty RPC message")
        kind = payload[0]
        if kind in (wire.PART, wire.LAST_PART):
            return self._handle_part(kind, payload)
        if self._in_parts:
            raise RemoteProtocolError("a fragmented message was interrupted by another message")
        return self._handle_message(payload)

    def _handle_part(self, kind: int, payload: bytes | bytearray) -> Event | None:
        self._parts_size += len(payload) - 1
        if self._parts_size > self.limits.max_message:
            raise FrameTooLarge(f"fragmented message exceeds the limit of {self.limits.max_message} bytes")
        parts = self._parts
        if not self._in_parts and isinstance(payload, bytearray):
            parts = self._parts = payload  # its first byte, the fragment kind, is skipped at the end
        elif isinstance(parts, bytearray):
            parts += memoryview(payload)[1:]  # realloc: a large buffer grows in place (mremap)
        else:
            parts.append(memoryview(payload)[1:])
        if kind == wire.PART:
            self._in_parts = True
            self._plain_rpc = False
            return None
        self._in_parts = False
        self._plain_rpc = self.state is OPEN and not self.calls_held
        self._parts = []
        self._parts_size = 0
        if not isinstance(parts, bytearray):
            return self._checked_whole(b"".join(parts))
        with memoryview(parts) as whole:
            event = self._checked_whole(whole[1:])
        self.decoder.recycle(parts)  # decoded: only views of it (binary_views) may live on
        self._large_buffers_used()
        return event

    def _checked_whole(self, message: Buffer) -> Event | None:
        """A message joined from its fragments."""
        if message and message[0] in (wire.PART, wire.LAST_PART):
            raise RemoteProtocolError("a fragment cannot contain another fragment")
        return self._handle_message(message)

    def _handle_message(self, message: Buffer, result_sink: ResultSink = ResultReceived) -> Event | None:
        try:
            kind, call_id = _unpack_id(message)
        except struct.error:
            raise RemoteProtocolError(f"RPC message of {len(message)} bytes is truncated") from None
        codec = self.codec
        assert codec is not None
        # A small body is copied (cheaper than a view); a large one is viewed.
        body = message[_ID_SIZE:] if len(message) < _SMALL else memoryview(message)[_ID_SIZE:]
        calls = self._calls
        if kind == _RESULT:
            entry = calls.pop(call_id, None)
            if entry is not _AWAITING:
                if entry is None:
                    return None  # a late reply to a call given up on (timeout, cancel)
                if type(entry) is not Call or not entry.outgoing:
                    calls[call_id] = entry  # a "reply" to a call the peer made itself: ignored
                    return None
            try:
                value = codec.decode_value(body)
            except RemoteProtocolError as exc:  # this call fails; the connection goes on
                return ErrorReceived(call_id, exc)
            return result_sink(call_id, value)
        if kind in _CALL_KINDS:
            return self._handle_call(kind, message)
        if kind == wire.ITEMS:
            try:
                items = codec.decode_items(body)
            except RemoteProtocolError as exc:
                return self._undecodable_items(call_id, exc)
            return self._handle_items(call_id, items)
        if kind > wire.CREDIT:
            raise RemoteProtocolError(f"unknown RPC message kind {kind:#04x}")
        if kind == wire.CREDIT and len(message) != wire.CREDIT_MESSAGE.size:
            raise RemoteProtocolError("CREDIT message has the wrong size")
        entry = calls.get(call_id)
        if entry is None:
            return None  # about a call that has ended here: a race, not an error
        if kind == wire.END:
            if self.owns(call_id):  # the end of a streamed result
                del calls[call_id]
                return StreamEnded(call_id)
            if type(entry) is Call and entry.receive_credit is not None:
                entry.receive_credit = None  # the input of a call served here is complete
                return StreamEnded(call_id)
            return None
        if kind == wire.ERROR:
            if not self.owns(call_id):
                return None
            del calls[call_id]
            try:
                return ErrorReceived(call_id, _decode_error(codec.decode_record(body)))
            except RemoteProtocolError as exc:  # an error all the same
                return ErrorReceived(call_id, exc)
        if kind == wire.CANCEL:
            if self.owns(call_id):
                return None
            del calls[call_id]  # the caller has given up: no reply is due
            self._serving -= 1
            return CancelReceived(call_id)
        if kind == wire.CREDIT:
            _, _, credit = wire.CREDIT_MESSAGE.unpack(message)
            if type(entry) is not Call or entry.send_credit is None:
                return None
            entry.send_credit = min(entry.send_credit + credit, MAX_WINDOW)
            return CreditReceived(call_id)
        raise RemoteProtocolError(f"RPC message kind {kind:#04x} is not valid here")

    def _handle_call(
        self,
        kind: int,
        message: Buffer,
        call_sink: CallSink = CallReceived,
    ) -> Event | None:
        try:
            _, call_id, flags, timeout_ms, name_length = _unpack_call(message)
        except struct.error:
            raise RemoteProtocolError("CALL message is truncated") from None
        name_end = _CALL_SIZE + name_length
        size = len(message)
        if size < name_end:
            raise RemoteProtocolError("CALL message is shorter than its procedure name")
        try:
            name = str(message[_CALL_SIZE:name_end], "utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("procedure name is not UTF-8") from None
        if kind == _NOTIFY:
            if call_id != 0:
                raise RemoteProtocolError("NOTIFY must carry id 0")
        elif (call_id & 1) == self._own_parity or call_id == 0:
            raise RemoteProtocolError(f"CALL id {call_id} has this side's parity")
        elif call_id in self._calls:
            raise RemoteProtocolError(f"CALL id {call_id} is already in use")
        procedure = self.procedures.get(name)
        if procedure is None:  # refused before its arguments cost anything to decode
            self._refuse_unknown(call_id, name)
            return None
        if self._serving + self._running_notifications >= self._max_calls:
            # Backpressure, not refusal: this call and whatever was read after it wait, and the
            # driver stops reading, until a call ends (release_held).
            self._held_call = (kind, message)
            self.calls_held = True
            self._plain_rpc = False
            return None
        codec = self.codec
        assert codec is not None
        kwargs: dict[str, Any] = {}
        has_input = False
        try:  # (a body that does not decode is answered: the message was framed well)
            args = codec.decode_args(message[name_end:] if size < _SMALL else memoryview(message)[name_end:])
            if flags:
                if flags & _FLAG_KWARGS:
                    if not args or not isinstance(args[-1], dict):
                        raise RemoteProtocolError("the keyword flag is set but there is no keyword map")
                    kwargs = args.pop()
                has_input = bool(flags & _FLAG_INPUT)
        except RemoteProtocolError as exc:
            self._refuse_undecodable(call_id, name, exc)
            return None
        timeout = timeout_ms / 1000 if timeout_ms else None
        if kind == _NOTIFY:
            self._running_notifications += 1
            return call_sink(0, procedure, args, kwargs, timeout, False)
        calls = self._calls
        self._serving += 1
        if has_input or timeout is not None:
            call = Call(call_id, outgoing=False, receive_credit=self._window if has_input else None)
            calls[call_id] = call
            if timeout is not None:
                self._start_deadline(call, timeout)
        else:
            calls[call_id] = _RUNNING
        return call_sink(call_id, procedure, args, kwargs, timeout, has_input)

    def _undecodable_items(self, call_id: int, error: RemoteProtocolError) -> Event | None:
        """Stream items that did not decode end their stream, not the connection: a streamed
        result here is cancelled on the peer and fails with ``error``; the input of a call served
        here ends that call with :class:`InvalidArguments` and its procedure is stopped."""
        if call_id not in self._calls:
            return None
        if self.owns(call_id):
            self.send_cancel(call_id)
            return ErrorReceived(call_id, error)
        self.send_error(call_id, InvalidArguments.wire_type, f"an input item was not decoded: {error}")
        return CancelReceived(call_id)

    def _handle_items(self, call_id: int, items: list[Any]) -> Event | None:
        entry = self._calls.get(call_id)
        if entry is None:
            return None  # items of a call that has ended here
        if type(entry) is Call:
            credit = entry.receive_credit
            if credit is None:
                raise RemoteProtocolError(f"stream items for call {call_id}, which has no stream open")
        elif entry is _AWAITING:  # a call made here turns out to stream its result
            entry = self._calls[call_id] = Call(call_id, outgoing=True)
            credit = self._window
        else:
            raise RemoteProtocolError(f"stream items for call {call_id}, which has no stream")
        remaining = credit - len(items)
        if remaining < 0:
            raise RemoteProtocolError(f"peer sent {-remaining} stream items beyond its credit on call {call_id}")
        entry.receive_credit = remaining
        return ItemsReceived(call_id, items)


def _decode_error(record: dict[str, Any]) -> Any:
    remote_type = record.get("type")
    message = record.get("message")
    if not isinstance(remote_type, str) or not isinstance(message, str):
        raise RemoteProtocolError("ERROR record lacks a string 'type' and 'message'")
    traceback = record.get("traceback")
    return remote_error_from_wire(
        remote_type, message, record.get("data"), traceback if isinstance(traceback, str) else None
    )
