"""``ws://`` and ``wss://`` in both drivers: calls, streams and results larger than one message;
interfaces by path and a 404 for any other; and what a WebSocket peer may do wrong (a text
message, a message over the limit) ending its connection only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode
from websockets.sync.client import connect as raw_connect

import ipfi
import ipfi.sync
from ipfi.net import websocket as websocket_wire
from ipfi.sync.links import SocketLink
from ipfi.sync.websocket_link import WebSocketLink

from .helpers.servers import DRIVERS, run_on, serving

LARGE = 3 * websocket_wire.MESSAGE_SIZE + 5  # a result that takes four messages

calc = ipfi.Interface()


@calc.procedure
def add(a: int, b: int) -> int:
    return a + b


@calc.procedure
def count(n: int) -> Iterator[int]:
    yield from range(n)


@calc.procedure
def large(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)


@calc.procedure
def path() -> Any:
    return ipfi.current_peer().get_extra_info("path")


negating = ipfi.Interface()


@negating.procedure(name="add")
def subtract(a: int, b: int) -> int:
    return a - b


@pytest.fixture(scope="module")
def tls() -> dict[str, ssl.SSLContext]:
    ca = trustme.CA()
    server, client = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), ssl.create_default_context()
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    ca.configure_trust(client)
    return {"server": server, "client": client}


def session(driver: str, address: str, **options: Any) -> tuple[Any, ...]:
    if driver == "blocking":
        with ipfi.sync.connect(address, **options) as peer:
            return (
                peer.call("add", 1, 2),
                list(peer.stream("count", 3)),
                len(peer.call("large", LARGE)),
                peer.call("path"),
            )

    async def client() -> tuple[Any, ...]:
        async with ipfi.connect(address, **options) as peer:
            items = [item async for item in peer.stream("count", 3)]
            return await peer.call("add", 1, 2), items, len(await peer.call("large", LARGE)), await peer.call("path")

    return run_on(driver, client())


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("server_driver", DRIVERS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_call_and_a_stream_over_websocket(
    driver: str, server_driver: str, scheme: str, tls: dict[str, ssl.SSLContext]
) -> None:
    server_options = {"ssl": tls["server"]} if scheme == "wss" else {}
    client_options = {"ssl": tls["client"]} if scheme == "wss" else {}
    with serving(server_driver, f"{scheme}://127.0.0.1:0/calc", calc, **server_options) as address:
        assert address.startswith(f"{scheme}://") and address.endswith("/calc")
        target = address.replace("127.0.0.1", "localhost")
        assert session(driver, target, **client_options) == (3, [0, 1, 2], LARGE, "/calc")


@pytest.mark.parametrize("server_driver", DRIVERS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_one_server_serves_several_paths_and_refuses_others(driver: str, server_driver: str) -> None:
    with serving(server_driver, "ws://127.0.0.1:0", {"/calc": calc, "/negating": negating}) as address:
        assert session(driver, address + "/calc")[0] == 3
        if driver == "blocking":
            with ipfi.sync.connect(address + "/negating") as peer:
                assert peer.call("add", 1, 2) == -1
        else:

            async def negate() -> int:
                async with ipfi.connect(address + "/negating") as peer:
                    return int(await peer.call("add", 1, 2))

            assert run_on(driver, negate()) == -1
        with pytest.raises(InvalidStatus, match="404"):
            session(driver, address + "/elsewhere")


@pytest.mark.parametrize("server_driver", DRIVERS)
def test_a_peer_that_breaks_the_websocket_rules_loses_only_its_connection(server_driver: str) -> None:
    with serving(server_driver, "ws://127.0.0.1:0/calc", calc) as address:
        with raw_connect(address, max_size=None, compression=None) as raw:
            raw.send("text, not bytes")
            with pytest.raises(ConnectionClosed) as closed:
                raw.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003  # unsupported data
        with raw_connect(address, max_size=None, compression=None) as raw:
            raw.send(b"\x00" * (websocket_wire.MESSAGE_SIZE + 1))  # one byte past the limit
            with pytest.raises(ConnectionClosed) as closed:
                raw.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
        assert session("asyncio", address) == (3, [0, 1, 2], LARGE, "/calc")


@pytest.mark.parametrize("server_driver", DRIVERS)
def test_a_ping_gets_its_pong_and_a_closing_server_says_goodbye(server_driver: str) -> None:
    with serving(server_driver, "ws://127.0.0.1:0/calc", calc) as address:
        raw = raw_connect(address, max_size=None, compression=None).__enter__()
        assert raw.ping().wait(5)
    with pytest.raises(ConnectionClosed) as closed:
        raw.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    raw.close()


pinging = ipfi.Interface()


@pinging.procedure
async def ping_back() -> bool:
    """Pings the client, and says whether its pong came back (asyncio's server: its websocket)."""
    await asyncio.wait_for(await ipfi.current_peer().get_extra_info("websocket").ping(), 5)
    return True


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_client_answers_the_server_s_ping_while_it_waits_for_a_result(driver: str) -> None:
    with serving("asyncio", "ws://127.0.0.1:0/ping", pinging) as address:
        if driver == "blocking":
            with ipfi.sync.connect(address) as peer:
                assert peer.call("ping_back") is True
        else:

            async def client() -> Any:
                async with ipfi.connect(address) as peer:
                    return await peer.call("ping_back")

            assert run_on(driver, client()) is True


def http_answer(address: str, request: bytes | None) -> tuple[bytes, float]:
    """The first line a WebSocket server answers ``request`` with (``None``: sends nothing), and
    the seconds until it closed the connection."""
    host, port = address.removeprefix("ws://").split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        start = time.monotonic()
        if request is not None:
            sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer.split(b"\r\n")[0], time.monotonic() - start


@pytest.mark.parametrize("server_driver", DRIVERS)
def test_what_is_no_websocket_opening_gets_an_http_error_and_the_server_goes_on(server_driver: str) -> None:
    with serving(server_driver, "ws://127.0.0.1:0/calc", calc, limits=ipfi.Limits(handshake_timeout=1.0)) as address:
        assert http_answer(address, b"GET /calc HTTP/1.1\r\nHost: x\r\n\r\n")[0] == b"HTTP/1.1 426 Upgrade Required"
        assert http_answer(address, b"not http at all\r\n\r\n")[0] in (b"", b"HTTP/1.1 400 Bad Request")
        too_long = http_answer(address, b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n")[0]
        assert too_long.startswith(b"HTTP/1.1 414") or too_long == b""  # (websockets 14 closes without a word)
        answer, seconds = http_answer(address, None)  # silent: closed at the handshake's deadline
        assert answer == b"" and 0.9 < seconds < 3
        assert session("asyncio", address) == (3, [0, 1, 2], LARGE, "/calc")


@pytest.mark.parametrize("server_driver", DRIVERS)
def test_a_full_server_refuses_a_websocket_client_with_1013(server_driver: str) -> None:
    with serving(server_driver, "ws://127.0.0.1:0/calc", calc, limits=ipfi.Limits(max_connections=1)) as address:
        with ipfi.sync.connect(address) as first:
            assert first.call("add", 1, 2) == 3
            with raw_connect(address, max_size=None, compression=None) as raw:
                with pytest.raises(ConnectionClosed) as closed:
                    raw.recv(timeout=5)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013  # try again later
        deadline = time.monotonic() + 5
        while True:  # a place again, once the server has seen the first client leave
            try:
                assert session("blocking", address)[0] == 3
                break
            except ipfi.HandshakeError as exc:
                assert "1013" in str(exc)
                assert time.monotonic() < deadline
                time.sleep(0.05)


@pytest.mark.parametrize("server_driver", DRIVERS)
def test_closing_a_server_ends_the_opening_handshakes_under_way(server_driver: str) -> None:
    with contextlib.ExitStack() as stack:
        with serving(server_driver, "ws://127.0.0.1:0/calc", calc) as address:
            host, port = address.removeprefix("ws://").split("/")[0].rsplit(":", 1)
            silent = stack.enter_context(socket.create_connection((host, int(port)), timeout=5))
            time.sleep(0.2)  # (accepted, its handshake waiting: 10 s by default)
            start = time.monotonic()
        silent.settimeout(2)
        assert silent.recv(1) == b""  # (closed with the server, not at its handshake's deadline)
        assert time.monotonic() - start < 2


@pytest.mark.parametrize("server_driver", DRIVERS)
def test_silent_clients_past_the_limit_are_refused_as_they_come(server_driver: str) -> None:
    """At most max_connections opening handshakes at once (each holds a thread of the blocking
    server, a task of the asyncio one): clients past that are closed as they come, and the server
    serves again once they go."""
    limits = ipfi.Limits(max_connections=4, handshake_timeout=5.0)
    with serving(server_driver, "ws://127.0.0.1:0/calc", calc, limits=limits) as address:
        host, port = address.removeprefix("ws://").split("/")[0].rsplit(":", 1)
        with contextlib.ExitStack() as stack:
            silent = [stack.enter_context(socket.create_connection((host, int(port)), timeout=0.3)) for _ in range(12)]
            refused = 0
            for sock in silent:
                with contextlib.suppress(TimeoutError):
                    refused += sock.recv(1) == b""
            assert refused == 8
            if server_driver == "blocking":
                assert sum(thread.name == "ipfi-handshake" for thread in threading.enumerate()) == 4
        deadline = time.monotonic() + 5
        while True:  # (each handshake ends as its client leaves)
            try:
                assert session("blocking", address)[0] == 3
                break
            except (ipfi.HandshakeError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_wss_connections_between_blocking_peers_open_every_time(tls: dict[str, ssl.SSLContext]) -> None:
    """With websockets 17.3's sync connections (the blocking driver's then), about one opening
    handshake in 250 between a new blocking server and its first client waited out its deadline:
    a guard that catches that kind of loss at least some of the time, each handshake bounded."""
    limits = ipfi.Limits(handshake_timeout=2.0)
    for number in range(60):
        with serving("blocking", "wss://127.0.0.1:0/calc", calc, ssl=tls["server"], limits=limits) as address:
            target = address.replace("127.0.0.1", "localhost")
            with ipfi.sync.connect(target, ssl=tls["client"], limits=limits) as peer:
                assert peer.call("add", number, 1) == number + 1


def test_a_blocking_reader_reads_on_while_a_writer_waits_for_the_wire() -> None:
    """A ping comes while a writer is blocked on a peer that does not read: the reader answers it
    without waiting for the wire (that peer may be waiting for this reader), and reads on; the
    pong leaves after the writer's message."""
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    ours, theirs = socket.socketpair()
    with ours, theirs:
        link = WebSocketLink(SocketLink(ours), ClientProtocol(parse_uri("ws://x/"), state=State.OPEN), "/", [])
        remote = ServerProtocol(state=State.OPEN, max_size=None)
        large = b"\x01" * (8 << 20)  # far more than the socket pair holds
        writer = threading.Thread(target=link.send, args=(large,), daemon=True)
        writer.start()
        time.sleep(0.2)  # (blocked in its write)
        remote.send_ping(b"are you there")
        remote.send_binary(b"data")
        theirs.sendall(b"".join(remote.data_to_send()))
        ours.settimeout(5)
        buffer = memoryview(bytearray(16))
        assert link.recv_into(buffer) == 4 and buffer[:4] == b"data"
        assert writer.is_alive()  # (still blocked: the reader did not wait for it)
        received = []
        theirs.settimeout(5)
        while not any(frame.opcode == Opcode.PONG for frame in received):
            remote.receive_data(theirs.recv(1 << 20))
            received += remote.events_received()
        writer.join(5)
        assert [frame.opcode for frame in received][-1:] == [Opcode.PONG]
        assert sum(len(frame.data) for frame in received if frame.opcode != Opcode.PONG) == len(large)


def test_the_extra_is_named_when_websockets_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket_wire.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'ipfi\[ws\]'"):
        ipfi.sync.connect("ws://127.0.0.1:1/x")


def test_interfaces_by_path_fit_only_a_websocket_address_without_one() -> None:
    for address in ("tcp://127.0.0.1:0", "ws://127.0.0.1:0/calc"):
        with pytest.raises(ipfi.AddressError, match="without a path"):
            ipfi.sync.serve(address, {"/calc": calc})
