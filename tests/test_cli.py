"""The installed ``ipfi`` command, run in subprocesses against real servers."""

from __future__ import annotations

import base64
import io
import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipfi import Interface
from ipfi.cli.output import Output
from ipfi.cli.rpc import load_interface

from .conftest import PYTHON, ROOT, load_vectors, unhex
from .helpers.raw_frames import assert_reference_reply, recv_exactly, recv_frame

IPFI = str(Path(PYTHON).parent / "ipfi")
VECTORS = load_vectors("ipcprims.json")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    rundir = tmp_path / "run"
    return {**os.environ, "IPFI_RUNDIR": str(rundir), "PYTHONPATH": str(ROOT)}


def ipfi(
    env: dict[str, str], *args: str, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [IPFI, *args], env=env, cwd=ROOT, input=stdin, capture_output=True, timeout=timeout, check=False
    )


def json_lines(result: subprocess.CompletedProcess[bytes]) -> list[Any]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


class Running:
    """A long-running ``ipfi`` command (echo, listen, serve) that has announced it is ready."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [IPFI, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.process.stderr is not None
        line = self.process.stderr.readline().decode()
        assert "ipfi: listening on" in line or "ipfi: serving" in line, line

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[Any]:
    started: list[Running] = []

    def start(*args: str) -> Running:
        started.append(Running(env, *args))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(timeout=10)


def test_echo_and_send_wait_round_trip_on_several_channels(env: dict[str, str], running: Any) -> None:
    server = running("echo", "service:echo")
    for channel, payload in [(1, "hello"), (2, "data"), (4, "err"), (300, "user channel")]:
        [reply] = json_lines(ipfi(env, "send", "service:echo", "--channel", str(channel), "--data", payload, "--wait"))
        assert reply == {"channel": channel, "size": len(payload), "text": payload}
    [reply] = json_lines(ipfi(env, "send", "service:echo", "--json", '{"a": [1, 2]}', "--wait"))
    assert json.loads(reply["text"]) == {"a": [1, 2]}
    binary = bytes(range(256))
    [reply] = json_lines(ipfi(env, "send", "service:echo", "--file", "-", "--wait", stdin=binary))
    assert base64.b64decode(reply["base64"]) == binary
    raw = ipfi(env, "send", "service:echo", "--file", "-", "--wait", "--format", "raw", stdin=binary)
    assert raw.returncode == 0 and raw.stdout == binary
    assert json_lines(ipfi(env, "send", "service:echo", "--data", "x")) == [{"sent": 1, "channel": 1}]
    assert server.stop() == 0
    assert os.listdir(env["IPFI_RUNDIR"]) == []  # the service's socket and lock are gone


def test_echo_answers_a_plain_ipcprims_client_byte_for_byte(env: dict[str, str], running: Any) -> None:
    running("echo", "service:echo")
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(str(Path(env["IPFI_RUNDIR"]) / "echo.sock"))
    sock.sendall(unhex(VECTORS["handshake"]["client_hello_frame_hex"]))
    assert_reference_reply(sock, VECTORS["handshake"]["server_reply_json"])
    sock.sendall(unhex(VECTORS["echo_exchange"]["client_sends_hex"]))
    expected = unhex(VECTORS["echo_exchange"]["server_sends_hex"])
    assert recv_exactly(sock, len(expected)) == expected
    sock.close()
    # What libIPC's reference got wrong: NULs inside a payload, two frames in one write, a frame
    # split across writes with a pause, a payload near 2 MB.
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(str(Path(env["IPFI_RUNDIR"]) / "echo.sock"))
    sock.sendall(_frame(0, b'{"protocol":"ipcprims","version":"1.0","channels":[2,3,300]}'))
    assert b'"channels":[2,3,300]' in recv_frame(sock)[1]
    frames = [_frame(2, b"a\0b\0c"), _frame(300, b"\0" * 10), _frame(3, bytes(range(256)) * 8192)]
    sock.sendall(frames[0] + frames[1])
    sock.sendall(frames[2][:1000])
    time.sleep(0.1)
    sock.sendall(frames[2][1000:])
    for frame in frames:
        assert recv_exactly(sock, len(frame)) == frame
    sock.close()


def _frame(channel: int, payload: bytes) -> bytes:
    return b"IP" + len(payload).to_bytes(4, "little") + channel.to_bytes(2, "little") + payload


def test_echo_survives_every_bad_client(env: dict[str, str], running: Any) -> None:
    server = running("echo", "service:echo", "--idle-timeout", "0.5")
    path = str(Path(env["IPFI_RUNDIR"]) / "echo.sock")
    hello = unhex(VECTORS["handshake"]["client_hello_frame_hex"])
    frame = unhex(VECTORS["echo_exchange"]["client_sends_hex"])
    bad_clients = {
        "bad magic": b"XX\x02\x00\x00\x00\x00\x00{}",
        "hello not JSON": bytes.fromhex("49 50 03 00 00 00 00 00") + b"{{{",
        "oversized hello": bytes.fromhex("49 50 ff ff ff 00 00 00"),
        "closes before its echo is written": hello + frame * 2000,
        "half a frame then gone": hello + frame[:7],
    }
    for data in bad_clients.values():
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        sock.sendall(data)
        sock.close()
    idle = socket.socket(socket.AF_UNIX)  # says nothing at all: dropped by the handshake or idle timeout
    idle.connect(path)
    [reply] = json_lines(ipfi(env, "send", "service:echo", "--data", "still here", "--wait"))
    assert reply["text"] == "still here"
    idle.settimeout(10)
    assert idle.recv(1) == b""  # the server hung up on the idle client
    assert server.process.poll() is None
    assert server.stop() == 0


def test_listen_prints_frames_and_stops_after_count(env: dict[str, str], running: Any) -> None:
    listener = running("listen", "service:sink", "--count", "2")
    assert ipfi(env, "send", "service:sink", "--data", "one").returncode == 0
    assert ipfi(env, "send", "service:sink", "--channel", "3", "--data", "two").returncode == 0
    assert listener.process.wait(timeout=10) == 0
    assert listener.process.stdout is not None
    lines = [json.loads(line) for line in listener.process.stdout.read().decode().splitlines()]
    assert [(line["channel"], line["text"]) for line in lines] == [(1, "one"), (3, "two")]
    assert all(line["peer"].startswith("peer-") for line in lines)


def test_serve_call_and_info(env: dict[str, str], running: Any) -> None:
    server = running("serve", "tests.helpers.calc:iface", "service:calc")
    assert json_lines(ipfi(env, "call", "service:calc", "add", "1", "2")) == [3]
    assert json_lines(ipfi(env, "call", "service:calc", "add", "--kwargs", '{"a": 2, "b": 5}')) == [7]
    assert json_lines(ipfi(env, "call", "service:calc", "count", "4")) == [0, 1, 2, 3]  # a stream: one line each
    table = ipfi(env, "call", "service:calc", "count", "2", "--format", "table")
    assert table.stdout.decode().split() == ["0", "1"]
    [info] = json_lines(ipfi(env, "info", "service:calc"))
    assert info["protocol"] == "ipcprims" and info["version"] == "1.0" and info["rpc"] is True
    assert info["channels"] == [1, 2, 3, 4] and info["codec"] == "msgpack"
    assert info["peer_pid"] == server.process.pid and info["peer_uid"] == os.getuid()
    assert info["ping_ms"] > 0
    by_name = {entry["name"]: entry for entry in info["procedures"]}
    assert by_name["add"]["signature"] == "(a: 'int', b: 'int') -> 'int'"
    assert by_name["count"]["streams"] is True
    text = ipfi(env, "info", "service:calc", "--format", "table").stdout.decode()
    assert "peer_pid" in text and "SIGNATURE" in text


def test_logs_go_to_stderr_only(env: dict[str, str], running: Any) -> None:
    running("echo", "service:echo")
    result = ipfi(env, "-vv", "send", "service:echo", "--data", "x", "--wait")
    assert json_lines(result) == [{"channel": 1, "size": 1, "text": "x"}]
    assert b"ipfi" in result.stderr  # the debug log is there, not in stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["send", "service:nobody", "--data", "x"], 1),  # refused
        (["call", "unix:/tmp/ipfi-no-such.sock", "add", "1", "2"], 1),
        (["send", "unix:/tmp/" + "x" * 120, "--data", "x"], 3),  # socket path too long
        (["send", "service:x"], 64),  # no payload given
        (["send", "service:x", "--channel", "0", "--data", "x"], 64),  # control channel
        (["send", "service:x", "--channel", "70000", "--data", "x"], 64),
        (["frobnicate"], 64),
        ([], 64),
        (["send", "bogus:addr", "--data", "x"], 64),
        (["send", "service:a/b", "--data", "x"], 64),
        (["serve", "no_such_module:iface", "service:x"], 64),
        (["serve", "tests.helpers.calc:add", "service:x"], 64),  # not an Interface
        (["send", "service:x", "--json", "{not json"], 60),
        (["call", "service:x", "add", "{not json"], 60),
    ],
)
def test_exit_codes_without_a_server(env: dict[str, str], args: list[str], code: int) -> None:
    result = ipfi(env, *args)
    assert result.returncode == code, result.stderr.decode()
    assert result.stderr  # always says why


def test_exit_codes_against_servers(env: dict[str, str], running: Any, tmp_path: Path) -> None:
    running("listen", "service:sink")
    running("serve", "tests.helpers.calc:iface", "service:calc")
    timed_out = ipfi(env, "send", "service:sink", "--data", "x", "--wait", "--timeout", "0.3")
    assert timed_out.returncode == 124, timed_out.stderr.decode()
    assert ipfi(env, "call", "service:calc", "sleep", "5", "--timeout", "0.3").returncode == 124
    assert ipfi(env, "send", "service:sink", "--channel", "3000", "--data", "x").returncode == 64  # not offered
    assert ipfi(env, "call", "service:calc", "no_such_procedure").returncode == 64
    assert ipfi(env, "call", "service:calc", "add", "1").returncode == 64  # invalid arguments
    assert ipfi(env, "call", "service:calc", "fail", '"boom"').returncode == 1  # the procedure raised
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (16 * 1024 * 1024 + 1))
    too_large = ipfi(env, "send", "service:sink", "--file", str(big))
    assert too_large.returncode == 60 and b"PayloadTooLarge" in too_large.stderr
    assert ipfi(env, "listen", "service:sink").returncode == 3  # the name is taken

    silent = socket.socket(socket.AF_UNIX)  # accepts, never answers the handshake
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen()
    assert ipfi(env, "send", f"unix:{tmp_path}/silent.sock", "--data", "x", "--timeout", "0.3").returncode == 124
    silent.close()


def test_permission_denied_exits_50(env: dict[str, str], running: Any, tmp_path: Path) -> None:
    if os.getuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert ipfi(env, "listen", f"unix:{locked}/x.sock").returncode == 50
        return
    if not shutil.which("setpriv"):
        pytest.skip("root is never denied permission, and setpriv is missing to drop it")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", IPFI]
    if subprocess.run([*nobody, "version"], capture_output=True, timeout=30, check=False).returncode != 0:
        pytest.skip("user nobody cannot run this checkout's ipfi")
    running("echo", "service:private")  # 0600 in a 0700 directory: no other user gets in
    result = subprocess.run(
        [*nobody, "send", "service:private", "--data", "x"], env=env, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 50, result.stderr.decode()


def test_doctor_envinfo_version(env: dict[str, str], running: Any) -> None:
    checks = json_lines(ipfi(env, "doctor"))
    assert {check["check"]: check["status"] for check in checks}["runtime directory"] == "ok"
    running("echo", "service:echo")
    checks = json_lines(ipfi(env, "doctor"))
    assert any(check["check"] == "service echo" and "running" in check["detail"] for check in checks)
    os.chmod(env["IPFI_RUNDIR"], 0o777)
    failed = ipfi(env, "doctor")
    assert failed.returncode == 30 and b"writable by others" in failed.stdout
    os.chmod(env["IPFI_RUNDIR"], 0o700)
    [info] = json_lines(ipfi(env, "envinfo"))
    assert info["IPFI_RUNDIR"] == env["IPFI_RUNDIR"] and info["runtime_dir"] == env["IPFI_RUNDIR"]
    [version] = json_lines(ipfi(env, "version"))
    assert version["protocol"] == "ipcprims 1.0"
    module = subprocess.run([PYTHON, "-m", "ipfi", "version", "--format", "json"], capture_output=True, check=True)
    assert json.loads(module.stdout) == version
    assert b"124  timeout" in ipfi(env, "--help").stdout  # the exit codes are documented


def test_a_terminal_gets_a_table(env: dict[str, str]) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen([IPFI, "doctor"], env=env, stdout=terminal, stderr=subprocess.DEVNULL)
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=10) == 0
    assert output.split()[:3] == [b"CHECK", b"STATUS", b"DETAIL"]


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_peers_control_characters_cannot_drive_the_terminal(fmt: str) -> None:
    text = io.StringIO()
    out = Output(fmt, text=text, binary=io.BytesIO())
    hostile = "\x1b[2J\rred\x9b\x7f"
    out.value(hostile)
    out.frame(2, b"\x1b]0;title\x07")
    out.rows([{"name": hostile}])
    written = text.getvalue()
    assert not set(written) & set("\x1b\r\x07\x9b\x7f")
    if fmt == "json":
        lines = [json.loads(line) for line in written.splitlines()]
        assert lines[0] == hostile and lines[2] == {"name": hostile}  # escaped, not altered


def test_serve_imports_from_the_current_directory_without_shadowing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plugin_for_cli_test.py").write_text("import ipfi\niface = ipfi.Interface()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "plugin_for_cli_test", raising=False)
    assert isinstance(load_interface("plugin_for_cli_test:iface"), Interface)
    assert sys.path[-1] == str(tmp_path) and str(tmp_path) not in sys.path[:-1]
