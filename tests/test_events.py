"""The event API of both servers: connected, disconnected, messages, timers and fds, in one loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

import ipfi
from ipfi.server_events import Timers

from .helpers import calc


def test_timers_fire_in_order_repeat_and_cancel() -> None:
    timers = Timers()
    timers.add(1.0, 0.0, name="slow")
    timers.add(0.25, 0.0, name="fast")
    once = timers.add(0.5, 0.0, repeat=False)
    assert timers.next_deadline() == 0.25
    assert timers.due(0.6) == ["fast", once]
    assert timers.due(0.6) == []
    timers.cancel("fast")
    assert timers.due(10.0) == ["slow"]  # missed ticks are skipped, not replayed
    assert timers.next_deadline() == 11.0
    with pytest.raises(ValueError, match="exists already"):
        timers.add(1.0, 0.0, name="slow")
    with pytest.raises(ValueError, match="positive"):
        timers.add(0.0, 0.0)


async def test_async_server_events(sock_path: str) -> None:
    address = f"unix:{sock_path}"
    read_end, write_end = os.pipe()
    seen: list[Any] = []
    async with await ipfi.serve(address, calc.iface) as server:
        server.add_fd(read_end)
        events = server.events()
        client = await ipfi.connect(address)
        event = await anext(events)
        assert event == ipfi.Connected(event.peer)
        server_peer = event.peer
        server.add_timer(0.02, name="tick", repeat=False)  # (after: on a loaded machine it could come first)
        client.send(2, b"ping")
        os.write(write_end, b"x")
        while len(seen) < 3:
            event = await anext(events)
            match event:
                case ipfi.Received(peer=peer, channel=channel, payload=payload):
                    peer.send(channel, payload.upper())
                    seen.append(("received", peer is server_peer, channel, payload))
                case ipfi.TimerFired(name=name):
                    seen.append(("timer", name))
                case ipfi.FdReady(fd=fd):
                    seen.append(("fd", fd, os.read(fd, 10)))
        reply = await asyncio.wait_for(client.receive(2), 2)
        assert reply.payload == b"PING"
        assert await client.call("add", 1, 2) == 3  # RPC on the same connection
        await client.aclose()
        event = await anext(events)
        assert isinstance(event, ipfi.Disconnected) and event.peer is server_peer
        assert event.reason
    assert sorted(map(str, seen)) == sorted(
        map(str, [("received", True, 2, b"ping"), ("timer", "tick"), ("fd", read_end, b"x")])
    )
    assert [event async for event in events] == []  # the feed ends with the server
    os.close(read_end)
    os.close(write_end)


async def test_fd_is_reported_once_per_turn_and_peers_connected_earlier_come_first(sock_path: str) -> None:
    address = f"unix:{sock_path}"
    read_end, write_end = os.pipe()
    async with await ipfi.serve(address, calc.iface) as server, ipfi.connect(address) as client:
        client.send(3, b"early")  # before anybody asked for events: queued on the peer
        await client.ping()
        events = server.events()
        first, second = await anext(events), await anext(events)
        assert isinstance(first, ipfi.Connected)
        assert second == ipfi.Received(first.peer, 3, b"early")
        server.add_fd(read_end)
        os.write(write_end, b"abc")
        assert await asyncio.wait_for(anext(events), 2) == ipfi.FdReady(read_end)
        # Not read yet: the next turn reports it again, once (not once per loop iteration).
        server.add_timer(0.05, name="later", repeat=False)
        assert await asyncio.wait_for(anext(events), 2) == ipfi.FdReady(read_end)
        os.read(read_end, 3)
        assert await asyncio.wait_for(anext(events), 2) == ipfi.TimerFired("later")
        server.remove_fd(read_end)
    os.close(read_end)
    os.close(write_end)


def test_sync_server_events(sock_path: str) -> None:
    address = f"unix:{sock_path}"
    read_end, write_end = os.pipe()
    seen: list[Any] = []
    ticked = threading.Event()
    with ipfi.sync.serve(address, calc.iface) as server:
        events = server.events()
        server.add_timer(0.02, name="tick")
        server.add_fd(read_end)

        def client_side() -> None:
            with ipfi.sync.connect(address) as client:
                client.send(2, b"hello")
                seen.append(("reply", client.receive(2, timeout=5).payload))
                seen.append(("rpc", client.call("add", 2, 2)))
            ticked.wait(5)
            os.write(write_end, b"!")

        thread = threading.Thread(target=client_side)
        thread.start()
        ticks = 0
        for event in events:
            match event:
                case ipfi.Connected():
                    seen.append(("connected",))
                case ipfi.Received(peer=peer, channel=channel, payload=payload):
                    peer.send(channel, payload[::-1])
                case ipfi.Disconnected():
                    seen.append(("disconnected",))
                case ipfi.TimerFired():
                    ticks += 1
                    ticked.set()
                case ipfi.FdReady(fd=fd):
                    seen.append(("fd", os.read(fd, 10)))
                    server.cancel_timer("tick")
                    break
        thread.join(5)
    assert seen == [("connected",), ("reply", b"olleh"), ("rpc", 4), ("disconnected",), ("fd", b"!")]
    assert ticks >= 1
    assert list(events) == []
    os.close(read_end)
    os.close(write_end)


def test_sync_event_feed_ends_when_the_server_closes_under_it(sock_path: str) -> None:
    server = ipfi.sync.serve(f"unix:{sock_path}", calc.iface)
    events = server.events()
    done = threading.Event()

    def consume() -> None:
        for _ in events:
            pass
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.05)
    server.close()
    assert done.wait(5)
    thread.join(5)


def test_sync_messages_queue_limit_pauses_the_reader(sock_path: str) -> None:
    limits = ipfi.Limits(max_queued_messages=8)
    payloads = [i.to_bytes(4, "big") * 256 for i in range(2000)]
    address = f"unix:{sock_path}"
    with ipfi.sync.serve(address, calc.iface, limits=limits) as server:
        events = server.events()
        with ipfi.sync.connect(address) as client:
            sender = threading.Thread(target=lambda: [client.send(2, payload) for payload in payloads])
            sender.start()
            connected = next(events)
            assert isinstance(connected, ipfi.Connected)
            time.sleep(0.2)
            # Paused at the limit: at most the limit plus one read's worth (256 KiB) queued.
            assert 8 <= connected.peer._core.messages_queued <= 8 + 256
            got = [next(events) for _ in range(2000)]
            sender.join(10)
    assert [event.payload for event in got if isinstance(event, ipfi.Received)] == payloads


def test_sync_receive_per_channel(sock_path: str) -> None:
    address = f"unix:{sock_path}"
    with ipfi.sync.serve(address, calc.iface) as server, ipfi.sync.connect(address) as client:
        for channel, payload in [(2, b"a"), (3, b"b"), (2, b"c")]:
            client.send(channel, payload)
        client.ping()
        [server_peer] = server.connections
        assert server_peer.receive(3, timeout=2).payload == b"b"
        assert [server_peer.receive(timeout=2).payload for _ in range(2)] == [b"a", b"c"]
        with pytest.raises(TimeoutError):
            server_peer.receive(2, timeout=0.05)
