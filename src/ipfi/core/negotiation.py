"""The connection's first exchange: the hello, the reply, and the settings the two sides agree on.

A part of :class:`~ipfi.core.connection.Connection` (its methods run on it). Every value the peer
announces is checked here and kept within bounds: a peer cannot make this side fragment into
one-byte frames, or open a stream window of 2^63 items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from . import wire
from .codecs import Codec, CustomType, get_codec
from .errors import AuthenticationFailed, HandshakeError
from .events import Event, HandshakeComplete
from .frames import CONTROL, encode_frame
from .handshake import VERSION, Hello, negotiate_channels, parse_hello, versions_compatible
from .limits import Limits
from .logs import shown
from .state import State

#: The smallest frame a peer may ask for: a call header and a short name fit (smaller would turn
#: every message into a run of fragments: 2 M of them for 1 MiB at 2 bytes).
MIN_PEER_FRAME: Final = 64
#: The most stream items a peer may let this side send ahead, whatever it announces or grants.
MAX_WINDOW: Final = 1 << 16
_SMALL: Final = 4096  # below this a frame is joined into one bytes object; above, sent as parts
_ID_SIZE: Final = wire.ID_HEADER.size


class Negotiation:
    """Hello, reply and the negotiated settings (``codec``, ``channels``, the peer's limits)."""

    role_is_client: bool
    limits: Limits
    state: State
    rpc: bool
    codec: Codec | None
    channels: tuple[int, ...]
    peer_hello: Hello | None
    #: A refusal to send the client before closing (see :meth:`refuse`), or ``None``.
    refusal: bytes | None
    _client_hello: Hello | None
    peer_id: str
    _codec_names: tuple[str, ...]
    _channels: tuple[int, ...]
    _auth_token: str | None
    _own_peer_id: str
    _want_rpc: bool
    _binary_views: bool
    _custom_types: tuple[CustomType, ...]
    _pack_items: Callable[[Sequence[Any]], bytes]
    _peer_window: int
    _peer_max_message: int
    _peer_max_frame: int
    _small_message: int
    _small_body: int

    #: Server: the verdict on a client waits for :meth:`accept` or :meth:`refuse` (an ``async def``
    #: ``authenticate``): its hello is answered, and what it sends after, acted on, only then.
    defer_verdict: bool
    _pending_reply: bytes | None
    has_output: bool
    _out: list[Any]
    _held_frames: list[tuple[int, bytes | bytearray]]
    _plain_rpc: bool
    _in_parts: bool
    calls_held: bool

    # Of the other parts of the connection:
    _queue_frame: Callable[[int, bytes | bytearray | memoryview], None]
    _opened: Callable[[Hello, tuple[int, ...]], HandshakeComplete]
    _handle_frames: Callable[[list[tuple[int, bytes | bytearray]]], list[Event]]

    def _extension(self) -> dict[str, Any]:
        return {
            "v": wire.PROTOCOL_VERSION,
            "window": self.limits.stream_window,
            "max_message": self.limits.max_message,
            "max_frame": self.limits.max_frame_payload,
        }

    def start(self) -> list[Event]:
        """Queue the client hello. Servers wait for the peer's. No events: the connection opens
        once the handshake is done."""
        if not self.role_is_client:
            return []
        extension = None
        if self._want_rpc:
            extension = {**self._extension(), "codecs": list(self._codec_names)}
        hello = Hello(self._channels, auth_token=self._auth_token, extension=extension)
        self._queue_frame(CONTROL, hello.to_json())
        return []

    def refuse(self, error: HandshakeError) -> None:
        """A server refuses the client whose hello it accepted (``authenticate`` said no) or could
        not accept: an ipfi client is told why, in a reply the driver sends (:attr:`refusal`)
        before closing. A plain ipcprims client is told nothing, as ipcprims tells it nothing."""
        hello = self._client_hello
        self._pending_reply = None
        if self.role_is_client or hello is None:
            return
        self.refusal = refusal(hello, self._own_peer_id, error)

    def _accept_hello(self, payload: bytes) -> HandshakeComplete:
        hello = parse_hello(payload, is_reply=False)
        self._client_hello = hello  # (for refuse())
        try:
            return self._answer_hello(hello)
        except HandshakeError as exc:
            self.refuse(exc)
            raise

    def _answer_hello(self, hello: Hello) -> HandshakeComplete:
        if not versions_compatible(VERSION, hello.version):
            raise HandshakeError(f"handshake: client version {hello.version} is not compatible with {VERSION}")
        channels = negotiate_channels(hello.channels, frozenset(self._channels))
        extension = None
        if hello.extension is not None and self._want_rpc:
            offered = hello.extension.get("codecs")
            if hello.extension.get("v") != wire.PROTOCOL_VERSION or not isinstance(offered, list):
                raise HandshakeError(f"handshake: unsupported ipfi extension {shown(repr(hello.extension))}")
            common = [name for name in offered if isinstance(name, str) and name in self._codec_names]
            if not common:
                raise HandshakeError(f"handshake: no common codec in {shown(repr(offered))}")
            if wire.RPC_CHANNEL not in channels:
                raise HandshakeError("handshake: an ipfi peer must negotiate the RPC channel 1")
            self._adopt_extension(hello.extension, common[0])
            extension = {"v": wire.PROTOCOL_VERSION, "codec": common[0], **self._extension()}
        reply = Hello(channels, peer_id=self._own_peer_id, extension=extension)
        self.peer_id = self._own_peer_id
        opened = self._opened(hello, channels)
        if self.defer_verdict:  # the reply, and what the client sent after its hello, wait for accept()
            self._pending_reply = encode_frame(CONTROL, reply.to_json())
            self._plain_rpc = False
        else:
            self._queue_frame(CONTROL, reply.to_json())
        return opened

    def accept(self) -> list[Event]:
        """With :attr:`defer_verdict`, the server accepts the client it has not answered yet (its
        ``authenticate`` took time): the reply is queued, and the events of what the client sent
        meanwhile are returned. (:meth:`refuse` refuses it.) Raises what ``receive_data`` raises."""
        reply, self._pending_reply = self._pending_reply, None
        if reply is None:
            return []
        self._out.append(reply)
        self.has_output = True
        frames, self._held_frames = self._held_frames, []
        self._plain_rpc = self.rpc and not self._in_parts and not self.calls_held
        return self._handle_frames(frames)

    def _accept_reply(self, payload: bytes) -> HandshakeComplete:
        reply = parse_hello(payload, is_reply=True)
        refused = reply.extension.get("refused") if reply.extension is not None else None
        if isinstance(refused, dict):
            kind = AuthenticationFailed if refused.get("type") == AuthenticationFailed.__name__ else HandshakeError
            raise kind(f"the server refused the connection: {shown(str(refused.get('message')))}")
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
                raise HandshakeError(f"handshake: unsupported ipfi extension {shown(repr(reply.extension))}")
            self._adopt_extension(reply.extension, codec)
        self.peer_id = reply.peer_id
        return self._opened(reply, reply.channels)

    def _adopt_extension(self, extension: dict[str, Any], codec: str) -> None:
        limits = self.limits
        window = _positive_int(extension, "window", limits.stream_window)
        max_frame = _positive_int(extension, "max_frame", limits.max_frame_payload)
        if max_frame < MIN_PEER_FRAME:
            raise HandshakeError(f"handshake: max_frame {max_frame} is below the floor of {MIN_PEER_FRAME} bytes")
        self.codec = get_codec(codec, binary_views=self._binary_views, custom_types=self._custom_types)
        self._pack_items = self.codec.items_packer()
        self.rpc = True
        self._peer_window = min(window, MAX_WINDOW)
        self._peer_max_frame = min(max_frame, limits.max_frame_payload)
        self._peer_max_message = min(_positive_int(extension, "max_message", limits.max_message), 1 << 32)
        self._small_message = min(_SMALL, self._peer_max_frame, self._peer_max_message)
        self._small_body = self._small_message - _ID_SIZE


def _positive_int(document: dict[str, Any], name: str, default: int) -> int:
    value = document.get(name, default)
    if type(value) is not int or value < 1:
        raise HandshakeError(f"handshake: ipfi field {name!r} must be a positive integer")
    return value


def refusal(hello: Hello, peer_id: str, error: HandshakeError) -> bytes | None:
    """The reply frame that tells an ipfi client (one whose hello has ipfi's extension) why it is
    refused; ``None`` for a plain ipcprims client, whom ipcprims tells nothing."""
    if hello.extension is None:
        return None
    reason = {"type": type(error).__name__, "message": str(error)}
    extension = {"v": wire.PROTOCOL_VERSION, "refused": reason}
    reply = Hello(hello.channels or (wire.RPC_CHANNEL,), peer_id=peer_id, extension=extension)
    return encode_frame(CONTROL, reply.to_json())
