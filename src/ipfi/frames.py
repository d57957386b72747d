"""ipcprims-compatible frames: ``"IP" | u32 LE payload length | u16 LE channel | payload``.

Pure functions and an incremental decoder; no I/O. The decoder accepts bytes in any chunking
(down to one byte at a time) and yields the same frames.
"""

from __future__ import annotations

import struct
from typing import Final

from .errors import InvalidMagic, PayloadTooLarge

MAGIC: Final = b"IP"
HEADER_SIZE: Final = 8
DEFAULT_MAX_PAYLOAD: Final = 16 * 1024 * 1024

CONTROL: Final = 0
COMMAND: Final = 1
DATA: Final = 2
TELEMETRY: Final = 3
ERROR: Final = 4
FIRST_USER_CHANNEL: Final = 256
MAX_CHANNEL: Final = 0xFFFF

_HEADER = struct.Struct("<2sIH")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from

# Compact buffers whose consumed prefix is at least this large, so a long-lived connection
# never holds more than about one frame plus this much.
_COMPACT_AT: Final = 64 * 1024


def frame_header(channel: int, length: int) -> bytes:
    """The 8-byte header of a frame with ``length`` payload bytes on ``channel``."""
    return _pack_header(MAGIC, length, channel)


def encode_frame(channel: int, payload: bytes | bytearray | memoryview) -> bytes:
    """One whole frame as bytes (header and payload copied together)."""
    return _pack_header(MAGIC, len(payload), channel) + payload


class FrameDecoder:
    """Incremental frame decoder over one growing buffer.

    ``feed(data)`` returns the list of ``(channel, payload)`` frames completed by ``data``.
    A frame's length is judged against ``max_payload`` (inclusive) as soon as its header is
    complete, before any payload arrives; a bad header raises and leaves the decoder unusable.
    """

    __slots__ = ("_buffer", "_offset", "max_payload")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._offset = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer) - self._offset

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` without decoding (see :meth:`next_frame`)."""
        self._buffer += data

    def next_frame(self) -> tuple[int, bytes] | None:
        """Decode at most one buffered frame: lets a caller change ``max_payload`` between frames."""
        buffer = self._buffer
        offset = self._offset
        if len(buffer) - offset < HEADER_SIZE:
            return None
        magic, length, channel = _unpack_header(buffer, offset)
        self._check(magic, length)
        start = offset + HEADER_SIZE
        if start + length > len(buffer):
            return None
        self._offset = start + length
        return channel, bytes(buffer[start : self._offset])

    def _check(self, magic: bytes, length: int) -> None:
        if magic != MAGIC:
            raise InvalidMagic(f"bad frame magic {bytes(magic)!r}, expected {MAGIC!r}")
        if length > self.max_payload:
            raise PayloadTooLarge(f"frame payload of {length} bytes exceeds the limit of {self.max_payload}")

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Buffer ``data`` and return every frame now complete, as ``(channel, payload)``."""
        buffer = self._buffer
        buffer += data
        offset = self._offset
        end = len(buffer)
        frames: list[tuple[int, bytes]] = []
        append = frames.append
        max_payload = self.max_payload
        while end - offset >= HEADER_SIZE:
            magic, length, channel = _unpack_header(buffer, offset)
            if magic != MAGIC or length > max_payload:
                self._check(magic, length)
            start = offset + HEADER_SIZE
            stop = start + length
            if stop > end:
                break
            append((channel, bytes(buffer[start:stop])))
            offset = stop
        if offset == end:
            buffer.clear()
            offset = 0
        elif offset >= _COMPACT_AT:
            del buffer[:offset]
            offset = 0
        self._offset = offset
        return frames

    def leftover(self) -> bytes:
        """The bytes of an incomplete frame still waiting (what EOF would cut off)."""
        return bytes(self._buffer[self._offset :])
