"""``ipfi echo``, ``listen`` and ``send``: plain framed messages, as ipcprims' command line has them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..aio import Peer, connect, run, serve
from ..core.errors import ConnectionLost, SchemaError
from ..core.handshake import DEFAULT_SERVER_CHANNELS
from ..core.interface import Interface
from ..core.limits import Limits
from ..schemas import Schemas
from ..server_events import Connected, Disconnected, Received
from .arguments import tls_settings
from .exit_codes import OK, UsageError
from .output import Output

log = logging.getLogger("ipfi.cli")

#: ipcprims' ERROR channel, where its servers answer what they refuse.
ERROR_CHANNEL = 4

echo_interface = Interface()


@echo_interface.procedure
def echo(value: Any) -> Any:
    """Returns its argument."""
    return value


def announce(text: str) -> None:
    """Tell the person (or test) at the terminal, on stderr, what a long-running command is doing."""
    print(f"ipfi: {text}", file=sys.stderr, flush=True)


def stop_on_signals(close: Callable[[], None]) -> None:
    """SIGINT and SIGTERM call ``close`` (a server's, a gateway's)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # (Windows' loops have none: Ctrl-C still stops it)
            loop.add_signal_handler(signum, close)


#: How long a client command waits, connecting and for replies, when --timeout is not given.
CLIENT_TIMEOUT = 10.0


def load_schemas(args: argparse.Namespace) -> Schemas | None:
    """``--validate DIR``'s schemas, strict as ipcprims' command line makes them. Raises
    :class:`SchemaError` (exit 60) when they do not load."""
    if args.validate is None:
        return None
    try:
        return Schemas.from_directory(args.validate, strict=True)
    except SchemaError as exc:
        raise SchemaError(f"schema load failed: {exc}") from None


def refused(schemas: Schemas | None, channel: int, payload: bytes | bytearray) -> SchemaError | None:
    """What ``--validate`` says of a payload, as ipcprims' error frame words it."""
    reason = None if schemas is None else schemas.check(channel, payload)
    return None if reason is None else SchemaError(f"schema validation error: {reason}")


async def serve_frames(
    args: argparse.Namespace,
    on_frame: Callable[[Peer, int, bytes | bytearray], bool],
    schemas: Schemas | None = None,
) -> int:
    """Serve plain frames on ``args.address`` until a signal, until ``on_frame`` returns False, or
    (raising ``TimeoutError``) until ``--timeout`` has passed. With ``schemas``, frames they refuse
    are answered on ERROR and never reach ``on_frame``."""
    limits = Limits(idle_timeout=args.idle_timeout)
    tls = tls_settings(args, server=True)
    server = await serve(args.address, echo_interface, channels=args.channels, limits=limits, schemas=schemas, **tls)
    stop_on_signals(server.close)
    announce(f"listening on {server.bound_address}")
    timed_out = False

    def time_is_up() -> None:
        nonlocal timed_out
        timed_out = True
        server.close()

    if args.timeout:
        asyncio.get_running_loop().call_later(args.timeout, time_is_up)
    async with server:
        async for event in server.events():
            match event:
                case Received(peer=peer, channel=channel, payload=payload):
                    if not on_frame(peer, channel, payload):
                        server.close()
                case Connected() | Disconnected():
                    pass  # (logged at INFO by the connection itself)
    if timed_out:
        raise TimeoutError(f"--timeout of {args.timeout:g}s passed")
    return OK


def run_echo(args: argparse.Namespace, out: Output) -> int:
    def echo_back(peer: Peer, channel: int, payload: bytes | bytearray) -> bool:
        with contextlib.suppress(ConnectionLost):  # the client may be gone before its echo is written
            peer.send(channel, payload)
        return True

    return run(serve_frames(args, echo_back, load_schemas(args)))


def run_listen(args: argparse.Namespace, out: Output) -> int:
    printed = 0
    schemas = load_schemas(args)
    invalid: SchemaError | None = None

    def show(peer: Peer, channel: int, payload: bytes | bytearray) -> bool:
        nonlocal printed, invalid
        invalid = refused(schemas, channel, payload)
        if invalid is not None:
            return False  # exit 60, having printed the frames before it
        out.frame(channel, payload, peer.peer_id)
        printed += 1
        return bool(printed != args.count)

    try:
        status = run(serve_frames(args, show))
    except TimeoutError as exc:
        wanted = f" of {args.count}" if args.count else ""
        raise TimeoutError(f"{exc} with {printed}{wanted} frames received") from None
    if invalid is not None:
        raise invalid
    return status


def read_payload(args: argparse.Namespace) -> bytes:
    if args.json is not None:
        json.loads(args.json)  # invalid JSON is refused before connecting (exit 60)
        return bytes(args.json.encode())
    if args.data is not None:
        return bytes(args.data.encode())
    if args.file == "-":
        return sys.stdin.buffer.read()
    return Path(args.file).read_bytes()


async def send_frame(args: argparse.Namespace, out: Output, payload: bytes) -> int:
    channel = args.channel
    # Ask for the common channels too, so that a server without this one still answers and we can
    # say so; and for ERROR, where an ipcprims server answers what it refuses.
    requested = [channel, *(c for c in DEFAULT_SERVER_CHANNELS if c != channel)]
    timeout = args.timeout or CLIENT_TIMEOUT
    limits = Limits(handshake_timeout=timeout)
    tls = tls_settings(args, server=False)
    async with connect(args.address, rpc=False, channels=requested, limits=limits, **tls) as peer:
        if channel not in peer.channels:
            raise UsageError(f"unsupported channel {channel}: the peer offers {list(peer.channels)}")
        peer.send(channel, payload)
        if not args.wait:
            return OK  # (as ipcprims: nothing to print)
        watched = {channel, ERROR_CHANNEL} & set(peer.channels)
        try:
            async with asyncio.timeout(args.wait_timeout):
                reply = await peer.receive(None)
                while reply.channel not in watched:  # (what else the peer sends is not the reply)
                    reply = await peer.receive(None)
        except TimeoutError:
            raise TimeoutError(
                f"no reply on channel {channel} or ERROR ({ERROR_CHANNEL}) within --wait-timeout {args.wait_timeout:g}s"
            ) from None
        out.frame(reply.channel, reply.payload, peer.peer_id)
    return OK


def run_send(args: argparse.Namespace, out: Output) -> int:
    payload = read_payload(args)
    invalid = refused(load_schemas(args), args.channel, payload)
    if invalid is not None:
        raise invalid  # (before connecting: the contract is broken here, not there)
    return run(send_frame(args, out, payload))
