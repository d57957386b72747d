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
from . import stubs
from .arguments import tls_settings
from .exit_codes import OK, UsageError
from .messaging import CLIENT_TIMEOUT, announce, stop_on_signals
from .output import CHANNEL_NAMES, Output


async def described(peer: Peer) -> list[dict[str, Any]]:
    """The peer's procedures (see :meth:`Interface.describe`); none from a peer without the call."""
    try:
        procedures = await peer.call(DESCRIBE)
    except ProcedureNotFound:
        return []
    return [entry for entry in procedures if isinstance(entry, dict)] if isinstance(procedures, list) else []


async def parse_arguments(args: argparse.Namespace, peer: Peer) -> tuple[list[Any], dict[str, Any]]:
    """The positional arguments as the procedure's parameter schemas read them (see
    :func:`stubs.parse_argument`), and ``--kwargs``."""
    try:
        keywords = json.loads(args.kwargs) if args.kwargs else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"--kwargs is not JSON: {exc}") from None
    if not isinstance(keywords, dict):
        raise UsageError("--kwargs must be a JSON object")
    parameters: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    if args.args:
        for entry in await described(peer):
            if entry.get("name") == args.procedure:
                parameters, defs = entry.get("parameters") or [], entry.get("$defs") or {}
    positional = [p for p in parameters if p.get("kind") in ("positional_only", "positional_or_keyword")]
    rest = next((p for p in parameters if p.get("kind") == "var_positional"), None)
    values = []
    for index, text in enumerate(args.args):
        parameter = positional[index] if index < len(positional) else rest
        name = str(parameter.get("name")) if parameter else f"#{index + 1}"
        values.append(stubs.parse_argument(text, parameter.get("schema") if parameter else None, defs, name))
    return values, keywords


async def call_procedure(args: argparse.Namespace, out: Output) -> int:
    timeout = args.timeout or CLIENT_TIMEOUT
    try:
        async with asyncio.timeout(timeout), connect(args.address, **tls_settings(args, server=False)) as peer:
            positional, keywords = await parse_arguments(args, peer)
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
    server = await serve(args.address, iface, **tls_settings(args, server=True))
    stop_on_signals(server.close)
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


async def connect_patiently(address: str, timeout: float, **tls: Any) -> Peer:
    """As ipcprims' ``info``: a socket not there yet, or refusing, is tried again until ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await connect(address, **tls)
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)


async def gather_info(args: argparse.Namespace) -> dict[str, Any]:
    timeout = args.timeout or INFO_TIMEOUT
    try:
        peer = await connect_patiently(args.address, timeout, **tls_settings(args, server=False))
    except TimeoutError:
        raise TimeoutError(f"nothing answered at {args.address} within {timeout:g}s") from None
    async with asyncio.timeout(timeout), peer:
        hello = peer.hello
        assert hello is not None
        extension = hello.extension or {}
        round_trip = await peer.ping()
        procedures = await described(peer) if peer.codec is not None else None
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


async def write_stubs(args: argparse.Namespace) -> str:
    timeout = args.timeout or CLIENT_TIMEOUT
    try:
        async with asyncio.timeout(timeout), connect(args.address, **tls_settings(args, server=False)) as peer:
            procedures = await described(peer)
    except TimeoutError:
        raise TimeoutError(f"no description from {args.address} within {timeout:g}s") from None
    return stubs.stub_module(procedures, source=args.address, asynchronous=not args.sync, name=args.class_name)


def run_stubs(args: argparse.Namespace, out: Output) -> int:
    sys.stdout.write(run(write_stubs(args)))
    return OK
