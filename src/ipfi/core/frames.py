"""ipcprims-compatible frames: ``"IP" | u32 LE payload length | u16 LE channel | payload``.

Pure functions and an incremental decoder; no I/O. The decoder accepts bytes in any chunking
(down to one byte at a time) and yields the same frames.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Callable
from typing import Final, cast

from .errors import FrameTooLarge, InvalidMagic

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
#: A frame at least this large that has not fully arrived gets a buffer of its own, filled in place
#: as bytes arrive, and is handed out as that ``bytearray``: one copy, whatever the chunking. The
#: buffer starts at this size (or twice what has arrived) and doubles as it fills: memory follows
#: the bytes received, not the length a header announces.
LARGE_FRAME: Final = 256 * 1024
#: A binary received into a ``bytes`` of its own (see :attr:`FrameDecoder.split_at`) grows by a
#: copy (realloc of memory rarely at the top of the heap), which is what receiving it in place
#: saves; so its memory starts at up to this many times what its first read brought (2 MiB after
#: a 64 KiB read: such a binary is never copied), then grows fourfold (copies of a third of it).
#: A peer still sends 1/32 of what it makes this side hold.
BINARY_AHEAD: Final = 32


class PayloadWithBinary(bytes):
    """A large frame's payload received in two pieces: these bytes, then :attr:`binary`, a binary
    that ends the message (see :attr:`FrameDecoder.split_at`), received straight into a ``bytes``
    of its own so that whoever decodes the message can hand out that object rather than a copy."""

    binary: bytes


@functools.cache
def _bytes_maker() -> Callable[[None, int], bytes]:
    try:
        import ctypes  # (here: only once a large binary arrives, not 4 ms at every import)
    except ImportError:  # (a Python built without it)
        return lambda _, size: bytes(size)
    # A prototype of our own: setting restype on ctypes.pythonapi's would change it for everyone.
    prototype = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_char_p, ctypes.c_ssize_t)
    return cast("Callable[[None, int], bytes]", prototype(("PyBytes_FromStringAndSize", ctypes.pythonapi)))


def _unfilled_bytes(size: int) -> bytes:
    """A ``bytes`` of ``size`` whose memory is not cleared first: ``bytes(size)`` zeroes it (20 µs
    a MiB, ~5% of a 1 MiB echo). None of it is handed out before it is received into: a binary's
    memory grows to the frame's length and no further, and only what was filled is ever read."""
    return _bytes_maker()(None, size)


