"""libIPC's wire (libIPC 0.7, KaneRoot/libipc-old), as observed byte for byte (``libipc.json``)::

    type u8 | payload length u32 big-endian | user_type u8 | payload

No handshake: the first bytes on a connection are already a message. Types: 0 SERVER_CLOSE,
1 ERR, 2 DATA, 3 NETWORK_LOOKUP (the library echoes others as they are). libIPC's own service
exits on two frames in one write, on a frame split across writes with a pause, and near its 2 MB
limit, and loses a payload's bytes after its first NUL: this decoder takes any chunking, keeps every
byte, and refuses a frame over ``max_payload`` from its header, before taking memory for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ..core.errors import FrameTooLarge

SERVER_CLOSE: Final = 0
ERR: Final = 1
DATA: Final = 2
NETWORK_LOOKUP: Final = 3
#: libIPC's own limit on a payload.
MAX_PAYLOAD: Final = 1_999_994
HEADER_SIZE: Final = 6

_HEADER = struct.Struct(">BIB")


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    user_type: int
    payload: bytes


def encode(frame: Frame) -> bytes:
    """The bytes of ``frame``. Raises ``ValueError`` for a payload over libIPC's limit (its peers
    would exit) or a type or user type that is not a byte."""
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"a libIPC payload holds at most {MAX_PAYLOAD} bytes, not {len(frame.payload)}")
    return _HEADER.pack(frame.kind, len(frame.payload), frame.user_type) + frame.payload


class FrameDecoder:
    """Frames from bytes fed in any chunking, down to one byte at a time. Raises
    :class:`FrameTooLarge` for a frame announcing more than ``max_payload`` bytes."""

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    @property
    def idle(self) -> bool:
        """Whether no part of a frame is waiting for the rest."""
        return not self._buffer

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames = []
        while len(buffer) >= HEADER_SIZE:
            kind, length, user_type = _HEADER.unpack_from(buffer)
            if length > self.max_payload:
                raise FrameTooLarge(f"libipc: a frame announces {length} bytes, over the limit of {self.max_payload}")
            if len(buffer) < HEADER_SIZE + length:
                break
            frames.append(Frame(kind, user_type, bytes(buffer[HEADER_SIZE : HEADER_SIZE + length])))
            del buffer[: HEADER_SIZE + length]
        return frames
