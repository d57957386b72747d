"""libIPC's wire (``libipc:NAME`` addresses) in both drivers: the vectors' frames echoed as libIPC's
pongd echoes them, by ipfi's servers and by ``ipfi echo``; clients of both drivers; the server event
API; and what crashed libIPC's own service (two frames in one write, a frame split with a pause,
NUL bytes, payloads at its limit) served, with what is past the limit refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipfi
import ipfi.sync
from ipfi.core.errors import RemoteProtocolError
from ipfi.core.state import Role
from ipfi.net.addresses import parse_address
from ipfi.server_events import Connected, Disconnected, Received
from ipfi.wires.libipc import DATA, MAX_PAYLOAD, SERVER_CLOSE, Frame, FrameDecoder, encode
from ipfi.wires.libipc_core import LibipcCore

from .conftest import PYTHON, ROOT, load_vectors, unhex

LIBIPC = load_vectors("libipc.json")
DRIVERS = ["asyncio", "blocking"]


@pytest.fixture
def rundir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "ipc"  # (made by the server, as libIPC makes it)
    monkeypatch.setenv("IPC_RUNDIR", str(directory))
    return directory


@contextlib.contextmanager
def echo_server(driver: str, name: str, seen: list[Any] | None = None, **options: Any) -> Iterator[None]:
    """An echo of ``libipc:name`` by a server of ``driver``, through the event API (``seen`` gets
    its events)."""
    log = seen if seen is not None else []
    if driver == "blocking":
        server = ipfi.sync.serve(f"libipc:{name}", None, **options)

        def run() -> None:
            for event in server.events():
                log.append(event)
                if isinstance(event, Received):
                    event.peer.send(event.channel, event.payload)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            server.close()
            thread.join(5)
        return
    ready = threading.Event()
    stop: list[Any] = []

    async def serve() -> None:
        async with await ipfi.serve(f"libipc:{name}", None, **options) as running:
            stop.append(running)
            ready.set()
            async for event in running.events():
                log.append(event)
                if isinstance(event, Received):
                    event.peer.send(event.channel, event.payload)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop[0].close)
        thread.join(5)
        loop.close()


def raw_client(rundir: Path, name: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(str(rundir / name))
    return client


def read_frames(client: socket.socket, count: int) -> list[Frame]:
    decoder = FrameDecoder()
    found: list[Frame] = []
    while len(found) < count:
        data = client.recv(1 << 20)
        assert data, f"closed after {len(found)} frames"
        found += decoder.feed(data)
    return found


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_vector_frame_is_echoed_as_libipcs_pongd_echoes_it(driver: str, rundir: Path) -> None:
    with echo_server(driver, "pong"), raw_client(rundir, "pong") as client:
        for example in LIBIPC["examples"]:
            sent = unhex(example["hex"])
            client.sendall(sent)
            assert encode(read_frames(client, 1)[0]) == sent, example["what"]
    assert stat.S_IMODE(os.stat(rundir).st_mode) == 0o1750  # the directory, made as libIPC makes it


@pytest.mark.parametrize("driver", DRIVERS)
def test_what_crashed_libipcs_own_service_is_served_and_past_its_limit_refused(driver: str, rundir: Path) -> None:
    first, second = Frame(DATA, 1, b"one"), Frame(DATA, 2, b"two\x00after the NUL")
    with echo_server(driver, "pong"):
        with raw_client(rundir, "pong") as client:
            client.sendall(encode(first) + encode(second))  # two frames in one write
            assert read_frames(client, 2) == [first, second]  # (NUL bytes and all)
            split = encode(Frame(DATA, 3, b"split across writes"))
            client.sendall(split[:4])
            time.sleep(0.2)  # a pause mid-header
            client.sendall(split[4:])
            assert read_frames(client, 1) == [Frame(DATA, 3, b"split across writes")]
            largest = Frame(DATA, 9, bytes(range(256)) * (MAX_PAYLOAD // 256) + b"\x00" * (MAX_PAYLOAD % 256))
            client.sendall(encode(largest))  # at libIPC's limit exactly
            assert read_frames(client, 1) == [largest]
        with raw_client(rundir, "pong") as client:
            client.sendall(bytes((DATA,)) + (MAX_PAYLOAD + 1).to_bytes(4, "big") + b"\x09")  # one past it
            assert client.recv(10) == b""  # refused from the header alone
        with raw_client(rundir, "pong") as client:  # the server goes on
            client.sendall(encode(Frame(SERVER_CLOSE, 0, b"")))  # and a client may end its connection so
            assert client.recv(10) == b""
        with raw_client(rundir, "pong") as client:
            client.sendall(encode(first))
            assert read_frames(client, 1) == [first]


@pytest.mark.parametrize("server_driver", DRIVERS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_clients_of_both_drivers_send_and_receive_plain_messages(driver: str, server_driver: str, rundir: Path) -> None:
    seen: list[Any] = []
    with echo_server(server_driver, "pong", seen):
        if driver == "asyncio":

            async def exchange() -> list[ipfi.Message]:
                async with ipfi.connect("libipc:pong") as peer:
                    assert peer.codec is None and peer.hello is not None and peer.hello.protocol == "libipc"
                    peer.send(42, b"coucou")
                    peer.send(7 * 256 + 200, b"x")  # type 7, user type 200
                    with pytest.raises(ipfi.LocalProtocolError, match="plain messages, not calls"):
                        await peer.call("anything")
                    for wrong in (2 * 256, 1 << 16):  # DATA's own type, no frame's
                        with pytest.raises(ipfi.LocalProtocolError):
                            peer.send(wrong, b"")
                    return [await peer.receive(timeout=5), await peer.receive(timeout=5)]

            replies = asyncio.run(exchange())
        else:
            with ipfi.sync.connect("libipc:pong") as peer:
                peer.send(42, b"coucou")
                peer.send(7 * 256 + 200, b"x")
                with pytest.raises(ipfi.LocalProtocolError, match="plain messages, not calls"):
                    peer.call("anything")
                replies = [peer.receive(timeout=5), peer.receive(timeout=5)]
    assert [(reply.channel, bytes(reply.payload)) for reply in replies] == [(42, b"coucou"), (7 * 256 + 200, b"x")]
    deadline = time.monotonic() + 5
    while not any(isinstance(event, Disconnected) for event in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    kinds = [type(event).__name__ for event in seen]
    assert kinds == ["Connected", "Received", "Received", "Disconnected"]
    assert isinstance(seen[0], Connected) and isinstance(seen[1], Received) and seen[1].channel == 42


def test_a_client_reading_slowly_pauses_its_reading_and_loses_nothing(rundir: Path) -> None:
    rundir.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(rundir / "flood"))
    listener.listen(1)
    frames = [encode(Frame(DATA, 5, str(number).encode())) for number in range(200)]

    def flood() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"".join(frames[:20]))  # twice the client's limit, then the rest
            time.sleep(0.3)
            connection.sendall(b"".join(frames[20:]))
            connection.settimeout(5)
            connection.recv(10)  # (until the client leaves)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()

    async def read_slowly() -> list[bytes]:
        limits = ipfi.Limits(max_queued_messages=10)
        async with ipfi.connect("libipc:flood", limits=limits) as peer:
            await asyncio.sleep(0.6)  # everything sent: what the reads before the pause brought is queued
            assert peer._core.reading_paused and 10 <= peer._core.messages_queued <= 20
            return [bytes((await peer.receive(timeout=5)).payload) for _ in frames]

    assert asyncio.run(read_slowly()) == [str(number).encode() for number in range(200)]
    thread.join(5)
    listener.close()


def test_ipfi_echo_stands_in_for_pongd_and_ipfi_send_and_listen_talk_libipc(rundir: Path) -> None:
    environment = {**os.environ, "IPC_RUNDIR": str(rundir)}
    ipfi_command = [PYTHON, "-m", "ipfi"]
    echo = subprocess.Popen(
        [*ipfi_command, "echo", "libipc:pongd"], env=environment, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert echo.stderr is not None and "listening on libipc:pongd" in echo.stderr.readline()
        with raw_client(rundir, "pongd") as client:
            sent = unhex(LIBIPC["examples"][0]["hex"])
            client.sendall(sent)
            assert encode(read_frames(client, 1)[0]) == sent
        sent_by_cli = subprocess.run(
            [*ipfi_command, "send", "libipc:pongd", "-c", "42", "--data", "coucou", "--wait", "--format", "json"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert sent_by_cli.returncode == 0, sent_by_cli.stderr
        reply = json.loads(sent_by_cli.stdout)
        assert (reply["channel"], reply["payload"]) == (42, "coucou")
    finally:
        echo.terminate()
        echo.wait(10)
    assert not (rundir / "pongd").exists()  # the socket is removed when the echo stops
    listen = subprocess.Popen(
        [*ipfi_command, "listen", "libipc:heard", "--count", "1", "--format", "json"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert listen.stderr is not None and "listening on libipc:heard" in listen.stderr.readline()
        with raw_client(rundir, "heard") as client:
            client.sendall(encode(Frame(DATA, 7, b"hey")))
            output, _ = listen.communicate(timeout=30)
        heard = json.loads(output)
        assert (heard["channel"], heard["payload"]) == (7, "hey") and listen.returncode == 0
    finally:
        if listen.poll() is None:
            listen.kill()
            listen.wait(10)


def test_the_address_names_a_socket_in_the_runtime_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    address = parse_address("libipc:pong")
    assert str(address) == "libipc:pong" and address.is_unix
    monkeypatch.delenv("IPC_RUNDIR", raising=False)
    assert address.socket_file() == "/run/ipc/pong"
    monkeypatch.setenv("IPC_RUNDIR", "/tmp/elsewhere")
    assert address.socket_file() == "/tmp/elsewhere/pong"  # looked up when used, not when parsed
    for wrong in ("libipc:", "libipc:a/b", "libipc:.."):
        with pytest.raises(ipfi.AddressError):
            parse_address(wrong)
    with pytest.raises(ValueError, match="libIPC's wire, not protocol='ipfi-rust'"):
        ipfi.sync.connect("libipc:pong", protocol="ipfi-rust")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(min_value=1, max_value=32))
def test_any_bytes_make_messages_or_a_protocol_error(data: bytes, cut: int) -> None:
    core = LibipcCore(Role.SERVER, limits=ipfi.Limits(max_frame_payload=100), peer_id="p")
    core.start()
    with contextlib.suppress(RemoteProtocolError):
        for start in range(0, len(data), cut):
            core.receive_from(data[start : start + cut], min(cut, len(data) - start))
            if not core.is_open:
                break
    assert len(core.decoder._buffer) <= 100 + 6 + 32  # memory follows what one frame may hold


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_gateway_is_libipcs_tcp_daemon_when_its_target_is_libipc_alone(driver: str, rundir: Path) -> None:
    with echo_server(driver, "pong"):
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def start() -> ipfi.Gateway:
            return await ipfi.gateway("tcp://127.0.0.1:0", "libipc:")

        gateway = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
        host, port = gateway.bound_address.removeprefix("tcp://").rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=5) as client:
                client.sendall(b"pong")  # the service's name first, as libIPC's TCP daemon wants it
                assert client.recv(2) == b"OK"
                frames = [Frame(DATA, 42, b"coucou"), Frame(7, 200, b"x\x00y")]
                client.sendall(b"".join(encode(frame) for frame in frames))
                assert read_frames(client, 2) == frames
            with socket.create_connection((host, int(port)), timeout=5) as client:
                client.sendall(b"../etc/passwd")  # not a service's name: refused
                assert client.recv(10) == b""
        finally:

            async def stop() -> None:
                gateway.close()
                await gateway.wait_closed()

            asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
