"""The ``ipfi`` command (also ``python -m ipfi``): poke at services, send frames, call procedures.

Output is JSON lines when stdout is not a terminal and a table when it is (``--format`` chooses);
logs go to stderr. Exit codes follow ipcprims' table (see ``ipfi --help``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .exit_codes import INTERNAL, USAGE, describe_table, exit_code_for
from .messaging import run_echo, run_listen, run_send
from .output import FORMATS, Output
from .rpc import run_call, run_info, run_serve
from .system import run_doctor, run_envinfo, run_version

log = logging.getLogger("ipfi.cli")

ADDRESS_HELP = "unix:PATH, tcp://HOST:PORT, service:NAME, stdio: or exec:COMMAND"


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64, as in ipcprims' table (argparse's own default is 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def _channel(text: str) -> int:
    try:
        channel = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a channel number: {text!r}") from None
    if not 1 <= channel <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"unsupported channel {channel}: channels are 1..65535 (0 is control)")
    return channel


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return int(text)


def _add_common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after the command's name."""

    def default(value: object) -> object:
        # After the name, an option left out must not overwrite one given before it.
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default(None),
        help="json lines, a table, or raw payloads (default: by tty)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="log more on stderr (-vv: debug)")
    parser.add_argument(
        "--timeout", type=float, default=default(10.0), help="seconds before giving up (0: never; default 10)"
    )


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _add_common_options(common, defaults=False)
    parser = _Parser(
        prog="ipfi",
        description="Talk to ipfi and ipcprims peers: frames, procedures, named services.",
        epilog="exit codes:\n" + describe_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, handler: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    for name, help_text, handler in [
        ("echo", "serve: send every frame back on its channel", run_echo),
        ("listen", "serve: print every frame received", run_listen),
    ]:
        sub = command(name, help_text, handler)
        sub.add_argument("address", help=ADDRESS_HELP)
        sub.add_argument("--channels", default="1-4,256-1023", help="channels offered (default 1-4,256-1023)")
        sub.add_argument("--idle-timeout", type=float, default=60.0, help="drop a silent client (s; 0: never)")
        if name == "listen":
            sub.add_argument("--count", type=_positive_int, default=0, help="stop after N frames")

    send = command("send", "send one frame (and with --wait, print the reply)", run_send)
    send.add_argument("address", help=ADDRESS_HELP)
    send.add_argument("--channel", type=_channel, default=1, help="channel (default 1, COMMAND)")
    payload = send.add_mutually_exclusive_group(required=True)
    payload.add_argument("--json", help="a JSON document (checked before sending)")
    payload.add_argument("--data", help="text, sent as UTF-8")
    payload.add_argument("--file", help="a file's bytes ('-' for stdin)")
    send.add_argument("--wait", action="store_true", help="wait for one frame back on the channel and print it")

    call = command("call", "call a procedure; print its result, or each item it streams", run_call)
    call.add_argument("address", help=ADDRESS_HELP)
    call.add_argument("procedure")
    call.add_argument("args", nargs="*", help="positional arguments, each as JSON (e.g. 1 '\"text\"' '[1,2]')")
    call.add_argument("--kwargs", help="keyword arguments as a JSON object")

    serve = command("serve", "serve an interface from a Python module", run_serve)
    serve.add_argument("interface", help="MODULE:INTERFACE, e.g. myapp.api:iface")
    serve.add_argument("address", help=ADDRESS_HELP)

    info = command("info", "a peer's protocol, channels, procedures, ping and credentials", run_info)
    info.add_argument("address", help=ADDRESS_HELP)

    command("doctor", "check the runtime directory, permissions and optional extras", run_doctor)
    command("envinfo", "versions and settings, for bug reports", run_envinfo)
    command("version", "ipfi's version", run_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(stream=sys.stderr, level=level, format="ipfi: %(name)s: %(message)s")
    out = Output(args.format)
    try:
        code: int = args.handler(args, out)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0  # the reader of our output went away (e.g. `| head`): nothing more to say
    except Exception as exc:
        code = exit_code_for(exc)
        message = str(exc) or type(exc).__name__
        print(f"ipfi: {args.command}: {type(exc).__name__}: {message}", file=sys.stderr)
        if code == INTERNAL:
            log.error("internal failure", exc_info=exc)
    return code
