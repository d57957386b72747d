"""The examples run as a user would run them."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import PYTHON, ROOT


def _run(example: str, *args: str) -> str:
    result = subprocess.run(
        [PYTHON, f"examples/{example}", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_runs() -> None:
    output = _run("demo.py")
    assert "add(1, 2) = 3" in output and "the server called us back: hello, demo" in output


def test_sync_client_example_runs() -> None:
    assert "a stream: [0, 1, 4, 9, 16, 25]" in _run("sync_client.py")


def test_event_loop_example_runs() -> None:
    output = _run("event_loop.py")
    for line in [
        r"hub: 2 member\(s\) connected",
        r"bob got: peer-\d+-\d+: hello bob",
        "alice got: operator: maintenance at noon",
        r"hub: peer-\d+-\d+ left",
        r"service files left: \[\]",
    ]:
        assert re.search(line, output), line


@pytest.mark.parametrize(("loop", "module"), [("asyncio", "asyncio"), ("uvloop", "uvloop")])
def test_plugin_host_example_runs(loop: str, module: str) -> None:
    output = _run("plugins/host.py", "--loop", loop)
    assert f"loop: {module}" in output
    for name in ("alpha", "beta", "gamma"):
        assert re.search(rf"{name}: pid (\d+), connection peer-\1-1", output), name  # the ids are unique
        assert f"host log: {name} transforms 'hello'" in output  # the plugin called the host back
    for line in [
        "results: ['> HELLO (by alpha)', '> HELLO (by beta)', '> HELLO (by gamma)']",
        "beta's call ended: ConnectionLost",
        "beta exited with status -9",
        "gamma still answers: > STILL HERE (by gamma)",
        "alpha exited with status 0",
        "gamma exited with status 0",
    ]:
        assert line in output, line


def test_typed_example_runs() -> None:
    assert _run("typed.py").splitlines() == [
        "midpoint: Point(x=1.0, y=2.0)",
        "path: [Point(x=0.0, y=1.0), Point(x=1.0, y=1.0), Point(x=2.0, y=1.0)]",
        "refused: midpoint: b.x: expected float, got str",
    ]
