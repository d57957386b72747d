"""Writing: frames, RPC messages, stream item batches and fragments, queued for the driver to write.

A part of :class:`~ipfi.core.connection.Connection`. Small messages become one ``bytes`` object each
(header and body joined); large binaries are queued as they are, never copied; a message larger than
the peer's frame limit is cut into PART frames and a LAST_PART. Stream items queued between two
:meth:`Writing.data_to_send` go out as one ITEMS message per call, within one frame.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Final

from . import wire
from .calls import Call
from .codecs import PACKER_BUFFER, Body, Buffer, Codec
from .errors import PayloadTooLarge
from .frames import MAGIC, frame_header

_ID_HEADER = wire.ID_HEADER
_ID_SIZE: Final = _ID_HEADER.size
_pack_id = _ID_HEADER.pack
# Frame header and message header packed by one call, for messages that fit one small frame.
pack_framed_id = struct.Struct("<2sIH" + _ID_HEADER.format[1:]).pack
pack_framed_call = struct.Struct("<2sIH" + wire.CALL_HEADER.format[1:]).pack
_MAGIC: Final = MAGIC
_RPC: Final = wire.RPC_CHANNEL
_PART: Final = bytes([wire.PART])
_LAST_PART: Final = bytes([wire.LAST_PART])
ITEMS_OVERHEAD: Final = 16  # ITEMS header and list framing around one batch
SMALL: Final = 4096  # below this a frame is joined into one bytes object; above, sent as parts


class Writing:
    """The output queue and everything that frames into it."""

    codec: Codec | None
    has_output: bool
    _out: list[Buffer]
    _batched: list[Call]
    _peer_max_message: int
    _peer_max_frame: int
    _small_message: int
    _small_body: int
    # Of the other parts of the connection:
    _flush_items_of: Callable[[Call], None]
    _large_buffers_used: Callable[[], None]

    def data_to_send(self) -> list[Buffer]:
        """Frames queued since the last call, in order; the caller writes them as they are."""
        if self._batched:
            batched, self._batched = self._batched, []
            for call in batched:
                self._flush_items_of(call)
            self.item_bytes_queued = 0
        out = self._out
        self._out = []
        self.has_output = False
        return out

    def _queue_frame(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        self.has_output = True
        if len(payload) < SMALL:
            self._out.append(frame_header(channel, len(payload)) + payload)
        else:
            self._out.append(frame_header(channel, len(payload)))
            self._out.append(payload if isinstance(payload, bytes) else bytes(payload))

    def _queue_id_message(self, kind: int, call_id: int, body: Body) -> None:
        if type(body) is bytes and len(body) <= self._small_body:  # the common case: one frame, one bytes
            self._out.append(pack_framed_id(_MAGIC, _ID_SIZE + len(body), _RPC, kind, call_id) + body)
            self.has_output = True
            return
        self._queue_message(_pack_id(kind, call_id), body)

    def _queue_message(self, header: bytes, body: Body) -> None:
        """An RPC message in one frame, or in fragments when it exceeds the peer's frame size.
        Raises :class:`PayloadTooLarge` (nothing queued) past the peer's message limit."""
        if type(body) is bytes:
            size = len(header) + len(body)
            if size <= self._small_message:  # one frame, joined into one bytes object
                self._out.append(frame_header(_RPC, size) + header + body)
                self.has_output = True
                return
            pieces: list[Buffer] = [body]
            if size > PACKER_BUFFER:  # the packer grew to make it
                self._large_buffers_used()
        else:
            pieces = body  # type: ignore[assignment]
            size = len(header) + sum(map(len, pieces))
        if size > self._peer_max_message:
            raise PayloadTooLarge(f"message of {size} bytes exceeds the peer's limit of {self._peer_max_message}")
        self.has_output = True
        if size <= self._peer_max_frame:
            # The headers before the first large piece go out as one (a reader that finds them
            # whole can receive the binary after them in place: see FrameDecoder.split_at).
            small = 0
            while small < len(pieces) and len(pieces[small]) < SMALL:
                small += 1
            self._out += (frame_header(_RPC, size) + header + b"".join(pieces[:small]), *pieces[small:])
            return
        self._queue_fragments([header, *pieces], size)

    def _queue_fragments(self, pieces: list[Buffer], size: int) -> None:
        """PART frames, then a LAST_PART, each of at most the peer's frame size: slices, not copies."""
        step = self._peer_max_frame - 1
        queue = deque(memoryview(piece) for piece in pieces)
        sent = 0
        out = self._out
        while sent < size:
            room = min(step, size - sent)
            sent += room
            kind = _LAST_PART if sent == size else _PART
            out.append(frame_header(_RPC, room + 1) + kind)
            while room:
                piece = queue.popleft()
                if len(piece) > room:
                    queue.appendleft(piece[room:])
                    piece = piece[:room]
                out.append(piece)
                room -= len(piece)

    def _queue_items(self, call_id: int, items: list[bytes], codec: Codec) -> None:
        """ITEMS messages for ``items``: batches within one frame; a lone large item is fragmented."""
        budget = self._peer_max_frame - ITEMS_OVERHEAD
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
