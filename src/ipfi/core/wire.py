"""RPC message layouts on the RPC channel (see docs/PROTOCOL.md). Pure packing, no state."""

from __future__ import annotations

import struct
from typing import Final

CALL: Final = 0x01
NOTIFY: Final = 0x02
RESULT: Final = 0x03
ERROR: Final = 0x04
ITEMS: Final = 0x05
END: Final = 0x06
CANCEL: Final = 0x07
CREDIT: Final = 0x08
PART: Final = 0x10
LAST_PART: Final = 0x11

#: CALL/NOTIFY flag: the last argument is a map of keyword arguments.
FLAG_KWARGS: Final = 0x01
#: CALL flag: the caller will stream input items (ITEMS ... END) to this call.
FLAG_INPUT: Final = 0x02

RPC_CHANNEL: Final = 1
PROTOCOL_VERSION: Final = 1
MAX_NAME: Final = 0xFFFF
MAX_ID: Final = 0xFFFFFFFF
MAX_TIMEOUT_MS: Final = 0xFFFFFFFF

# kind u8 | id u32 | flags u8 | timeout_ms u32 | name_len u16   (then name, then body)
CALL_HEADER: Final = struct.Struct("<BIBIH")
# kind u8 | id u32   (then body, for RESULT, ERROR, ITEMS; nothing else for END, CANCEL)
ID_HEADER: Final = struct.Struct("<BI")
# kind u8 | id u32 | credit u32
CREDIT_MESSAGE: Final = struct.Struct("<BII")
