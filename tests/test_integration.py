"""Real server processes, real sockets: connection loss, hostile peers, flow control, ipcprims peers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import ipfi

from .conftest import PYTHON, ROOT, load_vectors, unhex
from .helpers import calc
from .helpers.raw_frames import assert_reference_reply, recv_exactly

VECTORS = load_vectors("ipcprims.json")


@pytest.fixture
def server_process(sock_path: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    address = f"unix:{sock_path}"
    process = subprocess.Popen([PYTHON, "-m", "tests.helpers.calc", address], stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


async def test_kill_9_of_the_server_fails_pending_calls_within_a_second(server_process: Any) -> None:
    process, address = server_process
    async with ipfi.connect(address) as peer:
        calls = [asyncio.create_task(peer.call("sleep", 30, str(i))) for i in range(5)]
        stream = peer.stream("count", 10**9)
        assert await stream.__anext__() == 0
        await asyncio.sleep(0.1)
        killed = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1.0)
        assert all(isinstance(r, ipfi.ConnectionLost) for r in results)
        with pytest.raises(ipfi.ConnectionLost):
            async for _ in stream:
                pass
        assert time.monotonic() - killed < 1.0
        with pytest.raises(ipfi.ConnectionLost):
            await peer.call("add", 1, 2)


async def test_the_callers_own_deadline_ends_a_call_the_server_cannot_answer(server_process: Any) -> None:
    """As test_sync's test of that name, on the asyncio driver: the server process is stopped, so
    only the caller's own timer can end the call."""
    process, address = server_process
    async with ipfi.connect(address) as peer:
        assert await peer.call("add", 1, 1) == 2
        os.kill(process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(ipfi.DeadlineExceeded):
                await peer.with_options(timeout=0.3).call("add", 2, 2)
            assert time.monotonic() - start < 2.0
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert await peer.call("add", 2, 2) == 4


async def test_bidirectional_calls_with_a_server_process(server_process: Any) -> None:
    _, address = server_process
    mine = ipfi.Interface()
    mine.add(lambda name: f"client says hi to {name}", name="greet")
    async with ipfi.connect(address, mine) as peer:
        server_pid = await peer.call("pid")
        assert server_pid != os.getpid()
        results = await asyncio.gather(*(peer.call("call_back", "greet", str(i)) for i in range(50)))
        assert results == [f"client says hi to {i}" for i in range(50)]


async def test_thousand_concurrent_calls_on_one_connection(server_process: Any) -> None:
    _, address = server_process
    async with ipfi.connect(address) as peer:
        results = await asyncio.gather(*(peer.call("sleep", 0.05, str(i)) for i in range(1000)))
        assert results == [str(i) for i in range(1000)]


async def test_hundred_thousand_items_to_a_slow_consumer_stay_bounded(server_process: Any) -> None:
    _, address = server_process
    window = ipfi.Limits().stream_window
    async with ipfi.connect(address) as peer:
        consumed = 0
        worst_lead = 0
        async for item in peer.stream("count_tracked", 100_000):
            assert item == consumed
            consumed += 1
            if consumed % 5000 == 0:
                await asyncio.sleep(0.02)  # slow consumer: the producer must wait, not buffer
                lead = await peer.call("produced_so_far") - consumed
                worst_lead = max(worst_lead, lead)
        assert consumed == 100_000
        # The producer never ran more than the window (plus the half-window not yet re-granted) ahead.
        assert 0 < worst_lead <= window * 2


async def _raw_handshake(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(address.removeprefix("unix:"))
    sock.sendall(unhex(VECTORS["handshake"]["client_hello_frame_hex"]))
    return sock


async def test_plain_ipcprims_client_handshake_ping_shutdown(sock_path: str) -> None:
    control = VECTORS["control"]
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):

        def plain_client() -> list[bytes]:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            sock.connect(sock_path)
            with sock:
                sock.sendall(unhex(VECTORS["handshake"]["client_hello_frame_hex"]))
                assert_reference_reply(sock, VECTORS["handshake"]["server_reply_json"])
                got = []
                sock.sendall(unhex(control["ping_frame_hex"]))
                got.append(recv_exactly(sock, len(unhex(control["pong_frame_hex"]))))
                sock.sendall(unhex(control["shutdown_request_frame_hex"]))
                got.append(recv_exactly(sock, len(unhex(control["shutdown_ack_frame_hex"]))))
                got.append(sock.recv(1))  # then the server closes
            return got

        pong, ack, after = await asyncio.to_thread(plain_client)
    assert pong == unhex(control["pong_frame_hex"])
    assert ack == unhex(control["shutdown_ack_frame_hex"])
    assert after == b""


async def test_plain_peer_messages_reach_the_application(sock_path: str) -> None:
    got: list[ipfi.Message] = []
    opened = asyncio.Event()

    async with await ipfi.serve(f"unix:{sock_path}", calc.iface) as server:

        def plain_client() -> None:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(sock_path)
                sock.sendall(
                    unhex(VECTORS["handshake"]["client_hello_frame_hex"])
                    + unhex(VECTORS["echo_exchange"]["client_sends_hex"])
                )
                sock.recv(4096)
                time.sleep(0.2)

        thread = asyncio.create_task(asyncio.to_thread(plain_client))
        while not server.connections:
            await asyncio.sleep(0.01)
        [peer] = server.connections
        got.append(await asyncio.wait_for(peer.receive(), 2))
        opened.set()
        await thread
    assert got == [ipfi.Message(1, b"hello")]
    assert peer.codec is None  # a plain framed peer: no RPC


HOSTILE = {
    "bad magic": bytes.fromhex("58 58 02 00 00 00 00 00 7b 7d"),
    "oversized length": bytes.fromhex("49 50 ff ff ff ff 00 00"),
    "garbage after handshake": b"\xde\xad\xbe\xef" * 4,
    "unknown control": bytes.fromhex("49 50 10 00 00 00 00 00") + b'{"type":"dance"}',
    "rpc garbage": bytes.fromhex("49 50 03 00 00 00 01 00 ff ff ff"),
}


@pytest.mark.parametrize("attack", list(HOSTILE))
async def test_hostile_client_is_dropped_while_good_client_is_served(server_process: Any, attack: str) -> None:
    _, address = server_process
    async with ipfi.connect(address) as good:
        call = asyncio.create_task(good.call("sleep", 0.3, "survivor"))

        def hostile() -> bytes:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            sock.connect(address.removeprefix("unix:"))
            with sock:
                if attack in ("garbage after handshake", "unknown control", "rpc garbage"):
                    hello = ipfi.core.connection.Connection(ipfi.core.connection.Role.CLIENT)  # an ipfi hello
                    hello.start()
                    sock.sendall(b"".join(hello.data_to_send()))
                    reply = sock.recv(4096)
                    assert reply.startswith(b"IP")
                sock.sendall(HOSTILE[attack])
                rest = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := sock.recv(4096):
                        rest += chunk
                return rest  # empty: the server closed on us without answering

        assert await asyncio.to_thread(hostile) == b""
        assert await good.call("add", 1, 2) == 3
        assert await call == "survivor"


async def test_client_disconnect_cancels_its_running_procedures(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface) as server:
        peer = await ipfi.connect(f"unix:{sock_path}")
        calls = [asyncio.create_task(peer.call("sleep", 30, f"orphan-{i}")) for i in range(3)]
        while sum(tag.startswith("orphan-") for tag in calc.started) < 3:
            await asyncio.sleep(0.01)
        [server_peer] = server.connections
        peer.abort()
        await asyncio.gather(*calls, return_exceptions=True)
        await asyncio.wait_for(server_peer.wait_closed(), 1)
        await asyncio.sleep(0.05)
        assert {f"orphan-{i}" for i in range(3)} <= set(calc.cancelled)
        assert not server.connections and not server_peer._serving and not server_peer._calls


async def test_keepalive_drops_a_silent_peer(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, keepalive=0.1, keepalive_timeout=0.3) as server:

        def silent_client() -> float:
            with socket.socket(socket.AF_UNIX) as sock:  # shakes hands, then never answers a ping
                sock.settimeout(5)
                sock.connect(sock_path)
                sock.sendall(unhex(VECTORS["handshake"]["client_hello_frame_hex"]))
                start = time.monotonic()
                while sock.recv(4096):
                    pass
                return time.monotonic() - start

        assert await asyncio.to_thread(silent_client) < 2.0
        assert not server.connections


async def test_keepalive_keeps_a_live_but_quiet_connection(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, keepalive=0.1, keepalive_timeout=0.3):
        async with ipfi.connect(f"unix:{sock_path}") as peer:
            await asyncio.sleep(0.8)  # pings are answered automatically
            assert await peer.call("add", 1, 1) == 2


async def test_handshake_timeout(sock_path: str) -> None:
    limits = ipfi.Limits(handshake_timeout=0.2)
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, limits=limits) as server:

        def mute_client() -> float:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(sock_path)
                start = time.monotonic()
                assert sock.recv(1) == b""
                return time.monotonic() - start

        assert 0.1 < await asyncio.to_thread(mute_client) < 2.0
        assert not server.connections


