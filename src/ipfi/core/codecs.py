"""Codecs turn call arguments, results and stream items into bytes and back.

Four are built in and negotiated in the handshake: ``msgpack`` (default), ``json``, ``raw``
(bytes only: one positional argument, results and items are bytes) and, with cbor2 installed,
``cbor`` (see cbor_codec.py). Error records always need structure, so ``raw`` encodes them as JSON.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import importlib.util
import json
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import msgpack

from .errors import RemoteProtocolError

Buffer = bytes | bytearray | memoryview
#: An encoded body: bytes, or buffers to send one after the other (so a large binary is not copied).
Body = bytes | list[Buffer]
#: Binary values at least this large are sent from where they are instead of copied into the encoding.
LARGE_BINARY: Final = 64 * 1024
#: JSON text without spaces, non-ASCII kept: what ipfi writes (values, hellos, control and error frames).
compact_json: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: The msgpack packer's buffer starts small (msgpack's default is 256 KiB) and grows to the largest
#: message packed: past this size the connection gives it back a while later (release_buffers).
PACKER_BUFFER: Final = 4 * 1024
_PACKER_FIRST_BUFFER: Final = 256


@dataclass(frozen=True, slots=True)
class CustomType:
    """A Python type the msgpack codec carries as a MessagePack extension type: ``encode`` turns a
    value of ``cls`` (exactly; not its subclasses) into bytes, ``decode`` turns them back. Both ends
    must know the type by the same ``code``: 16-127 are the application's, 0-15 ipfi's (1 is
    ``uuid.UUID``, 2 ``decimal.Decimal``; timezone-aware ``datetime`` travels as MessagePack's own
    timestamp, -1, and arrives in UTC). An extension of a code not known here arrives as a
    ``msgpack.ExtType``. ``decode`` gets the peer's bytes: it may raise ``ValueError`` (or any
    exception) for bad ones, and the message is then refused as undecodable."""

    cls: type
    code: int
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 127:
            raise ValueError(f"an extension type's code is 0..127, not {self.code}")


#: The types the msgpack codec carries beyond MessagePack's own (see :class:`CustomType`).
BUILT_IN_TYPES: Final = (
    CustomType(uuid.UUID, 1, lambda value: value.bytes, lambda data: uuid.UUID(bytes=data)),
    CustomType(decimal.Decimal, 2, lambda value: str(value).encode(), lambda data: decimal.Decimal(data.decode())),
)


class Codec(Protocol):
    """What the RPC layer needs from a codec. Decoders raise :class:`RemoteProtocolError` on bad input
    (what they decode always came from the peer), and nothing else.

    With ``binary_views``, a decoded binary of :data:`LARGE_BINARY` bytes or more (the value itself,
    or an item of a top-level list: call arguments, a result) is a read-only ``memoryview`` of the
    received message instead of a copy in ``bytes``.
    """

    name: str

    def __init__(self, *, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> None: ...

    def encode_value(self, value: Any) -> Body: ...
    def decode_value(self, data: Buffer) -> Any: ...
    def encode_args(self, args: Sequence[Any]) -> Body: ...
    def decode_args(self, data: Buffer) -> list[Any]: ...
    def encode_item(self, item: Any) -> bytes: ...
    def items_packer(self) -> Callable[[Sequence[Any]], bytes]:
        """The quickest callable that encodes items as one ITEMS body (what :meth:`join_items` makes
        of their :meth:`encode_item`): it may raise anything for items it cannot encode
        (:meth:`encode_item` then says which and why). It changes when :meth:`release_buffers` is
        called."""

    def join_items(self, encoded: Sequence[bytes]) -> bytes: ...
    def decode_items(self, data: Buffer) -> list[Any]: ...
    def encode_record(self, record: dict[str, Any]) -> bytes: ...
    def decode_record(self, data: Buffer) -> dict[str, Any]: ...
    def release_buffers(self) -> None:
        """Give back memory grown by a large message (a packer's buffer)."""

    def binary_start(self, head: memoryview, length: int) -> int | None:
        """Where, in an encoding of ``length`` bytes whose first bytes are ``head``, the data of a
        binary of :data:`LARGE_BINARY` bytes or more that ends it begins: a binary that is the value
        or the last item of a top-level list. ``None`` if ``head`` does not show one (nor when the
        binary is viewed anyway, with ``binary_views``). The receiver then reads that binary into a
        ``bytes`` of its own and decodes with :meth:`decode_with_binary`."""

    def decode_with_binary(self, head: Buffer, binary: bytes, *, args: bool = False) -> Any:
        """:meth:`decode_value` (:meth:`decode_args` with ``args``) of ``head`` followed by ``binary``,
        the binary :meth:`binary_start` found in ``head``, which is in the value as it is."""


def joining_items(
    encode_item: Callable[[Any], bytes], join_items: Callable[[list[bytes]], bytes]
) -> Callable[[Sequence[Any]], bytes]:
    """The :meth:`Codec.items_packer` of a codec with no quicker way: the items' encodings, joined."""
    return lambda items: join_items(list(map(encode_item, items)))


class JoiningBinary:
    """``codec``, decoding one message whose last binary was received apart (see
    :meth:`Codec.binary_start`): ``decode_value`` and ``decode_args`` join ``binary`` to the head
    they are given; the rest is ``codec``'s own."""

    def __init__(self, codec: Codec, binary: bytes) -> None:
        self._codec = codec
        self._binary = binary

    def decode_value(self, data: Buffer) -> Any:
        return self._codec.decode_with_binary(data, self._binary)

    def decode_args(self, data: Buffer) -> list[Any]:
        return cast(list[Any], self._codec.decode_with_binary(data, self._binary, args=True))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._codec, name)


