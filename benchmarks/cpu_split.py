"""Whose CPU a stream item and a 1 MiB echo cost: the client's and the server's, apart.

    python -m benchmarks.cpu_split [--systems NAME,...] [--items N] [--echoes N] [--quick]

For each system, a server process and this process as its client, both pinned to CPU 0 (as in the
pinned tables), run one stream of ``--items`` 16-byte items and ``--echoes`` sequential 1 MiB echoes
(after a shorter round of each to warm up). Printed per item and per echo: each side's CPU time,
every thread counted (``/proc/PID/task/*/schedstat``): where a system is slower than its floor,
whose work the gap is.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from .harness import _maybe, cpu_seconds, load_system, run_loop
from .processes import running_server
from .systems import SYSTEMS, System

MIB = 1 << 20
DEFAULT_SYSTEMS = (
    "raw asyncio floor",
    "raw blocking floor",
    "minimal rpc (reference)",
    "ipfi uvloop async-def",
    "ipfi blocking",
    "ipfi blocking->uvloop async-def",
)


class Split:
    """CPU time of this process and of the server's over a stretch of work."""

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid
        self._start = self._now()

    def _now(self) -> tuple[float, float, float]:
        return time.perf_counter(), cpu_seconds(), cpu_seconds(self._pid)

    def per(self, count: int) -> dict[str, float]:
        """Seconds per unit of work: wall, and each side's CPU."""
        wall, client, server = (b - a for a, b in zip(self._start, self._now(), strict=True))
        return {"wall": wall / count, "client": client / count, "server": server / count}


async def _measure(module: Any, endpoint: tuple[str, Any], server_pid: int, items: int, echoes: int) -> dict[str, Any]:
    client = await _maybe(module.connect(endpoint))
    try:
        await _maybe(client.stream(max(1, items // 10)))
        split = Split(server_pid)
        received = await _maybe(client.stream(items))
        stream = split.per(received)
        payload = bytes(MIB)
        for _ in range(max(1, echoes // 10)):
            await _maybe(client.echo(payload))
        split = Split(server_pid)
        for _ in range(echoes):
            await _maybe(client.echo(payload))
        return {"stream": stream, "echo": split.per(echoes)}
    finally:
        await _maybe(client.close())


def measure(system: System, items: int, echoes: int) -> dict[str, Any]:
    """``system``'s split, its server in a process of its own, its client here (both on CPU 0)."""
    os.sched_setaffinity(0, {0})
    with running_server(system, "unix", pinned=True) as (server, endpoint):
        return run_loop(_measure(load_system(system.module), endpoint, server.pid, items, echoes), system.loop)  # type: ignore[no-any-return]


def _row(name: str, stream: dict[str, float], echo: dict[str, float]) -> str:
    def sides(figures: dict[str, float], unit: float) -> list[str]:
        return [f"{figures[side] * unit:,.0f}" for side in ("client", "server")]

    cells = [name, f"{1 / stream['wall']:,.0f}", *sides(stream, 1e9), f"{1 / echo['wall']:,.0f}", *sides(echo, 1e6)]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS), help="comma-separated names")
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--echoes", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few items and echoes")
    args = parser.parse_args()
    items, echoes = (2_000, 20) if args.quick else (args.items, args.echoes)
    by_name: dict[str, System] = {system.name: system for system in SYSTEMS}
    wanted = [by_name[name] for name in args.systems.split(",")]
    print(f"# CPU per stream item ({items:,} of 16 bytes) and per 1 MiB echo ({echoes:,}), each side\n")
    print("| system | items/s | client ns/item | server ns/item | MiB/s | client µs/echo | server µs/echo |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for system in wanted:
        figures = measure(system, items, echoes)
        print(_row(system.name, figures["stream"], figures["echo"]))


if __name__ == "__main__":
    main()
