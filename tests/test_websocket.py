"""``ws://`` and ``wss://`` in both drivers: calls, streams and results larger than one message;
interfaces by path and a 404 for any other; and what a WebSocket peer may do wrong (a text
message, a message over the limit) ending its connection only."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as raw_connect

import ipfi
import ipfi.sync
from ipfi.net import websocket as websocket_wire

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
            with pytest.raises(ConnectionClosed):
                raw.recv(timeout=5)
        with raw_connect(address, max_size=None, compression=None) as raw:
            raw.send(b"\x00" * (websocket_wire.MESSAGE_SIZE + 1))  # one byte past the limit
            with pytest.raises(ConnectionClosed) as closed:
                raw.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
        assert session("asyncio", address) == (3, [0, 1, 2], LARGE, "/calc")


def test_the_extra_is_named_when_websockets_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket_wire.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'ipfi\[ws\]'"):
        ipfi.sync.connect("ws://127.0.0.1:1/x")


def test_interfaces_by_path_fit_only_a_websocket_address_without_one() -> None:
    for address in ("tcp://127.0.0.1:0", "ws://127.0.0.1:0/calc"):
        with pytest.raises(ipfi.AddressError, match="without a path"):
            ipfi.sync.serve(address, {"/calc": calc})
