"""Run every system in every table and print medians, spreads and ipfi's ratios.

    python -m benchmarks [--repeat 3] [--duration 0.3] [--tables unix-pinned,unix,tcp-pinned] [--quick]

Each run starts the server and the client as two processes (``taskset -c 0`` on both for a pinned
table) and measures, from the client: sequential ``echo(16 bytes)`` (calls/s, p50, p99, CPU of both
processes per call), 64 calls in flight, one stream of 100,000 items of 16 bytes, and echoes of 16 MiB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .systems import GRPC_AIO, SYSTEMS, System
from .systems.grpc_common import compile_proto

ROOT = Path(__file__).resolve().parents[1]
TABLES = {
    "unix-pinned": ("unix", True),
    "unix": ("unix", False),
    "tcp-pinned": ("tcp", True),
    "tcp": ("tcp", False),
}
METRICS = [
    ("seq_per_s", "seq calls/s", "{:,.0f}"),
    ("p50_us", "p50 µs", "{:.1f}"),
    ("p99_us", "p99 µs", "{:.1f}"),
    ("cpu_us_per_call", "CPU µs/call", "{:.1f}"),
    ("in_flight_per_s", "64 in flight/s", "{:,.0f}"),
    ("stream_items_per_s", "stream items/s", "{:,.0f}"),
    ("big_mib_per_s", "16 MiB MiB/s", "{:,.0f}"),
]
#: The targets (issue 5), judged on the pinned Unix table: (system, metric, compared with, at least).
TARGETS = [
    ("ipfi asyncio+uvloop", "seq_per_s", "raw asyncio floor", 0.70),
    ("ipfi asyncio+uvloop", "seq_per_s", GRPC_AIO, 5.0),
    ("ipfi asyncio+uvloop", "in_flight_per_s", "raw asyncio floor", 0.50),
    ("ipfi asyncio+uvloop", "in_flight_per_s", GRPC_AIO, 20.0),
    ("ipfi asyncio+uvloop", "stream_items_per_s", "raw asyncio floor", 0.40),
    ("ipfi asyncio+uvloop", "stream_items_per_s", GRPC_AIO, 50.0),
    ("ipfi asyncio+uvloop", "big_mib_per_s", "pyzmq", 1.0),
    ("ipfi blocking->uvloop", "seq_per_s", "raw blocking floor", 0.60),
    ("ipfi blocking", "seq_per_s", "raw blocking floor", 0.60),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command(role: str, module: str, loop: str | None, endpoint: tuple[str, Any], pinned: bool) -> list[str]:
    kind, where = endpoint
    command = [sys.executable, "-m", "benchmarks.harness", role, module, loop or "-", kind, str(where)]
    return ["taskset", "-c", "0", *command] if pinned else command


def run_one(system: System, transport: str, pinned: bool, duration: float, items: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="ipfi-bench-") as directory:
        endpoint: tuple[str, Any] = (
            ("unix", os.path.join(directory, "s")) if transport == "unix" else ("tcp", _free_port())
        )
        server_module, server_loop = system.server_module or system.module, system.server_loop or system.loop
        server = subprocess.Popen(
            _command("server", server_module, server_loop, endpoint, pinned), stdout=subprocess.PIPE, cwd=ROOT, env=env
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"{system.name}: the server did not start")
            client = _command("client", system.module, system.loop, endpoint, pinned)
            client += [str(server.pid), str(duration), str(items)]
            result = subprocess.run(client, capture_output=True, cwd=ROOT, env=env, timeout=300, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"{system.name}: the client failed:\n{result.stderr.decode()}")
            return json.loads(result.stdout)  # type: ignore[no-any-return]
        finally:
            server.kill()
            server.wait()


def _available(system: System) -> bool:
    return all(importlib.util.find_spec(package) is not None for package in system.needs)


def _median_and_spread(values: list[float]) -> tuple[float, float]:
    median = statistics.median(values)
    return median, (max(values) - min(values)) / 2 / median if median else 0.0


def print_table(title: str, results: dict[str, list[dict[str, float]]], repeat: int) -> dict[str, dict[str, float]]:
    print(f"\n## {title} (medians of {repeat}; ± is half the range, as a share of the median)\n")
    print("| system | " + " | ".join(label for _, label, _ in METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    medians: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        cells = []
        medians[name] = {}
        for key, _, form in METRICS:
            median, spread = _median_and_spread([run[key] for run in runs])
            medians[name][key] = median
            cells.append(form.format(median) + (f" ±{spread:.0%}" if repeat > 1 else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nipfi as a share of the matching floor, and as a multiple of grpc.aio:\n")
    print("| system | " + " | ".join(label for key, label, _ in METRICS if key.endswith("_s")) + " |")
    print("|---|" + "---:|" * sum(key.endswith("_s") for key, _, _ in METRICS))
    by_name = {system.name: system for system in SYSTEMS}
    for name, figures in medians.items():
        system = by_name[name]
        if not system.is_ipfi:
            continue
        cells = []
        for key, _, _ in METRICS:
            if not key.endswith("_s"):
                continue
            floor = medians.get(system.floor or "", {}).get(key)
            grpc = medians.get(GRPC_AIO, {}).get(key)
            cells.append(
                (f"{figures[key] / floor:.0%} of floor" if floor else "-")
                + (f", {figures[key] / grpc:.1f}x grpc.aio" if grpc else "")
            )
        print(f"| {name} | " + " | ".join(cells) + " |")
    return medians


def print_targets(medians: dict[str, dict[str, float]]) -> None:
    print("\nTargets (pinned Unix table):\n")
    for name, key, other, least in TARGETS:
        if name not in medians or other not in medians:
            continue
        ratio = medians[name][key] / medians[other][key]
        shown = f"{ratio:.0%}" if least < 1.5 else f"{ratio:.1f}x"
        wanted = f"{least:.0%}" if least < 1.5 else f"{least:.0f}x"
        verdict = "met" if ratio >= least else "NOT met"
        print(f"- {name} {key} vs {other}: {shown} (target ≥ {wanted}): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=0.3, help="seconds per timed scenario")
    parser.add_argument("--items", type=int, default=100_000, help="items in the stream")
    parser.add_argument("--tables", default="unix-pinned,unix,tcp-pinned", help=f"some of {', '.join(TABLES)}")
    parser.add_argument("--systems", help="comma-separated names (default: all installed)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one short repeat of the pinned Unix table")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.duration, args.items, args.tables = 1, 0.05, 2_000, "unix-pinned"
    wanted = set(args.systems.split(",")) if args.systems else None
    systems = [system for system in SYSTEMS if wanted is None or system.name in wanted]
    missing = [system.name for system in systems if not _available(system)]
    if missing:
        print(f"skipped (pip install -e '.[bench]'): {', '.join(missing)}", file=sys.stderr)
    systems = [system for system in systems if system.name not in missing]
    if any("grpc" in system.needs for system in systems):
        compile_proto()
    if not shutil.which("taskset"):
        sys.exit("taskset (util-linux) is needed for the pinned tables")
    started = time.monotonic()
    print(f"# ipfi benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
    for table in args.tables.split(","):
        transport, pinned = TABLES[table]
        results: dict[str, list[dict[str, float]]] = {system.name: [] for system in systems}
        for _ in range(args.repeat):
            for system in systems:
                results[system.name].append(run_one(system, transport, pinned, args.duration, args.items))
        title = f"{transport}, {'client and server pinned to CPU 0' if pinned else 'unpinned'}"
        medians = print_table(title, results, args.repeat)
        if table == "unix-pinned":
            print_targets(medians)
    print(f"\n(the whole run took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
