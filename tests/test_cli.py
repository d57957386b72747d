"""The installed ``ipfi`` command, run in subprocesses against real servers."""

from __future__ import annotations

import base64
import io
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ipfi as ipfi_module
from ipfi import Interface, __version__
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
    names = {1: "COMMAND", 2: "DATA", 4: "ERROR", 300: "USER"}
    for channel, payload in [(1, "hello"), (2, "data"), (4, "err"), (300, "user channel")]:
        [reply] = json_lines(ipfi(env, "send", "service:echo", "-c", str(channel), "--data", payload, "--wait"))
        assert reply.pop("peer_id").startswith("peer-") and reply.pop("timestamp").isdigit()
        assert reply == {  # ipcprims' fields, as ipcprims names them
            "schema_id": "https://schemas.3leaps.dev/ipcprims/cli/v1/frame-received.schema.json",
            "channel": channel,
            "channel_name": names[channel],
            "payload_size": len(payload),
            "payload": payload,
        }
    [reply] = json_lines(ipfi(env, "send", "service:echo", "--json", '{"a": [1, 2]}', "--wait"))
    assert json.loads(reply["payload"]) == {"a": [1, 2]}
    binary = bytes(range(256))
    [reply] = json_lines(ipfi(env, "send", "service:echo", "--file", "-", "--wait", stdin=binary))
    assert reply["payload"] == "<binary 256 bytes>" and base64.b64decode(reply["payload_base64"]) == binary
    raw = ipfi(env, "send", "service:echo", "--file", "-", "--wait", "--format", "raw", stdin=binary)
    assert raw.returncode == 0 and raw.stdout == binary
    pretty = ipfi(env, "send", "service:echo", "--data", "x", "--wait", "--format", "pretty").stdout.decode()
    assert re.fullmatch(r"channel=1 \(COMMAND\) size=1 peer=peer-\d+-\d+ payload=x\n", pretty)
    quiet = ipfi(env, "send", "service:echo", "--data", "x")
    assert quiet.returncode == 0 and quiet.stdout == b""  # as ipcprims: nothing to print without --wait
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


SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"  # ipcprims' layout: channel 1 and channel 300


def test_echo_validate_answers_a_refused_frame_on_error_and_goes_on(env: dict[str, str], running: Any) -> None:
    """ipcprims' ``echo --validate DIR``: a plain ipcprims client's invalid payload is consumed and
    answered on ERROR (4) as ipcprims words it; the connection stays; valid payloads, and channels
    without a schema, are echoed."""
    running("echo", "service:checked", "--validate", str(SCHEMAS))
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(str(Path(env["IPFI_RUNDIR"]) / "checked.sock"))
    sock.sendall(_frame(0, b'{"protocol":"ipcprims","version":"1.0","channels":[1,2,4,300]}'))
    assert json.loads(recv_frame(sock)[1])["channels"] == [1, 2, 4, 300]
    refusals = [
        (1, b'{"args": {}}', "validation failed on channel 1: 'action' is a required property"),
        (1, b'{"action": "go", "extra": 1}', "Additional properties are not allowed ('extra' was unexpected)"),
        (1, b"not json", "payload is not valid JSON: "),
        (300, b'["seven"]', "validation failed on channel 300: /0: 'seven' is not of type 'integer'"),
    ]
    for channel, payload, reason in refusals:
        sock.sendall(_frame(channel, payload))
        reply_channel, reply = recv_frame(sock)
        assert reply_channel == 4
        assert json.loads(reply)["error"].startswith("schema validation error: ") and reason in reply.decode()
        for accepted in (_frame(1, b'{"action": "go"}'), _frame(2, b"no schema on channel 2"), _frame(300, b"[1]")):
            sock.sendall(accepted)
            assert recv_exactly(sock, len(accepted)) == accepted  # echoed as it came: the connection goes on
    sock.close()


