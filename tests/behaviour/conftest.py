"""One behaviour suite for every driver: each test runs against a server and a client of the same
driver (asyncio on the standard loop, asyncio on uvloop, blocking) over each wire: the in-process
pair (``ipfi.pair`` / ``ipfi.sync.pair``), a Unix socket, TCP, and ``exec:`` (the server is a child
process serving on its stdio, see child.py). The asyncio driver runs on a loop in a thread of the
test's own, behind an adapter with the blocking driver's shape, so one test body drives both.

What a wire cannot show is skipped by the tests that need it, saying why: over ``exec:`` the
procedures run in another process (their records and the server's connections are not visible
here); only sockets can carry a raw, hand-made peer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shlex
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

import ipfi

T = TypeVar("T")
DRIVERS = ["asyncio", "uvloop", "blocking"]
WIRES = ["memory", "unix", "tcp", "exec"]
CHILD = Path(__file__).resolve().parent / "child.py"


class LoopInThread:
    def __init__(self, use_uvloop: bool) -> None:
        self.loop = uvloop.new_event_loop() if use_uvloop else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():  # (an unclosed loop keeps its fds: ~1,100 over the suite)
            self.loop.close()


class AioClient:
    """An asyncio peer, driven from the test's thread with the blocking peer's methods."""

    def __init__(self, loop: LoopInThread, peer: ipfi.Peer, caller: ipfi.Peer | ipfi.Caller | None = None) -> None:
        self.loop = loop
        self.peer = peer
        self.caller = caller or peer

    def with_options(self, **options: Any) -> AioClient:
        return AioClient(self.loop, self.peer, self.peer.with_options(**options))

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.loop.run(self.caller.call(name, *args, **kwargs))

    def notify(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.loop.run(_on_loop(self.peer.notify, name, *args, **kwargs))  # (raises what it raises)

    def stream(self, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = self.caller.stream(name, *args, **kwargs)
        try:
            while True:
                try:
                    yield self.loop.run(items.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self.loop.run(items.aclose())

    def send(self, channel: int, payload: bytes) -> None:
        self.loop.run(_on_loop(self.peer.send, channel, payload))

    def receive(self, channel: int | None = None, timeout: float | None = None) -> Any:
        return self.loop.run(self.peer.receive(channel, timeout=timeout))

    def ping(self) -> float:
        return self.loop.run(self.peer.ping())

    @property
    def is_open(self) -> bool:
        return self.peer.is_open

    def wait_closed(self, timeout: float) -> None:
        self.loop.run(asyncio.wait_for(self.peer.wait_closed(), timeout))

    def close(self) -> None:
        self.loop.run(self.peer.aclose())


async def _on_loop(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function`` called in the loop's thread, as the asyncio driver's methods must be."""
    return function(*args, **kwargs)


class SyncClient:
    def __init__(self, peer: ipfi.sync.Peer) -> None:
        self.peer = peer
        self.call = peer.call
        self.notify = peer.notify
        self.with_options = peer.with_options
        self.stream = peer.stream
        self.send = peer.send
        self.receive = peer.receive
        self.ping = peer.ping
        self.close = peer.close
        self.abort = peer.abort

    @property
    def is_open(self) -> bool:
        return self.peer.is_open

    def wait_closed(self, timeout: float) -> None:
        with contextlib.suppress(ipfi.ConnectionLost):
            self.peer.receive(timeout=timeout)  # returns by ConnectionLost once the peer is gone
        assert self.peer.is_closed


class PairServer:
    """What a test sees of the server side of in-process pairs: its live peers."""

    def __init__(self) -> None:
        self.peers: list[Any] = []

    @property
    def connections(self) -> list[Any]:
        return [peer for peer in self.peers if not peer.is_closed]


