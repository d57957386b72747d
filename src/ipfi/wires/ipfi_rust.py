"""IPFI's wire (the Rust IPFI 0.1, framesurge/ipfi), as observed byte for byte (``ipfi-rust.json``).

Four message types: Termination (``00``, the sender ends the connection), End-of-input (``03``,
the sender is done writing for now), and Call (``01``) and Response (``02``)::

    type u8 | multiflag u8 | procedure index | call index | payload length n | n payload bytes

The three integers are little-endian, each 1, 2, 4 or 8 bytes wide, as the multiflag says: its bit i
(least significant first) is element i of ``[p.0, p.1, c.0, c.1, n.0, n.1, t.0, t.1]``, a width pair
being u8 (0,0), u16 (0,1), u32 (1,0), u64 (1,1), and the terminator pair Complete (1,1), Chunk (1,0)
or None (0,0). A value may be split across messages (terminator None: more bytes of it follow);
Chunk ends one value of a stream, Complete the last. Arguments are msgpack values concatenated
without an array header; a result is one msgpack value.

IPFI trusted every length a peer sent (a header claiming 2^46 bytes aborted it): here a message's
payload, and a value put together from pieces, are refused past their limits before any memory is
taken for them, and memory follows the bytes actually received.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from ..core.errors import FrameError, FrameTooLarge, RemoteProtocolError

TERMINATION: Final = 0
CALL: Final = 1
RESPONSE: Final = 2
END_OF_INPUT: Final = 3

#: The largest payload one message may announce (IPFI has none; ipfi's frames allow 16 MiB).
DEFAULT_MAX_PAYLOAD: Final = 16 * 1024 * 1024
#: The largest value put together from pieces (ipfi's messages allow 64 MiB).
DEFAULT_MAX_VALUE: Final = 64 * 1024 * 1024


class Terminator(enum.Enum):
    """How a message's payload ends (see the module's docstring)."""

    COMPLETE = (1, 1)
    CHUNK = (1, 0)
    NONE = (0, 0)


@dataclass(frozen=True, slots=True)
class Message:
    """A Call or a Response."""

    kind: int  # CALL or RESPONSE
    procedure: int
    call: int
    payload: bytes
    terminator: Terminator = Terminator.COMPLETE


@dataclass(frozen=True, slots=True)
class Signal:
    """Termination or End-of-input: one byte, no body."""

    kind: int  # TERMINATION or END_OF_INPUT


_WIDTHS: Final = ((0, 0, 1), (0, 1, 2), (1, 0, 4), (1, 1, 8))  # (bit a, bit b, bytes)
_BY_BITS: Final = {(a, b): size for a, b, size in _WIDTHS}
_BITS_OF: Final = {size: (a, b) for a, b, size in _WIDTHS}
_TERMINATORS: Final = {terminator.value: terminator for terminator in Terminator}
_FORMATS: Final = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


def _width(value: int) -> int:
    """The fewest bytes of 1, 2, 4, 8 that hold ``value`` (as IPFI picks them)."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} does not fit IPFI's u64")
    return next(size for size in (1, 2, 4, 8) if value < 1 << (8 * size))


def encode(message: Message | Signal) -> bytes:
    """The bytes of ``message``, each integer in the smallest width that holds it."""
    if isinstance(message, Signal):
        return bytes((message.kind,))
    sizes = [_width(message.procedure), _width(message.call), _width(len(message.payload))]
    bits = [bit for size in sizes for bit in _BITS_OF[size]] + list(message.terminator.value)
    multiflag = sum(bit << index for index, bit in enumerate(bits))
    header = bytes((message.kind, multiflag)) + b"".join(
        struct.pack(_FORMATS[size], value)
        for size, value in zip(sizes, (message.procedure, message.call, len(message.payload)), strict=True)
    )
    return header + message.payload


def encode_arguments(args: Sequence[Any]) -> bytes:
    """Arguments as IPFI sends them: each a msgpack value, concatenated without an array header."""
    return b"".join(msgpack.packb(arg, use_bin_type=True) for arg in args)


