"""The ``ipfi`` command (also ``python -m ipfi``): poke at services, send frames, call procedures.

Output is JSON lines when stdout is not a terminal and a table when it is (``--format`` chooses);
logs go to stderr. Exit codes follow ipcprims' table (see ``ipfi --help``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from . import arguments
from .arguments import ADDRESS_HELP, VALIDATE_HELP
from .exit_codes import INTERNAL, USAGE, describe_failure, describe_table, exit_code_for
from .gateway import run_gateway
from .messaging import run_echo, run_listen, run_send
from .output import FORMATS, Output
from .rpc import run_call, run_info, run_serve, run_stubs
from .system import run_doctor, run_envinfo, run_version

log = logging.getLogger("ipfi.cli")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64, as in ipcprims' table (argparse's own default is 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


#: ``--log-level`` as ipcprims names the levels (``trace`` is Python's DEBUG too).
LOG_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
LOG_LEVELS["trace"] = logging.DEBUG


def _add_common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after the command's name (as ipcprims' global ones)."""

    def default(value: object) -> object:
        # After the name, an option left out must not overwrite one given before it.
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default(None),
        help="json lines, a table, one line per frame (pretty), or raw payloads (default: table on a tty, else json)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="log more on stderr (-vv: debug)")
    parser.add_argument("--log-level", choices=list(LOG_LEVELS), default=default(None), help="least log level (stderr)")
    parser.add_argument("--log-format", choices=["text", "json"], default=default("text"), help="log lines (stderr)")
    parser.add_argument(
        "--timeout",
        type=arguments.duration,
        default=default(None),
        help="give up after this long (5s, 500ms, 5): connecting and waiting; servers stop (default:"
        " 10s for clients, 5s for info, none for servers)",
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
    parser.add_argument("-V", "--version", action="version", version=f"ipfi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, handler: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    def address_argument(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("address", type=arguments.address, help=ADDRESS_HELP)

    for name, help_text, handler in [
        ("echo", "serve: send every frame back on its channel", run_echo),
        ("listen", "serve: print every frame received", run_listen),
    ]:
        sub = command(name, help_text, handler)
        address_argument(sub)
        sub.add_argument(
            "--channels",
            type=arguments.channel_list,
            default=arguments.channel_list("1-4,256-1023"),
            help="channels offered (e.g. 1,2,3 or 1-4,256; default 1-4,256-1023)",
        )
        sub.add_argument(
            "--idle-timeout", type=arguments.duration, default=60.0, help="drop a silent client (default 60s)"
        )
        if name == "listen":
            sub.add_argument("--count", type=arguments.positive_int, default=0, help="stop after N frames")
        sub.add_argument("--validate", metavar="DIR", help=VALIDATE_HELP[name])
        arguments.add_tls_arguments(sub, server=True)

    send = command("send", "send one frame (and with --wait, print the reply)", run_send)
    address_argument(send)
    send.add_argument("-c", "--channel", type=arguments.channel, default=1, help="channel (default 1, COMMAND)")
    payload = send.add_mutually_exclusive_group(required=True)
    payload.add_argument("--json", help="a JSON document (checked before sending)")
    payload.add_argument("--data", help="text, sent as UTF-8")
    payload.add_argument("--file", help="a file's bytes ('-' for stdin)")
    send.add_argument(
        "--wait", action="store_true", help="wait for one frame back, on the channel or ERROR (4), and print it"
    )
    send.add_argument("--wait-timeout", type=arguments.duration, default=5.0, help="how long --wait waits (default 5s)")
    send.add_argument("--validate", metavar="DIR", help=VALIDATE_HELP["send"])
    arguments.add_tls_arguments(send, server=False)

    call = command("call", "call a procedure; print its result, or each item it streams", run_call)
    address_argument(call)
    call.add_argument("procedure")
    call.add_argument(
        "args",
        nargs="*",
        help="positional arguments, each as JSON (1, '[1,2]', '\"text\"'), or as text where the procedure's"
        " parameter takes only text",
    )
    call.add_argument("--kwargs", help="keyword arguments as a JSON object")
    arguments.add_tls_arguments(call, server=False)

    serve = command("serve", "serve an interface from a Python module", run_serve)
    serve.add_argument("interface", help="MODULE:INTERFACE, e.g. myapp.api:iface")
    address_argument(serve)
    arguments.add_tls_arguments(serve, server=True)

    stubs = command("stubs", "print a typing.Protocol module of a peer's procedures, for peer.proxy()", run_stubs)
    address_argument(stubs)
    stubs.add_argument("--sync", action="store_true", help="for a blocking peer (ipfi.sync): plain methods")
    stubs.add_argument("--class-name", default="Procedures", help="the Protocol class's name (default Procedures)")
    arguments.add_tls_arguments(stubs, server=False)

    info = command("info", "a peer's protocol, channels, procedures, ping and credentials", run_info)
    address_argument(info)
    arguments.add_tls_arguments(info, server=False)

    relay = command("gateway", "relay clients from the network to a local service, frames as they are", run_gateway)
    relay.add_argument("address", type=arguments.address, help="where clients connect: tcp://, tls://, ws:// or wss://")
    relay.add_argument("target", type=arguments.address, help="the service: service:NAME, unix:PATH or tcp://")
    relay.add_argument("--tokens-file", metavar="FILE", help="clients must present one of these tokens (one a line)")
    relay.add_argument("--max-clients", type=arguments.positive_int, default=4096, help="clients at once (4096)")
    relay.add_argument(
        "--max-frame", type=arguments.positive_int, default=16 * 1024 * 1024, help="largest frame payload (16 MiB)"
    )
    relay.add_argument(
        "--frames-per-second", type=float, default=10_000.0, help="each client's average frame rate (10000)"
    )
    relay.add_argument(
        "--bytes-per-second", type=float, default=64 * 1024 * 1024, help="each client's average byte rate (64 MiB)"
    )
    arguments.add_tls_arguments(relay, server=True)

    command("doctor", "check the runtime directory, permissions and optional extras", run_doctor)
    command("envinfo", "versions and settings, for bug reports", run_envinfo)
    version = command("version", "ipfi's version", run_version)
    version.add_argument("--extended", action="store_true", help="platform, Python, protocol and extras too")
    return parser


class _JsonLogLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _set_up_logging(args: argparse.Namespace) -> None:
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    if args.log_level is not None:
        level = LOG_LEVELS[args.log_level]
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(_JsonLogLines())
    else:
        handler.setFormatter(logging.Formatter("ipfi: %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    args = build_parser().parse_args(argv)
    _set_up_logging(args)
    out = Output(args.format)
    try:
        code: int = args.handler(args, out)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0  # the reader of our output went away (e.g. `| head`): nothing more to say
    except Exception as exc:
        code = exit_code_for(exc)
        print(f"ipfi: {args.command}: {describe_failure(exc)}", file=sys.stderr)
        if code == INTERNAL:
            log.error("internal failure", exc_info=exc)
    return code
