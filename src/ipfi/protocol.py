"""The protocol core: a state machine that turns received bytes into events and API calls into bytes.

It does no I/O and keeps no clock of its own beyond the injected ``clock``; drivers feed it with
:meth:`Connection.receive_data`, act on the returned events, and write what
:meth:`Connection.data_to_send` returns. It is not thread-safe: a driver serialises access.
"""

from __future__ import annotations

import enum
import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from . import wire
from .codecs import CODECS, DEFAULT_CODECS, Body, Buffer, Codec, get_codec
from .errors import (
    Busy,
    ConnectionLost,
    HandshakeError,
    PayloadTooLarge,
    ProtocolError,
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
    MessageReceived,
    PongReceived,
    ResultReceived,
    ShutdownAcknowledged,
    ShutdownRequested,
    StreamEnded,
)
from .frames import CONTROL, HEADER_SIZE, MAGIC, FrameDecoder, frame_header
from .handshake import (
    DEFAULT_SERVER_CHANNELS,
    MAX_CHANNELS,
    PING,
    PONG,
    SHUTDOWN_ACK,
    SHUTDOWN_FORCE,
    SHUTDOWN_REQUEST,
    VERSION,
    Hello,
    encode_control,
    negotiate_channels,
    normalize_channels,
    parse_control,
    parse_hello,
    versions_compatible,
)
from .limits import Limits

log = logging.getLogger("ipfi.protocol")

_CALL_HEADER = wire.CALL_HEADER
_ID_HEADER = wire.ID_HEADER
_ID_SIZE: Final = _ID_HEADER.size
_pack_id = _ID_HEADER.pack
_unpack_id = _ID_HEADER.unpack_from
# Frame header and message header packed by one call, for messages that fit one small frame.
_pack_framed_id = struct.Struct("<2sIH" + _ID_HEADER.format[1:]).pack
_pack_framed_call = struct.Struct("<2sIH" + _CALL_HEADER.format[1:]).pack
_MAGIC: Final = MAGIC
_unpack_frame_start = struct.Struct("<2sIHB").unpack_from  # a frame's header and its first byte
_RPC: Final = wire.RPC_CHANNEL
_PART: Final = bytes([wire.PART])
_LAST_PART: Final = bytes([wire.LAST_PART])
# Message kinds and flags as module constants: the hot path reads them once per message.
_CALL: Final = wire.CALL
_NOTIFY: Final = wire.NOTIFY
_RESULT: Final = wire.RESULT
_FRAGMENT: Final = wire.PART  # kinds from here on are fragments
_FLAG_KWARGS: Final = wire.FLAG_KWARGS
_FLAG_INPUT: Final = wire.FLAG_INPUT
_CALL_SIZE: Final = _CALL_HEADER.size
_unpack_call = _CALL_HEADER.unpack_from
_ITEMS_OVERHEAD: Final = 16  # ITEMS header and list framing around one batch
#: Procedure names as sent, so a program calling the same few names does not re-encode them.
_encoded_names: dict[str, bytes] = {}
_NAME_CACHE_SIZE: Final = 1024
_CALL_KINDS: Final = frozenset({wire.CALL, wire.NOTIFY})
_SMALL: Final = 4096  # below this a frame is joined into one bytes object; above, sent as parts


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


# An enum member read from its class costs ~65 ns on Python 3.11 (a plain global: ~10): the state
# is tested for every message sent.
_OPEN: Final = State.OPEN

#: What takes a call read on the fast path: the arguments of :class:`CallReceived`, in order.
CallSink = Callable[[int, str, list[Any], dict[str, Any], float | None, bool], Event | None]
#: What takes a result read on the fast path: the arguments of :class:`ResultReceived`.
ResultSink = Callable[[int, Any], Event | None]