#: Where a large frame's payload may be split (:attr:`FrameDecoder.split_at`): given its channel,
#: the bytes of it received so far and its length, the offset at which a binary ending it begins.
SplitAt = Callable[[int, memoryview, int], "int | None"]


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

    __slots__ = (
        "_binary_head",
        "_binary_io",
        "_buffer",
        "_large",
        "_large_channel",
        "_large_filled",
        "_large_length",
        "_offset",
        "_spare",
        "idle",
        "max_payload",
        "split_at",
    )

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._offset = 0
        # The memory a large frame is received into: its own bytearray, or (split) the memory of
        # the bytes its binary will be, exported by _binary_io; _binary_head is then what precedes it.
        self._large: bytearray | memoryview | None = None
        self._binary_io: io.BytesIO | None = None
        self._binary_head = b""
        self._large_channel = 0
        self._large_filled = 0
        self._large_length = 0
        self._spare: bytearray | None = None  # a large frame given back by recycle()
        #: No byte of a frame is held: the next byte received starts one. (An attribute, not a
        #: property: the protocol core reads it for every read.)
        self.idle = True
        #: Set by the protocol core: where a large frame's payload ends with a binary (``None``: it
        #: does not). That binary is then received into the memory of a ``bytes`` of its own, and the
        #: frame handed out as a :class:`PayloadWithBinary`.
        self.split_at: SplitAt | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        partial = HEADER_SIZE + len(self._binary_head) + self._large_filled if self._large is not None else 0
        return len(self._buffer) - self._offset + partial

    def peek(self, size: int) -> bytes:
        """Up to ``size`` of the bytes buffered (for a message about bytes that are not frames)."""
        return bytes(self._buffer[self._offset : self._offset + size])

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` without decoding (see :meth:`next_frame`; not while a large frame fills)."""
        self._buffer += data
        self.idle = False

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
            raise FrameTooLarge(f"frame payload of {length} bytes exceeds the limit of {self.max_payload}")

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes | bytearray]]:
        """Buffer ``data`` and return every frame now complete, as ``(channel, payload)``.

        Payloads are ``bytes``, except that a frame of :data:`LARGE_FRAME` bytes or more which
        arrived in pieces is its own ``bytearray`` (copying it into ``bytes`` would double the work).
        """
        frames: list[tuple[int, bytes | bytearray]] = []
        if self._large is not None:
            data = self._fill_large(data, frames)
        buffer = self._buffer
        # With nothing buffered, frames are sliced straight out of ``data`` (one copy, not two).
        # ``data`` itself is never kept: a caller may reuse its memory.
        kind = type(data)
        fresh = not buffer and (kind is bytes or kind is memoryview)
        is_bytes = fresh and kind is bytes  # slices of bytes are bytes; of anything else, copied into bytes
        source = data if fresh else buffer
        if not fresh:
            buffer += data
        offset = self._offset
        end = len(source)
        append = frames.append
        max_payload = self.max_payload
        while end - offset >= HEADER_SIZE:
            magic, length, channel = _unpack_header(source, offset)
            if magic != MAGIC or length > max_payload:
                self._check(magic, length)
            start = offset + HEADER_SIZE
            stop = start + length
            if stop > end:
                if length >= LARGE_FRAME:
                    self.start_large(channel, length, memoryview(source)[start:end])
                    offset = end
                break
            append((channel, cast(bytes, source[start:stop]) if is_bytes else bytes(source[start:stop])))
            offset = stop
        if fresh:
            if offset < end:
                buffer += memoryview(source)[offset:]
            offset = 0
        elif offset == end:
            buffer.clear()
            offset = 0
        elif offset >= _COMPACT_AT:
            del buffer[:offset]
            offset = 0
        self._offset = offset
        self.idle = not buffer and self._large is None
        return frames

    def start_large(self, channel: int, length: int, received: memoryview) -> None:
        """Begin a frame of :data:`LARGE_FRAME` bytes or more on ``channel``, its header checked,
        of whose ``length`` bytes of payload ``received`` (shorter) is all that arrived so far; the
        rest goes to :meth:`fill_target`. For :meth:`feed`, and for a caller that finds such a frame
        at the start of a read with nothing buffered (``idle``): no general decoding loop."""
        self.idle = False
        split = None if self.split_at is None else self.split_at(channel, received, length)
        large: bytearray | memoryview
        if split is None:
            start = received
            large = self._large = self._large_buffer(min(length, max(LARGE_FRAME, 2 * len(start))), length)
        else:
            self._binary_head = bytes(received[:split])
            start = received[split:]
            length -= split
            # Referenced by the BytesIO alone, it is neither copied by getbuffer() nor by getvalue()
            # (CPython's io.BytesIO). Its pages are mapped as they are written.
            size = min(length, max(LARGE_FRAME, BINARY_AHEAD * len(start)))
            self._binary_io = io.BytesIO(_unfilled_bytes(size))
            large = self._large = self._binary_io.getbuffer()
        filled = len(start)
        large[:filled] = start
        start.release()  # the shared buffer is about to be cleared, which an open view forbids
        received.release()
        self._large_channel = channel
        self._large_filled = filled
        self._large_length = length

    def _large_buffer(self, size: int, length: int) -> bytearray:
        """Memory for the start of a large frame of ``length`` bytes, ``size`` of them at first: the
        one given back by :meth:`recycle` if nothing views it any more (its pages are mapped already,
        where a fresh 16 MiB costs ~3 ms of page faults), up to ``length`` of it, else a new one."""
        spare, self._spare = self._spare, None
        if spare is not None and len(spare) >= size:
            try:
                spare.append(0)  # a resize fails while any memoryview of it lives (every Python says so)
            except BufferError:
                return bytearray(size)
            del spare[length:]  # (shrinking keeps the allocation unless by half or more)
            return spare
        return bytearray(size)

    def _room(self) -> bytearray | memoryview:
        """The large frame's buffer, grown if it is full (doubling; a binary received apart fourfold),
        up to the frame's length."""
        large = self._large
        assert large is not None
        size = len(large)
        if self._large_filled == size < self._large_length:
            if self._binary_io is not None:
                return self._grow_binary(min(4 * size, self._large_length))
            more = min(size, self._large_length - size)
            assert isinstance(large, bytearray)
            try:
                large += bytes(more)  # in place: realloc (mremap for large buffers), no copy
            except BufferError:  # a view of it is still held: move to a new buffer
                large = self._large = large + bytes(more)
        return large

    def _grow_binary(self, size: int) -> memoryview:
        stream = self._binary_io
        assert stream is not None and isinstance(self._large, memoryview)
        self._large.release()
        stream.seek(size - 1)
        try:
            stream.write(b"\0")  # in place (realloc); the bytes between are zeroed
        except BufferError:  # a view of it is still held: move to new memory
            moved = self._binary_io = io.BytesIO(_unfilled_bytes(size))
            with stream.getbuffer() as old, moved.getbuffer() as new:
                new[: len(old)] = old
            stream = moved
        large = self._large = stream.getbuffer()
        return large

    def _binary_payload(self) -> PayloadWithBinary:
        """The split frame now received, as one payload (see :class:`PayloadWithBinary`)."""
        stream = self._binary_io
        assert stream is not None and isinstance(self._large, memoryview)
        self._large.release()
        payload = PayloadWithBinary(self._binary_head)
        payload.binary = stream.getvalue()  # its own memory (a copy only while a view of it lives)
        self._binary_io = None
        self._binary_head = b""
        return payload

    def recycle(self, frame: bytearray) -> None:
        """``frame``, a large payload this decoder handed out, is no longer referenced by its
        consumer, other than through memoryviews (which keep it from being reused): its memory may
        hold the next large frame."""
        self._spare = frame

    def release_spare(self) -> None:
        """Give back the memory :meth:`recycle` kept (no large frame has come for a while)."""
        self._spare = None

    def _fill_large(
        self, data: bytes | bytearray | memoryview, frames: list[tuple[int, bytes | bytearray]]
    ) -> memoryview:
        """Copy ``data`` into the large frame being filled; returns what is left over after it."""
        view = memoryview(data)
        while view and self._large is not None:
            large = self._room()
            filled = self._large_filled
            take = min(len(view), len(large) - filled)
            large[filled : filled + take] = view[:take]
            frames += self.filled(take)
            view = view[take:]
        return view

    def fill_target(self) -> memoryview | None:
        """Where more of a large frame can be received in place (``recv_into``), if one is filling.

        After receiving into it, report the count with :meth:`filled`. The view may still be held
        then (the buffer is grown at the next call, when it should be released; if not, it moves).
        """
        return None if self._large is None else memoryview(self._room())[self._large_filled :]

    def filled(self, count: int) -> list[tuple[int, bytes | bytearray]]:  # (a PayloadWithBinary is bytes)
        """``count`` more bytes of the large frame have arrived; returns it once it is complete."""
        large = self._large
        assert large is not None and count <= len(large) - self._large_filled
        self._large_filled += count
        if self._large_filled < self._large_length:
            return []
        payload = cast(bytearray, large) if self._binary_io is None else self._binary_payload()
        self._large = None
        self._large_filled = 0
        self.idle = not self._buffer
        return [(self._large_channel, payload)]

    def leftover(self) -> bytes:
        """The bytes of an incomplete frame still waiting (what EOF would cut off)."""
        if self._large is not None:
            head = self._binary_head
            length = len(head) + self._large_length
            return frame_header(self._large_channel, length) + head + self._large[: self._large_filled]
        return bytes(self._buffer[self._offset :])