def test_send_and_listen_validate_and_a_schema_directory_that_does_not_load(
    env: dict[str, str], running: Any, tmp_path: Path
) -> None:
    invalid = ipfi(env, "send", "service:nowhere", "--json", '{"args": 1}', "--validate", str(SCHEMAS))
    assert invalid.returncode == 60  # refused before connecting (nothing listens there)
    assert b"schema validation error: validation failed on channel 1" in invalid.stderr
    listener = running("listen", "service:listen", "--validate", str(SCHEMAS))
    sent = ipfi(env, "send", "service:listen", "--json", '{"action": "go"}', "--validate", str(SCHEMAS))
    assert sent.returncode == 0, sent.stderr.decode()
    assert ipfi(env, "send", "service:listen", "-c", "300", "--json", '["x"]').returncode == 0  # (unchecked here)
    assert listener.process.wait(timeout=10) == 60
    assert listener.process.stdout is not None and listener.process.stderr is not None
    [printed] = [json.loads(line) for line in listener.process.stdout.read().decode().splitlines()]
    assert printed["payload"] == '{"action": "go"}'
    assert "/0: 'x' is not of type 'integer'" in listener.process.stderr.read().decode()
    (tmp_path / "unknown.schema.json").write_text("{}")
    broken = ipfi(env, "echo", "service:broken", "--validate", str(tmp_path))
    assert broken.returncode == 60
    assert b"schema load failed: failed to load schema: unrecognized schema filename" in broken.stderr


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
    assert reply["payload"] == "still here"
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
    assert [(line["channel"], line["payload"]) for line in lines] == [(1, "one"), (3, "two")]
    assert all(line["peer_id"].startswith("peer-") for line in lines)


def test_serve_call_and_info(env: dict[str, str], running: Any) -> None:
    server = running("serve", "tests.helpers.calc:iface", "service:calc")
    assert json_lines(ipfi(env, "call", "service:calc", "add", "1", "2")) == [3]
    child = f"exec:{PYTHON} -m tests.helpers.stdio_child"  # exec: from the command line, which runs uvloop
    assert json_lines(ipfi(env, "call", child, "add", "40", "2")) == [42]
    assert json_lines(ipfi(env, "info", child))[0]["rpc"] is True
    assert json_lines(ipfi(env, "call", "service:calc", "add", "--kwargs", '{"a": 2, "b": 5}')) == [7]
    assert json_lines(ipfi(env, "call", "service:calc", "count", "4")) == [0, 1, 2, 3]  # a stream: one line each
    table = ipfi(env, "call", "service:calc", "count", "2", "--format", "table")
    assert table.stdout.decode().split() == ["0", "1"]
    [info] = json_lines(ipfi(env, "info", "service:calc"))
    assert info["schema_id"] == "https://schemas.3leaps.dev/ipcprims/cli/v1/connection-info.schema.json"
    assert info["protocol"] == "ipcprims" and info["protocol_version"] == "1.0" and info["connected"] is True
    assert [channel["name"] for channel in info["channels"]] == ["COMMAND", "DATA", "TELEMETRY", "ERROR"]
    assert info["peer_credentials"] == {"uid": os.getuid(), "gid": os.getgid(), "pid": server.process.pid}
    assert info["ping_latency_ms"] > 0 and info["rpc"] is True and info["codec"] == "msgpack"
    by_name = {entry["name"]: entry for entry in info["procedures"]}
    assert by_name["add"]["signature"] == "(a: 'int', b: 'int') -> 'int'"
    assert by_name["count"]["streams"] is True
    assert [parameter["schema"] for parameter in by_name["add"]["parameters"]] == [{"type": "integer"}] * 2
    assert by_name["add"]["result"] == {"type": "integer"} and by_name["count"]["result"] == {"type": "integer"}
    text = ipfi(env, "info", "service:calc", "--format", "table").stdout.decode()
    assert "peer_credentials" in text and "COMMAND (1)" in text and "SIGNATURE" in text
    assert ipfi(env, "info", "service:calc", "--format", "raw").stdout.decode().startswith("peer-")


