"""The examples run as a user would run them."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
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


def _unit_command(unit_file: str, home: Path) -> list[str]:
    unit = (ROOT / "examples/deploy" / unit_file).read_text()
    [exec_start] = [line.partition("=")[2] for line in unit.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(exec_start.replace("%h", str(home)))


def test_the_gateway_unit_serves_over_tls_with_tokens(tmp_path: Path) -> None:
    """The deployment guide's two units, their ExecStart lines as written (the port moved to a free
    one): the service, and its gateway with TLS and a token file."""
    import trustme

    home = tmp_path / "home"
    (home / "geometry/tls").mkdir(parents=True)
    (home / "geometry/.venv").symlink_to(Path(PYTHON).parent.parent)
    (home / "geometry/examples").symlink_to(ROOT / "examples")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    issued = ca.issue_cert("localhost")
    issued.cert_chain_pems[0].write_to_path(str(home / "geometry/tls/cert.pem"))
    issued.private_key_pem.write_to_path(str(home / "geometry/tls/key.pem"))
    (home / "geometry/tokens").write_text("the-token\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "IPFI_RUNDIR": str(tmp_path / "run")}
    gateway = [
        part.replace("0.0.0.0:7443", f"127.0.0.1:{port}")
        for part in _unit_command("ipfi-geometry-gateway.service", home)
    ]
    processes = [subprocess.Popen(_unit_command("ipfi-geometry.service", home), cwd=home / "geometry", env=env)]
    try:
        up = [PYTHON, "-m", "ipfi", "info", "service:geometry", "--timeout", "20s"]  # (After= in the unit)
        assert subprocess.run(up, env=env, capture_output=True, timeout=60, check=False).returncode == 0
        processes.append(subprocess.Popen(gateway, cwd=home / "geometry", env=env, stderr=subprocess.DEVNULL))
        info = [PYTHON, "-m", "ipfi", "info", f"tls://localhost:{port}", "--tls-ca", str(tmp_path / "ca.pem")]
        answered = subprocess.run(
            [*info, "--format", "json", "--timeout", "20s"], env={**env, "IPFI_TOKEN": "the-token"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert answered.returncode == 0, answered.stderr
        assert [entry["name"] for entry in json.loads(answered.stdout)["procedures"]] == ["midpoint", "path"]
        refused = subprocess.run(info, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode != 0 and "AuthenticationFailed" in refused.stderr
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def test_the_nginx_example_fronts_a_gateway(tmp_path: Path) -> None:
    """examples/deploy/nginx-ipfi.conf as written (its port, certificate and gateway port moved to
    ones of the test): wss:// clients reach a service through nginx and a gateway, with a token."""
    from .test_nginx import NGINX, free_port, nginx

    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs Debian's)")
    import asyncio
    import ssl

    import trustme

    import ipfi

    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    front, behind = free_port(), free_port()
    server = (ROOT / "examples/deploy/nginx-ipfi.conf").read_text()
    for written, here in (
        ("listen 443 ssl", f"listen 127.0.0.1:{front} ssl"),
        ("/etc/ssl/ipfi", str(tmp_path)),
        ("127.0.0.1:7080", f"127.0.0.1:{behind}"),
    ):
        assert written in server
        server = server.replace(written, here)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    geometry = ipfi.Interface()

    @geometry.procedure
    def midpoint(a: float, b: float) -> float:
        return (a + b) / 2

    async def through_nginx() -> float:
        async with (
            await ipfi.serve(f"unix:{tmp_path}/geometry.sock", geometry),
            await ipfi.gateway(f"ws://127.0.0.1:{behind}", f"unix:{tmp_path}/geometry.sock", tokens={"the-token"}),
        ):
            await asyncio.sleep(0)
            address = f"wss://localhost:{front}/geometry"
            async with ipfi.connect(address, ssl=client_tls, auth_token="the-token") as peer:
                return float(await peer.call("midpoint", 1.0, 2.0))

    with nginx(tmp_path, [front], http=server):
        assert asyncio.run(through_nginx()) == 1.5
