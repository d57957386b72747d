"""What the ``ipfi`` command's arguments may be: addresses, channels, durations, counts; each
refused with a usage error (exit 64) that says what was expected."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..net.addresses import SCHEMES
from ..net.tls import client_context, server_context
from .exit_codes import UsageError

ADDRESS_HELP = (
    "PATH (a Unix socket), unix:PATH, tcp://HOST:PORT, tls://HOST:PORT, service:NAME, libipc:NAME, stdio:"
    " or exec:COMMAND"
)

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


def add_tls_arguments(parser: argparse.ArgumentParser, *, server: bool) -> None:
    """The TLS flags of a command that serves (``server``) or connects, for ``tls://`` addresses."""
    if server:
        parser.add_argument("--tls-cert", metavar="FILE", help="tls://: the server's certificate chain (PEM)")
        parser.add_argument("--tls-key", metavar="FILE", help="tls://: its private key (PEM; default: in --tls-cert)")
        parser.add_argument(
            "--tls-ca", metavar="FILE", help="tls://: clients must present a certificate this CA signed (mutual TLS)"
        )
        return
    parser.add_argument(
        "--tls-ca", metavar="FILE", help="tls://: verify the server against this CA (default: the system's)"
    )
    parser.add_argument(
        "--tls-client-cert",
        metavar="FILE",
        help="tls://: present this certificate (PEM, with its key or --tls-client-key)",
    )
    parser.add_argument("--tls-client-key", metavar="FILE", help="tls://: the client certificate's key (PEM)")


def tls_settings(args: argparse.Namespace, *, server: bool) -> dict[str, Any]:
    """``ssl=`` for ``connect``/``serve`` from the TLS flags (nothing for other addresses). Raises
    ``UsageError`` for a server without --tls-cert or flags without tls://, and
    ``OSError``/``ssl.SSLError`` for files that do not load."""
    given = {name: value for name, value in vars(args).items() if name.startswith("tls_") and value is not None}
    if not args.address.startswith("tls:"):
        if given:
            raise UsageError(f"--{next(iter(given)).replace('_', '-')} is for tls:// addresses")
        return {}
    if server:
        if args.tls_cert is None:
            raise UsageError("serving tls:// needs --tls-cert (and --tls-key unless the key is in it)")
        return {"ssl": server_context(args.tls_cert, args.tls_key, args.tls_ca)}
    return {"ssl": client_context(args.tls_ca, args.tls_client_cert, args.tls_client_key)}
