"""Every wire: TCP, Unix, a child's stdin/stdout, stdio, memory, and any byte source/sink."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

import ipfi
import ipfi.sync
from ipfi.aio.peer import _PACED_SLICE, _PacedWriter

from .conftest import PYTHON, ROOT
from .helpers import calc
from .helpers.servers import run_on


async def test_tcp_loopback() -> None:
    async with await ipfi.serve("tcp://127.0.0.1:0", calc.iface) as server:
        async with ipfi.connect(server.bound_address) as peer:
            assert await peer.call("add", 2, 3) == 5
            assert [i async for i in peer.stream("count", 3)] == [0, 1, 2]


async def test_exec_child_over_stdin_stdout() -> None:
    os.environ["PYTHONPATH"] = str(ROOT)
    async with ipfi.connect(f"exec:{PYTHON} -m tests.helpers.stdio_child") as peer:
        child_pid = await peer.call("pid")
        assert child_pid != os.getpid()
        assert await peer.call("add", 40, 2) == 42
        assert await peer.with_options(input=range(10)).call("total") == 45
    for _ in range(100):  # closing the connection ends the child
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the child outlived its connection")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_what_is_written_to_an_exec_child_before_a_close_reaches_it(
    loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large message goes to the standard loop's pipe a slice at a time (its transport would move
    what it holds after every write: see _PacedWriter); closing hands what still waits over first,
    since the pipe's transport drops what it is given once closing."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notes = tmp_path / "notes"
    data = bytes(range(256)) * 65536  # 16 MiB

    async def scenario() -> None:
        peer = await ipfi.connect(f"exec:{PYTHON} -m tests.helpers.keeper_child {notes}")
        assert isinstance(peer._writelines, _PacedWriter) == (loop == "asyncio")
        peer.notify("keep", data)
        await asyncio.sleep(0)  # (written: what a notification queues goes out a loop turn later)
        peer.abort()
        await peer.wait_closed()
        await peer.process.wait()

    run_on(loop, scenario())
    assert notes.read_text() == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


def test_a_large_message_to_an_exec_child_that_does_not_read_waits_here_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the standard loop the pipe's transport holds about its high-water mark and one slice, not
    the 15 MiB the pipe did not take (which it would move after every write)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notes = tmp_path / "notes"
    data = bytes(16 << 20)

    async def scenario() -> None:
        async with ipfi.connect(f"exec:{PYTHON} -m tests.helpers.keeper_child {notes}") as peer:
            peer.notify("stall", 1.0)
            sent = asyncio.ensure_future(peer.call("keep", data))
            await asyncio.sleep(0.5)
            transport = peer._transport
            assert transport is not None
            assert 0 < transport.get_write_buffer_size() <= 65536 + _PACED_SLICE
            await sent

    asyncio.run(scenario())
    assert notes.read_text() == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


@pytest.mark.parametrize("watcher", ["pidfd", "thread"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_closing_an_exec_connection_waits_for_its_child_to_exit(
    loop: str, watcher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that a program can end its loop right after. The exit is watched through a pidfd, or by a
    thread where the system has none."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    if watcher == "thread":
        monkeypatch.delattr(os, "pidfd_open", raising=False)

    async def scenario() -> int | None:
        async with ipfi.connect(f"exec:{PYTHON} -m tests.helpers.stdio_child") as peer:
            assert await peer.call("add", 1, 2) == 3
        return cast(int | None, peer.process.returncode)

    assert run_on(loop, asyncio.wait_for(scenario(), 10)) == 0


def pidfds() -> int:
    """This process's pidfds (listing /proc/self/fd opens one more fd, gone by the time it is read)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
    return count


