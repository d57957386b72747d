"""The protocol core: a state machine that turns received bytes into events and API calls into bytes.

It does no I/O and reads no clock but the injected ``clock``, and only for timers. Drivers feed it
with :meth:`Connection.receive_data`, act on the returned events, write what
:meth:`Connection.data_to_send` returns, and call :meth:`Connection.handle_timer` at
:meth:`Connection.next_timer`. It is not thread-safe: a driver serialises access.

Its parts, one job each (they are mixed into :class:`Connection` so that the hot path pays no
indirection): :mod:`.negotiation` (hello and reply), :mod:`.reading` (bytes to events, fragments,
the fast path), :mod:`.writing` (framing, batching, fragmenting), :mod:`.timers` (deadlines,
keepalive, idle), :mod:`.calls` (the call table); this module holds the sending API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, cast

from . import wire
from .calls import AWAITING_REPLY, RUNNING, Call, Entry
from .codecs import CODECS, DEFAULT_CODECS, Buffer, Codec, CustomType, Unencodable
from .contracts import ItemCheck
from .errors import (
    ConnectionLost,
    InvalidArguments,
    InvalidState,
    LocalProtocolError,
    PayloadTooLarge,
    ProcedureNotFound,
    RemoteProtocolError,
)
from .events import CallReceived, HandshakeComplete, ResultReceived
from .frames import CONTROL, MAGIC, FrameDecoder
from .handshake import (
    DEFAULT_SERVER_CHANNELS,
    MAX_CHANNELS,
    PING,
    SHUTDOWN_REQUEST,
    Hello,
    encode_control,
    normalize_channels,
)
from .limits import Limits
from .logs import RateLimitedLog, shown
from .negotiation import MAX_WINDOW, Negotiation
from .reading import CallSink, PayloadCheck, ProcedureTable, Reading, ResultSink
from .state import CLOSED, HANDSHAKE, OPEN, Role, State
from .timers import Timers
from .writing import ITEMS_OVERHEAD, SMALL, Writing, pack_framed_call, pack_framed_id

__all__ = ["CallSink", "Connection", "ResultSink", "Role", "State"]

_CALL_HEADER = wire.CALL_HEADER
_ID_SIZE: Final = wire.ID_HEADER.size
_CALL_SIZE: Final = _CALL_HEADER.size
_MAGIC: Final = MAGIC
_RPC: Final = wire.RPC_CHANNEL
_CALL: Final = wire.CALL
_NOTIFY: Final = wire.NOTIFY
_RESULT: Final = wire.RESULT
_FLAG_KWARGS: Final = wire.FLAG_KWARGS
_FLAG_INPUT: Final = wire.FLAG_INPUT
_OPEN: Final = OPEN
_AWAITING: Final = AWAITING_REPLY
_RUNNING: Final = RUNNING
#: Procedure names as sent, so a program calling the same few names does not re-encode them.
_encoded_names: dict[str | int, bytes] = {}
log = logging.getLogger("ipfi.core")
_NAME_CACHE_SIZE: Final = 1024


class Connection(Negotiation, Reading, Writing, Timers):
    """One side of one connection.

    ``channels`` is, for a client, the list it requests (default: 1-4) and, for a server, the list it
    offers. ``codecs`` lists acceptable codecs, preferred first; the client's order wins.
    ``keepalive`` pings a peer silent for that many seconds and ends the connection with
    :class:`~ipfi.errors.KeepaliveTimeout` after ``keepalive_timeout`` (default 3x) of silence.

    A driver that wants calls and results without event records sets :attr:`call_sink` and
    :attr:`result_sink`; everything else, and anything read together with other messages, still
    comes back from :meth:`receive_data` as events.
    """

    # Slots, not an instance dict: ~1 KiB less per connection (a server holds thousands).
    __slots__ = (
        "_auth_token",
        "_batched",
        "_binaries_whole",
        "_binary_views",
        "_calls",
        "_channels",
        "_client_hello",
        "_clock",
        "_close_reason",
        "_codec_names",
        "_control_count",
        "_control_window_start",
        "_custom_types",
        "_deadlines",
        "_handshake_deadline",
        "_heard",
        "_held_call",
        "_held_frames",
        "_in_parts",
        "_keepalive",
        "_last_heard",
        "_log",
        "_max_calls",
        "_next_id",
        "_next_tick",
        "_out",
        "_own_parity",
        "_own_peer_id",
        "_pack_items",
        "_parts",
        "_parts_size",
        "_peer_max_frame",
        "_peer_max_message",
        "_peer_window",
        "_pending_reply",
        "_pings",
        "_plain_rpc",
        "_release_buffers_at",
        "_running_notifications",
        "_serving",
        "_silence_limit",
        "_small_body",
        "_small_message",
        "_tick",
        "_want_rpc",
        "_window",
        "call_sink",
        "calls_held",
        "channels",
        "closed_here",
        "codec",
        "decoder",
        "defer_verdict",
        "has_output",
        "item_bytes_queued",
        "limits",
        "message_bytes_queued",
        "messages_queued",
        "peer_hello",
        "peer_id",
        "procedures",
        "reading_paused",
        "refusal",
        "result_sink",
        "role",
        "role_is_client",
        "rpc",
        "schemas",
        "state",
        "timer_moved",
    )

    def __init__(
        self,
        role: Role,
        *,
        limits: Limits | None = None,
        codecs: Sequence[str] = DEFAULT_CODECS,
        channels: Iterable[int] = DEFAULT_SERVER_CHANNELS,
        auth_token: str | None = None,
        peer_id: str = "peer-1",
        rpc: bool = True,
        binary_views: bool = False,
        custom_types: Sequence[CustomType] = (),
        schemas: PayloadCheck | None = None,
        keepalive: float | None = None,
        keepalive_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name in codecs:
            if name not in CODECS:
                raise ValueError(f"unknown codec {name!r}")
        self.role = role
        self.role_is_client = role is Role.CLIENT
        self.limits = limits = limits or Limits()
        self._max_calls = limits.max_concurrent_calls
        self.state = HANDSHAKE
        self._codec_names = tuple(codecs)
        self._channels = normalize_channels(list(channels), limit=MAX_CHANNELS if self.role_is_client else None)
        self._auth_token = auth_token
        self._own_peer_id = peer_id
        self._want_rpc = rpc
        self._binary_views = binary_views
        self._binaries_whole = False
        self._custom_types = tuple(custom_types)
        self.schemas = schemas
        self._clock = clock
        #: Drivers may read ``decoder.idle``: no frame is partly received (a cheap test per read).
        self.decoder = FrameDecoder(limits.handshake_max_payload)
        self._out: list[Buffer] = []
        #: Whether :meth:`data_to_send` has anything to give (an attribute, not a property: drivers
        #: read it after every read). Everything that queues output sets it.
        self.has_output = False
        self._batched: list[Call] = []  # calls with stream items to frame at the next data_to_send
        #: Bytes of stream items queued since the last data_to_send (a producer yields past a bound).
        self.item_bytes_queued = 0

        #: Negotiated after the handshake.
        self.codec: Codec | None = None
        self._pack_items: Callable[[Sequence[Any]], bytes] = _no_codec  # the codec's items_packer(), once negotiated
        self.rpc = False
        self.channels: tuple[int, ...] = ()
        self.peer_hello: Hello | None = None
        self.refusal: bytes | None = None
        self.defer_verdict = False
        self._pending_reply: bytes | None = None
        self._client_hello: Hello | None = None
        self.peer_id = ""
        self._peer_window = limits.stream_window
        self._peer_max_message = limits.max_message
        self._peer_max_frame = limits.max_frame_payload
        self._small_message = min(SMALL, self._peer_max_frame, self._peer_max_message)
        self._small_body = self._small_message - _ID_SIZE

        self._own_parity = 1 if self.role_is_client else 0
        self._next_id = 2 - self._own_parity
        self._window = limits.stream_window
        #: Every call in progress, made here or served here (see :mod:`.calls`).
        self._calls: dict[int, Entry] = {}
        self._serving = 0  # calls served here, in the table
        self._running_notifications = 0
        # A fragmented message grows in the first fragment's own buffer when the decoder gave it one
        # (large frames), so that reassembly appends to it instead of copying everything again.
        self._parts: bytearray | list[memoryview] = []
        self._parts_size = 0
        self._in_parts = False
        #: Open, RPC negotiated and no fragmented message under way: a read that holds exactly one
        #: RPC frame is one whole message, handled without the frame decoder.
        self._plain_rpc = False
        #: Where a call or a result read on the fast path (a read that is one whole message) goes:
        #: the event classes by default, which make the event :meth:`receive_data` returns. A driver
        #: may set callables that take the same arguments and return ``None`` to act on it at once:
        #: no event record and no dispatch on a round trip's hot path. Nothing else was read with
        #: it, so the order of events is kept.
        self.call_sink: CallSink = CallReceived
        self.result_sink: ResultSink = ResultReceived
        self._pings: list[float | None] = []  # (a list: a deque costs 760 bytes per connection)
        self._control_window_start = 0.0
        self._control_count = 0
        #: Plain messages handed out and not yet taken (see :meth:`message_taken`), and their bytes.
        self.messages_queued = 0
        self.message_bytes_queued = 0
        #: Too many plain messages wait: the driver stops reading until :meth:`message_taken` says.
        self.reading_paused = False
        #: The procedures served here by name (a driver sets its interface's): a call names one
        #: (CallReceived carries what this holds for it), or is refused before its arguments are
        #: decoded. By default every name is taken, and CallReceived carries the name.
        self.procedures: ProcedureTable = _EVERY_NAME
        #: A call arrived at ``max_concurrent_calls``: it and what was read after it wait, and the
        #: driver stops reading, until :meth:`release_held` (after a call ends) hands them out.
        self.calls_held = False
        self._held_call: tuple[int, Buffer] | None = None
        self._held_frames: list[tuple[int, bytes | bytearray]] = []
        self._log: RateLimitedLog | None = None  # (made at the first line: most peers never need one)
        #: The driver's own close (see :meth:`close`): later calls raise InvalidState, not ConnectionLost.
        self.closed_here = False
        self._close_reason = ""

        # Timers (see .timers).
        self.timer_moved = True
        self._deadlines: list[tuple[float, int]] = []
        self._handshake_deadline: float | None = clock() + limits.handshake_timeout
        self._keepalive = keepalive
        self._silence_limit = None if keepalive is None else (keepalive_timeout or 3 * keepalive)
        periods = [p for p in (keepalive, _quarter(limits.idle_timeout), _quarter(self._silence_limit)) if p]
        self._tick: float | None = min(periods) if periods else None
        self._next_tick: float | None = None
        self._last_heard = 0.0
        self._heard = False
        self._release_buffers_at: float | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is _OPEN

    @property
    def incoming_count(self) -> int:
        """Calls and notifications the peer has running here now."""
        return self._serving + self._running_notifications

    def owns(self, call_id: int) -> bool:
        """Whether ``call_id`` names a call this side made (ids have the caller's parity)."""
        return (call_id & 1) == self._own_parity

    def call_state(self, call_id: int) -> str:
        """``awaiting reply`` / ``running`` (with ``streaming in/out``), or ``done`` once ended."""
        entry = self._calls.get(call_id)
        if entry is None:
            return "done"
        return entry.state if type(entry) is Call else entry.value  # type: ignore[union-attr]

    def is_serving(self, call_id: int) -> bool:
        """Whether call ``call_id``, served here, still wants its reply (not cancelled, expired or answered)."""
        return call_id in self._calls and not self.owns(call_id)

    def _opened(self, hello: Hello, channels: tuple[int, ...]) -> HandshakeComplete:
        self.peer_hello = hello
        self.channels = channels
        self.state = OPEN
        self._plain_rpc = self.rpc
        self.decoder.max_payload = self.limits.max_frame_payload
        self._split_binaries()
        self._start_watch(self._clock())
        return HandshakeComplete(hello, self.rpc)

    def _closed_error(self) -> ConnectionLost:
        return ConnectionLost(self._close_reason or "connection is closed")

    def _require_rpc(self) -> Codec:
        if self.state is not _OPEN:
            if self.closed_here:
                raise InvalidState("the connection was closed by this side")
            if self.state is HANDSHAKE:
                raise InvalidState("the connection is not open yet (its handshake is under way)")
            raise self._closed_error()
        if self.codec is None:
            raise LocalProtocolError("the peer does not speak ipfi RPC (a plain ipcprims peer): use messages")
        return self.codec

    # -- calling -------------------------------------------------------------------------------

    def send_call(
        self,
        name: str | int,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        has_input: bool = False,
    ) -> int:
        """Queue a CALL; returns its id. With ``has_input``, stream items with :meth:`send_items`.

        ``timeout`` (seconds) travels with the call, and is this side's deadline for it too: past it,
        :meth:`handle_timer` fails the call with ``DeadlineExceeded`` and cancels it on the peer.
        Raises ``TypeError`` (a value the codec cannot encode), :class:`PayloadTooLarge`,
        :class:`InvalidState`, :class:`LocalProtocolError` or :class:`ConnectionLost`.
        """
        codec = self.codec
        if codec is None or self.state is not _OPEN:
            codec = self._require_rpc()
        call_id = self._next_id
        calls = self._calls
        if call_id in calls or call_id + 2 > wire.MAX_ID:
            call_id = self._allocate_id()
        else:
            self._next_id = call_id + 2
        flags = 0
        if kwargs:
            args = [*args, kwargs]
            flags = _FLAG_KWARGS
        if has_input:
            flags |= _FLAG_INPUT
        try:
            body = codec.encode_args(args)
        except Unencodable as exc:
            raise exc.within_call(len(args) - (1 if kwargs else 0), kwargs) from None
        encoded = _encoded_names.get(name) or _encode_name(name)
        if (
            timeout is None
            and type(body) is bytes
            and (size := _CALL_SIZE + len(encoded) + len(body)) <= self._small_message
        ):  # the common case: one frame, one bytes object
            framed = pack_framed_call(_MAGIC, size, _RPC, _CALL, call_id, flags, 0, len(encoded))
            self._out.append(framed + encoded + body)
            self.has_output = True
        else:
            timeout_ms = 0 if timeout is None else _timeout_ms(timeout)
            header = _CALL_HEADER.pack(_CALL, call_id, flags, timeout_ms, len(encoded)) + encoded
            self._queue_message(header, body)
        if has_input or timeout is not None:
            call = Call(
                call_id,
                outgoing=True,
                receive_credit=self._window,
                send_credit=self._peer_window if has_input else None,
            )
            calls[call_id] = call
            if timeout is not None:
                self._start_deadline(call, timeout)
        else:
            calls[call_id] = _AWAITING
        return call_id

    def send_notify(self, name: str, args: Sequence[Any], kwargs: dict[str, Any] | None = None) -> None:
        """Queue a NOTIFY (no reply). Raises as :meth:`send_call`."""
        codec = self._require_rpc()
        try:
            body = codec.encode_args([*args, kwargs] if kwargs else args)
        except Unencodable as exc:
            raise exc.within_call(len(args), kwargs) from None
        encoded = _encoded_names.get(name) or _encode_name(name)
        header = _CALL_HEADER.pack(_NOTIFY, 0, _FLAG_KWARGS if kwargs else 0, 0, len(encoded)) + encoded
        self._queue_message(header, body)

    def _allocate_id(self) -> int:
        call_id = self._next_id
        while call_id in self._calls:
            call_id = self._advance(call_id)
        self._next_id = self._advance(call_id)
        return call_id

    def _advance(self, call_id: int) -> int:
        call_id += 2
        if call_id > wire.MAX_ID:
            call_id = 1 if self.role_is_client else 2
        return call_id

    def send_cancel(self, call_id: int) -> None:
        """Give up on a call made here; the peer cancels its procedure. Later replies are ignored."""
        if not self.owns(call_id) or self._calls.pop(call_id, None) is None:
            return
        if self.state is _OPEN:
            self._queue_id_message(wire.CANCEL, call_id, b"")

    # -- answering -----------------------------------------------------------------------------

    def send_result(self, call_id: int, value: Any) -> None:
        """Reply to call ``call_id`` with ``value``; if the codec cannot encode it (``TypeError``) or
        it is too large (:class:`PayloadTooLarge`), the reply is an error record saying so instead.
        Nothing is sent for a call not open here (cancelled, expired, answered, or the connection
        closed)."""
        calls = self._calls
        entry = calls.get(call_id)
        if entry is not _RUNNING and (entry is None or type(entry) is not Call or entry.outgoing):
            return
        codec = self.codec
        assert codec is not None  # calls are only received once RPC is negotiated
        try:
            body = codec.encode_value(value)
            if type(body) is bytes and len(body) <= self._small_body:  # _queue_id_message's fast path, inlined
                self._out.append(pack_framed_id(_MAGIC, _ID_SIZE + len(body), _RPC, _RESULT, call_id) + body)
                self.has_output = True
            else:
                self._queue_id_message(_RESULT, call_id, body)
        except (TypeError, PayloadTooLarge) as exc:
            kind = "TypeError" if isinstance(exc, TypeError) else type(exc).__name__  # (not Unencodable)
            self.send_error(call_id, kind, f"cannot send the result: {exc}")
            return
        del calls[call_id]
        self._serving -= 1
        if not calls:  # an emptied dict keeps its table (~200 bytes) until cleared: an idle connection need not
            calls.clear()

    def send_error(
        self, call_id: int, remote_type: str, message: str, data: Any = None, traceback: str | None = None
    ) -> None:
        """Reply to ``call_id`` with an error record (the caller raises a :class:`RemoteError`).
        ``data`` that the codec cannot encode is left out; ``traceback`` is the callee's, as text."""
        if not self.is_serving(call_id) or self.state is not _OPEN:
            return
        calls = self._calls
        entry = calls[call_id]
        if type(entry) is Call and entry.pending:
            self._flush_items_of(entry)  # items produced before the failure still go first (while in the table)
        del calls[call_id]
        self._serving -= 1
        if not calls:
            calls.clear()
        self._queue_error(call_id, remote_type, message, data, traceback)

    def _queue_error(
        self, call_id: int, remote_type: str, message: str, data: Any = None, traceback: str | None = None
    ) -> None:
        codec = self.codec
        assert codec is not None
        record = {"type": remote_type, "message": message}
        if traceback is not None:
            record["traceback"] = traceback
        if data is not None:
            record["data"] = data
        try:
            body = codec.encode_record(record)
        except (TypeError, ValueError):
            record.pop("data")
            body = codec.encode_record(record)
        self._queue_id_message(wire.ERROR, call_id, body)

    def _refuse_undecodable(self, call_id: int, name: str, error: RemoteProtocolError) -> None:
        """A call whose arguments did not decode: answered, and the connection goes on."""
        if call_id:
            self._queue_error(call_id, InvalidArguments.wire_type, f"{shown(name)}: arguments not decoded: {error}")
        else:
            self.log.warning("peer %s: a notification for %s dropped: %s", self.peer_id, shown(name), error)

    def _refuse_unknown(self, call_id: int, name: str) -> None:
        if call_id:
            self._queue_error(call_id, ProcedureNotFound.wire_type, f"no procedure named {shown(name)}")
        else:
            self.log.warning("peer %s: a notification for unknown procedure %s dropped", self.peer_id, shown(name))

    def finish_notification(self) -> None:
        """A notification's procedure has ended (frees its slot in ``max_concurrent_calls``)."""
        self._running_notifications = max(0, self._running_notifications - 1)

    # -- streams -------------------------------------------------------------------------------

    def open_output_stream(self, call_id: int, item_check: ItemCheck | None = None) -> None:
        """The procedure serving ``call_id`` streams its result: it may send ``window`` items now,
        each first checked by ``item_check`` (its procedure's, see ``Procedure.item_check``)."""
        entry = self._calls.get(call_id)
        if entry is _RUNNING:
            entry = self._calls[call_id] = Call(call_id, outgoing=False, send_credit=self._peer_window)
        elif type(entry) is Call and not entry.outgoing and entry.send_credit is None:
            entry.send_credit = self._peer_window
        else:
            return
        if item_check is not None:
            entry.item_check, entry.item_type = item_check

    def _stream_out(self, call_id: int) -> Call | None:
        entry = self._calls.get(call_id)
        return entry if type(entry) is Call and entry.send_credit is not None else None

    def credit(self, call_id: int) -> int:
        """Items this side may still send on stream ``call_id`` (0 if unknown or closed)."""
        call = self._stream_out(call_id)
        return 0 if call is None else call.send_credit - len(call.pending)  # type: ignore[operator]

    def stream_open(self, call_id: int) -> bool:
        """Whether this side may still send items on stream ``call_id``."""
        return self._stream_out(call_id) is not None

    def send_items(self, call_id: int, items: Sequence[Any]) -> int:
        """Encode and queue stream items; returns how many more may be sent now (the :meth:`credit`
        left). Several items make an ITEMS message of their own; items sent one at a time before the
        next :meth:`data_to_send` go out as one.

        Raises ``TypeError`` if the codec cannot encode an item (:class:`InvalidResult` if it does
        not fit its procedure's hint), :class:`PayloadTooLarge` past the peer's message limit (the
        items before that one are queued), :class:`ConnectionLost` if the stream has ended
        (cancelled, expired, closed), :class:`LocalProtocolError` past the credit (nothing queued:
        wait for CreditReceived)."""
        call = self._calls.get(call_id)  # (_stream_out inlined: this runs per batch, or per item)
        if type(call) is not Call or call.send_credit is None:
            raise ConnectionLost(f"stream {call_id} is closed")
        queued = len(call.pending)
        count = len(items)
        credit = call.send_credit - queued - count
        if credit < 0:
            raise LocalProtocolError(f"stream {call_id} has {credit + count} credit left, not {count}")
        # A batch in one call: nothing of this stream pending, every item of its hinted type, the
        # items encoded as one ITEMS body (by the codec, in C) that fits a frame. Else item by item
        # (to the first that fails: those before it are sent, as one by one).
        item_type = call.item_type
        if not queued and count > 1 and (item_type is None or list(map(type, items)).count(item_type) == count):
            body: bytes | None
            try:
                body = self._pack_items(items)
            except Exception:  # (_queue_item says why)
                body = None
            if body is not None and len(body) <= self._peer_max_frame - ITEMS_OVERHEAD:
                call.send_credit -= count
                self.item_bytes_queued += len(body)
                self._queue_id_message(wire.ITEMS, call_id, body)
                return credit
        for item in items:
            self._queue_item(call, item)
        return credit

    def _queue_item(self, call: Call, item: Any) -> None:
        """One item of :meth:`send_items`, raising as it says."""
        if call.item_check is not None and type(item) is not call.item_type:
            item = call.item_check(item)
        encoded = cast(Codec, self.codec).encode_item(item)  # (raises Unencodable naming the path)
        if len(encoded) > self._peer_max_message - ITEMS_OVERHEAD:
            raise PayloadTooLarge(f"stream item of {len(encoded)} bytes exceeds the peer's message limit")
        if not call.pending:
            self._batched.append(call)
            self.has_output = True
        call.pending.append(encoded)
        self.item_bytes_queued += len(encoded)

    def _flush_items_of(self, call: Call) -> None:
        items = call.pending
        if not items or self._calls.get(call.call_id) is not call:
            return
        call.pending = []
        codec = self.codec
        assert codec is not None and call.send_credit is not None
        call.send_credit -= len(items)
        self._queue_items(call.call_id, items, codec)

    def send_end(self, call_id: int) -> None:
        """End a stream: the output of a call served here, or the input of a call made here."""
        self._require_rpc()
        call = self._stream_out(call_id)
        if call is None:
            return
        self._flush_items_of(call)
        if self.owns(call_id):
            call.send_credit = None  # the input is complete; the reply is still due
        else:
            del self._calls[call_id]  # the output is complete: the call is answered
            self._serving -= 1
            if not self._calls:
                self._calls.clear()
        self._queue_id_message(wire.END, call_id, b"")

    def grant_credit(self, call_id: int, credit: int) -> None:
        """Allow the producer of stream ``call_id`` to send ``credit`` more items."""
        entry = self._calls.get(call_id)
        if self.state is not _OPEN or entry is None:
            return
        if type(entry) is Call:
            if entry.receive_credit is None:
                return
            entry.receive_credit = min(entry.receive_credit + credit, MAX_WINDOW)
        elif entry is _AWAITING:  # granted ahead of any item: the call now streams
            self._calls[call_id] = Call(call_id, outgoing=True, receive_credit=self._window + credit)
        else:
            return
        self._queue_frame(_RPC, wire.CREDIT_MESSAGE.pack(wire.CREDIT, call_id, credit))

    # -- plain messages and control ------------------------------------------------------------

    def send_message(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        """Queue a plain frame on a negotiated non-RPC channel.

        Raises :class:`LocalProtocolError` for a channel that was not negotiated (or the RPC channel
        of an ipfi peer), :class:`PayloadTooLarge` past the frame limit, :class:`InvalidState` or
        :class:`ConnectionLost` when the connection is not open."""
        if self.state is not _OPEN:
            if self.closed_here or self.state is HANDSHAKE:
                raise InvalidState("the connection is not open")
            raise self._closed_error()
        if channel not in self.channels or (channel == _RPC and self.rpc):
            raise LocalProtocolError(f"channel {channel} is not open for messages (negotiated: {list(self.channels)})")
        if len(payload) > self._peer_max_frame:
            raise PayloadTooLarge(f"message of {len(payload)} bytes exceeds the frame limit {self._peer_max_frame}")
        self._queue_frame(channel, payload)

    def send_ping(self) -> None:
        """Queue a ping; its :class:`~ipfi.events.PongReceived` gives the round trip."""
        self._pings.append(self._clock())
        self._queue_frame(CONTROL, encode_control(PING))

    def send_shutdown_request(self) -> bool:
        """Queue a shutdown request; its acknowledgement comes as :class:`ShutdownAcknowledged`."""
        self._queue_frame(CONTROL, encode_control(SHUTDOWN_REQUEST))
        return True

    def close(self, reason: str = "") -> None:
        """Forget every call and stream; later sends raise :class:`ConnectionLost` (with
        ``reason``), or :class:`InvalidState` once the driver has set :attr:`closed_here`."""
        self.state = CLOSED
        self._close_reason = self._close_reason or reason
        self._pending_reply = None
        self._plain_rpc = False
        self._calls.clear()
        self._serving = 0
        self._batched.clear()
        self._deadlines.clear()
        self._handshake_deadline = self._next_tick = self._release_buffers_at = None
        self._parts = []
        self._parts_size = 0
        self._pings.clear()
        self._held_call = None
        self._held_frames = []
        self.calls_held = False
        # The driver's sinks are its bound methods: dropping them ends the reference cycle between
        # the driver's peer and this core, so a closed connection is freed without the cyclic GC.
        self.call_sink = CallReceived
        self.result_sink = ResultReceived


class _EveryName:
    def get(self, name: str, /) -> str:
        return name

    def values(self) -> tuple[()]:
        return ()


_EVERY_NAME: Final = _EveryName()


def _no_codec(_: Any) -> bytes:
    raise LocalProtocolError("no codec was negotiated: RPC is not open")


def _encode_name(name: str | int) -> bytes:
    if not isinstance(name, str):
        raise LocalProtocolError(
            f"procedures are called by name on ipfi's wire, not by number ({name!r}): IPFI's are (protocol='ipfi-rust')"
        )
    encoded = name.encode()
    if len(encoded) > wire.MAX_NAME:
        raise ValueError(f"procedure name longer than {wire.MAX_NAME} bytes")
    if len(_encoded_names) < _NAME_CACHE_SIZE:
        _encoded_names[name] = encoded
    return encoded


def _timeout_ms(timeout: float) -> int:
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    return min(max(1, round(timeout * 1000)), wire.MAX_TIMEOUT_MS)


def _quarter(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 4
