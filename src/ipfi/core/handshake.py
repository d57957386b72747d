"""The ipcprims 1.0 handshake and the control messages of channel 0. No I/O.

The client's first frame is a JSON hello on channel 0; the server answers with a reply naming the
negotiated channels and a ``peer_id``. ipfi's own settings ride in an extra ``"ipfi"`` field, which a
plain ipcprims peer ignores and does not send; without it the peer is a plain framed peer.
"""

from __future__ import annotations

import hmac
import re
import sys
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .codecs import compact_json, decode_json
from .errors import HandshakeError, RemoteProtocolError
from .frames import CONTROL, MAX_CHANNEL
from .logs import shown

PROTOCOL: Final = "ipcprims"
VERSION: Final = "1.0"
DEFAULT_SERVER_CHANNELS: Final = (1, 2, 3, 4)
MAX_CHANNELS: Final = 256
EXTENSION_FIELD: Final = "ipfi"
#: The hello's field where a gateway says whom it relays (see ``Hello.forwarded_for``).
FORWARDED_FIELD: Final = "forwarded_for"
_MAX_FORWARDED: Final = 8

_VERSION_FORM = re.compile(r"^([0-9]+)\.([0-9]+)$")


@dataclass(frozen=True, slots=True)
class Hello:
    """A client hello (``peer_id`` empty) or a server reply (``auth_token`` empty)."""

    channels: tuple[int, ...]
    protocol: str = PROTOCOL
    version: str = VERSION
    peer_id: str = ""
    auth_token: str | None = field(default=None, repr=False)
    extension: dict[str, Any] | None = None
    #: Who a gateway relays this client for (``remote``, ``tls_subject``, ``path``): set by
    #: ``ipfi gateway``, which drops what a client wrote there itself. Trust it only from a
    #: gateway (a service reached by nobody else, or ``allow_uids``).
    forwarded_for: dict[str, str] | None = None

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "protocol": self.protocol,
            "version": self.version,
            "channels": list(self.channels),
        }
        if self.peer_id:
            document["peer_id"] = self.peer_id
        if self.auth_token is not None:
            document["auth_token"] = self.auth_token
        if self.extension is not None:
            document[EXTENSION_FIELD] = self.extension
        if self.forwarded_for is not None:
            document[FORWARDED_FIELD] = self.forwarded_for
        return compact_json(document).encode()


def _bounded_string(document: dict[str, Any], name: str, low: int, high: int, *, required: bool) -> str | None:
    value = document.get(name)
    if value is None:
        if required:
            raise HandshakeError(f"handshake: missing field {name!r}")
        return None
    if not isinstance(value, str):
        raise HandshakeError(f"handshake: field {name!r} must be a string")
    size = len(value.encode(errors="replace"))
    if not low <= size <= high:
        raise HandshakeError(f"handshake: field {name!r} must be {low}..{high} bytes, got {size}")
    if not value.isprintable():  # (it may reach a log line or a terminal)
        raise HandshakeError(f"handshake: field {name!r} holds control characters: {shown(value)}")
    return value


def parse_version(text: str) -> tuple[int, int]:
    """``"<u16>.<u16>"`` to a pair; leading zeros allowed (``"01.00"`` is 1.0)."""
    match = _VERSION_FORM.match(text)
    if match is None:
        raise HandshakeError(f"handshake: version {shown(text)} is not of the form <major>.<minor>")
    major, minor = int(match[1]), int(match[2])
    if major > 0xFFFF or minor > 0xFFFF:
        raise HandshakeError(f"handshake: version {shown(text)} out of range")
    return major, minor


def versions_compatible(server: str, client: str) -> bool:
    """ipcprims' rule: equal majors and client minor >= server minor."""
    server_major, server_minor = parse_version(server)
    client_major, client_minor = parse_version(client)
    return server_major == client_major and client_minor >= server_minor


def normalize_channels(value: Any, *, limit: int | None = MAX_CHANNELS) -> tuple[int, ...]:
    """Validate a channel list: ints in 1..65535, at most ``limit`` of them (a hello's limit by
    default; a server may offer more than a client may ask for); duplicates dropped, order kept."""
    if not isinstance(value, list):
        raise HandshakeError("handshake: 'channels' must be a list")
    if limit is not None and len(value) > limit:
        raise HandshakeError(f"handshake: at most {limit} channels, got {len(value)}")
    seen: dict[int, None] = {}
    for channel in value:
        if type(channel) is not int or not 0 <= channel <= MAX_CHANNEL:
            raise HandshakeError(f"handshake: channel {shown(repr(channel))} is not a u16")
        if channel == CONTROL:
            raise HandshakeError("handshake: channel 0 (control) cannot be negotiated")
        seen[channel] = None
    return tuple(seen)


