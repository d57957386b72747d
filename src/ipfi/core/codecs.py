"""Codecs turn call arguments, results and stream items into bytes and back.

Three are built in and negotiated in the handshake: ``msgpack`` (default), ``json`` and ``raw``
(bytes only: one positional argument, results and items are bytes). Error records always need
structure, so ``raw`` encodes them as JSON.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, Final, Protocol

import msgpack

from .errors import RemoteProtocolError

Buffer = bytes | bytearray | memoryview
#: An encoded body: bytes, or buffers to send one after the other (so a large binary is not copied).
Body = bytes | list[Buffer]
#: Binary values at least this large are sent from where they are instead of copied into the encoding.
LARGE_BINARY: Final = 64 * 1024


class Codec(Protocol):
    """What the RPC layer needs from a codec. Decoders raise :class:`RemoteProtocolError` on bad input
    (what they decode always came from the peer), and nothing else.

    With ``binary_views``, a decoded binary of :data:`LARGE_BINARY` bytes or more (the value itself,
    or an item of a top-level list: call arguments, a result) is a read-only ``memoryview`` of the
    received message instead of a copy in ``bytes``.
    """

    name: str

    def __init__(self, *, binary_views: bool = False) -> None: ...

    def encode_value(self, value: Any) -> Body: ...
    def decode_value(self, data: Buffer) -> Any: ...
    def encode_args(self, args: Sequence[Any]) -> Body: ...
    def decode_args(self, data: Buffer) -> list[Any]: ...
    def encode_item(self, item: Any) -> bytes: ...
    def join_items(self, encoded: Sequence[bytes]) -> bytes: ...
    def decode_items(self, data: Buffer) -> list[Any]: ...
    def encode_record(self, record: dict[str, Any]) -> bytes: ...
    def decode_record(self, data: Buffer) -> dict[str, Any]: ...


class _StructuredCodec:
    """A codec whose values can be lists and maps, so args and items are plain lists."""

    name = ""

    def __init__(self, *, binary_views: bool = False) -> None:
        self._views = binary_views

    def encode_value(self, value: Any) -> Body:
        raise NotImplementedError

    def decode_value(self, data: Buffer) -> Any:
        raise NotImplementedError

    def encode_args(self, args: Sequence[Any]) -> Body:
        return self.encode_value(args)

    def decode_args(self, data: Buffer) -> list[Any]:
        return self._decode_list(data)

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        raise NotImplementedError

    def decode_items(self, data: Buffer) -> list[Any]:
        return self._decode_list(data)

    def decode_record(self, data: Buffer) -> dict[str, Any]:
        record = self.decode_value(data)
        if not isinstance(record, dict):
            raise RemoteProtocolError(f"{self.name}: expected a map, got {type(record).__name__}")
        return record

    def _decode_list(self, data: Buffer) -> list[Any]:
        value = self.decode_value(data)
        if not isinstance(value, list):
            raise RemoteProtocolError(f"{self.name}: expected a list, got {type(value).__name__}")
        return value


class MsgpackCodec(_StructuredCodec):
    """MessagePack via the ``msgpack`` C extension; bytes stay bytes, tuples become lists."""

    name = "msgpack"

    def __init__(self, *, binary_views: bool = False) -> None:
        super().__init__(binary_views=binary_views)
        self._packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack

    def encode_value(self, value: Any) -> Body:
        """The encoding; a large binary, alone or in a top-level list, is referenced, not copied."""
        kind = type(value)
        if kind is bytes:  # the commonest case first: a small binary goes straight to the packer
            if len(value) >= LARGE_BINARY:
                return [_bin_header(len(value)), value]
        elif kind is list or kind is tuple:
            return self.encode_args(value)  # its test per item is inlined; a Python call per item is not
        elif kind is memoryview and _in_place(value):
            return [_bin_header(len(value)), value]
        try:
            return self._packb(value)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unencodable(value, exc) from None

    def encode_args(self, args: Sequence[Any]) -> Body:
        for item in args:
            kind = type(item)  # (the test of _in_place, inlined: this runs for every call)
            if (kind is bytes and len(item) >= LARGE_BINARY) or (kind is memoryview and _in_place(item)):
                return self._scatter(args)
        try:
            return self._packb(args)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unencodable(args, exc) from None

    def decode_args(self, data: Buffer) -> list[Any]:
        try:
            if len(data) < BUDGETED:
                args = _unpackb(data, strict_map_key=False)
            elif self._views:
                args = _decode_viewing(data)
            else:
                args = _unpackb(data, strict_map_key=False, **_budget(data))
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise _undecodable(data, exc) from None
        if type(args) is not list:
            raise RemoteProtocolError(f"msgpack: expected a list, got {type(args).__name__}")
        return args

    def _encode(self, value: Any) -> bytes:
        """The encoding as one bytes object."""
        try:
            return self._packb(value)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unencodable(value, exc) from None

    encode_item = encode_record = _encode  # (aliases, not calls: an item is encoded per item streamed)

    def _scatter(self, values: Sequence[Any]) -> list[Buffer]:
        parts: list[Buffer] = [_array_header(len(values))]
        for value in values:
            if _in_place(value):
                parts += (_bin_header(len(value)), value)
            else:
                parts.append(self._encode(value))
        return parts

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        return _array_header(len(encoded)) + b"".join(encoded)

    def decode_value(self, data: Buffer) -> Any:
        try:
            if len(data) < BUDGETED:
                return _unpackb(data, strict_map_key=False)
            if self._views:
                return _decode_viewing(data)
            return _unpackb(data, strict_map_key=False, **_budget(data))
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise _undecodable(data, exc) from None


def _undecodable(data: Buffer, exc: Exception) -> RemoteProtocolError:
    return RemoteProtocolError(f"msgpack: cannot decode {len(data)} bytes: {exc}")


_unpackb = msgpack.unpackb  # msgpack ≥ 1.0 decodes str as str (raw=False) by default

#: Messages this large or larger are decoded within a structure budget: at most one list or map per
#: :data:`BYTES_PER_CONTAINER` bytes. An empty list costs 1 byte to send and 64 to hold: without a
#: budget, 16 MiB of them took 1 GiB; within it, the worst a peer can make of a message is about 21
#: times its size (short strings; measured), and data that is not that dense passes unchanged.
BUDGETED: Final = LARGE_BINARY
BYTES_PER_CONTAINER: Final = 4


def _budget(data: Buffer) -> dict[str, Any]:
    """``unpackb``/``Unpacker`` hooks that count lists and maps and stop past the budget."""
    left = len(data) // BYTES_PER_CONTAINER

    def spend(container: Any) -> Any:
        nonlocal left
        left -= 1
        if left < 0:
            raise ValueError(f"more than one list or map per {BYTES_PER_CONTAINER} bytes")
        return container

    return {"list_hook": spend, "object_hook": spend}


def _in_place(value: Any) -> bool:
    """Whether a binary is sent from where it is rather than copied into the encoding: ``bytes`` or a
    read-only, contiguous ``memoryview`` of bytes, of :data:`LARGE_BINARY` bytes or more. (A
    writable buffer could change between now and the write.)"""
    kind = type(value)
    if kind is bytes:
        return len(value) >= LARGE_BINARY
    return (
        kind is memoryview
        and value.readonly
        and value.format == "B"
        and value.nbytes >= LARGE_BINARY
        and value.c_contiguous
    )


_MSGPACK_BIN_SIZES: Final = {0xC4: struct.Struct(">B"), 0xC5: struct.Struct(">H"), 0xC6: struct.Struct(">I")}
_MSGPACK_ARRAYS: Final = {0xDC: struct.Struct(">H"), 0xDD: struct.Struct(">I")}


def _decode_viewing(data: Buffer) -> Any:
    """``unpackb``, except that a binary of :data:`LARGE_BINARY` bytes or more, as the value or an
    item of a top-level array, is a read-only view of ``data`` rather than a copy."""
    view = memoryview(data).toreadonly()
    first = view[0]
    if first in _MSGPACK_BIN_SIZES:
        return _whole(view, *_decode_item(view, 0, {}))
    if 0x90 <= first <= 0x9F:
        count, offset = first & 0x0F, 1
    elif first in _MSGPACK_ARRAYS:
        size = _MSGPACK_ARRAYS[first]
        (count,) = size.unpack_from(view, 1)
        offset = 1 + size.size
    else:
        return _unpackb(view, strict_map_key=False, **_budget(view))
    budget = _budget(view)
    items = []
    for _ in range(count):
        item, offset = _decode_item(view, offset, budget)
        items.append(item)
    return _whole(view, items, offset)


def _whole(view: memoryview, value: Any, end: int) -> Any:
    if end != len(view):
        raise ValueError(f"{len(view) - end} bytes after the value")
    return value


def _decode_item(view: memoryview, offset: int, budget: dict[str, Any]) -> tuple[Any, int]:
    """The value starting at ``offset`` and the offset after it (``budget``: see :func:`_budget`)."""
    size = _MSGPACK_BIN_SIZES.get(view[offset])
    if size is not None:
        (length,) = size.unpack_from(view, offset + 1)
        start = offset + 1 + size.size
        end = start + length
        if end > len(view):
            raise ValueError("a binary runs past the end of its message")
        return (view[start:end] if length >= LARGE_BINARY else bytes(view[start:end])), end
    # Fed a piece at a time, doubling, so that a later large binary is not copied into the unpacker.
    unpacker = msgpack.Unpacker(strict_map_key=False, max_buffer_size=len(view), **budget)
    fed = offset
    step = 4096
    while True:
        stop = min(fed + step, len(view))
        unpacker.feed(view[fed:stop])
        fed = stop
        try:
            return unpacker.unpack(), offset + unpacker.tell()
        except msgpack.OutOfData:
            if fed == len(view):
                raise ValueError("the message ends inside a value") from None
            step *= 2


def _unencodable(value: Any, exc: Exception) -> TypeError:
    return TypeError(f"msgpack cannot encode {type(value).__name__}: {exc}")


class JsonCodec(_StructuredCodec):
    """Compact UTF-8 JSON; bytes cannot be sent (encode them yourself)."""

    name = "json"

    def __init__(self, *, binary_views: bool = False) -> None:
        super().__init__(binary_views=binary_views)  # JSON has no binaries: nothing to view
        self._dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def encode_value(self, value: Any) -> bytes:
        return self._dumps(value).encode()

    encode_item = encode_record = encode_value

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        return b"[" + b",".join(encoded) + b"]"

    def decode_value(self, data: Buffer) -> Any:
        return decode_json(data, "json")


def decode_json(data: Buffer, what: str) -> Any:
    """Strict JSON of a peer: UTF-8 only (no BOM, no UTF-16, which ``json.loads`` of bytes would
    guess); anything else, nesting deep enough to exhaust the stack included, raises
    :class:`RemoteProtocolError` naming ``what``."""
    try:
        return json.loads(str(data, "utf-8"))
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{what}: {len(data)} bytes are not UTF-8") from None
    except ValueError as exc:
        raise RemoteProtocolError(f"{what}: {len(data)} bytes are not JSON: {exc}") from None
    except RecursionError:
        raise RemoteProtocolError(f"{what}: JSON nested too deeply") from None


_ITEM_LENGTH = struct.Struct("<I")
_MSGPACK_ARRAY16 = struct.Struct(">BH")
_MSGPACK_ARRAY32 = struct.Struct(">BI")


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count <= 0xFFFF:
        return _MSGPACK_ARRAY16.pack(0xDC, count)
    return _MSGPACK_ARRAY32.pack(0xDD, count)


def _bin_header(size: int) -> bytes:
    return _MSGPACK_ARRAY32.pack(0xC6, size)  # bin 32: the size is known to exceed bin 16


class RawCodec:
    """Bytes as they are: a call takes at most one positional bytes argument; items are length-prefixed."""

    name = "raw"

    def __init__(self, *, binary_views: bool = False) -> None:
        self._views = binary_views
        self._records = JsonCodec()

    def encode_value(self, value: Any) -> Body:
        if type(value) is memoryview and _in_place(value):
            return [value]
        return _raw_bytes(value)

    def decode_value(self, data: Buffer) -> bytes | memoryview:
        if self._views and len(data) >= LARGE_BINARY:
            return memoryview(data).toreadonly()
        return bytes(data)

    def encode_args(self, args: Sequence[Any]) -> Body:
        if len(args) > 1:
            raise TypeError("the raw codec sends at most one positional bytes argument")
        return self.encode_value(args[0]) if args else b""

    def decode_args(self, data: Buffer) -> list[Any]:
        return [self.decode_value(data)] if len(data) else []

    def encode_item(self, item: Any) -> bytes:
        encoded = _raw_bytes(item)
        return _ITEM_LENGTH.pack(len(encoded)) + encoded

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        return b"".join(encoded)

    def decode_items(self, data: Buffer) -> list[Any]:
        view = memoryview(data)
        items = []
        offset = 0
        while offset < len(view):
            if offset + 4 > len(view):
                raise RemoteProtocolError("raw: truncated item length")
            (length,) = _ITEM_LENGTH.unpack_from(view, offset)
            offset += 4
            if offset + length > len(view):
                raise RemoteProtocolError("raw: item longer than its message")
            items.append(bytes(view[offset : offset + length]))
            offset += length
        return items

    def encode_record(self, record: dict[str, Any]) -> bytes:
        return self._records.encode_record(record)

    def decode_record(self, data: Buffer) -> dict[str, Any]:
        return self._records.decode_record(data)


def _raw_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"the raw codec sends bytes only, not {type(value).__name__}")
    return bytes(value)


CODECS: Final[dict[str, type[Codec]]] = {
    MsgpackCodec.name: MsgpackCodec,
    JsonCodec.name: JsonCodec,
    RawCodec.name: RawCodec,
}
DEFAULT_CODECS: Final = ("msgpack", "json", "raw")


def get_codec(name: str, *, binary_views: bool = False) -> Codec:
    """A new codec instance by its negotiated name."""
    try:
        return CODECS[name](binary_views=binary_views)
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None