@pytest.mark.skipif(not hasattr(os, "pidfd_open") or not os.path.isdir("/proc/self/fd"), reason="Linux 5.3+")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_loop_closed_before_its_exec_child_exited_keeps_no_pidfd(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program that ends its loop with an exec: connection still open (never closed) leaks no
    descriptor of the child's exit watch: its pidfd is closed once the loop's reader is gone."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    gc.collect()  # (what earlier tests left to the collector)
    before = pidfds()

    async def left_open() -> None:
        peer = await ipfi.connect(f"exec:{PYTHON} -m tests.helpers.stdio_child")
        assert await peer.call("add", 1, 2) == 3
        assert pidfds() > before  # (its exit watched)

    for _ in range(3):
        run_on(loop, left_open())
    gc.collect()
    assert pidfds() == before


@pytest.mark.parametrize("driver", ["asyncio", "uvloop", "blocking"])
def test_a_call_to_a_child_that_stopped_reading_fails_at_once(driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child closed its stdin and keeps its stdout open and silent: a call fails as its write
    does (or as it finds the child's stdin closed), not once the child exits, 3 s later."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    address = f"exec:{PYTHON} -m tests.helpers.deaf_child 3"
    outcome: list[BaseException] = []
    if driver == "blocking":

        def call(peer: ipfi.sync.Peer) -> None:
            try:
                peer.call("add", 1, 1)
            except BaseException as exc:
                outcome.append(exc)

        with ipfi.sync.connect(address) as peer:
            thread = threading.Thread(target=call, args=(peer,), daemon=True)
            thread.start()
            thread.join(2)
            answered_in_time = len(outcome) == 1  # (before closing, which ends a waiting call too)
    else:

        async def scenario() -> None:
            async with ipfi.connect(address) as peer:
                try:
                    await asyncio.wait_for(peer.call("add", 1, 1), 2)
                except BaseException as exc:
                    outcome.append(exc)

        run_on(driver, scenario())
        answered_in_time = len(outcome) == 1 and not isinstance(outcome[0], TimeoutError)
    assert answered_in_time, "the call waited for a reply"
    assert isinstance(outcome[0], ipfi.ConnectionLost), repr(outcome[0])


def _children() -> set[str]:
    return {pid for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()}


@pytest.mark.skipif(not os.path.exists(f"/proc/self/task/{os.getpid()}/children"), reason="lists children in /proc")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connect_cancelled_while_it_spawns_leaves_no_child(loop: str) -> None:
    """Cancelled once the child is started, while its pipes are being connected to the loop."""

    async def scenario() -> set[str]:
        before = _children()
        connecting = asyncio.ensure_future(ipfi.connect("exec:sleep 30"))
        await asyncio.sleep(0)  # (its first step: up to the loop's taking the child's stdin)
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        deadline = time.monotonic() + 1  # (the child is killed; it leaves once reaped)
        while _children() - before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return _children() - before

    assert run_on(loop, scenario()) == set()


@pytest.mark.skipif(not os.path.exists(f"/proc/self/task/{os.getpid()}/children"), reason="lists children in /proc")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connect_cancelled_during_the_handshake_kills_its_child_at_once(loop: str) -> None:
    """Not 2 s later (a closed connection's grace), when the loop may have ended: the child has not
    answered, and nobody will speak to it."""

    async def scenario() -> set[str]:
        before = _children()
        connecting = asyncio.ensure_future(ipfi.connect("exec:sleep 30"))
        await asyncio.sleep(0.3)  # (started; its handshake unanswered)
        assert _children() - before
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        deadline = time.monotonic() + 1  # (killed at once; it leaves once reaped)
        while _children() - before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return _children() - before

    assert run_on(loop, scenario()) == set()


@pytest.mark.skipif(not os.path.exists(f"/proc/self/task/{os.getpid()}/children"), reason="lists children in /proc")
@pytest.mark.parametrize("driver", ["asyncio", "uvloop", "blocking"])
def test_a_child_that_never_answers_is_gone_when_connect_gives_up(driver: str) -> None:
    """``HandshakeTimeout``; the child, which ignores the end of its stdin, is killed at once (not
    after a closed connection's 2 s of grace) and reaped before connect() raises, so that nothing of
    it outlives a program that ends then."""
    limits = ipfi.Limits(handshake_timeout=0.2)
    before = _children()
    started = time.monotonic()
    if driver == "blocking":
        with pytest.raises(ipfi.HandshakeTimeout):
            ipfi.sync.connect("exec:sleep 30", limits=limits)
    else:

        async def scenario() -> None:
            with pytest.raises(ipfi.HandshakeTimeout):
                await ipfi.connect("exec:sleep 30", limits=limits)

        run_on(driver, scenario())  # (its loop closed as connect() returned)
    assert _children() - before == set()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("driver", ["asyncio", "uvloop", "blocking"])
def test_a_child_that_closed_its_stdout_ends_the_connection_while_it_runs(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At once, not when the child exits (3 s later; its stdin stays open)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    address = f"exec:{PYTHON} -m tests.helpers.deaf_child 3 stdout"
    if driver == "blocking":
        with ipfi.sync.connect(address) as peer:
            peer.wait_closed(timeout=1.5)  # (TimeoutError if it has not ended)
            assert peer.process.poll() is None  # the child still runs
    else:

        async def scenario() -> None:
            async with ipfi.connect(address) as peer:
                deadline = time.monotonic() + 1.5
                while peer.is_open and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert not peer.is_open
                assert peer.process.returncode is None  # the child still runs

        run_on(driver, scenario())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads the child's fds in /proc")
@pytest.mark.parametrize("driver", ["asyncio", "uvloop", "blocking"])
def test_an_exec_child_holds_no_copies_of_its_pipes(driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child (core-only: it reads fd 0 and writes fd 1 themselves, and has closed fd 0) holds its
    stdout and stderr, nothing more: a child holding second copies (as libuv's spawn leaves them,
    libuv/libuv#3716) keeps a pipe open after it closes its end, and nothing tells us."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    address = f"exec:{PYTHON} -m tests.helpers.deaf_child 2"

    def open_fds(pid: int) -> list[str]:
        return sorted(fd.name for fd in Path(f"/proc/{pid}/fd").iterdir())

    if driver == "blocking":
        with ipfi.sync.connect(address) as peer:
            fds = open_fds(peer.process.pid)
    else:

        async def scenario() -> list[str]:
            async with ipfi.connect(address) as peer:
                return open_fds(peer.process.pid)

        fds = run_on(driver, scenario())
    assert fds == ["1", "2"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts this process's fds in /proc")
@pytest.mark.parametrize("driver", ["asyncio", "uvloop", "blocking"])
def test_an_exec_program_that_does_not_exist_raises_and_leaves_no_fd_open(driver: str, tmp_path: Path) -> None:
    address = f"exec:{tmp_path / 'no-such-program'}"

    async def connect() -> None:
        async with ipfi.connect(address):
            pass

    if driver != "blocking":
        run_on(driver, asyncio.sleep(0))  # (uvloop's first loop keeps two fds of its own)
    gc.collect()  # (what earlier tests left for the collector closes its fds now, not during the count)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            if driver == "blocking":
                ipfi.sync.connect(address)
            else:
                run_on(driver, connect())
    assert len(os.listdir("/proc/self/fd")) <= before  # (a leak would be 4 fds a spawn)


async def test_one_server_many_connections(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface) as server:
        peers = [await ipfi.connect(f"unix:{sock_path}") for _ in range(20)]
        assert len(server.connections) == 20
        assert {p.peer_id for p in peers} == {p.peer_id for p in server.connections}
        assert len({p.peer_id for p in peers}) == 20
        results = await asyncio.gather(*(p.call("add", i, 1) for i, p in enumerate(peers)))
        assert results == [i + 1 for i in range(20)]
        for p in peers:
            await p.aclose()
        for _ in range(100):
            if not server.connections:
                break
            await asyncio.sleep(0.01)
        assert not server.connections  # nothing about closed connections stays


async def _trickle(sock: socket.socket) -> AsyncIterator[bytes]:
    """A byte source that yields what a socket receives, one byte at a time."""
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            return
        for byte in chunk:
            yield bytes([byte])


async def test_user_byte_source_fed_one_byte_at_a_time() -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)

    def sink_for(sock: socket.socket):  # type: ignore[no-untyped-def]
        async def sink(data: bytes) -> None:
            await loop.sock_sendall(sock, data)

        return sink

    try:
        server_task = asyncio.create_task(_accept(right, sink_for(right)))
        async with ipfi.connect_stream(_trickle(left), sink_for(left)) as peer:
            assert await peer.call("add", 1, 2) == 3
            assert await peer.call("echo", "é" * 100) == "é" * 100
            assert [i async for i in peer.stream("count", 50)] == list(range(50))
        server_peer = await server_task
        await asyncio.wait_for(server_peer.wait_closed(), 2)
    finally:
        left.close()
        right.close()


async def _accept(sock: socket.socket, sink) -> ipfi.Peer:  # type: ignore[no-untyped-def]
    return await ipfi.accept_stream(_trickle(sock), sink, calc.iface)


async def test_memory_pair_both_directions() -> None:
    client_iface = ipfi.Interface()
    client_iface.add(lambda: "client", name="who")
    client, server = await ipfi.pair(client_iface, calc.iface)
    assert await client.call("add", 1, 1) == 2
    assert await server.call("who") == "client"
    await client.aclose()
    await asyncio.wait_for(server.wait_closed(), 1)


async def test_unix_stale_socket_is_replaced_and_live_one_refused(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()  # a socket file nobody listens on, as a crashed server leaves it
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        with pytest.raises(ipfi.AddressError):
            await ipfi.serve(f"unix:{sock_path}", calc.iface)
    assert not os.path.exists(sock_path)  # removed on close


@pytest.mark.parametrize(
    "address", ["", "http://x", "tcp://host", "tcp://:1", "tcp://h:99999", "unix:", "stdio:x", "exec:"]
)
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ipfi.AddressError):
        ipfi.parse_address(address)


def test_addresses_round_trip() -> None:
    for text in ["unix:/tmp/a.sock", "tcp://127.0.0.1:7000", "tcp://[::1]:80", "stdio:", "exec:prog 'a b'"]:
        assert str(ipfi.parse_address(text)) == text