class Connection:
    """One side of one connection.

    ``channels`` is, for a client, the list it requests (default: 1-4) and, for a server, the list it
    offers. ``codecs`` lists acceptable codecs, preferred first; the client's order wins.

    A driver that wants calls and results without event records sets :attr:`call_sink` and
    :attr:`result_sink`; everything else, and anything read together with other messages, still
    comes back from :meth:`receive_data` as events.
    """

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name in codecs:
            if name not in CODECS:
                raise ValueError(f"unknown codec {name!r}")
        self.role = role
        self.limits = limits or Limits()
        self._max_calls = self.limits.max_concurrent_calls
        self.state = State.HANDSHAKE
        self._codec_names = tuple(codecs)
        self._channels = normalize_channels(list(channels), limit=MAX_CHANNELS if role is Role.CLIENT else None)
        self._offered = frozenset(self._channels)
        self._auth_token = auth_token
        self._own_peer_id = peer_id
        self._want_rpc = rpc
        self._binary_views = binary_views
        self._clock = clock
        #: Drivers may read ``decoder.idle``: no frame is partly received (a cheap test per read).
        self.decoder = FrameDecoder(self.limits.handshake_max_payload)
        self._out: list[Buffer] = []
        #: Whether :meth:`data_to_send` has anything to give (an attribute, not a property: drivers
        #: read it after every read). Everything that queues output sets it.
        self.has_output = False
        self._pending_items: dict[int, list[bytes]] = {}  # encoded stream items, sent at the next flush

        #: Negotiated after the handshake.
        self.codec: Codec | None = None
        self._encode_item: Callable[[Any], bytes] = _no_codec  # the codec's, once negotiated
        self.rpc = False
        self.channels: tuple[int, ...] = ()
        self.peer_hello: Hello | None = None
        self.peer_id = ""
        self._peer_window = self.limits.stream_window
        self._peer_max_message = self.limits.max_message
        self._peer_max_frame = self.limits.max_frame_payload
        self._small_message = min(_SMALL, self._peer_max_frame, self._peer_max_message)
        self._small_body = self._small_message - _ID_SIZE  # of RESULT, ITEMS, ERROR messages

        self._own_parity = 1 if role is Role.CLIENT else 0
        self._next_id = 2 - self._own_parity
        self._window = self.limits.stream_window
        # Calls this side made, reply still due, with how many more stream items each may bring:
        # any call may turn out to stream its result.
        self._outgoing: dict[int, int] = {}
        self._incoming: set[int] = set()  # calls the peer made, reply not yet sent
        self._running_notifications = 0
        self._send_credit: dict[int, int] = {}  # streams this side produces
        self._input_credit: dict[int, int] = {}  # input streams of calls served here
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
        self._pings: deque[float] = deque()
        self._control_window_start = 0.0
        self._control_count = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is _OPEN

    @property
    def incoming_count(self) -> int:
        """Calls and notifications the peer has running here now."""
        return len(self._incoming) + self._running_notifications

    def owns(self, call_id: int) -> bool:
        """Whether ``call_id`` names a call this side made (ids have the caller's parity)."""
        return (call_id & 1) == self._own_parity

    # -- handshake -----------------------------------------------------------------------------

    def start(self) -> None:
        """Queue the client hello. Servers wait for the peer's."""
        if self.role is not Role.CLIENT:
            return
        extension = None
        if self._want_rpc:
            extension = {
                "v": wire.PROTOCOL_VERSION,
                "codecs": list(self._codec_names),
                "window": self.limits.stream_window,
                "max_message": self.limits.max_message,
                "max_frame": self.limits.max_frame_payload,
            }
        hello = Hello(self._channels, auth_token=self._auth_token, extension=extension)
        self._queue_frame(CONTROL, hello.to_json())

    def _accept_hello(self, payload: bytes) -> HandshakeComplete:
        hello = parse_hello(payload, is_reply=False)
        if not versions_compatible(VERSION, hello.version):
            raise HandshakeError(f"handshake: client version {hello.version} is not compatible with {VERSION}")
        channels = negotiate_channels(hello.channels, self._offered)
        extension = None
        if hello.extension is not None and self._want_rpc:
            offered = hello.extension.get("codecs")
            if hello.extension.get("v") != wire.PROTOCOL_VERSION or not isinstance(offered, list):
                raise HandshakeError(f"handshake: unsupported ipfi extension {hello.extension!r}")
            common = [name for name in offered if name in self._codec_names]
            if not common:
                raise HandshakeError(f"handshake: no common codec in {offered!r}")
            if wire.RPC_CHANNEL not in channels:
                raise HandshakeError("handshake: an ipfi peer must negotiate the RPC channel 1")
            self._adopt_extension(hello.extension, common[0])
            extension = {
                "v": wire.PROTOCOL_VERSION,
                "codec": common[0],
                "window": self.limits.stream_window,
                "max_message": self.limits.max_message,
                "max_frame": self.limits.max_frame_payload,
            }
        reply = Hello(channels, peer_id=self._own_peer_id, extension=extension)
        self._queue_frame(CONTROL, reply.to_json())
        self.peer_id = self._own_peer_id
        return self._open(hello, channels)

    def _accept_reply(self, payload: bytes) -> HandshakeComplete:
        reply = parse_hello(payload, is_reply=True)
        if not versions_compatible(reply.version, VERSION):
            raise HandshakeError(f"handshake: server version {reply.version} is not compatible with {VERSION}")
        unrequested = set(reply.channels) - set(self._channels)
        if unrequested:
            raise HandshakeError(f"handshake: server granted channels not requested: {sorted(unrequested)}")
        if not reply.channels:
            raise HandshakeError("handshake: server granted no channel")
        if reply.extension is not None and self._want_rpc:
            codec = reply.extension.get("codec")
            if reply.extension.get("v") != wire.PROTOCOL_VERSION or codec not in self._codec_names:
                raise HandshakeError(f"handshake: unsupported ipfi extension {reply.extension!r}")
            self._adopt_extension(reply.extension, codec)
        self.peer_id = reply.peer_id
        return self._open(reply, reply.channels)

    def _adopt_extension(self, extension: dict[str, Any], codec: str) -> None:
        self.codec = get_codec(codec, binary_views=self._binary_views)
        self._encode_item = self.codec.encode_item
        self.rpc = True
        self._peer_window = _positive_int(extension, "window", self.limits.stream_window)
        self._peer_max_message = _positive_int(extension, "max_message", self.limits.max_message)
        self._peer_max_frame = min(
            _positive_int(extension, "max_frame", self.limits.max_frame_payload),
            self.limits.max_frame_payload,
        )
        self._small_message = min(_SMALL, self._peer_max_frame, self._peer_max_message)
        self._small_body = self._small_message - _ID_SIZE

    def _open(self, hello: Hello, channels: tuple[int, ...]) -> HandshakeComplete:
        self.peer_hello = hello
        self.channels = channels
        self.state = State.OPEN
        self._plain_rpc = self.rpc
        self.decoder.max_payload = self.limits.max_frame_payload
        return HandshakeComplete(hello, self.rpc)

    # -- receiving -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed received bytes; returns the events they complete.

        Raises :class:`~ipfi.errors.FrameError`, :class:`~ipfi.errors.ProtocolError` (the connection
        must then be closed) and :class:`~ipfi.errors.ConnectionLost` after close.
        """
        return self.receive_from(data, len(data))

    def receive_from(self, buffer: bytes | bytearray | memoryview, count: int) -> list[Event]:
        """:meth:`receive_data` of the first ``count`` bytes of ``buffer``, which the caller may
        reuse once this returns (nothing is kept from it)."""
        decoder = self.decoder
        if self._plain_rpc and decoder.idle and count > HEADER_SIZE:
            # The common case of calls and replies: one whole message in one read.
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
        if self.state is _OPEN:
            return self._handle_frames(decoder.feed(buffer if count == len(buffer) else buffer[:count]))
        if self.state is State.CLOSED:
            raise ConnectionLost("connection is closed")
        decoder.append(buffer[:count])
        frame = decoder.next_frame()
        if frame is None:
            return []
        channel, payload = frame
        if channel != CONTROL:
            raise HandshakeError(f"handshake: first frame arrived on channel {channel}, not 0")
        events: list[Event] = [self._accept_hello(payload) if self.role is Role.SERVER else self._accept_reply(payload)]
        events += self._handle_frames(decoder.feed(b""))
        return events

    def receive_target(self) -> memoryview | None:
        """Where the next received bytes may be written in place: the rest of a large frame being
        received, or ``None`` (then pass them to :meth:`receive_data`). See :meth:`received_into`."""
        return self.decoder.fill_target()

    def received_into(self, count: int) -> list[Event]:
        """``count`` bytes were written into :meth:`receive_target`'s view."""
        if self.state is not _OPEN:
            raise ConnectionLost("connection is closed")
        return self._handle_frames(self.decoder.filled(count))

    def receive_eof(self) -> None:
        """The peer closed its side. Raises :class:`ConnectionLost` naming what was cut off."""
        leftover = self.decoder.buffered
        was = self.state
        self.close()
        if leftover:
            raise ConnectionLost(f"connection closed by peer in the middle of a frame ({leftover} bytes)")
        if was is State.HANDSHAKE:
            raise ConnectionLost("connection closed by peer during the handshake")

    def _handle_frames(self, frames: list[tuple[int, bytes | bytearray]]) -> list[Event]:
        events: list[Event] = []
        rpc = self.rpc
        for channel, payload in frames:
            if channel == wire.RPC_CHANNEL and rpc:
                kind = payload[0] if payload and not self._in_parts else _FRAGMENT
                if kind == _CALL:  # the common cases: a whole message
                    event = self._handle_call(kind, payload)
                elif kind < _FRAGMENT:
                    event = self._handle_message(payload)
                else:
                    event = self._handle_rpc(payload)
            elif channel == CONTROL:
                event = self._handle_control(payload)
            elif channel in self.channels:
                event = MessageReceived(channel, payload)
            else:
                raise ProtocolError(f"frame on channel {channel}, which was not negotiated")
            if event is not None:
                events.append(event)
        return events

    def _handle_control(self, payload: bytes | bytearray) -> Event | None:
        now = self._clock()
        if now - self._control_window_start >= 1.0:
            self._control_window_start = now
            self._control_count = 0
        self._control_count += 1
        if self._control_count > self.limits.control_frames_per_second:
            raise ProtocolError(
                f"control flood: more than {self.limits.control_frames_per_second} control frames in a second"
            )
        kind, _ = parse_control(payload)
        if kind == PING:
            self._queue_frame(CONTROL, encode_control(PONG))
            return None
        if kind == PONG:
            return PongReceived(now - self._pings.popleft() if self._pings else None)
        if kind == SHUTDOWN_REQUEST:
            self._queue_frame(CONTROL, encode_control(SHUTDOWN_ACK))
            return ShutdownRequested(force=False)
        if kind == SHUTDOWN_FORCE:
            return ShutdownRequested(force=True)
        return ShutdownAcknowledged()

    def _handle_rpc(self, payload: bytes | bytearray) -> Event | None:
        if not payload:
            raise ProtocolError("empty RPC message")
        kind = payload[0]
        if kind in (wire.PART, wire.LAST_PART):
            return self._handle_part(kind, payload)
        if self._in_parts:
            raise ProtocolError("a fragmented message was interrupted by another message")
        return self._handle_message(payload)

    def _handle_part(self, kind: int, payload: bytes | bytearray) -> Event | None:
        self._parts_size += len(payload) - 1
        if self._parts_size > self.limits.max_message:
            raise PayloadTooLarge(f"fragmented message exceeds the limit of {self.limits.max_message} bytes")
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
        self._plain_rpc = self.state is _OPEN
        message: Buffer = memoryview(parts)[1:] if isinstance(parts, bytearray) else b"".join(parts)
        self._parts = []
        self._parts_size = 0
        if message and message[0] in (wire.PART, wire.LAST_PART):
            raise ProtocolError("a fragment cannot contain another fragment")
        return self._handle_message(message)

    def _handle_message(self, message: Buffer, result_sink: ResultSink = ResultReceived) -> Event | None:
        try:
            kind, call_id = _unpack_id(message)
        except struct.error:
            raise ProtocolError(f"RPC message of {len(message)} bytes is truncated") from None
        codec = self.codec
        assert codec is not None
        # A small body is copied (cheaper than a view); a large one is viewed.
        body = message[_ID_SIZE:] if len(message) < _SMALL else memoryview(message)[_ID_SIZE:]
        if kind == _RESULT:
            if self._outgoing.pop(call_id, None) is None:
                return None  # a late reply to a call given up on (timeout, cancel)
            if self._send_credit or self._pending_items:  # only calls that streamed input have these
                self._finish_outgoing(call_id)
            return result_sink(call_id, codec.decode_value(body))
        if kind in _CALL_KINDS:
            return self._handle_call(kind, message)
        if kind == wire.ITEMS:
            return self._handle_items(call_id, codec.decode_items(body))
        if kind == wire.END:
            if self.owns(call_id):
                if call_id not in self._outgoing:
                    return None
                self._finish_outgoing(call_id)
            elif call_id not in self._incoming:
                return None
            else:
                self._input_credit.pop(call_id, None)
            return StreamEnded(call_id)
        if kind == wire.ERROR:
            if call_id not in self._outgoing:
                return None
            self._finish_outgoing(call_id)
            return ErrorReceived(call_id, _decode_error(codec.decode_record(body)))
        if kind == wire.CANCEL:
            if call_id not in self._incoming:
                return None
            self._finish_incoming(call_id)  # the caller has given up: no reply is due
            return CancelReceived(call_id)
        if kind == wire.CREDIT:
            if len(message) != wire.CREDIT_MESSAGE.size:
                raise ProtocolError("CREDIT message has the wrong size")
            _, _, credit = wire.CREDIT_MESSAGE.unpack(message)
            if call_id not in self._send_credit:
                return None
            self._send_credit[call_id] += credit
            return CreditReceived(call_id)
        raise ProtocolError(f"unknown RPC message kind {kind:#04x}")

    def _handle_call(
        self,
        kind: int,
        message: Buffer,
        call_sink: CallSink = CallReceived,
    ) -> Event | None:
        try:
            _, call_id, flags, timeout_ms, name_length = _unpack_call(message)
        except struct.error:
            raise ProtocolError("CALL message is truncated") from None
        name_end = _CALL_SIZE + name_length
        size = len(message)
        if size < name_end:
            raise ProtocolError("CALL message is shorter than its procedure name")
        try:
            name = str(message[_CALL_SIZE:name_end], "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("procedure name is not UTF-8") from None
        codec = self.codec
        assert codec is not None
        args = codec.decode_args(message[name_end:] if size < _SMALL else memoryview(message)[name_end:])
        kwargs: dict[str, Any] = {}
        has_input = False
        if flags:
            if flags & _FLAG_KWARGS:
                if not args or not isinstance(args[-1], dict):
                    raise ProtocolError("CALL with the keyword flag lacks a keyword map")
                kwargs = args.pop()
            has_input = bool(flags & _FLAG_INPUT)
        timeout = timeout_ms / 1000 if timeout_ms else None
        incoming = self._incoming
        if kind == _NOTIFY:
            if call_id != 0:
                raise ProtocolError("NOTIFY must carry id 0")
            if len(incoming) + self._running_notifications >= self._max_calls:
                log.warning(
                    "peer %s: notification %r dropped: %d calls already running",
                    self.peer_id,
                    name,
                    self.incoming_count,
                )
                return None
            self._running_notifications += 1
            return call_sink(0, name, args, kwargs, timeout, False)
        if (call_id & 1) == self._own_parity or call_id == 0:
            raise ProtocolError(f"CALL id {call_id} has this side's parity")
        if call_id in incoming:
            raise ProtocolError(f"CALL id {call_id} is already in use")
        if len(incoming) + self._running_notifications >= self._max_calls:
            self._queue_error(
                call_id,
                Busy.wire_type,
                f"{self.limits.max_concurrent_calls} calls already running on this connection",
            )
            return None
        incoming.add(call_id)
        if has_input:
            self._input_credit[call_id] = self._window
        return call_sink(call_id, name, args, kwargs, timeout, has_input)

    def _handle_items(self, call_id: int, items: list[Any]) -> Event | None:
        if self.owns(call_id):
            credit = self._outgoing
            if call_id not in credit:
                return None
        else:
            credit = self._input_credit
            if call_id not in self._incoming:
                return None
            if call_id not in credit:
                raise ProtocolError(f"stream items for call {call_id}, which has no stream")
        remaining = credit[call_id] - len(items)
        if remaining < 0:
            raise ProtocolError(f"peer sent {-remaining} stream items beyond its credit on call {call_id}")
        credit[call_id] = remaining
        return ItemsReceived(call_id, items)

    def _finish_outgoing(self, call_id: int) -> None:
        self._outgoing.pop(call_id, None)
        self._send_credit.pop(call_id, None)
        self._pending_items.pop(call_id, None)

    # -- sending -------------------------------------------------------------------------------

    def data_to_send(self) -> list[Buffer]:
        """Frames queued since the last call, in order; the caller writes them as they are."""
        if self._pending_items:
            self._flush_items()
        out = self._out
        self._out = []
        self.has_output = False
        return out

    def _require_rpc(self) -> Codec:
        if self.state is not _OPEN:
            raise ConnectionLost("connection is not open")
        if self.codec is None:
            raise ProtocolError("the peer does not speak ipfi RPC (a plain ipcprims peer): use messages")
        return self.codec

    def send_call(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        has_input: bool = False,
    ) -> int:
        """Queue a CALL; returns its id. With ``has_input``, stream items with :meth:`send_item`."""
        codec = self.codec
        if codec is None or self.state is not _OPEN:
            codec = self._require_rpc()
        call_id = self._next_id
        outgoing = self._outgoing
        if call_id in outgoing or call_id + 2 > wire.MAX_ID:
            call_id = self._allocate_id()
        else:
            self._next_id = call_id + 2
        flags = 0
        if kwargs:
            args = [*args, kwargs]
            flags = _FLAG_KWARGS
        if has_input:
            flags |= _FLAG_INPUT
        body = codec.encode_args(args)
        encoded = _encoded_names.get(name) or _encode_name(name)
        if (
            timeout is None
            and type(body) is bytes
            and (size := _CALL_SIZE + len(encoded) + len(body)) <= self._small_message
        ):  # the common case: one frame, one bytes object
            framed = _pack_framed_call(_MAGIC, size, _RPC, _CALL, call_id, flags, 0, len(encoded))
            self._out.append(framed + encoded + body)
            self.has_output = True
        else:
            self._queue_call(_CALL, call_id, flags, name, body, timeout)
        outgoing[call_id] = self._window
        if has_input:
            self._send_credit[call_id] = self._peer_window
        return call_id

    def send_notify(self, name: str, args: Sequence[Any], kwargs: dict[str, Any] | None = None) -> None:
        codec = self._require_rpc()
        body = codec.encode_args([*args, kwargs] if kwargs else args)
        self._queue_call(_NOTIFY, 0, _FLAG_KWARGS if kwargs else 0, name, body, None)

    def _queue_call(self, kind: int, call_id: int, flags: int, name: str, body: Body, timeout: float | None) -> None:  # noqa: PLR0917 (as send_call calls it)
        """A CALL or NOTIFY (send_call frames the common small call itself)."""
        encoded = _encoded_names.get(name) or _encode_name(name)
        timeout_ms = 0 if timeout is None else _timeout_ms(timeout)
        self._queue_message(_CALL_HEADER.pack(kind, call_id, flags, timeout_ms, len(encoded)) + encoded, body)

    def _allocate_id(self) -> int:
        call_id = self._next_id
        while call_id in self._outgoing:
            call_id = self._advance(call_id)
        self._next_id = self._advance(call_id)
        return call_id

    def _advance(self, call_id: int) -> int:
        call_id += 2
        if call_id > wire.MAX_ID:
            call_id = 1 if self.role is Role.CLIENT else 2
        return call_id

    def send_result(self, call_id: int, value: Any) -> None:
        """Reply to call ``call_id`` with ``value``; if the codec cannot encode it (``TypeError``) or
        it is too large (:class:`PayloadTooLarge`), the reply is an error record saying so instead.
        Nothing is sent for a call not open here (cancelled, answered, or the connection closed)."""
        if call_id not in self._incoming:
            return
        codec = self.codec
        assert codec is not None  # calls are only received once RPC is negotiated
        try:
            body = codec.encode_value(value)
            if type(body) is bytes and len(body) <= self._small_body:  # _queue_id_message's fast path, inlined
                self._out.append(_pack_framed_id(_MAGIC, _ID_SIZE + len(body), _RPC, _RESULT, call_id) + body)
                self.has_output = True
            else:
                self._queue_id_message(_RESULT, call_id, body)
        except (TypeError, PayloadTooLarge) as exc:
            self.send_error(call_id, type(exc).__name__, f"cannot send the result: {exc}")
            return
        self._incoming.discard(call_id)
        if self._send_credit or self._input_credit or self._pending_items:
            self._finish_incoming(call_id)

    def send_error(self, call_id: int, remote_type: str, message: str, data: Any = None) -> None:
        """Reply to ``call_id`` with an error record (the caller raises a :class:`RemoteError`)."""
        if call_id not in self._incoming or self.state is not _OPEN:
            return
        self._queue_error(call_id, remote_type, message, data)
        self._finish_incoming(call_id)

    def _queue_error(self, call_id: int, remote_type: str, message: str, data: Any = None) -> None:
        codec = self.codec
        assert codec is not None
        self._flush_items_of(call_id)
        record = {"type": remote_type, "message": message}
        if data is not None:
            record["data"] = data
        try:
            body = codec.encode_record(record)
        except TypeError:
            record.pop("data")
            body = codec.encode_record(record)
        self._queue_id_message(wire.ERROR, call_id, body)

    def finish_notification(self) -> None:
        """A notification's procedure has ended (frees its slot in ``max_concurrent_calls``)."""
        self._running_notifications = max(0, self._running_notifications - 1)

    def _finish_incoming(self, call_id: int) -> None:
        self._incoming.discard(call_id)
        self._send_credit.pop(call_id, None)
        self._input_credit.pop(call_id, None)
        self._pending_items.pop(call_id, None)

    def open_output_stream(self, call_id: int) -> None:
        """The procedure serving ``call_id`` streams its result: it may send ``window`` items now."""
        if call_id in self._incoming:
            self._send_credit.setdefault(call_id, self._peer_window)

    def credit(self, call_id: int) -> int:
        """Items this side may still send on stream ``call_id`` (0 if unknown or closed)."""
        return self._send_credit.get(call_id, 0) - len(self._pending_items.get(call_id, ()))

    def stream_open(self, call_id: int) -> bool:
        """Whether this side may still send items on stream ``call_id``."""
        return call_id in self._send_credit

    def send_item(self, call_id: int, item: Any) -> int:
        """Encode and queue one stream item; returns how many more may be sent now (the
        :meth:`credit` left). Items queued before the next :meth:`data_to_send` go out as one ITEMS
        message. Raises ``TypeError`` if the codec cannot encode ``item``, ``RuntimeError`` past
        the credit (wait for :class:`CreditReceived` first)."""
        credit = self._send_credit.get(call_id)
        if credit is None:
            raise ConnectionLost(f"stream {call_id} is closed")
        pending = self._pending_items.get(call_id)
        if pending is None:
            pending = self._pending_items[call_id] = []
        queued = len(pending)
        if queued >= credit:
            raise RuntimeError(f"stream {call_id} has no credit left")
        encoded = self._encode_item(item)
        if len(encoded) > self._peer_max_message - _ITEMS_OVERHEAD:
            raise PayloadTooLarge(f"stream item of {len(encoded)} bytes exceeds the peer's message limit")
        pending.append(encoded)
        self.has_output = True
        return credit - queued - 1

    def _flush_items(self) -> None:
        for call_id in list(self._pending_items):
            self._flush_items_of(call_id)

    def _flush_items_of(self, call_id: int) -> None:
        items = self._pending_items.pop(call_id, None)
        if not items:
            return
        codec = self.codec
        assert codec is not None
        self._send_credit[call_id] -= len(items)
        # Batches stay within one frame; a lone large item is fragmented like any message.
        budget = self._peer_max_frame - _ITEMS_OVERHEAD
        if sum(map(len, items)) <= budget:  # the common case, summed in C: one batch
            self._queue_id_message(wire.ITEMS, call_id, codec.join_items(items))
            return
        batch: list[bytes] = []
        size = 0
        for encoded in items:
            if batch and size + len(encoded) > budget:
                self._queue_id_message(wire.ITEMS, call_id, codec.join_items(batch))
                batch, size = [], 0
            batch.append(encoded)
            size += len(encoded)
        self._queue_id_message(wire.ITEMS, call_id, codec.join_items(batch))

    def send_end(self, call_id: int) -> None:
        """End a stream: the output of a call served here, or the input of a call made here."""
        self._require_rpc()
        self._flush_items_of(call_id)
        if self.owns(call_id):
            self._send_credit.pop(call_id, None)
        elif call_id in self._incoming:
            self._finish_incoming(call_id)
        else:
            return
        self._queue_id_message(wire.END, call_id, b"")

    def send_cancel(self, call_id: int) -> None:
        """Give up on a call made here; the peer cancels its procedure. Later replies are ignored."""
        if call_id not in self._outgoing:
            return
        self._finish_outgoing(call_id)
        if self.state is _OPEN:
            self._queue_id_message(wire.CANCEL, call_id, b"")

    def grant_credit(self, call_id: int, credit: int) -> None:
        """Allow the producer of stream ``call_id`` to send ``credit`` more items."""
        credit_left = self._outgoing if self.owns(call_id) else self._input_credit
        if call_id not in credit_left or self.state is not _OPEN:
            return
        credit_left[call_id] += credit
        self._queue_frame(wire.RPC_CHANNEL, wire.CREDIT_MESSAGE.pack(wire.CREDIT, call_id, credit))

    def send_message(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        """Queue a plain frame on a negotiated non-RPC channel."""
        if self.state is not _OPEN:
            raise ConnectionLost("connection is not open")
        if channel not in self.channels or (channel == wire.RPC_CHANNEL and self.rpc):
            raise ValueError(f"channel {channel} is not open for messages (negotiated: {list(self.channels)})")
        if len(payload) > self._peer_max_frame:
            raise PayloadTooLarge(f"message of {len(payload)} bytes exceeds the frame limit {self._peer_max_frame}")
        self._queue_frame(channel, payload)

    def send_ping(self) -> None:
        self._pings.append(self._clock())
        self._queue_frame(CONTROL, encode_control(PING))

    def send_shutdown_request(self) -> None:
        self._queue_frame(CONTROL, encode_control(SHUTDOWN_REQUEST))

    def close(self) -> None:
        """Forget every call and stream; later sends raise :class:`ConnectionLost`."""
        self.state = State.CLOSED
        self._plain_rpc = False
        self._outgoing.clear()
        self._incoming.clear()
        self._send_credit.clear()
        self._input_credit.clear()
        self._pending_items.clear()
        self._parts = []
        self._parts_size = 0
        self._pings.clear()

    # -- framing -------------------------------------------------------------------------------

    def _queue_frame(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        self.has_output = True
        if len(payload) < _SMALL:
            self._out.append(frame_header(channel, len(payload)) + payload)
        else:
            self._out.append(frame_header(channel, len(payload)))
            self._out.append(payload if isinstance(payload, bytes) else bytes(payload))

    def _queue_id_message(self, kind: int, call_id: int, body: Body) -> None:
        if type(body) is bytes and len(body) <= self._small_body:  # the common case: one frame, one bytes
            self._out.append(_pack_framed_id(_MAGIC, _ID_SIZE + len(body), _RPC, kind, call_id) + body)
            self.has_output = True
            return
        self._queue_message(_pack_id(kind, call_id), body)

    def _queue_message(self, header: bytes, body: Body) -> None:
        """An RPC message in one frame, or in fragments when it exceeds the peer's frame size."""
        if type(body) is bytes:
            size = len(header) + len(body)
            if size <= self._small_message:  # one frame, joined into one bytes object
                self._out.append(frame_header(_RPC, size) + header + body)
                self.has_output = True
                return
            pieces: list[Buffer] = [body]
        else:
            pieces = body  # type: ignore[assignment]
            size = len(header) + sum(len(piece) for piece in pieces)
        if size > self._peer_max_message:
            raise PayloadTooLarge(f"message of {size} bytes exceeds the peer's limit of {self._peer_max_message}")
        self.has_output = True
        if size <= self._peer_max_frame:
            self._out += (frame_header(wire.RPC_CHANNEL, size) + header, *pieces)
            return
        self._queue_fragments([header, *pieces], size)

    def _queue_fragments(self, pieces: list[Buffer], size: int) -> None:
        """PART frames, then a LAST_PART, each of at most the peer's frame size: slices, not copies."""
        step = self._peer_max_frame - 1
        queue = deque(memoryview(piece) for piece in pieces)
        sent = 0
        while sent < size:
            room = min(step, size - sent)
            sent += room
            kind = _LAST_PART if sent == size else _PART
            frame: list[Buffer] = [frame_header(wire.RPC_CHANNEL, room + 1) + kind]
            while room:
                piece = queue.popleft()
                if len(piece) > room:
                    queue.appendleft(piece[room:])
                    piece = piece[:room]
                frame.append(piece)
                room -= len(piece)
            self._out += frame


def _no_codec(_: Any) -> bytes:
    raise ProtocolError("no codec was negotiated: RPC is not open")


def _encode_name(name: str) -> bytes:
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


def _positive_int(document: dict[str, Any], name: str, default: int) -> int:
    value = document.get(name, default)
    if type(value) is not int or value < 1:
        raise HandshakeError(f"handshake: ipfi field {name!r} must be a positive integer")
    return value


def _decode_error(record: dict[str, Any]) -> Any:
    remote_type = record.get("type")
    message = record.get("message")
    if not isinstance(remote_type, str) or not isinstance(message, str):
        raise ProtocolError("ERROR record lacks a string 'type' and 'message'")
    return remote_error_from_wire(remote_type, message, record.get("data"))