def parse_hello(payload: bytes, *, is_reply: bool) -> Hello:
    """Parse and validate a hello (client) or a reply (server). Raises :class:`HandshakeError`."""
    try:
        document = decode_json(payload, "handshake")
    except RemoteProtocolError as error:
        raise HandshakeError(str(error)) from None
    if not isinstance(document, dict):
        raise HandshakeError("handshake: the hello must be a JSON object")
    protocol = _bounded_string(document, "protocol", 1, 32, required=True)
    if protocol != PROTOCOL:
        raise HandshakeError(f"handshake: unknown protocol {shown(protocol or '')}")
    version = _bounded_string(document, "version", 1, 16, required=True)
    assert version is not None
    parse_version(version)
    if "channels" not in document:
        raise HandshakeError("handshake: missing field 'channels'")
    channels = normalize_channels(document["channels"])
    peer_id = _bounded_string(document, "peer_id", 1, 128, required=is_reply) or ""
    auth_token = None if is_reply else _bounded_string(document, "auth_token", 1, 4096, required=False)
    extension = document.get(EXTENSION_FIELD)
    if extension is not None:
        if not isinstance(extension, dict):
            raise HandshakeError(f"handshake: field {EXTENSION_FIELD!r} must be an object")
        extension = {sys.intern(key): _interned(value) for key, value in extension.items()}
    forwarded_for = None if is_reply else _forwarded_for(document.get(FORWARDED_FIELD))
    return Hello(channels, PROTOCOL, sys.intern(version), peer_id, auth_token, extension, forwarded_for)


def _forwarded_for(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > _MAX_FORWARDED
        or not all(isinstance(key, str) and isinstance(item, str) and len(item) <= 1024 for key, item in value.items())
    ):
        raise HandshakeError(f"handshake: field {FORWARDED_FIELD!r} must be an object of at most 8 strings")
    return value


def token_among(token: str | None, tokens: frozenset[str]) -> bool:
    """Whether ``token`` is one of ``tokens``, compared in constant time (every one compared)."""
    if token is None:
        return False
    given = token.encode()
    found = False
    for accepted in tokens:
        found |= hmac.compare_digest(given, accepted.encode())
    return found


def _interned(value: Any) -> Any:
    """A string, or the strings of a list, shared with every other connection's hello (a server
    keeps each peer's hello: its repeated words would cost ~0.5 KiB per connection)."""
    if type(value) is str:
        return sys.intern(value)
    if type(value) is list:
        return [sys.intern(item) if type(item) is str else item for item in value]
    return value


def negotiate_channels(requested: Sequence[int], offered: Container[int]) -> tuple[int, ...]:
    """The client's requested channels that the server offers, in the client's order."""
    result = tuple(channel for channel in requested if channel in offered)
    if not result:
        raise HandshakeError(f"handshake: no common channel (requested {list(requested)})")
    return result


# Control messages (channel 0, after the handshake).
PING: Final = "ping"
PONG: Final = "pong"
SHUTDOWN_REQUEST: Final = "shutdown_request"
SHUTDOWN_ACK: Final = "shutdown_ack"
SHUTDOWN_FORCE: Final = "shutdown_force"
CONTROL_TYPES: Final = frozenset({PING, PONG, SHUTDOWN_REQUEST, SHUTDOWN_ACK, SHUTDOWN_FORCE})


def encode_control(kind: str, payload: Any = None) -> bytes:
    """A control message body, e.g. ``{"type":"ping"}``."""
    document: dict[str, Any] = {"type": kind}
    if payload is not None:
        document["payload"] = payload
    return compact_json(document).encode()


def parse_control(payload: bytes | bytearray) -> tuple[str, Any]:
    """``(type, payload)`` of a control message; raises :class:`RemoteProtocolError` if malformed
    or unknown."""
    document = decode_json(payload, "control")
    kind = document.get("type") if isinstance(document, dict) else None
    if type(kind) is not str or kind not in CONTROL_TYPES:
        raise RemoteProtocolError(f"control: unknown message {bytes(payload[:64])!r}")
    return kind, document.get("payload")