class StructuredCodec:
    """A codec whose values can be lists and maps, so args and items are plain lists."""

    name = ""

    def __init__(self, *, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> None:
        self._views = binary_views

    def encode_value(self, value: Any) -> Body:
        raise NotImplementedError

    def decode_value(self, data: Buffer) -> Any:
        raise NotImplementedError

    def encode_args(self, args: Sequence[Any]) -> Body:
        return self.encode_value(args)

    def decode_args(self, data: Buffer) -> list[Any]:
        return self._decode_list(data)

    def encode_item(self, value: Any) -> bytes:
        raise NotImplementedError

    def items_packer(self) -> Callable[[Sequence[Any]], bytes]:
        return joining_items(self.encode_item, self.join_items)

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        raise NotImplementedError

    def decode_items(self, data: Buffer) -> list[Any]:
        return self._decode_list(data)

    def decode_record(self, data: Buffer) -> dict[str, Any]:
        record = self.decode_value(data)
        if not isinstance(record, dict):
            raise RemoteProtocolError(f"{self.name}: expected a map, got {type(record).__name__}")
        return record

    def release_buffers(self) -> None:
        pass  # (JSON keeps no buffer between messages)

    def binary_start(self, head: memoryview, length: int) -> int | None:
        return None  # (JSON has no binaries; cbor2 copies every binary it decodes)

    def decode_with_binary(self, head: Buffer, binary: bytes, *, args: bool = False) -> Any:
        raise NotImplementedError  # (binary_start found none)

    def _decode_list(self, data: Buffer) -> list[Any]:
        value = self.decode_value(data)
        if not isinstance(value, list):
            raise RemoteProtocolError(f"{self.name}: expected a list, got {type(value).__name__}")
        return value


@functools.lru_cache(maxsize=32)
def _extension_hooks(
    custom_types: tuple[CustomType, ...],
) -> tuple[Callable[[Any], msgpack.ExtType], Callable[[int, bytes], Any]]:
    """The packer's ``default`` and the unpacker's ``ext_hook`` for these types (and the built-in
    ones): made once and shared by every connection that uses them."""
    by_class = {custom.cls: custom for custom in (*BUILT_IN_TYPES, *custom_types)}
    by_code = {custom.code: custom.decode for custom in by_class.values()}

    def extension(value: Any) -> msgpack.ExtType:  # (called only for a type msgpack lacks)
        custom = by_class.get(type(value))
        if custom is None:
            if isinstance(value, datetime.datetime):  # (msgpack sends only aware ones)
                raise TypeError("a datetime without a timezone is ambiguous: give it one (e.g. UTC)")
            raise TypeError(f"no extension type for {type(value).__name__} (see ipfi.CustomType)")
        return msgpack.ExtType(custom.code, custom.encode(value))

    def from_extension(code: int, data: bytes) -> Any:
        decode = by_code.get(code)
        return msgpack.ExtType(code, data) if decode is None else decode(data)

    return extension, from_extension


class MsgpackCodec(StructuredCodec):
    """MessagePack via the ``msgpack`` C extension; bytes stay bytes, tuples become lists."""

    name = "msgpack"

    def __init__(self, *, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> None:
        super().__init__(binary_views=binary_views)
        self._extension, from_extension = _extension_hooks(tuple(custom_types))
        self._packb = self._new_packer()
        self._from_extension = from_extension
        self._unpacking = {"strict_map_key": False, "timestamp": 3, "ext_hook": from_extension}

    def _new_packer(self) -> Callable[[Any], bytes]:
        packer = msgpack.Packer(
            use_bin_type=True, autoreset=True, datetime=True, default=self._extension, buf_size=_PACKER_FIRST_BUFFER
        )
        return packer.pack  # type: ignore[no-any-return]

    def release_buffers(self) -> None:
        # The packer never shrinks its buffer, which grows to the largest message it packed.
        self._packb = self._new_packer()

    def items_packer(self) -> Callable[[Sequence[Any]], bytes]:
        return self._packb  # (a list packs as join_items makes it: its length, then each item)

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
            return self._packb(value)
        except _PACK_ERRORS:
            raise self._unencodable(value) from None

    def encode_args(self, args: Sequence[Any]) -> Body:
        for item in args:
            kind = type(item)  # (the test of _in_place, inlined: this runs for every call)
            if (kind is bytes and len(item) >= LARGE_BINARY) or (kind is memoryview and _in_place(item)):
                return self._scatter(args)
        try:
            return self._packb(args)
        except _PACK_ERRORS:
            raise self._unencodable(args) from None

    def decode_args(self, data: Buffer) -> list[Any]:
        if len(data) < BUDGETED:  # decode_value's first case, inlined: this runs for every call
            try:
                args = _unpackb(data, strict_map_key=False, timestamp=3, ext_hook=self._from_extension)
            except Exception:
                args = self.decode_value(data)  # (to raise what it raises, or retry with tuple keys)
        else:
            args = self.decode_value(data)
        if type(args) is not list:
            raise RemoteProtocolError(f"msgpack: expected a list, got {type(args).__name__}")
        return args

    def _encode(self, value: Any) -> bytes:
        """The encoding as one bytes object."""
        try:
            return self._packb(value)
        except _PACK_ERRORS:
            raise self._unencodable(value) from None

    def _unencodable(self, value: Any) -> Unencodable:
        # (every key Python can hash arrives, tuples as tuples: see _map_with_tuple_keys)
        path, part = locate(value, succeeds(self._packb, _PACK_ERRORS), lambda key: True)
        try:
            self._packb(part)
        except _PACK_ERRORS as exc:
            return Unencodable("msgpack", path, f"{type(part).__name__}: {exc}")
        return Unencodable("msgpack", path, f"{type(part).__name__} cannot be encoded")

    encode_item = encode_record = _encode  # (aliases, not calls: an item is encoded per item streamed)

    def _scatter(self, values: Sequence[Any]) -> list[Buffer]:
        """``values`` encoded as pieces: each large binary as it is, the encoding before it joined
        into one ``bytes`` (so a message's headers and its first binary's go out as one piece)."""
        parts: list[Buffer] = []
        encoded = _array_header(len(values))
        for value in values:
            if _in_place(value):
                parts += (encoded + _bin_header(len(value)), value)
                encoded = b""
            else:
                encoded += self._encode(value)
        if encoded:
            parts.append(encoded)
        return parts

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        return _array_header(len(encoded)) + b"".join(encoded)

    def binary_start(self, head: memoryview, length: int) -> int | None:
        if self._views:  # (viewed where it was received: no copy to save)
            return None
        layout = _trailing_binary(head, length)
        return None if layout is None else layout[3]

    def decode_with_binary(self, head: Buffer, binary: bytes, *, args: bool = False) -> Any:
        layout = _trailing_binary(memoryview(head), len(head) + len(binary))
        if layout is None or layout[3] != len(head):
            raise RemoteProtocolError("msgpack: a message split before its last binary does not end with one")
        count, start, end, _ = layout
        if count < 0:
            value: Any = binary
        elif count == 1:
            value = [binary]
        else:  # the items before the binary, decoded as a list of their own (with decode_value's checks)
            value = self.decode_value(_array_header(count - 1) + bytes(head[start:end]))
            value.append(binary)
        if args and type(value) is not list:
            raise RemoteProtocolError(f"msgpack: expected a list, got {type(value).__name__}")
        return value

    def decode_value(self, data: Buffer) -> Any:
        unpacking = self._unpacking
        try:
            if len(data) < BUDGETED:  # (keywords written out: a ** call costs more, on every message)
                return _unpackb(data, strict_map_key=False, timestamp=3, ext_hook=self._from_extension)
            if self._views:
                return _decode_viewing(data, unpacking)
            return _unpackb(data, **unpacking, **_budget(data))
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise undecodable(data, exc) from None
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise undecodable(data, exc) from None
        # A map keyed by an array (a Python tuple, as the sender had it): decoded again, slowly,
        # with such keys made tuples. The common case pays nothing for this.
        try:
            if len(data) < BUDGETED:
                return _unpackb(data, **unpacking, object_pairs_hook=_map_with_tuple_keys)
            return _unpackb(data, **unpacking, **_budget(data, tuple_keys=True))
        except Exception as exc:
            raise undecodable(data, exc) from None


def _map_with_tuple_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(key): value for key, value in pairs}


def _hashable(key: Any) -> Any:
    if type(key) is list:
        return tuple(_hashable(item) for item in key)
    if type(key) is dict:
        raise TypeError("a map cannot be a map key")
    return key


def undecodable(data: Buffer, exc: BaseException, codec: str = "msgpack") -> RemoteProtocolError:
    return RemoteProtocolError(f"{codec}: cannot decode {len(data)} bytes: {exc}")


_unpackb = msgpack.unpackb  # msgpack ≥ 1.0 decodes str as str (raw=False) by default

#: Messages this large or larger are decoded within a structure budget: at most one list or map per
#: :data:`BYTES_PER_CONTAINER` bytes. An empty list costs 1 byte to send and 64 to hold: without a
#: budget, 16 MiB of them took 1 GiB; within it, the worst a peer can make of a message is about 21
#: times its size (short strings; measured), and data that is not that dense passes unchanged.
BUDGETED: Final = LARGE_BINARY
BYTES_PER_CONTAINER: Final = 4


def _budget(data: Buffer, *, tuple_keys: bool = False) -> dict[str, Any]:
    """``unpackb``/``Unpacker`` hooks that count lists and maps and stop past the budget (and,
    with ``tuple_keys``, make array keys of maps tuples)."""
    left = len(data) // BYTES_PER_CONTAINER

    def spend(container: Any) -> Any:
        nonlocal left
        left -= 1
        if left < 0:
            raise ValueError(f"more than one list or map per {BYTES_PER_CONTAINER} bytes")
        return container

    if tuple_keys:
        return {"list_hook": spend, "object_pairs_hook": lambda pairs: spend(_map_with_tuple_keys(pairs))}
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
_BIN32: Final = 0xC6
_unpack_u32 = struct.Struct(">I").unpack_from


def _decode_viewing(data: Buffer, unpacking: dict[str, Any]) -> Any:
    """``unpackb``, except that a binary of :data:`LARGE_BINARY` bytes or more, as the value or an
    item of a top-level array, is a read-only view of ``data`` rather than a copy."""
    view = memoryview(data).toreadonly()
    first = view[0]
    if first in _MSGPACK_BIN_SIZES:
        return _whole(view, *_decode_item(view, 0, unpacking))
    if 0x90 <= first <= 0x9F:
        count, offset = first & 0x0F, 1
    elif first in _MSGPACK_ARRAYS:
        size = _MSGPACK_ARRAYS[first]
        (count,) = size.unpack_from(view, 1)
        offset = 1 + size.size
    else:
        return _unpackb(view, **unpacking, **_budget(view))
    hooks = {**unpacking, **_budget(view)}
    items = []
    for _ in range(count):
        item, offset = _decode_item(view, offset, hooks)
        items.append(item)
    return _whole(view, items, offset)


def _trailing_binary(head: memoryview, length: int) -> tuple[int, int, int, int] | None:
    """If the msgpack value of ``length`` bytes that begins with ``head`` ends with a binary of
    :data:`LARGE_BINARY` bytes or more whose header is in ``head``, as the value itself or as the
    last item of a top-level array: ``(count, start, end, data)``, the array's count (-1 for the
    binary alone), where the items before the binary begin and where they end, and where the
    binary's data begins. Malformed or cut short: ``None`` (decoding says what is wrong)."""
    if not head:
        return None
    first = head[0]
    # The shapes nearly every large binary comes in, a result that is the binary and the arguments
    # of a call that takes one: nothing to skip, a bin32 header (65,536 bytes or more) in its place.
    if first == _BIN32 and len(head) >= 5:
        (binary_length,) = _unpack_u32(head, 1)
        return (-1, 0, 0, 5) if binary_length >= LARGE_BINARY and binary_length + 5 == length else None
    if first == 0x91 and len(head) >= 6 and head[1] == _BIN32:
        (binary_length,) = _unpack_u32(head, 2)
        return (1, 1, 1, 6) if binary_length >= LARGE_BINARY and binary_length + 6 == length else None
    count = -1
    offset = 0
    if 0x91 <= first <= 0x9F:
        count, offset = first & 0x0F, 1
    elif first in _MSGPACK_ARRAYS:
        size = _MSGPACK_ARRAYS[first]
        if len(head) < 1 + size.size:
            return None
        (count,) = size.unpack_from(head, 1)
        offset = 1 + size.size
    elif first not in _MSGPACK_BIN_SIZES:
        return None
    start = offset
    if count > 1:  # skip the items before the last: all in head, or no split
        unpacker = msgpack.Unpacker(max_buffer_size=len(head))
        unpacker.feed(head[offset:])
        try:
            for _ in range(count - 1):
                unpacker.skip()
        except Exception:  # (msgpack.OutOfData, or the several kinds of malformed)
            return None
        offset += unpacker.tell()
    elif count == 0:
        return None
    if offset >= len(head) or (length_field := _MSGPACK_BIN_SIZES.get(head[offset])) is None:
        return None
    data = offset + 1 + length_field.size
    if data > len(head):
        return None
    (binary_length,) = length_field.unpack_from(head, offset + 1)
    if binary_length < LARGE_BINARY or data + binary_length != length:
        return None
    return count, start, offset, data


def _whole(view: memoryview, value: Any, end: int) -> Any:
    if end != len(view):
        raise ValueError(f"{len(view) - end} bytes after the value")
    return value


def _decode_item(view: memoryview, offset: int, hooks: dict[str, Any]) -> tuple[Any, int]:
    """The value starting at ``offset`` and the offset after it (``hooks``: the unpacker's options,
    the budget's among them: see :func:`_budget`)."""
    size = _MSGPACK_BIN_SIZES.get(view[offset])
    if size is not None:
        (length,) = size.unpack_from(view, offset + 1)
        start = offset + 1 + size.size
        end = start + length
        if end > len(view):
            raise ValueError("a binary runs past the end of its message")
        return (view[start:end] if length >= LARGE_BINARY else bytes(view[start:end])), end
    # Fed a piece at a time, doubling, so that a later large binary is not copied into the unpacker.
    unpacker = msgpack.Unpacker(max_buffer_size=len(view), **hooks)
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


class Unencodable(TypeError):
    """A value the codec cannot encode (or the peer's codec could not decode). ``path`` leads from
    the value given to the part at fault: list indexes and map keys."""

    def __init__(self, codec: str, path: list[Any], reason: str) -> None:
        self.codec = codec
        self.path = path
        self.reason = reason
        super().__init__(self._text(_show_path(path)))

    def _text(self, where: str) -> str:
        return f"{self.codec} cannot send {where}: {self.reason}"

    def within_call(self, positional: int, keywords: dict[str, Any] | None) -> Unencodable:
        """The same error, its path told as the argument of a call (``positional`` arguments, then
        the keyword map, as the core encodes them)."""
        if not self.path or not isinstance(self.path[0], int):
            return self
        first, rest = self.path[0], self.path[1:]
        if first < positional:
            where = f"argument {first}"
        elif keywords and rest:
            where, rest = f"keyword argument {rest[0]!r}", rest[1:]
        else:
            where = "the keyword arguments"
        error = Unencodable(self.codec, self.path, self.reason)
        error.args = (error._text(where + _show_path(rest, prefix="")),)
        return error


def _show_path(path: list[Any], prefix: str = "the value") -> str:
    return prefix + "".join(f"[{step!r}]" for step in path)


def locate(value: Any, encodes: Callable[[Any], bool], key_fits: Callable[[Any], bool]) -> tuple[list[Any], Any]:
    """Where in ``value`` (which does not encode) the fault lies: the path to the innermost part
    that does not encode (or whose map key does not fit), and that part. Only run on failure."""
    path: list[Any] = []
    while True:
        if isinstance(value, dict):
            bad_key = next((key for key in value if not key_fits(key)), _NOTHING)
            if bad_key is not _NOTHING:
                return path, bad_key
            children: Any = value.items()
        elif isinstance(value, list | tuple):
            children = enumerate(value)
        else:
            return path, value
        for step, child in children:
            if not encodes(child):
                path.append(step)
                value = child
                break
        else:
            return path, value


_NOTHING: Final = object()
_PACK_ERRORS: Final = (TypeError, ValueError, OverflowError)


def succeeds(encode: Callable[[Any], Any], errors: tuple[type[Exception], ...]) -> Callable[[Any], bool]:
    """Whether ``encode`` takes a value without raising one of ``errors`` (for :func:`locate`)."""

    def encodes(part: Any) -> bool:
        try:
            encode(part)
        except errors:
            return False
        return True

    return encodes


class JsonCodec(StructuredCodec):
    """Compact UTF-8 JSON; bytes cannot be sent (encode them yourself)."""

    name = "json"

    def __init__(self, *, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> None:
        super().__init__(binary_views=binary_views)  # JSON has no binaries: nothing to view
        self._dumps = compact_json

    def encode_value(self, value: Any) -> bytes:
        try:
            text = self._dumps(value)
        except (TypeError, ValueError, RecursionError):
            raise self._unencodable(value) from None
        if "{" in text and not _string_keys_only(value):  # (JSON would make other keys strings)
            raise self._unencodable(value)
        return text.encode()

    encode_item = encode_record = encode_value

    def _unencodable(self, value: Any) -> Unencodable:
        dumps = succeeds(self._dumps, (TypeError, ValueError, RecursionError))

        def encodes(part: Any) -> bool:
            return dumps(part) and _string_keys_only(part)

        path, part = locate(value, encodes, _is_str)
        if isinstance(part, dict | list | tuple) or encodes(part):
            return Unencodable("json", path, f"the map key {part!r} is not a string")
        return Unencodable("json", path, f"{type(part).__name__} is not a JSON type")

    def join_items(self, encoded: Sequence[bytes]) -> bytes:
        return b"[" + b",".join(encoded) + b"]"

    def decode_value(self, data: Buffer) -> Any:
        return decode_json(data, "json")


def _is_str(key: Any) -> bool:
    return type(key) is str


def _string_keys_only(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(key) is str for key in value) and all(_string_keys_only(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_string_keys_only(item) for item in value)
    return True


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

    def __init__(self, *, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> None:
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

    def items_packer(self) -> Callable[[Sequence[Any]], bytes]:
        return joining_items(self.encode_item, self.join_items)

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

    def release_buffers(self) -> None:
        pass  # (it keeps no buffer between messages)

    def binary_start(self, head: memoryview, length: int) -> int | None:
        return 0 if length >= LARGE_BINARY and not self._views else None  # (the whole body is the binary)

    def decode_with_binary(self, head: Buffer, binary: bytes, *, args: bool = False) -> Any:
        if len(head):
            raise RemoteProtocolError("raw: a message split before its binary holds other bytes")
        return [binary] if args else binary


def _raw_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"the raw codec sends bytes only, not {type(value).__name__}")
    return bytes(value)


def _cbor(*, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> Codec:
    from .cbor_codec import CborCodec  # (its module imports this one)

    return CborCodec(binary_views=binary_views, custom_types=custom_types)


CODECS: Final[dict[str, Callable[..., Codec]]] = {
    MsgpackCodec.name: MsgpackCodec,
    JsonCodec.name: JsonCodec,
    RawCodec.name: RawCodec,
    "cbor": _cbor,
}
#: What a peer offers and accepts unless told otherwise: every codec installed (cbor needs cbor2).
DEFAULT_CODECS: Final = ("msgpack", "json", "raw") + (("cbor",) if importlib.util.find_spec("cbor2") else ())


def get_codec(name: str, *, binary_views: bool = False, custom_types: Sequence[CustomType] = ()) -> Codec:
    """A new codec instance by its negotiated name."""
    try:
        return CODECS[name](binary_views=binary_views, custom_types=custom_types)
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None
