"""``ipfi call``, ``serve`` and ``info``: procedures, from the command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ..aio import connect, run, serve
from ..core.errors import ProcedureNotFound
from ..core.interface import DESCRIBE, Interface
from .exit_codes import OK, UsageError
from .messaging import announce, stop_on_signals
from .output import Output


def parse_arguments(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    positional = [json.loads(text) for text in args.args]
    keywords = json.loads(args.kwargs) if args.kwargs else {}
    if not isinstance(keywords, dict):
        raise UsageError("--kwargs must be a JSON object")
    return positional, keywords


async def call_procedure(args: argparse.Namespace, out: Output) -> int:
    positional, keywords = parse_arguments(args)
    async with asyncio.timeout(args.timeout or None), connect(args.address) as peer:
        # stream() also serves a unary procedure: its one result is the one item.
        async for item in peer.stream(args.procedure, *positional, **keywords):
            out.value(item)
    return OK


def run_call(args: argparse.Namespace, out: Output) -> int:
    return run(call_procedure(args, out))


def load_interface(spec: str) -> Interface:
    """``package.module:name`` to the :class:`~ipfi.Interface` it names. The current directory is
    importable, after everything installed: a file there never shadows a module the run imports."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(f"expected MODULE:INTERFACE, got {spec!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from exc
    iface = getattr(module, attribute, None)
    if not isinstance(iface, Interface):
        raise UsageError(f"{spec} is {type(iface).__name__}, not an ipfi.Interface")
    return iface


async def serve_interface(args: argparse.Namespace, iface: Interface) -> int:
    server = await serve(args.address, iface)
    stop_on_signals(server)
    announce(f"serving {len(iface)} procedures of {args.interface} on {server.bound_address}")
    async with server:
        await server.serve_forever()
    return OK


def run_serve(args: argparse.Namespace, out: Output) -> int:
    return run(serve_interface(args, load_interface(args.interface)))


async def gather_info(args: argparse.Namespace) -> dict[str, Any]:
    async with asyncio.timeout(args.timeout or None), connect(args.address) as peer:
        hello = peer.hello
        assert hello is not None
        extension = hello.extension or {}
        round_trip = await peer.ping()
        procedures = None
        if peer.codec is not None:
            try:
                procedures = await peer.call(DESCRIBE)
            except ProcedureNotFound:
                procedures = []  # a peer that offers no interface
        credentials = peer.credentials
        return {
            "address": args.address,
            "protocol": hello.protocol,
            "version": hello.version,
            "peer_id": peer.peer_id,
            "channels": list(peer.channels),
            "rpc": peer.codec is not None,
            "codec": peer.codec,
            "max_frame": extension.get("max_frame"),
            "ping_ms": round(round_trip * 1000, 3),
            "peer_pid": credentials.pid if credentials else None,
            "peer_uid": credentials.uid if credentials else None,
            "peer_gid": credentials.gid if credentials else None,
            "procedures": procedures,
        }


def run_info(args: argparse.Namespace, out: Output) -> int:
    info = run(gather_info(args))
    if out.format == "json":
        out.record(info)
        return OK
    procedures = info.pop("procedures") or []
    out.record(info)
    if procedures:
        out.rows([{key: entry[key] for key in ("name", "signature", "kind", "doc")} for entry in procedures])
    return OK
