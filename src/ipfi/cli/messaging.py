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

from ..aio import Peer, Server, connect, run, serve
from ..core.errors import ConnectionLost
from ..core.handshake import DEFAULT_SERVER_CHANNELS
from ..core.interface import Interface
from ..core.limits import Limits
from ..server_events import Connected, Disconnected, Received
from .exit_codes import OK, UsageError
from .output import Output

log = logging.getLogger("ipfi.cli")

echo_interface = Interface()


@echo_interface.procedure
def echo(value: Any) -> Any:
    """Returns its argument."""
    return value


def parse_channels(spec: str) -> list[int]:
    """``"1-4,256"`` to a list of channels (1..65535)."""
    channels: list[int] = []
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise UsageError(f"bad channel list {spec!r}: expected e.g. 1-4,256") from None
        if not 1 <= first <= last <= 0xFFFF:
            raise UsageError(f"bad channel range {part!r}: channels are 1..65535 (0 is control)")
        channels.extend(range(first, last + 1))
    return channels


def announce(text: str) -> None:
    """Tell the person (or test) at the terminal, on stderr, what a long-running command is doing."""
    print(f"ipfi: {text}", file=sys.stderr, flush=True)


def stop_on_signals(server: Server) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.close)


async def serve_frames(args: argparse.Namespace, on_frame: Callable[[Peer, int, bytes | bytearray], bool]) -> int:
    """Serve plain frames on ``args.address`` until a signal, or until ``on_frame`` returns False."""
    limits = Limits(idle_timeout=args.idle_timeout or None)
    server = await serve(args.address, echo_interface, channels=parse_channels(args.channels), limits=limits)
    stop_on_signals(server)
    announce(f"listening on {server.bound_address}")
    async with server:
        async for event in server.events():
            match event:
                case Received(peer=peer, channel=channel, payload=payload):
                    if not on_frame(peer, channel, payload):
                        server.close()
                case Connected(peer=peer):
                    log.info("%s connected (%s)", peer.peer_id, peer.credentials or peer.get_extra_info("peername"))
                case Disconnected(peer=peer, reason=reason):
                    log.info("%s disconnected: %s", peer.peer_id, reason)
    return OK


def run_echo(args: argparse.Namespace, out: Output) -> int:
    def echo_back(peer: Peer, channel: int, payload: bytes | bytearray) -> bool:
        with contextlib.suppress(ConnectionLost):  # the client may be gone before its echo is written
            peer.send(channel, payload)
        return True

    return run(serve_frames(args, echo_back))


def run_listen(args: argparse.Namespace, out: Output) -> int:
    remaining: list[int] = [args.count]

    def show(peer: Peer, channel: int, payload: bytes | bytearray) -> bool:
        out.frame(channel, payload, peer=peer.peer_id)
        remaining[0] -= 1
        return remaining[0] != 0

    return run(serve_frames(args, show))


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
    # Ask for the common channels too, so a server without this one still answers and we can say so.
    requested = [channel, *(c for c in DEFAULT_SERVER_CHANNELS if c != channel)]
    limits = Limits(handshake_timeout=args.timeout) if args.timeout else Limits()
    async with connect(args.address, rpc=False, channels=requested, limits=limits) as peer:
        if channel not in peer.channels:
            raise UsageError(f"unsupported channel {channel}: the peer offers {list(peer.channels)}")
        peer.send(channel, payload)
        if not args.wait:
            if out.format != "raw":
                out.record({"sent": len(payload), "channel": channel})
            return OK
        reply = await asyncio.wait_for(peer.receive(channel), args.timeout or None)
        out.frame(reply.channel, reply.payload)
    return OK


def run_send(args: argparse.Namespace, out: Output) -> int:
    return run(send_frame(args, out, read_payload(args)))
