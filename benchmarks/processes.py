"""Starting the benchmark's processes: a system's server, and its clients (``benchmarks.harness`` roles)."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .systems import System

ROOT = Path(__file__).resolve().parents[1]
Endpoint = tuple[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(
    role: str, module: str, loop: str | None, endpoint: Endpoint, pinned: bool, runner: str = "benchmarks.harness"
) -> list[str]:
    """``python -m RUNNER ROLE MODULE LOOP KIND WHERE``, pinned to CPU 0 if asked."""
    kind, where = endpoint
    line = [sys.executable, "-m", runner, role, module, loop or "-", kind, str(where)]
    return ["taskset", "-c", "0", *line] if pinned else line


def allow_many_files(wanted: int = 8192) -> None:
    """Raise this process's open-file limit towards ``wanted`` (a socket per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, wanted)), hard))


def environment(**extra: str) -> dict[str, str]:
    """This environment, with the repository first on ``PYTHONPATH`` (what the caller set follows:
    a tree of ipfi to compare can be put before the installed one)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


@contextlib.contextmanager
def running_server(
    system: System, transport: str, pinned: bool, env: dict[str, str] | None = None, under: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], Endpoint]]:
    """``system``'s server, ready, on a Unix socket in a temporary directory or a free TCP port;
    killed on the way out. ``under``: a command it runs under (valgrind), whose stderr is kept."""
    with tempfile.TemporaryDirectory(prefix="ipfi-bench-") as directory:
        endpoint: Endpoint = ("unix", os.path.join(directory, "s")) if transport == "unix" else ("tcp", free_port())
        module, loop = system.server_module or system.module, system.server_loop or system.loop
        server = subprocess.Popen(
            [*under, *command("server", module, loop, endpoint, pinned)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if under else None,
            cwd=ROOT,
            env=env or environment(),
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"{system.name}: the server did not start")
            yield server, endpoint
        finally:
            server.kill()
            server.wait()
