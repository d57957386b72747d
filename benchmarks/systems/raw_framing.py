"""The floors' wire: a 4-byte little-endian length, then the payload. A length with the top bit set
asks for a stream of that many 16-byte items instead (no payload follows)."""

from __future__ import annotations

import struct

LENGTH = struct.Struct("<I")
STREAM_FLAG = 0x8000_0000
ITEM_FRAME = LENGTH.pack(16) + b"x" * 16


def stream_request(count: int) -> bytes:
    return LENGTH.pack(STREAM_FLAG | count)
