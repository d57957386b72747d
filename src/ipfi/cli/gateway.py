"""``ipfi gateway LISTEN TARGET``: clients from the network relayed to a local service."""

from __future__ import annotations

import argparse

from ..aio import run
from ..aio.gateway import gateway
from ..core.relay import GatewayLimits
from .arguments import tls_settings
from .exit_codes import OK
from .messaging import announce, stop_on_signals
from .output import Output


def read_tokens(path: str) -> frozenset[str]:
    """One token per line of ``path`` (blank lines and ``#`` comments skipped)."""
    with open(path, encoding="utf-8") as file:
        return frozenset(line.strip() for line in file if line.strip() and not line.lstrip().startswith("#"))


async def relay(args: argparse.Namespace) -> int:
    limits = GatewayLimits(
        max_clients=args.max_clients,
        max_frame_payload=args.max_frame,
        frames_per_second=args.frames_per_second,
        bytes_per_second=args.bytes_per_second,
    )
    tokens = None if args.tokens_file is None else read_tokens(args.tokens_file)
    running = await gateway(args.address, args.target, tokens=tokens, limits=limits, **tls_settings(args, server=True))
    stop_on_signals(running.close)
    announce(f"gateway {running.bound_address} -> {args.target}")
    async with running:
        await running.serve_forever()
    return OK


def run_gateway(args: argparse.Namespace, out: Output) -> int:
    return run(relay(args))
