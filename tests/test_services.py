"""Named services in a runtime directory: names, permissions, the lock, stale sockets, credentials."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipfi
from ipfi.net.services import SUN_PATH_MAX, runtime_dir, socket_path, validate_name

from .conftest import PYTHON, ROOT
from .helpers import calc


@pytest.fixture
def rundir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "run"
    monkeypatch.setenv("IPFI_RUNDIR", str(directory))
    return directory


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _start_process(address: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([PYTHON, "-m", "tests.helpers.calc", address], stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    return process


@pytest.fixture
def service_process(rundir: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = _start_process("service:calc")
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=5)


def test_runtime_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IPFI_RUNDIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert runtime_dir().name == f"ipfi-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    assert runtime_dir() == tmp_path / "xdg" / "ipfi"
    monkeypatch.setenv("IPFI_RUNDIR", str(tmp_path / "mine"))
    assert runtime_dir() == tmp_path / "mine"
    assert ipfi.parse_address("service:calc").socket_file() == str(tmp_path / "mine" / "calc.sock")
    assert str(ipfi.parse_address("service:calc")) == "service:calc"


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "a..b", "-x", "sp ace", "nul\0"])
def test_bad_names_are_refused_with_the_reason(rundir: Path, name: str) -> None:
    with pytest.raises(ipfi.AddressError, match=r"service name|cannot be empty"):
        ipfi.parse_address(f"service:{name}")


def test_name_length_is_limited_by_sun_path(rundir: Path) -> None:
    room = SUN_PATH_MAX - len(os.fsencode(socket_path("x"))) + 1
    assert validate_name("n" * room) == "n" * room  # at the limit
    with pytest.raises(ipfi.AddressError, match="too long"):
        validate_name("n" * (room + 1))  # one past it


async def test_serve_by_name_with_private_permissions_and_cleanup(rundir: Path) -> None:
    async with await ipfi.serve("service:calc", calc.iface) as server:
        assert _mode(rundir) == 0o700
        assert _mode(rundir / "calc.sock") == 0o600
        assert (rundir / "calc.lock").read_text().strip() == str(os.getpid())
        async with ipfi.connect("service:calc") as peer:
            assert await peer.call("add", 2, 3) == 5
            (serving,) = server.connections
            assert serving.credentials == ipfi.Credentials(os.getpid(), os.getuid(), os.getgid())
            assert peer.credentials is not None and peer.credentials.pid == os.getpid()
    assert sorted(os.listdir(rundir)) == []


async def test_mode_widens_the_socket_for_a_group(rundir: Path) -> None:
    async with await ipfi.serve("service:shared", calc.iface, mode=0o660):
        assert _mode(rundir / "shared.sock") == 0o660
        assert _mode(rundir) == 0o710  # the group may reach the socket, not list the directory


async def test_second_server_is_refused_while_the_first_lives(service_process: subprocess.Popen[bytes]) -> None:
    with pytest.raises(ipfi.AddressError, match=rf"already running \(pid {service_process.pid}\)"):
        await ipfi.serve("service:calc", calc.iface)
    with pytest.raises(ipfi.AddressError, match="already running"):
        ipfi.sync.serve("service:calc", calc.iface)
    async with ipfi.connect("service:calc") as peer:  # the first server was not disturbed
        assert await peer.call("add", 1, 1) == 2
        assert peer.credentials is not None and peer.credentials.pid == service_process.pid


def test_stale_socket_of_a_crashed_server_is_replaced(rundir: Path, service_process: subprocess.Popen[bytes]) -> None:
    service_process.send_signal(signal.SIGKILL)
    service_process.wait(timeout=5)
    assert (rundir / "calc.sock").exists()  # left behind by the crash
    with pytest.raises(ConnectionRefusedError):
        ipfi.sync.connect("service:calc")
    with ipfi.sync.serve("service:calc", calc.iface), ipfi.sync.connect("service:calc") as peer:
        assert peer.call("add", 1, 2) == 3
        assert _mode(rundir / "calc.sock") == 0o600
    assert not (rundir / "calc.sock").exists() and not (rundir / "calc.lock").exists()


async def test_a_service_not_running_is_refused(rundir: Path) -> None:
    with pytest.raises(ConnectionRefusedError, match="nothing is listening"):
        await ipfi.connect("service:absent")
    with pytest.raises(ConnectionRefusedError, match="nothing is listening"):
        ipfi.sync.connect("service:absent")


def test_unsafe_runtime_directory_is_refused(rundir: Path) -> None:
    rundir.mkdir(mode=0o700)
    os.chmod(rundir, 0o777)
    with pytest.raises(ipfi.AddressError, match="writable by others"):
        ipfi.sync.serve("service:calc", calc.iface)
    os.chmod(rundir, 0o700)
    if os.getuid() == 0:  # only root can give the directory away
        os.chown(rundir, 12345, -1)
        with pytest.raises(ipfi.AddressError, match="belongs to uid 12345"):
            ipfi.sync.serve("service:calc", calc.iface)


async def test_allow_uids_admits_and_refuses_by_credentials(rundir: Path) -> None:
    me = os.getuid()
    async with await ipfi.serve("service:mine", calc.iface, allow_uids=[me]):
        async with ipfi.connect("service:mine") as peer:
            assert await peer.call("add", 1, 1) == 2
    async with await ipfi.serve("service:theirs", calc.iface, allow_uids=[me + 1]) as server:
        with pytest.raises(ipfi.HandshakeError):
            await ipfi.connect("service:theirs")
        assert not server.connections
    with ipfi.sync.serve("service:theirs", calc.iface, allow_uids=[me + 1]):
        with pytest.raises(ipfi.HandshakeError):
            ipfi.sync.connect("service:theirs")


async def test_allow_uids_refuses_tcp_whose_peer_is_unknown() -> None:
    async with await ipfi.serve("tcp://127.0.0.1:0", calc.iface, allow_uids=[os.getuid()]) as server:
        with pytest.raises(ipfi.HandshakeError):
            await ipfi.connect(server.bound_address)


async def test_unix_sockets_get_the_mode_too(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        assert _mode(Path(sock_path)) == 0o600
    assert not Path(sock_path).exists()
