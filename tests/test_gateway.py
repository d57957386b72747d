"""``ipfi gateway``: clients of both drivers over tcp, tls and ws relayed to a ``service:`` target;
the service told who each client is; tokens checked at the edge (``AuthenticationFailed``); a plain
ipcprims-framed client relayed as it is; and the limits (frame size, clients, rates) with what is
past them refused while the gateway goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop

import ipfi
import ipfi.sync
from ipfi.core.frames import CONTROL, DATA, FrameDecoder, encode_frame
from ipfi.core.relay import FrameScanner, RateLimit

from .conftest import PYTHON, ROOT
from .helpers.servers import DRIVERS, run_on

TOKEN = "edge-token"

calc = ipfi.Interface()


@calc.procedure
def add(a: int, b: int) -> int:
    return a + b


@calc.procedure
async def count(n: int) -> Any:
    for item in range(n):
        yield item


@calc.procedure
def who() -> dict[str, str] | None:
    """Whom the gateway says it relays."""
    return ipfi.current_peer().forwarded_for


@pytest.fixture
def service(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """A loop in a thread running ``calc`` as ``service:calc`` (plain frames echoed), where the
    tests start their gateways: asyncio's, or uvloop's when parametrized so (indirectly)."""
    monkeypatch.setenv("IPFI_RUNDIR", str(tmp_path / "run"))
    loop = uvloop.new_event_loop() if getattr(request, "param", "asyncio") == "uvloop" else asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    forwarded: list[Any] = []

    async def start() -> tuple[Any, Any]:
        server = await ipfi.serve("service:calc", calc)

        async def echo_frames() -> None:
            async for event in server.events():
                if isinstance(event, ipfi.Connected):
                    forwarded.append(event.peer.forwarded_for)
                elif isinstance(event, ipfi.Received):
                    event.peer.send(event.channel, event.payload)

        return server, loop.create_task(echo_frames())

    server, echoing = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    state = {"loop": loop, "server": server, "gateways": [], "forwarded": forwarded, "echoing": echoing}
    yield state

    async def stop() -> None:
        for gateway in state["gateways"]:
            gateway.close()
            await gateway.wait_closed()
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def start_gateway(service: dict[str, Any], listen: str, **options: Any) -> str:
    async def start() -> ipfi.Gateway:
        return await ipfi.gateway(listen, "service:calc", **options)

    gateway = asyncio.run_coroutine_threadsafe(start(), service["loop"]).result(5)
    service["gateways"].append(gateway)
    return gateway.bound_address


def session(driver: str, address: str, **options: Any) -> tuple[Any, ...]:
    if driver == "blocking":
        with ipfi.sync.connect(address, **options) as peer:
            return peer.call("add", 1, 2), list(peer.stream("count", 3)), peer.call("who")

    async def client() -> tuple[Any, ...]:
        async with ipfi.connect(address, **options) as peer:
            items = [item async for item in peer.stream("count", 3)]
            return await peer.call("add", 1, 2), items, await peer.call("who")

    return run_on(driver, client())


@pytest.mark.parametrize("service", ["asyncio", "uvloop"], indirect=True, ids=["gateway-asyncio", "gateway-uvloop"])
@pytest.mark.parametrize("listen", ["tcp", "tls", "ws"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_clients_reach_a_named_service_through_the_gateway(driver: str, listen: str, service: dict[str, Any]) -> None:
    client_options: dict[str, Any] = {}
    gateway_options: dict[str, Any] = {}
    if listen == "tls":
        ca = trustme.CA()
        gateway_options["ssl"] = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(gateway_options["ssl"])
        ca.configure_trust(gateway_options["ssl"])
        gateway_options["ssl"].verify_mode = ssl.CERT_REQUIRED  # (mutual TLS: the subject goes on)
        client_options["ssl"] = ssl.create_default_context()
        ca.configure_trust(client_options["ssl"])
        ca.issue_cert("bob@example.org", common_name="bob").configure_cert(client_options["ssl"])
    address = start_gateway(service, f"{listen}://127.0.0.1:0" + ("/calc" if listen == "ws" else ""), **gateway_options)
    added, items, relayed_for = session(driver, address.replace("127.0.0.1", "localhost"), **client_options)
    assert (added, items) == (3, [0, 1, 2])
    assert relayed_for["remote"].startswith("127.0.0.1:")
    if listen == "tls":
        assert "CN=bob" in relayed_for["tls_subject"]
    if listen == "ws":
        assert relayed_for["path"] == "/calc"


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_gateway_refuses_a_client_without_its_token(driver: str, service: dict[str, Any]) -> None:
    address = start_gateway(service, "tcp://127.0.0.1:0", tokens={TOKEN})
    for refused in ({}, {"auth_token": "not it"}):
        with pytest.raises(ipfi.AuthenticationFailed):
            session(driver, address, **refused)
    assert session(driver, address, auth_token=TOKEN)[0] == 3


def hello(**fields: Any) -> bytes:
    document = {"protocol": "ipcprims", "version": "1.0", "channels": [1, 2, 3, 4], **fields}
    return encode_frame(CONTROL, json.dumps(document).encode())


def read_frames(client: socket.socket, count: int) -> list[tuple[int, bytes]]:
    decoder = FrameDecoder()
    frames: list[tuple[int, bytes]] = []
    while len(frames) < count:
        data = client.recv(65536)
        assert data, f"closed after {frames}"
        frames += [(channel, bytes(payload)) for channel, payload in decoder.feed(data)]
    return frames


def test_a_plain_ipcprims_client_is_relayed_as_it_is(service: dict[str, Any]) -> None:
    host, port = start_gateway(service, "tcp://127.0.0.1:0").removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as client:
        # (it claims a forwarded_for of its own: the gateway puts the truth in its place)
        client.sendall(hello(forwarded_for={"remote": "10.0.0.1:1"}) + encode_frame(DATA, b"one"))
        (channel, reply), echoed = read_frames(client, 2)
        assert channel == CONTROL and json.loads(reply)["protocol"] == "ipcprims"
        assert echoed == (DATA, b"one")
        client.sendall(encode_frame(DATA, b"two") + encode_frame(DATA, b"\x00three"))  # two in one write
        assert read_frames(client, 2) == [(DATA, b"two"), (DATA, b"\x00three")]
    assert [seen["remote"][:10] for seen in service["forwarded"]] == ["127.0.0.1:"]


def test_what_is_past_the_gateways_limits_is_refused_and_it_goes_on(service: dict[str, Any]) -> None:
    limits = ipfi.GatewayLimits(max_frame_payload=1000, max_clients=2)
    host, port = start_gateway(service, "tcp://127.0.0.1:0", limits=limits).removeprefix("tcp://").rsplit(":", 1)
    target = (host, int(port))
    with socket.create_connection(target, timeout=5) as client:
        client.sendall(hello() + encode_frame(DATA, b"x" * 1000))  # at the limit
        assert read_frames(client, 2)[1] == (DATA, b"x" * 1000)
        client.sendall(encode_frame(DATA, b"x" * 1001))  # one past it
        assert client.recv(100) == b""
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", hello()[:3] + b"\xff" * 20000):  # not frames; a huge "hello"
        with socket.create_connection(target, timeout=5) as client:
            client.sendall(garbage)
            assert client.recv(100) == b""
    with socket.create_connection(target, timeout=5) as first, socket.create_connection(target, timeout=5) as second:
        first.sendall(hello())
        second.sendall(hello())
        read_frames(first, 1)
        read_frames(second, 1)
        with socket.create_connection(target, timeout=5) as third:  # past max_clients
            assert third.recv(100) == b""
    gateway = service["gateways"][-1]
    deadline = time.monotonic() + 5
    while gateway.clients and time.monotonic() < deadline:  # (the relays end once their clients have)
        time.sleep(0.01)
    assert session("asyncio", f"tcp://{host}:{port}")[0] == 3


@pytest.mark.parametrize("service", ["asyncio", "uvloop"], indirect=True, ids=["gateway-asyncio", "gateway-uvloop"])
@pytest.mark.parametrize("listen", ["tcp", "tls", "ws", "wss"])
def test_closing_the_gateway_ends_the_clients_still_saying_hello(listen: str, service: dict[str, Any]) -> None:
    """A client that connects and says nothing (no TLS hello, no WebSocket request, no ipcprims
    hello) is closed with the gateway, not at its deadline."""
    options: dict[str, Any] = {"limits": ipfi.GatewayLimits(hello_timeout=10.0)}
    if listen in ("tls", "wss"):
        options["ssl"] = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("localhost").configure_cert(options["ssl"])
    address = start_gateway(service, f"{listen}://127.0.0.1:0", **options)
    host, port = address.removeprefix(f"{listen}://").split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as silent:
        time.sleep(0.2)  # (accepted, its hello awaited)
        gateway = service["gateways"].pop()
        start = time.monotonic()

        async def close() -> None:
            gateway.close()
            await gateway.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), service["loop"]).result(15)
        assert time.monotonic() - start < 2
        if listen in ("tls", "wss") and isinstance(service["loop"], uvloop.Loop):
            return  # (uvloop shows no socket in its TLS handshake: it is closed at its deadline)
        silent.settimeout(2)
        assert silent.recv(1) == b""


@pytest.mark.parametrize("service", ["asyncio", "uvloop"], indirect=True, ids=["gateway-asyncio", "gateway-uvloop"])
def test_websocket_openings_are_bounded_by_max_clients_and_hello_timeout(service: dict[str, Any]) -> None:
    """Silent WebSocket clients: at most max_clients opening at once (those past it closed as they
    come), and each closed at hello_timeout; then the gateway serves again."""
    limits = ipfi.GatewayLimits(max_clients=2, hello_timeout=2.0)
    address = start_gateway(service, "ws://127.0.0.1:0", limits=limits)
    host, port = address.removeprefix("ws://").split("/")[0].rsplit(":", 1)
    with contextlib.ExitStack() as stack:
        start = time.monotonic()
        silent = [stack.enter_context(socket.create_connection((host, int(port)), timeout=5)) for _ in range(5)]
        time.sleep(0.3)  # (those past the limit are closed as they come)
        closed = []
        for sock in silent:
            sock.setblocking(False)
            try:
                closed.append(sock.recv(1) == b"")
            except BlockingIOError:
                closed.append(False)
            sock.settimeout(5)
        assert closed.count(True) == 3  # (two openings held: the limit)
        for sock in silent:
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
        assert 1.5 < time.monotonic() - start < 4.5  # (closed at hello_timeout, not websockets' 10 s)
    assert session("asyncio", address + "/calc")[0] == 3


def test_the_frame_scanner_counts_frames_in_any_chunking_and_keeps_nothing() -> None:
    stream = encode_frame(DATA, b"a" * 10) + encode_frame(DATA, b"") + encode_frame(1, b"b" * 300)
    for size in (1, 3, 8, 9, 64, len(stream)):
        scanner = FrameScanner(max_payload=300)
        assert sum(scanner.feed(stream[start : start + size]) for start in range(0, len(stream), size)) == 3
    with pytest.raises(ipfi.FrameTooLarge):
        FrameScanner(max_payload=299).feed(stream)
    with pytest.raises(ipfi.FrameError):
        FrameScanner().feed(b"XX" + stream[2:])


def test_a_rate_limit_passes_its_burst_then_spaces_what_follows() -> None:
    now = [0.0]
    rate = RateLimit(100.0, clock=lambda: now[0])
    assert rate.delay(100) == 0.0  # one second's worth at once
    assert rate.delay(50) == pytest.approx(0.5)  # then the rate
    now[0] += 1.5
    assert rate.delay(100) == 0.0


def test_the_cli_gateway_relays_to_a_service_and_checks_tokens(tmp_path: Path) -> None:
    environment = {**os.environ, "IPFI_RUNDIR": str(tmp_path / "run"), "PYTHONPATH": str(tmp_path)}
    (tmp_path / "gw_served.py").write_text(
        "import ipfi\niface = ipfi.Interface()\n\n@iface.procedure\ndef add(a: int, b: int) -> int:\n    return a + b\n"
    )
    (tmp_path / "tokens").write_text(f"# who may pass\n{TOKEN}\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ipfi_command = [PYTHON, "-m", "ipfi"]
    processes = [
        subprocess.Popen([*ipfi_command, "serve", "gw_served:iface", "service:gw"], env=environment, cwd=ROOT),
        subprocess.Popen(
            [
                *ipfi_command,
                "gateway",
                f"tcp://127.0.0.1:{port}",
                "service:gw",
                "--tokens-file",
                str(tmp_path / "tokens"),
            ],
            env=environment,
            cwd=ROOT,
        ),
    ]
    try:

        def call(*extra: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
            env = {**environment, **({"IPFI_TOKEN": token} if token else {})}
            return subprocess.run(
                [*ipfi_command, "call", f"tcp://127.0.0.1:{port}", "add", "2", "3", "--format", "json", *extra],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        for _ in range(100):  # (until both have started)
            answered = call(token=TOKEN)
            if answered.returncode == 0:
                break
        assert answered.returncode == 0 and answered.stdout.strip() == "5", answered.stderr
        refused = call()
        assert refused.returncode != 0 and "AuthenticationFailed" in refused.stderr
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def test_many_websocket_clients_at_once_through_one_gateway_lose_no_call(service: dict[str, Any]) -> None:
    address = start_gateway(service, "ws://127.0.0.1:0")
    clients, calls_each = 200, 5  # (benchmarks/gateway.py runs 1,000; the suite keeps to seconds)

    async def one(number: int) -> list[int]:
        async with ipfi.connect(address + "/crowd") as peer:
            return [await peer.call("add", number, index) for index in range(calls_each)]

    async def everyone() -> list[list[int]]:
        return await asyncio.gather(*(one(number) for number in range(clients)))

    answers = asyncio.run(everyone())
    assert answers == [[number + index for index in range(calls_each)] for number in range(clients)]
