"""The client side of one run: the measurements, the CPU both processes spent, printed as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .processes import allow_many_files

PAYLOAD = b"0123456789abcdef"  # 16 bytes
MIB = 1024 * 1024
BIG = 16 * MIB
IN_FLIGHT = 64
STREAM_ITEMS = 100_000


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time of all the threads of a process, in seconds, with nanosecond resolution
    (``/proc/PID/task/*/schedstat``; the process's own file counts its main thread only)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total / 1e9


async def _maybe(result: Awaitable[Any] | Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class Run:
    """Times one scenario and the CPU client and server spent on it."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> Run:
        self._cpu = cpu_seconds() + cpu_seconds(self.server_pid)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed = time.perf_counter() - self._start
        self.cpu = cpu_seconds() + cpu_seconds(self.server_pid) - self._cpu


def timed_calls(call: Callable[[], Any], duration: float) -> list[float]:
    """Call ``call`` back to back for ``duration`` seconds; the latency of each."""
    latencies = []
    deadline = time.perf_counter() + duration
    while (began := time.perf_counter()) < deadline:
        call()
        latencies.append(time.perf_counter() - began)
    return latencies


async def timed_awaits(call: Callable[[], Awaitable[Any]], duration: float) -> list[float]:
    """:func:`timed_calls` for an async client, so neither kind pays for the other's wrapping."""
    latencies = []
    deadline = time.perf_counter() + duration
    while (began := time.perf_counter()) < deadline:
        await call()
        latencies.append(time.perf_counter() - began)
    return latencies


async def measure(client: Any, is_async: bool, server_pid: int, duration: float, items: int) -> dict[str, float]:
    timed = timed_awaits if is_async else timed_calls
    await _maybe(timed(lambda: client.echo(PAYLOAD), duration / 10))  # warm-up
    with Run(server_pid) as sequential:
        latencies = sorted(await _maybe(timed(lambda: client.echo(PAYLOAD), duration)))
    with Run(server_pid) as concurrent:
        rounds = len(await _maybe(timed(lambda: client.in_flight(PAYLOAD, IN_FLIGHT), duration)))
    with Run(server_pid) as streaming:
        received = await _maybe(client.stream(items))
    if not 0 < received <= items:
        raise AssertionError(f"stream delivered {received} of {items} items")
    throughput = {}
    for size in (MIB, BIG):
        big = bytes(size)
        if len(await _maybe(client.echo(big))) != size:
            raise AssertionError(f"the echo of {size} bytes came back short")
        with Run(server_pid) as large:
            echoed = await _maybe(timed(lambda: client.echo(big), duration))  # noqa: B023 (awaited here)
        throughput[size] = len(echoed) * size / MIB / large.elapsed
    return {
        "seq_per_s": len(latencies) / sequential.elapsed,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "cpu_us_per_call": sequential.cpu / len(latencies) * 1e6,
        "in_flight_per_s": rounds * IN_FLIGHT / concurrent.elapsed,
        "stream_items_per_s": received / streaming.elapsed,
        "mib_echo_mib_per_s": throughput[MIB],
        "big_mib_per_s": throughput[BIG],
    }


async def _client_main(module: Any, endpoint: tuple[str, Any], server_pid: int, duration: float, items: int) -> Any:
    client = await _maybe(module.connect(endpoint))
    try:
        return await measure(client, module.IS_ASYNC, server_pid, duration, items)
    finally:
        await _maybe(client.close())


def load_system(spec: str) -> Any:
    """The system module ``MODULE`` or ``MODULE:VARIANT`` (configured with its ``configure``)."""
    module_name, _, variant = spec.partition(":")
    module = importlib.import_module(f"benchmarks.systems.{module_name}")
    if variant:
        module.configure(variant)
    return module


def run_loop(main: Any, loop: str | None) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def main() -> None:
    """``python -m benchmarks.harness server MODULE LOOP KIND WHERE``, or
    ``... client MODULE LOOP KIND WHERE SERVER_PID DURATION ITEMS`` (the runner calls both)."""
    role, spec, loop, kind, where = sys.argv[1:6]
    allow_many_files()
    endpoint = (kind, int(where) if kind == "tcp" else where)
    module = load_system(spec)
    loop_name = None if loop == "-" else loop
    if role == "server":

        def ready() -> None:
            print("ready", flush=True)

        result = module.serve(endpoint, ready)
        if inspect.iscoroutine(result):
            run_loop(result, loop_name)
        return
    server_pid, duration, items = int(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
    results = run_loop(_client_main(module, endpoint, server_pid, duration, items), loop_name)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
