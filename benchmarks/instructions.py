"""Instructions per round trip, counted by callgrind: deterministic, unlike timings on a shared VM.

    python -m benchmarks.instructions [--driver aio|aio-async|aio-stream|sync|sync-stream|floor|...] [--untyped]
                                      [--calls N] [--warmup N] [--payload BYTES]
    python -m benchmarks.instructions --client-of SYSTEM [--calls N] [--warmup N]
    python -m benchmarks.instructions --server-of SYSTEM [--calls N] [--warmup N]

Runs a client and a server in one process over a Unix socket (the asyncio driver on uvloop, or the
blocking driver with its threads) under ``valgrind --tool=callgrind`` twice, for ``calls`` and for
``warmup`` calls, and prints the difference divided by the calls between: start-up cancels out.
``aio-async`` serves an ``async def`` procedure instead of a plain ``def``, ``aio-stream`` counts per
item of an async generator's stream (``--calls`` items), ``sync-stream`` per item of a plain
generator's, served by the blocking driver; ``--untyped`` serves them without checking
their type hints. ``floor``, ``minimal`` (and their ``-stream``) count the same through the
benchmark's asyncio floor and its minimal RPC in Python, for reference; ``minimal-def`` with the
minimal RPC's ``echo`` a plain function, called inline (against ``minimal``: what a Task costs).
``--payload`` sets the size of the echoed argument (16 bytes by default; ``--payload 1048576``
counts a 1 MiB echo's path, where valgrind counts a ``memcpy``'s ``rep movsb`` once per byte).
``--client-of`` counts one side alone: the client of a system of the benchmark's (``benchmarks/systems``,
by name, e.g. ``"ipfi blocking->uvloop def"`` against ``"minimal rpc blocking->uvloop (reference)"``),
its server in a process of its own that valgrind does not watch; ``--server-of`` the other side,
the server under valgrind (stopped by SIGTERM, which valgrind counts to), the client unwatched.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import ipfi

from .harness import _maybe, load_system, run_loop
from .processes import running_server
from .systems import SYSTEMS, System

PAYLOAD = b"0123456789abcdef"  # (--payload replaces it)
DEFAULT_PAYLOAD = len(PAYLOAD)


#: Whether the procedures' type hints are checked (ipfi's default); ``--untyped`` turns it off.
CHECK_TYPES = True


def _interface() -> ipfi.Interface:
    iface = ipfi.Interface(check_types=CHECK_TYPES)

    @iface.procedure
    def echo(value: bytes) -> bytes:
        return value

    @iface.procedure(name="aecho")
    async def aecho(value: bytes) -> bytes:
        return value

    @iface.procedure
    async def items(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield PAYLOAD

    @iface.procedure
    def plain_items(count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield PAYLOAD

    return iface


async def _run_aio(address: str, calls: int, name: str) -> None:
    async with await ipfi.serve(address, _interface()), ipfi.connect(address) as peer:
        if name == "items":  # (one stream of that many items)
            async for _ in peer.stream("items", calls):
                pass
            return
        for _ in range(calls):
            await peer.call(name, PAYLOAD)


def _run_sync(address: str, calls: int, stream: bool) -> None:
    with ipfi.sync.serve(address, _interface()), ipfi.sync.connect(address) as peer:
        if stream:  # (one stream of that many items, from a plain generator in a worker thread)
            for _ in peer.stream("plain_items", calls):
                pass
            return
        for _ in range(calls):
            peer.call("echo", PAYLOAD)


async def _run_reference(module_name: str, path: str, calls: int, stream: bool) -> None:
    """The same round trips (or items) through a reference system of the benchmark: the asyncio
    floor or the minimal RPC (``benchmarks/systems``)."""
    module = load_system(module_name)
    endpoint = ("unix", path)
    ready = asyncio.Event()
    server = asyncio.ensure_future(module.serve(endpoint, ready.set))
    await ready.wait()
    client = await module.connect(endpoint)
    if stream:
        await client.stream(calls)
    else:
        for _ in range(calls):
            await client.echo(PAYLOAD)
    client.close()
    server.cancel()


#: The reference systems, by --driver: (module, a stream?).
REFERENCES = {
    "floor": ("raw_aio", False),
    "floor-stream": ("raw_aio", True),
    "minimal": ("minimal_rpc", False),
    "minimal-stream": ("minimal_rpc", True),
    "minimal-def": ("minimal_rpc:def", False),
}


def run(driver: str, calls: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        address = f"unix:{Path(directory) / 'b.sock'}"
        if driver.startswith("sync"):
            _run_sync(address, calls, stream=driver == "sync-stream")
            return
        import uvloop

        if driver in REFERENCES:
            module_name, stream = REFERENCES[driver]
            uvloop.run(_run_reference(module_name, str(Path(directory) / "r.sock"), calls, stream))
            return
        name = {"aio-async": "aecho", "aio-stream": "items"}.get(driver, "echo")
        uvloop.run(_run_aio(address, calls, name))


def run_client(system: System, path: str, calls: int) -> None:
    """``calls`` sequential echoes from a benchmark system's client, to its server at ``path``."""
    module = load_system(system.module)
    if not module.IS_ASYNC:  # (called as its users call it: no loop, no await)
        client = module.connect(("unix", path))
        for _ in range(calls):
            client.echo(PAYLOAD)
        client.close()
        return

    async def echoes() -> None:
        client = await module.connect(("unix", path))
        for _ in range(calls):
            await client.echo(PAYLOAD)
        await _maybe(client.close())

    run_loop(echoes(), system.loop)


CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


def count(run: list[str]) -> int:
    """Instructions that callgrind counts for ``python -m benchmarks.instructions`` with ``run``."""
    command = [*CALLGRIND, sys.executable, "-m", "benchmarks.instructions", *run]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measured run failed (exit status {done.returncode}):\n{done.stderr[-2000:]}")
    return _collected(done.stderr)


def _collected(report: str) -> int:
    match = re.search(r"Collected : (\d+)", report)
    if match is None:
        raise RuntimeError(f"no callgrind total in: {report[-500:]}")
    return int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--driver", choices=["aio", "aio-async", "aio-stream", "sync", "sync-stream", *REFERENCES], default="aio"
    )
    parser.add_argument("--calls", type=int, default=12_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--untyped", action="store_true", help="procedures' type hints not checked")
    parser.add_argument("--payload", type=int, default=DEFAULT_PAYLOAD, help="bytes echoed per call")
    parser.add_argument("--client-of", metavar="SYSTEM", help="count this system's client alone")
    parser.add_argument("--server-of", metavar="SYSTEM", help="count this system's server alone")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)  # the measured child
    parser.add_argument("--server-at", help=argparse.SUPPRESS)  # (its server's socket, with --client-of)
    args = parser.parse_args()
    if args.client_of is not None:
        count_client(args.client_of, args.calls, args.warmup, args.run, args.server_at)
        return
    if args.server_of is not None:
        count_server(args.server_of, args.calls, args.warmup)
        return
    if args.run is not None:
        global CHECK_TYPES, PAYLOAD
        CHECK_TYPES = not args.untyped
        if args.payload != DEFAULT_PAYLOAD:
            PAYLOAD = bytes(args.payload)
        run(args.driver, args.run)
        return
    options = ["--driver", args.driver, "--payload", str(args.payload), *(["--untyped"] if args.untyped else [])]
    many, few = (count([*options, "--run", str(calls)]) for calls in (args.calls, args.warmup))
    shown = f"{args.driver}{' untyped' if args.untyped else ''}"
    if args.payload != DEFAULT_PAYLOAD:
        shown += f" of {args.payload:,} bytes"
    unit = "item streamed" if args.driver.endswith("-stream") else "round trip"
    print(f"{shown}: {(many - few) / (args.calls - args.warmup):,.0f} instructions per {unit}")


def _system(name: str) -> System:
    system = next((system for system in SYSTEMS if system.name == name), None)
    if system is None:
        raise SystemExit(f"no system {name!r}; the systems: {', '.join(system.name for system in SYSTEMS)}")
    return system


def count_client(name: str, calls: int, warmup: int, run: int | None, server_at: str | None) -> None:
    """``--client-of``: in the parent, start the server and count two client runs; in the measured
    child (``run``), be the client."""
    system = _system(name)
    if run is not None and server_at is not None:
        run_client(system, server_at, run)
        return
    with running_server(system, "unix", pinned=False) as (_, (_, path)):
        options = ["--client-of", name, "--server-at", path]
        many, few = (count([*options, "--run", str(number)]) for number in (calls, warmup))
    print(f"the client of {name}: {(many - few) / (calls - warmup):,.0f} instructions per round trip")


def count_server(name: str, calls: int, warmup: int) -> None:
    """``--server-of``: two runs of the server under callgrind, each answering this process's client."""
    system = _system(name)
    totals = []
    for number in (calls, warmup):
        with running_server(system, "unix", pinned=False, under=CALLGRIND) as (server, (_, path)):
            run_client(system, path, number)
            server.terminate()
            _, report = server.communicate()
            totals.append(_collected(report.decode()))
    print(f"the server of {name}: {(totals[0] - totals[1]) / (calls - warmup):,.0f} instructions per call")


if __name__ == "__main__":
    main()
