"""The benchmark runner still runs (a short smoke run; its figures are not judged here)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import PYTHON, ROOT


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) pins the benchmark's processes")
def test_benchmark_runner_smoke() -> None:
    systems = "ipfi uvloop async-def,ipfi blocking,multiprocessing,raw asyncio floor,raw blocking floor"
    systems += ",asyncio floor in place (reference)"
    result = subprocess.run(
        [PYTHON, "-m", "benchmarks", "--quick", "--systems", systems],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ipfi")]
    assert len(rows) == 5  # two systems in the table, two in the ratios under it, one in the memory table
    assert "of floor" in result.stdout and "Targets" in result.stdout
    assert "- mib_echo_mib_per_s: " in result.stdout  # (what the in-place floor reaches, ipfi beside it)
    assert "Server memory per connection" in result.stdout and "kept after 16 MiB" in result.stdout


def test_exec_echo_benchmark_smoke() -> None:
    command = [PYTHON, "-m", "benchmarks.pipes", "--quick"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ipfi")]
    assert {row.split("|")[1].strip() for row in rows} >= {"ipfi asyncio", "ipfi blocking"}
    assert "that handles pid" not in result.stderr  # (each client waits for its child to exit)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads each process's CPU time in /proc")
def test_cpu_split_benchmark_smoke() -> None:
    systems = "raw asyncio floor,ipfi uvloop async-def,ipfi blocking"
    command = [PYTHON, "-m", "benchmarks.cpu_split", "--quick", "--systems", systems]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    tables = result.stdout.split("\n# ")
    assert len(tables) == 2  # per call, then per item and echo
    calls, items_and_echoes = (
        [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
        for table in tables
    )
    for rows in (calls, items_and_echoes):
        assert [row[0].strip() for row in rows] == systems.split(",")
    assert all(float(cell.replace(",", "")) > 0 for row in items_and_echoes for cell in row[1:])
    assert all(float(cell.replace(",", "")) > 0 for row in calls for cell in row[1:4])  # calls/s, each side's µs
    # (each call has the two sides take turns on the one CPU: somebody sleeps or is preempted)
    assert all(sum(float(cell) for cell in row[4:]) > 0 for row in calls)


def test_blocking_streams_benchmark_smoke() -> None:
    command = [PYTHON, "-m", "benchmarks.blocking_streams", "--quick"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row[0].strip() for row in rows[1:]] == ["async generator", "generator on the loop", "blocking generator"]
    assert all(float(row[1].replace(",", "")) > 0 for row in rows[1:])


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads each process's CPU time in /proc")
def test_many_clients_benchmark_smoke() -> None:
    systems = "ipfi uvloop async-def,raw asyncio floor"
    command = [PYTHON, "-m", "benchmarks", "--tables", "many-clients", "--clients", "1,2", "--repeat", "1"]
    command += ["--duration", "0.05", "--systems", systems]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rates, cpu = (
        [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line]
        for table in result.stdout.split("Whose CPU")
    )
    assert rates[0] == cpu[0] == [" system ", " 1 clients ", " 2 clients "]
    assert [row[0].strip() for row in rates[1:]] == [row[0].strip() for row in cpu[1:]] == systems.split(",")
    assert all(float(cell.split()[0].replace(",", "")) > 0 for row in rates[1:] for cell in row[1:])
    assert "%)" in rates[1][1] and "%" not in rates[2][1]  # (ipfi's share of the floor's calls/s; the floor's none)
    for row in cpu[1:]:
        for cell in row[1:]:  # "server µs / clients µs (server busy %)"
            server, _, clients, busy = cell.split()
            assert float(server) > 0 and float(clients) > 0 and 0 < int(busy.strip("(%)")) <= 100


def test_websocket_benchmark_smoke() -> None:
    command = [PYTHON, "-m", "benchmarks.websocket", "--quick"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [(row[0].strip(), row[1].strip()) for row in rows[1:]] == [
        (driver, f"{wire}://") for driver in ("blocking", "asyncio") for wire in ("tcp", "tls", "ws", "wss")
    ]
    assert all(float(cell.replace(",", "")) > 0 for row in rows[1:] for cell in row[2:])
    assert [row[3].strip() for row in rows[1:]][::4] == ["1.00", "1.00"]  # (each driver's tcp:// is its own measure)
