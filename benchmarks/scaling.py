"""Two tables about many connections: aggregate calls/s from many client processes, and the server's
memory per idle connection (and what a connection keeps after a 16 MiB message).

The runner (``python -m benchmarks --tables many-clients,memory``) calls :func:`many_clients` and
:func:`memory`; they start their client processes as ``python -m benchmarks.scaling ROLE ...``.
Server memory is its resident set (``VmRSS``), read with glibc's mmap threshold fixed
(``MALLOC_MMAP_THRESHOLD_``): glibc otherwise raises it after a large free and keeps the next large
buffers in its heap after they are freed, which would charge the allocator's caching to the system.
Before anything is counted, one connection echoes a 16 MiB message and leaves: what a server sets
up once, at its first large message, is charged to no connection.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from .harness import PAYLOAD, _maybe, cpu_seconds, load_system, run_loop, timed_awaits, timed_calls
from .processes import ROOT, Endpoint, allow_many_files, command, environment, running_server
from .systems import System

CLIENT_COUNTS = (1, 4, 16, 64)
#: Enough that the resident set grows in proportion: with 200, pymalloc's arenas and pages made
#: the figure jump between ~2 and ~7 KiB from one run to the next.
IDLE_CONNECTIONS = 1000
#: Connections that each echo one 16 MiB message, then go idle.
LARGE_CONNECTIONS = 4
LARGE = 16 * 1024 * 1024
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _spawn(role: str, system: System, endpoint: Endpoint, *extra: str) -> subprocess.Popen[str]:
    line = command(role, system.module, system.loop, endpoint, pinned=False, runner="benchmarks.scaling")
    return subprocess.Popen(
        [*line, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment(),
    )


def _expect(process: subprocess.Popen[str], word: str) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith(word):
        raise RuntimeError(f"a client said {line!r}, not {word!r} (exit status {process.poll()})")
    return line


def _tell(process: subprocess.Popen[str], word: str) -> None:
    assert process.stdin is not None
    process.stdin.write(word + "\n")
    process.stdin.flush()


def many_clients(system: System, transport: str, duration: float, counts: tuple[int, ...]) -> dict[str, float]:
    """Aggregate sequential calls/s of each count of client processes against one server (unpinned),
    and whose CPU the calls took: the server's and all the clients' CPU µs per call, every thread
    counted, and the server's busy share of the run (under 100%: the clients are what is short of
    CPU)."""
    figures = {}
    for count in counts:
        with running_server(system, transport, pinned=False) as (server, endpoint):
            clients = [_spawn("many", system, endpoint, str(duration)) for _ in range(count)]
            try:
                for client in clients:
                    _expect(client, "ready")
                server_cpu, clients_cpu = _cpu_seconds(server, clients)
                started = time.perf_counter()
                for client in clients:
                    _tell(client, "go")
                reports = [json.loads(_expect(client, "{")) for client in clients]
                elapsed = time.perf_counter() - started
                server_after, clients_after = _cpu_seconds(server, clients)
            finally:
                for client in clients:
                    client.kill()
                    client.wait()
        calls = sum(report["calls"] for report in reports)
        figures[f"clients_{count}"] = sum(report["per_s"] for report in reports)
        figures[f"server_us_{count}"] = (server_after - server_cpu) / calls * 1e6
        figures[f"clients_us_{count}"] = (clients_after - clients_cpu) / calls * 1e6
        figures[f"server_busy_{count}"] = (server_after - server_cpu) / elapsed
    return figures


def _cpu_seconds(server: subprocess.Popen[bytes], clients: list[subprocess.Popen[str]]) -> tuple[float, float]:
    return cpu_seconds(server.pid), sum(cpu_seconds(client.pid) for client in clients)


def memory(system: System, transport: str) -> dict[str, float]:
    """KiB of server memory per idle connection, and per connection after a 16 MiB echo and 1 s idle."""
    env = environment(**FIXED_MMAP_THRESHOLD)
    with running_server(system, transport, pinned=False, env=env) as (server, endpoint):
        client = _spawn("idle", system, endpoint, str(IDLE_CONNECTIONS))
        try:
            _expect(client, "warm")
            time.sleep(1.0)  # (past the warm-up connection's end, and any buffer's release)
            before = _rss_kib(server.pid)
            _tell(client, "open")
            _expect(client, "open")
            time.sleep(0.5)
            idle = _rss_kib(server.pid)
            _tell(client, "large")
            _expect(client, "done")
            time.sleep(1.0)
            after_large = _rss_kib(server.pid)
        finally:
            client.kill()
            client.wait()
    return {
        "idle_kib": (idle - before) / IDLE_CONNECTIONS,
        "after_large_kib": (after_large - idle) / LARGE_CONNECTIONS,
    }


# -- the client processes ------------------------------------------------------------------------


async def _many(module: Any, endpoint: Endpoint, duration: float) -> None:
    client = await _maybe(module.connect(endpoint))
    timed = timed_awaits if module.IS_ASYNC else timed_calls
    await _maybe(timed(lambda: client.echo(PAYLOAD), 0.05))  # warm-up
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    started = time.perf_counter()
    calls = len(await _maybe(timed(lambda: client.echo(PAYLOAD), duration)))
    print(json.dumps({"calls": calls, "per_s": calls / (time.perf_counter() - started)}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # (alive until its CPU time is read; killed by the runner)


async def _idle(module: Any, endpoint: Endpoint, connections: int) -> None:
    # A first connection echoes a large message and leaves before anything is counted: what the
    # server then sets up once for all (ipfi imports ctypes, 184 KiB) is not any connection's.
    warm_up = await _maybe(module.connect(endpoint))
    await _maybe(warm_up.echo(bytes(LARGE)))
    await _maybe(warm_up.close())
    print("warm", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    clients = [await _maybe(module.connect(endpoint)) for _ in range(connections)]
    for client in clients:
        await _maybe(client.echo(PAYLOAD))
    print("open", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    large = bytes(LARGE)
    for client in clients[:LARGE_CONNECTIONS]:
        if len(await _maybe(client.echo(large))) != LARGE:
            raise AssertionError("the 16 MiB echo came back short")
    print("done", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # (killed by the runner)


def main() -> None:
    """``python -m benchmarks.scaling many|idle MODULE LOOP KIND WHERE ARGUMENT``."""
    role, spec, loop, kind, where, argument = sys.argv[1:7]
    allow_many_files()
    endpoint = (kind, int(where) if kind == "tcp" else where)
    module = load_system(spec)
    loop_name = None if loop == "-" else loop
    if role == "many":
        run_loop(_many(module, endpoint, float(argument)), loop_name)
    else:
        run_loop(_idle(module, endpoint, int(argument)), loop_name)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


if __name__ == "__main__":
    main()