def test_logs_go_to_stderr_only(env: dict[str, str], running: Any) -> None:
    running("echo", "service:echo")
    result = ipfi(env, "-vv", "send", "service:echo", "--data", "x", "--wait")
    assert [line["payload"] for line in json_lines(result)] == ["x"]
    assert b"ipfi" in result.stderr  # the debug log is there, not in stdout
    as_json = ipfi(env, "--log-level", "debug", "--log-format", "json", "send", "service:echo", "--data", "x")
    assert as_json.returncode == 0 and as_json.stdout == b""
    assert {json.loads(line)["level"] for line in as_json.stderr.splitlines()} >= {"INFO", "DEBUG"}
    quiet = ipfi(env, "send", "service:echo", "--data", "x", "--log-level", "error")
    assert quiet.returncode == 0 and quiet.stderr == b""


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
    not_json = ipfi(env, "call", "service:calc", "add", "1", "{not json")
    assert not_json.returncode == 60 and b"argument b is not JSON" in not_json.stderr
    assert ipfi(env, "call", "service:calc", "add", "1", "x").returncode == 60  # (b takes an int, not text)
    text = ipfi(env, "call", "service:calc", "fail", "boom")  # (message takes only text: no JSON quotes)
    assert text.returncode == 1 and b"ValueError: boom" in text.stderr, text.stderr
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
    assert ipfi(env, "version").stdout == ipfi(env, "-V").stdout == f"ipfi {__version__}\n".encode()
    extended = dict(line.split(": ", 1) for line in ipfi(env, "version", "--extended").stdout.decode().splitlines())
    assert extended["name"] == "ipfi" and extended["protocol"] == "ipcprims 1.0" and "target_os" in extended
    [version] = json_lines(ipfi(env, "version", "--extended", "--format", "json"))
    module = subprocess.run(
        [PYTHON, "-m", "ipfi", "version", "--extended", "--format", "json"], capture_output=True, check=True
    )
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
    out.frame(2, b"\x1b]0;title\x07", "peer-\x1b[1m")
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


# -- a drop-in for ipcprims' command line (0.2.1) ------------------------------------------------


