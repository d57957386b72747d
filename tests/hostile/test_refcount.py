"""A closed connection is freed by reference counting alone: no cycle keeps a peer or its core
alive until the cyclic GC runs (with thousands of connections, that is memory held for nothing)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

import ipfi


def calc() -> ipfi.Interface:
    iface = ipfi.Interface()

    @iface.procedure
    def add(a: int, b: int) -> int:
        return a + b

    @iface.procedure
    async def count(n: int) -> Any:
        for i in range(n):
            yield i

    @iface.procedure
    async def echo(value: bytes) -> bytes:
        return value

    return iface


#: A message past the core's large-frame size (its binary received into a bytes of its own).
LARGE = bytes(512 * 1024)


@pytest.fixture
def gc_disabled() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def all_dead(references: list[weakref.ref[Any]], wait: float = 3.0) -> bool:
    deadline = time.monotonic() + wait
    while any(reference() is not None for reference in references):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_peers_are_freed_without_the_cyclic_gc(loop: str, tmp_path: Path, gc_disabled: None) -> None:
    async def scenario() -> list[weakref.ref[Any]]:
        address = f"unix:{tmp_path}/s.sock"
        async with await ipfi.serve(address, calc()) as server:
            references: list[weakref.ref[Any]] = []
            for _ in range(3):
                peer = await ipfi.connect(address)
                assert await peer.call("add", 1, 2) == 3
                assert [item async for item in peer.stream("count", 3)] == [0, 1, 2]
                assert await peer.call("echo", LARGE) == LARGE
                [served] = server.connections
                references += [weakref.ref(peer), weakref.ref(peer._core), weakref.ref(served)]
                del served
                await peer.aclose()
                del peer
                for _ in range(10):  # the server side sees the EOF
                    await asyncio.sleep(0.01)
            return references

    references = uvloop.run(scenario()) if loop == "uvloop" else asyncio.run(scenario())
    assert all_dead(references)


def test_blocking_peers_are_freed_without_the_cyclic_gc(tmp_path: Path, gc_disabled: None) -> None:
    address = f"unix:{tmp_path}/s.sock"
    references: list[weakref.ref[Any]] = []
    with ipfi.sync.serve(address, calc()) as server:
        for _ in range(3):
            peer = ipfi.sync.connect(address)
            assert peer.call("add", 1, 2) == 3
            assert list(peer.stream("count", 3)) == [0, 1, 2]
            assert peer.call("echo", LARGE) == LARGE
            [served] = server.connections
            references += [weakref.ref(peer), weakref.ref(peer._core), weakref.ref(served)]
            del served
            peer.close()
            del peer
        assert all_dead(references)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_server_frees_closed_connections_whose_timer_was_armed(loop: str, tmp_path: Path) -> None:
    """In a server process of its own, the cyclic GC off: connections that each echoed a message
    past the frame size (reassembled from parts, whose buffer a timer gives back a while later)
    and closed leave no peer behind. (The cancelled timer's handle kept the context it was made
    in, which names the peer: 16 MiB held per closed connection until the collector ran.)"""
    address = f"unix:{tmp_path}/s.sock"
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.helpers.gc_off_server", address, loop]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=root)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        message = bytes(16 * 1024 * 1024 + 1)
        with ipfi.sync.connect(address) as control:
            for _ in range(3):
                with ipfi.sync.connect(address) as peer:
                    assert peer.call("echo", message) == message
            deadline = time.monotonic() + 3
            while (alive := control.call("peers_alive")) > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert alive == 1  # the control connection's own
    finally:
        server.kill()
        server.wait()
