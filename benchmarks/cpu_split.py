"""Whose CPU a call, a stream item and a 1 MiB echo cost: the client's and the server's, apart.

    python -m benchmarks.cpu_split [--systems NAME,...] [--calls N] [--items N] [--echoes N] [--quick]

For each system, a server process and this process as its client, both pinned to CPU 0 (as in the
pinned tables), make ``--calls`` sequential calls (``echo(16 bytes)``), run one stream of ``--items``
16-byte items and ``--echoes`` sequential 1 MiB echoes (after a shorter round of each to warm up).
Printed per call, item and echo: each side's CPU time, every thread counted
(``/proc/PID/task/*/schedstat``): where a system is slower than its floor, whose work the gap is.
Per call also each side's context switches (``/proc/PID/task/*/status``): how often it slept
(waiting for the other) and how often it was preempted with work left. On one CPU the two sides
settle into a pattern (the client sleeps in its read and the server is preempted by its reply, or
the reverse) that moves CPU time between them and changes the total.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Any

from .harness import PAYLOAD, _maybe, cpu_seconds, load_system, run_loop
from .processes import running_server
from .systems import SYSTEMS, System

MIB = 1 << 20
DEFAULT_SYSTEMS = (
    "raw asyncio floor",
    "raw blocking floor",
    "minimal rpc (reference)",
    "ipfi uvloop async-def",
    "ipfi blocking",
    "ipfi blocking->uvloop def",
    "ipfi blocking->uvloop async-def",
    "minimal rpc blocking->uvloop (reference)",
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


def context_switches(pid: int | str = "self") -> tuple[int, int]:
    """A process's voluntary (it slept) and involuntary (it was preempted) context switches so far,
    every thread counted."""
    slept = preempted = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/status") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches"):
                    slept += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    preempted += int(line.split()[1])
    return slept, preempted


class CallSplit(Split):
    """:class:`Split`, and each side's context switches."""

    def __init__(self, server_pid: int) -> None:
        self._switches = context_switches(), context_switches(server_pid)
        super().__init__(server_pid)

    def per(self, count: int) -> dict[str, float]:
        figures = super().per(count)
        now = context_switches(), context_switches(self._pid)
        for side, before, after in zip(("client", "server"), self._switches, now, strict=True):
            figures[f"{side} slept"] = (after[0] - before[0]) / count
            figures[f"{side} preempted"] = (after[1] - before[1]) / count
        return figures


async def _measure(
    module: Any, endpoint: tuple[str, Any], server_pid: int, calls: int, items: int, echoes: int
) -> dict[str, Any]:
    client = await _maybe(module.connect(endpoint))
    try:
        for _ in range(max(1, calls // 10)):
            await _maybe(client.echo(PAYLOAD))
        call_split = CallSplit(server_pid)
        for _ in range(calls):
            await _maybe(client.echo(PAYLOAD))
        sequential = call_split.per(calls)
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
        return {"calls": sequential, "stream": stream, "echo": split.per(echoes)}
    finally:
        await _maybe(client.close())


def measure(system: System, calls: int, items: int, echoes: int) -> dict[str, Any]:
    """``system``'s split, its server in a process of its own, its client here (both on CPU 0)."""
    os.sched_setaffinity(0, {0})
    with running_server(system, "unix", pinned=True) as (server, endpoint):
        work = _measure(load_system(system.module), endpoint, server.pid, calls, items, echoes)
        return run_loop(work, system.loop)  # type: ignore[no-any-return]


def _row(name: str, stream: dict[str, float], echo: dict[str, float]) -> str:
    def sides(figures: dict[str, float], unit: float) -> list[str]:
        return [f"{figures[side] * unit:,.0f}" for side in ("client", "server")]

    cells = [name, f"{1 / stream['wall']:,.0f}", *sides(stream, 1e9), f"{1 / echo['wall']:,.0f}", *sides(echo, 1e6)]
    return "| " + " | ".join(cells) + " |"


def _calls_row(name: str, calls: dict[str, float]) -> str:
    cells = [name, f"{1 / calls['wall']:,.0f}", f"{calls['client'] * 1e6:.1f}", f"{calls['server'] * 1e6:.1f}"]
    cells += [f"{calls[key]:.2f}" for key in ("client slept", "client preempted", "server slept", "server preempted")]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS), help="comma-separated names")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--echoes", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few items and echoes")
    args = parser.parse_args()
    calls, items, echoes = (500, 2_000, 20) if args.quick else (args.calls, args.items, args.echoes)
    by_name: dict[str, System] = {system.name: system for system in SYSTEMS}
    results = {name: measure(by_name[name], calls, items, echoes) for name in args.systems.split(",")}
    print(f"# CPU and context switches per sequential call ({calls:,} of echo(16 bytes)), each side\n")
    switches = "client slept | client preempted | server slept | server preempted"
    print(f"| system | calls/s | client µs | server µs | {switches} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, figures in results.items():
        print(_calls_row(name, figures["calls"]))
    print(f"\n# CPU per stream item ({items:,} of 16 bytes) and per 1 MiB echo ({echoes:,}), each side\n")
    print("| system | items/s | client ns/item | server ns/item | MiB/s | client µs/echo | server µs/echo |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, figures in results.items():
        print(_row(name, figures["stream"], figures["echo"]))


if __name__ == "__main__":
    main()