@dataclass
class World:
    """A driver and a wire: ``serve`` a server, ``connect`` clients; everything stops with the test."""

    driver: str
    wire: str
    address: str
    loop: LoopInThread | None
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    served: tuple[ipfi.Interface, dict[str, Any]] | None = None
    pair_server: PairServer = field(default_factory=PairServer)

    @property
    def in_process(self) -> bool:
        """Whether the server's procedures run in this process (not over ``exec:``)."""
        return self.wire != "exec"

    def serve(self, iface: ipfi.Interface, **options: Any) -> Any:
        if self.wire in ("memory", "exec"):  # a server per connection, made by connect()
            self.served = (iface, options)
            return self.pair_server
        if self.loop is None:
            server = ipfi.sync.serve(self.address, iface, **options)
            self.cleanups.append(server.close)
        else:
            server = self.loop.run(ipfi.serve(self.address, iface, **_for_asyncio(options)))
            self.cleanups.append(lambda: self.loop.run(_close(server)))  # type: ignore[union-attr]
        self.address = server.bound_address
        return server

    def stop(self, server: Any) -> None:
        """Stop a server of serve() (its connections end)."""
        if self.loop is None:
            server.close()
        else:
            self.loop.run(_close(server))

    def reconnecting(self, **options: Any) -> Any:
        """A reconnecting client of this world's driver, of the address the last server had."""
        if self.loop is None:
            client: Any = ipfi.sync.reconnecting(self.address, **options)
        else:
            client = AioClient(self.loop, self.loop.run(_on_loop(ipfi.reconnecting, self.address, **options)))
        self.cleanups.append(lambda: _quietly(client.close))
        return client

    def connect(self, iface: ipfi.Interface | None = None, **options: Any) -> Any:
        if self.wire == "memory":
            return self._pair(iface, options)
        address = self.address
        if self.wire == "exec":
            assert self.served is not None
            server_options = dict(self.served[1])
            if "limits" in server_options:
                server_options["limits"] = dataclasses.asdict(server_options["limits"])
            address = "exec:" + shlex.join([sys.executable, str(CHILD), self.driver, json.dumps(server_options)])
        return self.open(address, iface, **options)

    def open(self, address: str, iface: ipfi.Interface | None = None, **options: Any) -> Any:
        """A client of this world's driver connected to ``address``."""
        if self.loop is None:
            client: Any = SyncClient(ipfi.sync.connect(address, iface, **options))
        else:
            client = AioClient(self.loop, self.loop.run(_awaited(ipfi.connect(address, iface, **options))))
        self.cleanups.append(lambda: _quietly(client.close))
        return client

    def _pair(self, iface: ipfi.Interface | None, options: dict[str, Any]) -> Any:
        assert self.served is not None
        server_iface, server_options = self.served
        both = {**server_options, **options}  # one set of options for the two ends of a pair
        if self.loop is None:
            peer, server_peer = ipfi.sync.pair(iface, server_iface, **both)
            client: Any = SyncClient(peer)
            self.cleanups.append(lambda: _quietly(server_peer.abort))
        else:
            peer, server_peer = self.loop.run(ipfi.pair(iface, server_iface, **_for_asyncio(both)))
            client = AioClient(self.loop, peer)
            self.cleanups.append(lambda: self.loop.loop.call_soon_threadsafe(server_peer.abort))  # type: ignore[union-attr]
        self.pair_server.peers.append(server_peer)
        self.cleanups.append(lambda: _quietly(client.close))
        return client


def _for_asyncio(options: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if name != "workers"}  # a blocking server's pool


async def _awaited(opening: Any) -> Any:
    return await opening


async def _close(server: Any) -> None:
    server.close()
    await server.wait_closed()


def _quietly(close: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        close()


@pytest.fixture(params=[(driver, wire) for driver in DRIVERS for wire in WIRES], ids=lambda p: f"{p[0]}-{p[1]}")
def world(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[World]:
    driver, wire = request.param
    address = {"unix": f"unix:{tmp_path / 'b.sock'}", "tcp": "tcp://127.0.0.1:0"}.get(wire, "")
    loop = None if driver == "blocking" else LoopInThread(driver == "uvloop")
    world = World(driver, wire, address, loop)
    try:
        yield world
    finally:
        for cleanup in reversed(world.cleanups):
            _quietly(cleanup)
        if loop is not None:
            loop.stop()