def test_ipcprims_forms_of_addresses_channels_and_durations(env: dict[str, str], running: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    running("--log-level", "error", "echo", path)  # a bare path is a Unix socket, as in ipcprims
    [reply] = json_lines(ipfi(env, "send", path, "-c", "2", "--data", "x", "--wait", "--wait-timeout", "500ms"))
    assert (reply["channel"], reply["payload"]) == (2, "x")
    [info] = json_lines(ipfi(env, "info", path, "--timeout", "3s"))
    assert info["connected"] is True
    for bad in ("0", "0s", "bad", "5m", "1h"):
        refused = ipfi(env, "info", path, "--timeout", bad)
        assert refused.returncode == 64 and b"duration" in refused.stderr, bad


def test_send_wait_shows_a_reply_on_the_error_channel(env: dict[str, str], tmp_path: Path) -> None:
    """An ipcprims server answers what it refuses on ERROR (4): send --wait shows that reply."""
    address = f"unix:{tmp_path / 'strict.sock'}"
    with ipfi_module.sync.serve(address, None, rpc=False) as server:

        def refuse_everything() -> None:
            for event in server.events():
                if isinstance(event, ipfi_module.Received):
                    event.peer.send(4, b'{"error":"schema validation error: nope"}')
                    return

        thread = threading.Thread(target=refuse_everything, daemon=True)
        thread.start()
        [reply] = json_lines(ipfi(env, "send", address, "--json", '{"x": 1}', "--wait"))
        thread.join(5)
    assert (reply["channel"], reply["channel_name"]) == (4, "ERROR") and "schema validation" in reply["payload"]


def test_call_against_a_plain_ipcprims_peer_says_so(env: dict[str, str], tmp_path: Path) -> None:
    address = f"unix:{tmp_path / 'plain.sock'}"
    with ipfi_module.sync.serve(address, None, rpc=False):
        result = ipfi(env, "call", address, "add", "1", "2")
    assert result.returncode == 64, result.stderr.decode()
    assert b"Traceback" not in result.stderr and b"RPC" in result.stderr


def test_timeouts_say_what_timed_out(env: dict[str, str], running: Any) -> None:
    listened = ipfi(env, "listen", "service:quiet", "--count", "3", "--timeout", "300ms")
    assert listened.returncode == 124
    assert b"--timeout of 0.3s passed with 0 of 3 frames received" in listened.stderr
    running("listen", "service:sink")
    waited = ipfi(env, "send", "service:sink", "--data", "x", "--wait", "--wait-timeout", "200ms")
    assert (
        waited.returncode == 124 and b"no reply on channel 1 or ERROR (4) within --wait-timeout 0.2s" in waited.stderr
    )
    absent = ipfi(env, "info", "service:nobody", "--timeout", "300ms")
    assert absent.returncode == 124 and b"nothing answered at service:nobody within 0.3s" in absent.stderr
    running("serve", "tests.helpers.calc:iface", "service:calc")
    slow = ipfi(env, "call", "service:calc", "sleep", "5", "--timeout", "300ms")
    assert (
        slow.returncode == 124 and b"TimeoutError" in slow.stderr and b"TimeoutError: TimeoutError" not in slow.stderr
    )


#: ipcprims' exit-code table (its README), case by case: what makes ipfi exit with each code.
EXIT_CODE_TABLE = [
    (0, "success", ["send", "service:echo", "--data", "x"]),
    (1, "connection refused (no socket file)", ["send", "unix:/tmp/ipfi-no-such.sock", "--data", "x"]),
    (1, "connection refused (a service that is not running)", ["send", "service:nobody", "--data", "x"]),
    (1, "the remote procedure failed", ["call", "service:calc", "fail", '"boom"']),
    (3, "other transport error: socket path too long", ["send", "unix:/tmp/" + "x" * 120, "--data", "x"]),
    (3, "other transport error: address in use", ["listen", "service:echo"]),
    (30, "doctor check failed", ["doctor"]),
    (60, "JSON error: invalid --json", ["send", "service:echo", "--json", "{not json"]),
    (60, "payload too large", ["send", "service:echo", "--file", "BIG"]),
    (64, "usage error: no payload", ["send", "service:echo"]),
    (64, "usage error: unknown option", ["send", "service:echo", "--data", "x", "--frobnicate"]),
    (64, "usage error: a bad duration", ["send", "service:echo", "--data", "x", "--timeout", "0s"]),
    (64, "unsupported channel (without --wait)", ["send", "service:echo", "-c", "3000", "--data", "x"]),
    (64, "unsupported channel: control", ["send", "service:echo", "-c", "0", "--data", "x"]),
    (64, "unknown procedure", ["call", "service:calc", "no_such_procedure"]),
    (64, "RPC with a plain ipcprims peer", ["call", "PLAIN", "add", "1", "2"]),
    (124, "timeout: no reply", ["send", "service:calc", "--data", "x", "--wait", "--wait-timeout", "200ms"]),
    (124, "timeout: info finds nothing", ["info", "service:nobody", "--timeout", "200ms"]),
    (125, "internal failure", ["serve", "tests.helpers.crashes_on_import:iface", "service:x"]),
]


@pytest.mark.parametrize(("code", "case", "args"), EXIT_CODE_TABLE, ids=[case for _, case, _ in EXIT_CODE_TABLE])
def test_the_exit_code_table(
    env: dict[str, str], running: Any, tmp_path: Path, code: int, case: str, args: list[str]
) -> None:
    running("--log-level", "error", "echo", "service:echo")
    running("--log-level", "error", "serve", "tests.helpers.calc:iface", "service:calc")
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (16 * 1024 * 1024 + 1))
    plain = f"unix:{tmp_path / 'plain.sock'}"
    if case == "doctor check failed":
        os.chmod(env["IPFI_RUNDIR"], 0o777)
    with ipfi_module.sync.serve(plain, None, rpc=False):
        result = ipfi(env, *[{"BIG": str(big), "PLAIN": plain}.get(arg, arg) for arg in args])
    assert result.returncode == code, result.stderr.decode()
    assert code == 0 or result.stderr or b'"status":"fail"' in result.stdout  # a failure always says why
    assert b"Traceback" not in result.stderr or code == 125
