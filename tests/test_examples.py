"""The examples run as a user would run them."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import wave
from pathlib import Path

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


def test_the_command_line_tour_runs() -> None:
    scripts = str(Path(PYTHON).parent)  # (where the venv's ipfi command is)
    result = subprocess.run(
        ["bash", "examples/cli_tour.sh"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '{"x":1.0,"y":2.0}',
        '{"x":0.0,"y":1.0}',
        '{"x":1.0,"y":1.0}',
        "['midpoint', 'path']",
        "    async def midpoint(self, a: Point, b: Point) -> Point:",
        "hello",
    ]


def test_the_systemd_unit_serves(tmp_path: Path) -> None:
    """The deployment guide's unit: its ExecStart, with %h the home its comments describe, serves."""
    unit = (ROOT / "examples/deploy/ipfi-geometry.service").read_text()
    [exec_start] = [line.partition("=")[2] for line in unit.splitlines() if line.startswith("ExecStart=")]
    [working] = [line.partition("=")[2] for line in unit.splitlines() if line.startswith("WorkingDirectory=")]
    home = tmp_path / "home"
    (home / "geometry").mkdir(parents=True)
    (home / "geometry/.venv").symlink_to(Path(PYTHON).parent.parent)  # (the venv the unit expects)
    (home / "geometry/examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "IPFI_RUNDIR": str(tmp_path / "run")}
    server = subprocess.Popen(
        shlex.split(exec_start.replace("%h", str(home))), cwd=working.replace("%h", str(home)), env=env,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        info = subprocess.run(
            [PYTHON, "-m", "ipfi", "info", "service:geometry", "--format", "json", "--timeout", "20s"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert info.returncode == 0, info.stderr
        assert [entry["name"] for entry in json.loads(info.stdout)["procedures"]] == ["midpoint", "path"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_rpc_session_over_a_morse_link(tmp_path: Path) -> None:
    recording = tmp_path / "morse.wav"
    output = _run("morse/host.py", "--wav", str(recording))
    assert "call: hello Ada, from the far end of a Morse link to the host (pid " in output
    assert "stream: [3, 2, 1, 0]" in output and "the module exited with status 0" in output
    sent, received = map(int, re.search(r"symbols: (\d+) sent, (\d+) received", output).groups())  # type: ignore[union-attr]
    assert sent > 1000 and received > 1000
    [first] = [line.removeprefix("the first ones: ") for line in output.splitlines() if line.startswith("the first")]
    assert set(first) <= set(".- ") and first.startswith("....- ----. ")  # 0x49 'I' of ipcprims' magic "IP"
    with wave.open(str(recording)) as tones:
        assert tones.getframerate() == 8000 and tones.getnframes() > 8000 * 10


def test_the_ipfi_rust_example_host_and_module_run() -> None:
    output = _run("ipfi_rust/host.py")  # an asyncio host, a blocking module, IPFI's wire between them
    for line in [
        "host: the module says 'Thanks very much!'",
        "host: the answer is 42",
        "host: streamed ['This is a test', 'of the system', 'And this is a second test!']",
        "host: the module exited with status 0",
    ]:
        assert line in output
