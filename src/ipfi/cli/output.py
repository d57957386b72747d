"""How the ``ipfi`` command prints: JSON lines for programs, a table for people, or raw payloads."""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any, BinaryIO, TextIO

FORMATS = ("json", "table", "pretty", "raw")
#: The ``schema_id`` of a received frame's JSON line: ipcprims' (ipfi's lines are a superset).
FRAME_SCHEMA = "https://schemas.3leaps.dev/ipcprims/cli/v1/frame-received.schema.json"
CHANNEL_NAMES = {0: "CONTROL", 1: "COMMAND", 2: "DATA", 3: "TELEMETRY", 4: "ERROR"}

# What a peer sends must not drive the terminal: control characters (ANSI escapes, carriage
# returns, C1 controls) are written escaped, in table rows as \xNN and in JSON as \u00NN (JSON's own
# encoder escapes those below 0x20 already, but not DEL or C1).
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
_TABLE_ESCAPES = {code: f"\\x{code:02x}" for code in _CONTROLS}
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _CONTROLS if code >= 0x20}


def jsonable(value: Any) -> Any:
    """``value`` with bytes as ``{"base64": ...}`` and other non-JSON types as strings."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class Output:
    """Writes records, frames and values to stdout in the chosen format (default: by whether it is a tty)."""

    def __init__(self, fmt: str | None, text: TextIO | None = None, binary: BinaryIO | None = None) -> None:
        self._text = text or sys.stdout
        self._binary = binary or sys.stdout.buffer
        self.format = fmt or ("table" if self._text.isatty() else "json")
        self._header_shown = False

    def _line(self, text: str) -> None:
        self._text.write(text.translate(_JSON_ESCAPES if self.format == "json" else _TABLE_ESCAPES) + "\n")
        self._text.flush()

    def record(self, record: dict[str, Any]) -> None:
        """One result: a JSON line, or ``key  value`` rows."""
        if self.format == "json":
            self._line(json.dumps(jsonable(record), separators=(",", ":"), ensure_ascii=False))
            return
        width = max((len(key) for key in record), default=0)
        for key, value in record.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            self._line(f"{key:<{width}}  {'-' if shown is None else shown}")

    def rows(self, rows: list[dict[str, Any]]) -> None:
        """Records of one shape: JSON lines, or a table with a header."""
        if self.format == "json" or not rows:
            for row in rows:
                self.record(row)
            return
        columns = list(rows[0])
        cells = [[str(row.get(column, "")) for column in columns] for row in rows]
        widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
        self._line(
            "  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()
        )
        for line in cells:
            self._line("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())

    def frame(self, channel: int, payload: bytes | bytearray, peer_id: str) -> None:
        """A received frame, as ipcprims prints one: a JSON line with its fields (binary payloads,
        which ipcprims shows as ``<binary N bytes>``, also in ``payload_base64``), a table row,
        one ``key=value`` line (pretty), or the payload alone (raw)."""
        if self.format == "raw":
            self._binary.write(payload)
            self._binary.flush()
            return
        name = CHANNEL_NAMES.get(channel, "USER")
        try:
            text = payload.decode()
            binary = None
        except UnicodeDecodeError:
            text, binary = f"<binary {len(payload)} bytes>", base64.b64encode(payload).decode()
        if self.format == "json":
            record = {
                "schema_id": FRAME_SCHEMA,
                "channel": channel,
                "channel_name": name,
                "payload_size": len(payload),
                "payload": text,
                "peer_id": peer_id,
                "timestamp": str(int(time.time())),
            }
            if binary is not None:
                record["payload_base64"] = binary
            self.record(record)
        elif self.format == "pretty":
            self._line(f"channel={channel} ({name}) size={len(payload)} peer={peer_id} payload={text}")
        else:
            if not self._header_shown:
                self._header_shown = True
                self._line(f"{'CHANNEL':<12}  {'SIZE':>8}  {'PEER':<20}  PAYLOAD")
            self._line(f"{f'{name} ({channel})':<12}  {len(payload):>8}  {peer_id:<20}  {text}")

    def value(self, value: Any) -> None:
        """A procedure's result or stream item: bytes and strings alone in raw format."""
        if self.format == "raw" and isinstance(value, bytes | str):
            self._binary.write(value if isinstance(value, bytes) else value.encode())
            self._binary.flush()
        elif self.format in ("table", "pretty") and isinstance(value, str):
            self._line(value)
        else:
            self._line(json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False))
