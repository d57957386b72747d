"""One behaviour suite for every driver: each test runs against a server and a client of the same
driver (asyncio on the standard loop, asyncio on uvloop, blocking) over each wire it supports
(Unix socket, TCP). The asyncio driver runs on a loop in a thread of the test's own, behind an
adapter with the blocking driver's shape, so one test body drives both."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import uvloop

import ipfi

T = TypeVar("T")
DRIVERS = ["asyncio", "uvloop", "blocking"]
WIRES = ["unix", "tcp"]


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


class AioClient:
    """An asyncio peer, driven from the test's thread with the blocking peer's methods."""

    def __init__(self, loop: LoopInThread, peer: ipfi.Peer) -> None:
        self.loop = loop
        self.peer = peer

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.loop.run(self.peer.call(name, *args, **kwargs))

    def notify(self, name: str, *args: Any) -> None:
        self.loop.loop.call_soon_threadsafe(self.peer.notify, name, *args)

    def stream(self, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = self.peer.stream(name, *args, **kwargs)
        try:
            while True:
                try:
                    yield self.loop.run(items.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self.loop.run(items.aclose())

    def send(self, channel: int, payload: bytes) -> None:
        self.loop.run(_send(self.peer, channel, payload))

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


async def _send(peer: ipfi.Peer, channel: int, payload: bytes) -> None:
    peer.send(channel, payload)


class SyncClient:
    def __init__(self, peer: ipfi.sync.Peer) -> None:
        self.peer = peer
        self.call = peer.call
        self.notify = peer.notify
        self.stream = peer.stream
        self.send = peer.send
        self.receive = peer.receive
        self.ping = peer.ping
        self.close = peer.close

    @property
    def is_open(self) -> bool:
        return self.peer.is_open

    def wait_closed(self, timeout: float) -> None:
        with contextlib.suppress(ipfi.ConnectionLost):
            self.peer.receive(timeout=timeout)  # returns by ConnectionLost once the peer is gone
        assert self.peer.is_closed


@dataclass
class World:
    """A driver and a wire: ``serve`` a server, ``connect`` clients; everything stops with the test."""

    driver: str
    address: str
    loop: LoopInThread | None
    cleanups: list[Callable[[], None]]

    def serve(self, iface: ipfi.Interface, **options: Any) -> Any:
        if self.loop is None:
            server = ipfi.sync.serve(self.address, iface, **options)
            self.cleanups.append(server.close)
        else:
            options.pop("workers", None)  # the blocking server's thread pool: asyncio has none
            server = self.loop.run(ipfi.serve(self.address, iface, **options))
            self.cleanups.append(lambda: self.loop.run(_close(server)))  # type: ignore[union-attr]
        self.address = server.bound_address
        return server

    def connect(self, iface: ipfi.Interface | None = None, **options: Any) -> Any:
        if self.loop is None:
            client: Any = SyncClient(ipfi.sync.connect(self.address, iface, **options))
        else:
            client = AioClient(self.loop, self.loop.run(_awaited(ipfi.connect(self.address, iface, **options))))
        self.cleanups.append(lambda: _quietly(client.close))
        return client

    def server_peers(self, server: Any) -> list[Any]:
        return list(server.connections)


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
    address = f"unix:{tmp_path / 'b.sock'}" if wire == "unix" else "tcp://127.0.0.1:0"
    loop = None if driver == "blocking" else LoopInThread(driver == "uvloop")
    world = World(driver, address, loop, [])
    try:
        yield world
    finally:
        for cleanup in reversed(world.cleanups):
            _quietly(cleanup)
        if loop is not None:
            loop.stop()