async def test_idle_timeout(sock_path: str) -> None:
    limits = ipfi.Limits(idle_timeout=0.2)
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, limits=limits):
        peer = await ipfi.connect(f"unix:{sock_path}")
        assert await peer.call("sleep", 0.5, "busy is not idle") == "busy is not idle"
        await asyncio.wait_for(peer.wait_closed(), 2)
        with pytest.raises(ipfi.ConnectionLost):
            await peer.call("add", 1, 1)


async def test_max_connections_at_and_past(sock_path: str) -> None:
    limits = ipfi.Limits(max_connections=2)
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, limits=limits):
        first = await ipfi.connect(f"unix:{sock_path}")
        second = await ipfi.connect(f"unix:{sock_path}")
        with pytest.raises(ipfi.HandshakeError):
            await ipfi.connect(f"unix:{sock_path}")
        assert await second.call("add", 1, 1) == 2
        await first.aclose()
        await asyncio.sleep(0.05)
        third = await ipfi.connect(f"unix:{sock_path}")  # a slot freed
        assert await third.call("add", 2, 2) == 4
        await second.aclose()
        await third.aclose()


async def test_messages_queue_limit_pauses_reading(sock_path: str) -> None:
    limits = ipfi.Limits(max_queued_messages=8)
    payloads = [i.to_bytes(4, "big") * 256 for i in range(2000)]  # 2000 KiB: far more than one read
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, limits=limits) as server:
        async with ipfi.connect(f"unix:{sock_path}") as peer:
            for payload in payloads:
                peer.send(2, payload)
            while not server.connections:
                await asyncio.sleep(0.01)
            [server_peer] = server.connections
            await asyncio.sleep(0.2)
            # Reading paused at the limit: at most the limit plus one read's worth (256 KiB) queued.
            assert 8 <= len(server_peer._messages) <= 8 + 256
            got = [(await server_peer.receive()).payload for _ in range(2000)]
            assert got == payloads