def decode_values(payload: bytes) -> list[Any]:
    """The msgpack values one after the other in ``payload`` (a call's arguments, or one result).

    Raises :class:`RemoteProtocolError` for bytes that are not whole msgpack values."""
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(payload), 1), strict_map_key=False)
    unpacker.feed(payload)
    try:
        values = list(unpacker)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise RemoteProtocolError(f"ipfi-rust: {len(payload)} bytes of arguments are not msgpack: {exc}") from None
    if unpacker.tell() != len(payload):
        raise RemoteProtocolError(f"ipfi-rust: a msgpack value is cut short at byte {unpacker.tell()}")
    return values


class MessageDecoder:
    """Messages from bytes fed in any chunking, down to one byte at a time.

    Raises :class:`FrameError` for a type IPFI does not have or the multiflag's invalid terminator
    pair, and :class:`FrameTooLarge` for a payload over ``max_payload``, as soon as the header says so.
    """

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message | Signal]:
        self._buffer += data
        messages: list[Message | Signal] = []
        while (message := self._next()) is not None:
            messages.append(message)
        return messages

    @property
    def idle(self) -> bool:
        """Whether no part of a message is waiting for the rest."""
        return not self._buffer

    def _next(self) -> Message | Signal | None:
        buffer = self._buffer
        if not buffer:
            return None
        kind = buffer[0]
        if kind in (TERMINATION, END_OF_INPUT):
            del buffer[:1]
            return Signal(kind)
        if kind not in (CALL, RESPONSE):
            raise FrameError(f"ipfi-rust: message type {kind} is none of IPFI's (0-3)")
        if len(buffer) < 2:
            return None
        flags = buffer[1]
        bits = [(flags >> index) & 1 for index in range(8)]
        terminator = _TERMINATORS.get((bits[6], bits[7]))
        if terminator is None:
            raise FrameError("ipfi-rust: the multiflag's terminator pair (0, 1) is invalid")
        sizes = [_BY_BITS[(bits[2 * index], bits[2 * index + 1])] for index in range(3)]
        header = 2 + sum(sizes)
        if len(buffer) < header:
            return None
        values = []
        offset = 2
        for size in sizes:
            values.append(struct.unpack_from(_FORMATS[size], buffer, offset)[0])
            offset += size
        procedure, call, length = values
        if length > self.max_payload:
            raise FrameTooLarge(f"ipfi-rust: a message announces {length} bytes, over the limit of {self.max_payload}")
        if len(buffer) < header + length:
            return None
        payload = bytes(buffer[header : header + length])
        del buffer[: header + length]
        return Message(kind, procedure, call, payload, terminator)


class ValueAssembler:
    """Puts values split across messages back together (terminator None: more of it follows),
    per (kind, procedure, call), up to ``max_value`` bytes each."""

    def __init__(self, *, max_value: int = DEFAULT_MAX_VALUE) -> None:
        self.max_value = max_value
        self._pieces: dict[tuple[int, int, int], bytearray] = {}

    def add(self, message: Message) -> bytes | None:
        """The whole value once ``message`` ends one (Chunk or Complete), else ``None``. Raises
        :class:`FrameTooLarge` past ``max_value``."""
        key = (message.kind, message.procedure, message.call)
        pieces = self._pieces.get(key)
        if message.terminator is Terminator.NONE:
            if pieces is None:
                pieces = self._pieces[key] = bytearray()
            if len(pieces) + len(message.payload) > self.max_value:
                del self._pieces[key]
                raise FrameTooLarge(f"ipfi-rust: a value split across messages exceeds {self.max_value} bytes")
            pieces += message.payload
            return None
        if pieces is None:
            return message.payload
        del self._pieces[key]
        if len(pieces) + len(message.payload) > self.max_value:
            raise FrameTooLarge(f"ipfi-rust: a value split across messages exceeds {self.max_value} bytes")
        return bytes(pieces + message.payload)
