"""``ipfi call``, ``serve`` and ``info``: procedures, from the command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ..aio import Peer, connect, run, serve
from ..core.errors import ProcedureNotFound
from ..core.interface import DESCRIBE, Interface
from .exit_codes import OK, UsageError
from .messaging import CLIENT_TIMEOUT, announce, stop_on_signals
from .output import CHANNEL_NAMES, Output


def parse_arguments(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    positional = [json.loads(text) for text in args.args]
    keywords = json.loads(args.kwargs) if args.kwargs else {}
    if not isinstance(keywords, dict):
        raise UsageError("--kwargs must be a JSON object")
    return positional, keywords


async def call_procedure(args: argparse.Namespace, out: Output) -> int:
    positional, keywords = parse_arguments(args)
    timeout = args.timeout or CLIENT_TIMEOUT
    try:
        async with asyncio.timeout(timeout), connect(args.address) as peer:
            # stream() also serves a unary procedure: its one result is the one item.
            async for item in peer.stream(args.procedure, *positional, **keywords):
                out.value(item)
    except TimeoutError as exc:
        raise TimeoutError(str(exc) or f"{args.procedure} did not finish within {timeout:g}s") from None
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


#: ``info``'s JSON ``schema_id``: ipcprims' (ipfi's record is a superset).
INFO_SCHEMA = "https://schemas.3leaps.dev/ipcprims/cli/v1/connection-info.schema.json"
#: How long ``info`` tries to reach a peer when --timeout is not given (ipcprims' default).
INFO_TIMEOUT = 5.0


async def connect_patiently(address: str, timeout: float) -> Peer:
    """As ipcprims' ``info``: a socket not there yet, or refusing, is tried again until ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await connect(address)
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)


async def gather_info(args: argparse.Namespace) -> dict[str, Any]:
    timeout = args.timeout or INFO_TIMEOUT
    try:
        peer = await connect_patiently(args.address, timeout)
    except TimeoutError:
        raise TimeoutError(f"nothing answered at {args.address} within {timeout:g}s") from None
    async with asyncio.timeout(timeout), peer:
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
            "schema_id": INFO_SCHEMA,
            "peer_id": peer.peer_id,
            "protocol_version": hello.version,
            "channels": [{"id": channel, "name": CHANNEL_NAMES.get(channel, "USER")} for channel in peer.channels],
            "ping_latency_ms": round(round_trip * 1000, 2),
            "peer_credentials": (
                {"uid": credentials.uid, "gid": credentials.gid, "pid": credentials.pid} if credentials else None
            ),
            "connected": True,
            # ipfi's own, beyond ipcprims' fields:
            "address": args.address,
            "protocol": hello.protocol,
            "rpc": peer.codec is not None,
            "codec": peer.codec,
            "max_frame": extension.get("max_frame"),
            "procedures": procedures,
        }


def run_info(args: argparse.Namespace, out: Output) -> int:
    info = run(gather_info(args))
    if out.format == "json":
        out.record(info)
        return OK
    if out.format == "raw":
        out.value(info["peer_id"])
        return OK
    procedures = info.pop("procedures") or []
    credentials = info.pop("peer_credentials")
    info["channels"] = [f"{channel['name']} ({channel['id']})" for channel in info["channels"]]
    info["peer_credentials"] = "uid={uid} gid={gid} pid={pid}".format(**credentials) if credentials else "unavailable"
    del info["schema_id"]
    out.record(info)
    if procedures:
        out.rows([{key: entry[key] for key in ("name", "signature", "kind", "doc")} for entry in procedures])
    return OK
