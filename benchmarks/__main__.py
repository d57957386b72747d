"""Run every system in every table and print medians, spreads and ipfi's ratios.

    python -m benchmarks [--repeat 3] [--duration 0.3] [--tables unix-pinned,...,memory] [--clients 1,4,16,64] [--quick]

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
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from . import scaling
from .processes import ROOT, command, environment, running_server
from .systems import (
    BLOCKING,
    BLOCKING_TO_ASYNC,
    BLOCKING_TO_PLAIN,
    FASTEST_PATH,
    GRPC_AIO,
    IN_PLACE_ASYNC,
    MINIMAL_BLOCKING_TO_ASYNC,
    MINIMAL_RPC,
    PLAIN_PATH,
    RAW_ASYNC,
    RAW_BLOCKING,
    SYSTEMS,
    USERS_PATH,
    System,
)
from .systems.grpc_common import compile_proto

TABLES = {
    "unix-pinned": ("unix", True),
    "unix": ("unix", False),
    "tcp-pinned": ("tcp", True),
    "tcp": ("tcp", False),
}
#: Tables of their own (benchmarks.scaling), for the systems in SCALING_SYSTEMS.
SCALING_TABLES = ("many-clients", "memory")
SCALING_SYSTEMS = (USERS_PATH, FASTEST_PATH, MINIMAL_RPC, RAW_ASYNC, GRPC_AIO)
METRICS = [
    ("seq_per_s", "seq calls/s", "{:,.0f}"),
    ("p50_us", "p50 µs", "{:.1f}"),
    ("p99_us", "p99 µs", "{:.1f}"),
    ("cpu_us_per_call", "CPU µs/call", "{:.1f}"),
    ("in_flight_per_s", "64 in flight/s", "{:,.0f}"),
    ("stream_items_per_s", "stream items/s", "{:,.0f}"),
    ("mib_echo_mib_per_s", "1 MiB MiB/s", "{:,.0f}"),
    ("big_mib_per_s", "16 MiB MiB/s", "{:,.0f}"),
]
#: The targets, judged on the pinned Unix table: (system, metric, compared with, at least). Issue 16's
#: are on the path users write; issue 5's, kept, on the fastest path.
TARGETS = [
    (USERS_PATH, "seq_per_s", RAW_ASYNC, 0.75),
    (USERS_PATH, "seq_per_s", PLAIN_PATH, 0.90),
    (USERS_PATH, "in_flight_per_s", RAW_ASYNC, 0.95),
    (USERS_PATH, "stream_items_per_s", RAW_ASYNC, 0.60),
    (BLOCKING_TO_ASYNC, "seq_per_s", RAW_BLOCKING, 0.55),
    (BLOCKING, "stream_items_per_s", BLOCKING_TO_PLAIN, 0.50),
    (USERS_PATH, "mib_echo_mib_per_s", RAW_BLOCKING, 0.85),
    (BLOCKING, "mib_echo_mib_per_s", RAW_BLOCKING, 0.85),
    (FASTEST_PATH, "seq_per_s", RAW_ASYNC, 0.70),
    (FASTEST_PATH, "seq_per_s", GRPC_AIO, 5.0),
    (FASTEST_PATH, "in_flight_per_s", GRPC_AIO, 20.0),
    (FASTEST_PATH, "stream_items_per_s", GRPC_AIO, 50.0),
    (FASTEST_PATH, "big_mib_per_s", "pyzmq", 1.0),
]


#: The references (systems/minimal_rpc*.py, systems/in_place_aio.py), each beside the ipfi system it
#: bounds: (reference, ipfi system, their floor, metrics).
REFERENCE_PAIRS = [
    (MINIMAL_RPC, USERS_PATH, RAW_ASYNC, ("seq_per_s", "in_flight_per_s", "stream_items_per_s")),
    (MINIMAL_BLOCKING_TO_ASYNC, BLOCKING_TO_ASYNC, RAW_BLOCKING, ("seq_per_s",)),
    (IN_PLACE_ASYNC, USERS_PATH, RAW_BLOCKING, ("mib_echo_mib_per_s", "big_mib_per_s")),
]


def run_one(system: System, transport: str, pinned: bool, duration: float, items: int) -> dict[str, float]:
    with running_server(system, transport, pinned) as (server, endpoint):
        client = command("client", system.module, system.loop, endpoint, pinned)
        client += [str(server.pid), str(duration), str(items)]
        result = subprocess.run(client, capture_output=True, cwd=ROOT, env=environment(), timeout=300, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{system.name}: the client failed:\n{result.stderr.decode()}")
        return json.loads(result.stdout)  # type: ignore[no-any-return]


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
    print("\nAs a share of the matching floor, and as a multiple of grpc.aio:\n")
    print("| system | " + " | ".join(label for key, label, _ in METRICS if key.endswith("_s")) + " |")
    print("|---|" + "---:|" * sum(key.endswith("_s") for key, _, _ in METRICS))
    by_name = {system.name: system for system in SYSTEMS}
    for name, figures in medians.items():
        system = by_name[name]
        if system.floor is None:
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
        print(f"- {name} {key} vs {other}: {shown} (target ≥ {wanted}): {_verdict(ratio >= least)}")
    for reference, system, floor, keys in REFERENCE_PAIRS:
        if reference not in medians or floor not in medians:
            continue
        print(f"\nWhat the least Python reaches ({reference}), and {system} beside it:\n")
        for key in keys:
            least = medians[reference][key]
            ours = f", {system} {medians[system][key] / least:.0%} of it" if system in medians else ""
            print(f"- {key}: {least / medians[floor][key]:.0%} of {floor}{ours}")


def print_many_clients(results: dict[str, list[dict[str, float]]], repeat: int, counts: tuple[int, ...]) -> None:
    title = "Many clients: aggregate sequential calls/s of N client processes, unix, unpinned"
    print(f"\n## {title} (medians of {repeat})\n")
    medians = {name: scaling.median_of(runs) for name, runs in results.items()}
    floor = medians.get(RAW_ASYNC)
    _print_counts_table(medians, counts, lambda name, figures, count: _with_share(name, figures, count, floor))
    print("\nWhose CPU: the server's and all the clients' CPU µs per call, and the server's busy share of the run:\n")
    _print_counts_table(medians, counts, _cpu_split_cell)
    if USERS_PATH in medians and floor:
        print()
        for count in (16, 64):
            if count not in counts:
                continue
            ratio = medians[USERS_PATH][f"clients_{count}"] / floor[f"clients_{count}"]
            verdict = _verdict(ratio >= 0.7)
            print(f"- {USERS_PATH} with {count} clients vs {RAW_ASYNC}: {ratio:.0%} (target ≥ 70%): {verdict}")


def _print_counts_table(
    medians: dict[str, dict[str, float]],
    counts: tuple[int, ...],
    cell: Callable[[str, dict[str, float], int], str],
) -> None:
    print("| system | " + " | ".join(f"{count} clients" for count in counts) + " |")
    print("|---|" + "---:|" * len(counts))
    for name, figures in medians.items():
        print(f"| {name} | " + " | ".join(cell(name, figures, count) for count in counts) + " |")


def _with_share(name: str, figures: dict[str, float], count: int, floor: dict[str, float] | None) -> str:
    value = figures[f"clients_{count}"]
    share = f" ({value / floor[f'clients_{count}']:.0%})" if floor and name != RAW_ASYNC else ""
    return f"{value:,.0f}{share}"


def _cpu_split_cell(name: str, figures: dict[str, float], count: int) -> str:
    server, clients, busy = (figures[f"{key}_{count}"] for key in ("server_us", "clients_us", "server_busy"))
    return f"{server:.1f} / {clients:.1f} ({busy:.0%})"


def print_memory(results: dict[str, list[dict[str, float]]], repeat: int) -> None:
    print(f"\n## Server memory per connection, KiB of resident set, unix (medians of {repeat})\n")
    print(f"| system | idle ({scaling.IDLE_CONNECTIONS} connections) | kept after a 16 MiB echo and 1 s idle |")
    print("|---|---:|---:|")
    medians = {name: scaling.median_of(runs) for name, runs in results.items()}
    for name, figures in medians.items():
        print(f"| {name} | {figures['idle_kib']:.1f} | {figures['after_large_kib']:.1f} |")
    if USERS_PATH in medians:
        idle, kept = medians[USERS_PATH]["idle_kib"], medians[USERS_PATH]["after_large_kib"]
        print(f"\n- {USERS_PATH} idle: {idle:.1f} KiB (target ≤ 6): {_verdict(idle <= 6)}")
        print(f"- {USERS_PATH} kept after 16 MiB: {kept:.1f} KiB (target < 64): {_verdict(kept < 64)}")


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def run_scaling_table(table: str, systems: list[System], repeat: int, duration: float, counts: tuple[int, ...]) -> None:
    chosen = [system for system in systems if system.name in SCALING_SYSTEMS]
    results: dict[str, list[dict[str, float]]] = {system.name: [] for system in chosen}
    for _ in range(repeat):
        for system in chosen:
            if table == "memory":
                results[system.name].append(scaling.memory(system, "unix"))
            else:
                results[system.name].append(scaling.many_clients(system, "unix", duration, counts))
    if table == "memory":
        print_memory(results, repeat)
    else:
        print_many_clients(results, repeat, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=0.3, help="seconds per timed scenario")
    parser.add_argument("--items", type=int, default=100_000, help="items in the stream")
    every_table = ", ".join([*TABLES, *SCALING_TABLES])
    default_tables = "unix-pinned,unix,tcp-pinned,many-clients,memory"
    parser.add_argument("--tables", default=default_tables, help=f"some of {every_table}")
    parser.add_argument("--systems", help="comma-separated names (default: all installed)")
    parser.add_argument(
        "--clients",
        type=lambda text: tuple(int(count) for count in text.split(",")),
        default=scaling.CLIENT_COUNTS,
        help="client processes in the many-clients table (default: 1,4,16,64)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of two tables")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.duration, args.items, args.tables = 1, 0.05, 2_000, "unix-pinned,memory"
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
        if table in SCALING_TABLES:
            run_scaling_table(table, systems, args.repeat, args.duration, args.clients)
            continue
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
