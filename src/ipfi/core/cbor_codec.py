"""CBOR (RFC 8949) via ``cbor2``, negotiated as ``cbor`` (``pip install 'ipfi[cbor]'``).

It carries what the msgpack codec carries, as CBOR's own types: None, bools, numbers (big integers
as bignums, tags 2 and 3), text, bytes, arrays, maps with any hashable keys, timezone-aware
``datetime`` (tag 0, ISO text), ``Decimal`` (tag 4) and ``UUID`` (tag 37); a :class:`CustomType`
travels as tag 65536 + its code around its bytes. Nothing else: cbor2 also decodes tags into
regular expressions it compiles, MIME messages it parses, shared references that make cycles,
string references, fractions, sets and IP addresses, none of which a peer may make us build; a
message with one of those tags is refused as undecodable (an unknown tag arrives as a
``cbor2.CBORTag``, as an unknown msgpack extension arrives as an ``ExtType``).
"""

from __future__ import annotations

import datetime
import email.message
import fractions
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from .codecs import (
    BUDGETED,
    BYTES_PER_CONTAINER,
    Buffer,
    CustomType,
    StructuredCodec,
    Unencodable,
    locate,
    succeeds,
    undecodable,
)
from .errors import RemoteProtocolError

try:
    import cbor2
except ImportError:  # (the codec is offered only when it is installed: see CODECS)
    cbor2 = None  # type: ignore[assignment]

#: cbor2's semantic tags that build what ipfi does not carry (see the module's docstring).
REFUSED_TAGS: Final = (5, 21, 22, 23, 24, 25, 28, 29, 30, 32, 33, 34, 35, 36, 52, 54, 100, 256, 258, 260, 261, 1004)
#: What cbor2 would encode as one of the tags refused above: refused when sent too (as msgpack does).
NOT_CARRIED: Final = (
    set,
    frozenset,
    fractions.Fraction,
    re.Pattern,
    email.message.Message,
    datetime.date,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)
#: A :class:`CustomType` of code ``n`` travels as CBOR tag ``CUSTOM_TAGS + n``.
CUSTOM_TAGS: Final = 65536
#: Arrays and maps nested deeper than this are refused (cbor2's own bound, stated).
MAX_DEPTH: Final = 400


def _refuse(tag: int) -> Callable[..., Any]:
    def refuse(*_: Any) -> Any:
        raise ValueError(f"CBOR tag {tag} is not carried by ipfi")

    return refuse


def _cbor_array_header(count: int) -> bytes:
    if count < 24:
        return bytes((0x80 | count,))
    for marker, size in ((0x98, 1), (0x99, 2), (0x9A, 4)):
        if count < 1 << (8 * size):
            return bytes((marker,)) + count.to_bytes(size, "big")
    return b"\x9b" + count.to_bytes(8, "big")


class CborCodec(StructuredCodec):
    """CBOR via ``cbor2``'s C extension; bytes stay bytes, tuples become lists."""

    name = "cbor"

    def __init__(self, *, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> None:
        super().__init__(binary_views=binary_views)  # (cbor2 copies every binary it decodes)
        if cbor2 is None:
            raise ValueError("the cbor codec needs cbor2: pip install 'ipfi[cbor]'")
        by_tag = {CUSTOM_TAGS + custom.code: custom for custom in custom_types}
        self._decoders: dict[int, Any] = {tag: _refuse(tag) for tag in REFUSED_TAGS}
        for tag, custom in by_tag.items():
            self._decoders[tag] = lambda value, _immutable, custom=custom: custom.decode(value)
        encoders: dict[type, Any] = dict.fromkeys(NOT_CARRIED, _unknown)
        for custom in custom_types:
            tag = CUSTOM_TAGS + custom.code
            encoders[custom.cls] = lambda encoder, value, tag=tag, custom=custom: encoder.encode(
                cbor2.CBORTag(tag, custom.encode(value))
            )
        self._encoders = encoders

    def _dumps(self, value: Any) -> bytes:
        data: bytes = cbor2.dumps(value, encoders=self._encoders, default=_unknown)
        return data

    def encode_value(self, value: Any) -> bytes:
        try:
            return self._dumps(value)
        except _ENCODE_ERRORS:
            raise self._unencodable(value) from None

    encode_item = encode_record = encode_value

    def _unencodable(self, value: Any) -> Unencodable:
        encodes = succeeds(self._dumps, _ENCODE_ERRORS)
        path, part = locate(value, encodes, lambda key: True)
        try:
            self._dumps(part)
        except _ENCODE_ERRORS as exc:
            return Unencodable("cbor", path, f"{type(part).__name__}: {exc}")
        return Unencodable("cbor", path, f"{type(part).__name__} cannot be encoded")

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        return _cbor_array_header(len(encoded)) + b"".join(encoded)

    def decode_value(self, data: Buffer) -> Any:
        if len(data) >= BUDGETED and not _within_budget(bytes(data)):
            raise RemoteProtocolError(f"cbor: more than one array or map per {BYTES_PER_CONTAINER} bytes")
        try:
            return cbor2.loads(data, semantic_decoders=self._decoders, max_depth=MAX_DEPTH)
        except RecursionError:
            raise RemoteProtocolError("cbor: nested too deeply") from None
        except Exception as exc:  # cbor2 raises CBORDecodeError, with what a tag's decoder raised as its cause
            raise undecodable(data, exc.__cause__ or exc, "cbor") from None


#: Every byte but those that begin an array or a map (major types 4 and 5).
_NOT_CONTAINERS: Final = bytes(byte for byte in range(256) if not 0x80 <= byte < 0xC0)


def _within_budget(data: bytes) -> bool:
    """Whether ``data`` holds at most one array or map per :data:`BYTES_PER_CONTAINER` bytes, as
    the msgpack codec allows (a Python list costs 56 bytes, an empty CBOR array one). Bytes that
    could begin one are counted first, at C speed: only when they could be too many are the items
    walked, header by header (what is malformed is left to the decoder)."""
    limit = len(data) // BYTES_PER_CONTAINER
    if len(data.translate(None, _NOT_CONTAINERS)) <= limit:
        return True
    position, end, containers = 0, len(data), 0
    while position < end:
        initial = data[position]
        position += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            argument = info
        elif info < 28:
            size = 1 << (info - 24)
            argument = int.from_bytes(data[position : position + size], "big")
            position += size
        else:
            argument = 0  # (indefinite length, or a reserved value the decoder refuses)
        if major in {4, 5}:
            containers += 1
            if containers > limit:
                return False
        elif major in {2, 3} and info != 31:
            position += argument  # (a byte or text string's content)
    return True


def _unknown(encoder: Any, value: Any) -> None:
    """cbor2's ``default``, and the encoder of what is not carried."""
    raise TypeError("not a CBOR type ipfi carries")


_ENCODE_ERRORS: Final = (TypeError, ValueError, RecursionError, OverflowError) + (
    (cbor2.CBOREncodeError,) if cbor2 is not None else ()
)
