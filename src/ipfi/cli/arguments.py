"""What the ``ipfi`` command's arguments may be: addresses, channels, durations, counts; each
refused with a usage error (exit 64) that says what was expected."""

from __future__ import annotations

import argparse
import re

from ..net.addresses import SCHEMES

ADDRESS_HELP = "PATH (a Unix socket), unix:PATH, tcp://HOST:PORT, service:NAME, libipc:NAME, stdio: or exec:COMMAND"

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s)?")


def address(text: str) -> str:
    """An address; a bare path (ipcprims' form, ``/run/app.sock``) is a Unix socket."""
    scheme, colon, _ = text.partition(":")
    if colon and scheme in SCHEMES:
        return text
    if text.startswith(("/", "./", "../")) or text.endswith(".sock"):
        return f"unix:{text}"
    return text  # (refused, naming the forms, when it is parsed)


def duration(text: str) -> float:
    """Seconds, from ipcprims' form: ``5s``, ``500ms`` or ``5`` (seconds); ipfi also takes
    fractions (``0.3s``, ``1.5``). Zero is refused, as ipcprims refuses it."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: expected e.g. 5s, 500ms or 5")
    seconds = float(match["number"]) / (1000 if match["unit"] == "ms" else 1)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("a duration must be greater than zero")
    return seconds


def channel(text: str) -> int:
    try:
        number = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a channel number: {text!r}") from None
    if not 1 <= number <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"unsupported channel {number}: channels are 1..65535 (0 is control)")
    return number


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return int(text)


def channel_list(spec: str) -> list[int]:
    """``"1-4,256"`` (ipcprims writes ``1,2,3,4``) to a list of channels (1..65535)."""
    channels: list[int] = []
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad channel list {spec!r}: expected e.g. 1,2,3 or 1-4,256") from None
        if not 1 <= first <= last <= 0xFFFF:
            raise argparse.ArgumentTypeError(f"bad channel range {part!r}: channels are 1..65535 (0 is control)")
        channels.extend(range(first, last + 1))
    return channels


#: ``--validate DIR``: ipcprims' schema directory (channel_N.schema.json, command.schema.json...).
VALIDATE_HELP = {
    "echo": "check frames against the JSON Schemas in DIR (ipcprims' layout, strict); answer what fails on ERROR",
    "listen": "check frames against the JSON Schemas in DIR (ipcprims' layout, strict); exit 60 on one that fails",
    "send": "check the payload against the JSON Schemas in DIR (ipcprims' layout, strict); exit 60 if it fails",
}
