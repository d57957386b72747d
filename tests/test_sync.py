"""The blocking driver: threads, streams, loss, leaks, fork, and interop with the asyncio driver."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import ipfi
from ipfi.sync.links import PipeLink, SocketLink, write_all

from .conftest import PYTHON, ROOT
from .helpers import calc


@pytest.fixture
def sync_server(sock_path: str) -> Iterator[str]:
    address = f"unix:{sock_path}"
    with ipfi.sync.serve(address, calc.iface):
        yield address


@pytest.fixture
def async_server_process(sock_path: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    address = f"unix:{sock_path}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([PYTHON, "-m", "tests.helpers.calc", address], stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


def test_calls_errors_and_streams(sync_server: str) -> None:
    with ipfi.sync.connect(sync_server) as peer:
        assert peer.call("add", 1, 2) == 3
        assert peer.call("add", a=2, b=3) == 5
        assert peer.proxy().echo([1, b"x"]) == [1, b"x"]
        with pytest.raises(ipfi.RemoteError, match="boom"):
            peer.call("fail", "boom")
        with pytest.raises(ipfi.ProcedureNotFound):
            peer.call("nope")
        with pytest.raises(ipfi.InvalidArguments):
            peer.call("add", 1)
        assert peer.call("aecho", 1) == 1  # async def: run on the server's loop thread
        assert list(peer.stream("count", 300)) == list(range(300))  # an async generator too
        assert list(peer.stream("count_sync", 1000)) == list(range(1000))
        assert peer.call("count_sync", 600) == list(range(600))  # collected, credit flowing
        assert peer.call("count_sync", 0) == []
        assert peer.with_options(input=range(1001)).call("total_sync") == 500500
        assert list(peer.with_options(input=iter(range(700))).stream("double_sync")) == [2 * i for i in range(700)]
        assert 0 < peer.ping() < 1


def test_sixteen_threads_thousand_calls_each(sync_server: str) -> None:
    errors: list[str] = []
    with ipfi.sync.connect(sync_server) as peer:

        def worker(n: int) -> None:
            for i in range(1000):
                value = n * 1_000_000 + i
                result = peer.call("echo", value)
                if result != value:
                    errors.append(f"thread {n} sent {value} got {result}")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)


def test_threads_share_streams_and_calls(sync_server: str) -> None:
    results: dict[int, Any] = {}
    with ipfi.sync.connect(sync_server) as peer:

        def worker(n: int) -> None:
            results[n] = list(peer.stream("count_sync", 300 + n)) if n % 2 else peer.call("add", n, n)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: list(range(300 + n)) if n % 2 else 2 * n for n in range(8)}


def test_kill_9_wakes_every_waiting_thread(async_server_process: Any) -> None:
    process, address = async_server_process
    outcomes: list[tuple[str, float]] = []
    with ipfi.sync.connect(address) as peer:
        assert peer.call("add", 1, 1) == 2  # a sync client against an asyncio server

        def waiter(n: int) -> None:
            try:
                peer.call("sleep", 30, str(n))
                outcomes.append(("returned", time.monotonic()))
            except ipfi.ConnectionLost:
                outcomes.append(("lost", time.monotonic()))

        threads = [threading.Thread(target=waiter, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        killed = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(5)
    assert len(outcomes) == 16
    assert all(kind == "lost" and at - killed < 1.0 for kind, at in outcomes)


def test_timeouts(async_server_process: Any) -> None:
    _, address = async_server_process
    with ipfi.sync.connect(address) as peer:
        start = time.monotonic()
        with pytest.raises(ipfi.DeadlineExceeded):
            peer.with_options(timeout=0.2).call("sleep", 5, "sync-deadline")
        assert time.monotonic() - start < 1.0
        with pytest.raises(TimeoutError):
            peer.receive(timeout=0.1)
        assert peer.call("add", 2, 2) == 4


def test_server_calls_back_the_sync_client(sync_server: str) -> None:
    mine = ipfi.Interface()
    mine.add(lambda name: f"thread hi {name}", name="greet")
    with ipfi.sync.connect(sync_server, mine) as peer:
        assert peer.call("call_back_sync", "greet", "x") == "thread hi x"


def test_callbacks_nest_on_both_sides(sync_server: str) -> None:
    """A plain function runs in the reader thread; when it calls the peer back, that thread reads its own
    answer (nested), on the server and on the client, instead of waiting for a reader that is itself."""
    mine = ipfi.Interface()

    @mine.procedure
    def bounce(value: int) -> int:
        return int(ipfi.current_peer().call("add", value, 1))

    with ipfi.sync.connect(sync_server, mine) as peer:
        assert peer.call("call_back_sync", "bounce", 41) == 42
        assert peer.call("add", 1, 1) == 2


def test_plain_functions_run_in_the_reader_blocking_ones_in_workers(sock_path: str) -> None:
    iface = ipfi.Interface()
    meeting = threading.Barrier(4, timeout=10)

    @iface.procedure
    def where() -> str:
        return threading.current_thread().name

    @iface.procedure(blocking=True)
    def meet() -> str:
        meeting.wait()  # returns only once 4 calls run at the same time
        return threading.current_thread().name

    with ipfi.sync.serve(f"unix:{sock_path}", iface, workers=4), ipfi.sync.connect(f"unix:{sock_path}") as peer:
        assert peer.call("where").startswith("ipfi-reader-")
        threads = [threading.Thread(target=lambda: names.append(peer.call("meet"))) for _ in range(4)]
        names: list[str] = []
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert len(names) == 4
        assert all(name.startswith("ipfi-worker") for name in names)


def test_exec_child_from_the_sync_driver() -> None:
    os.environ["PYTHONPATH"] = str(ROOT)
    with ipfi.sync.connect(f"exec:{PYTHON} -m tests.helpers.stdio_child") as peer:
        assert peer.call("add", 20, 22) == 42
        assert peer.call("pid") != os.getpid()


async def test_asyncio_client_against_sync_server(sync_server: str) -> None:
    async with ipfi.connect(sync_server) as peer:
        assert await peer.call("add", 1, 2) == 3
        assert [i async for i in peer.stream("count_sync", 500)] == list(range(500))
        results = await asyncio.gather(*(peer.call("blocking_sleep", 0.05) for _ in range(16)))
        assert results == [0.05] * 16


def _census() -> tuple[int, int]:
    gc.collect()  # an earlier test's garbage (a loop, a socket) closing its fds now would skew the count
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def test_nothing_leaks_after_close(sock_path: str) -> None:
    address = f"unix:{sock_path}"
    before = _census()
    for _ in range(3):
        with ipfi.sync.serve(address, calc.iface):
            peers = [ipfi.sync.connect(address) for _ in range(4)]
            peers.append(ipfi.sync.connect(address, calc.iface))  # with its own reader and workers
            for peer in peers:
                assert peer.call("add", 1, 1) == 2
                assert list(peer.stream("count_sync", 10)) == list(range(10))
            for peer in peers:
                peer.close()
    deadline = time.monotonic() + 5
    while _census() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _census() == before


def test_a_running_server_releases_each_departed_client(sock_path: str) -> None:
    address = f"unix:{sock_path}"
    with ipfi.sync.serve(address, calc.iface) as server:
        with ipfi.sync.connect(address) as peer:
            assert peer.call("add", 1, 1) == 2
        deadline = time.monotonic() + 5
        while (server.connections or _readers()) and time.monotonic() < deadline:
            time.sleep(0.01)
        before = _census()
        for _ in range(20):
            with ipfi.sync.connect(address) as peer:
                assert peer.call("add", 1, 1) == 2
        while (server.connections or _readers() or _census() != before) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _census() == before
        assert not server.connections


def _readers() -> list[threading.Thread]:
    """Reader threads still running (each departed client's ends a moment after it is dropped)."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("ipfi-reader")]


def test_fork_child_gets_a_clear_error_and_parent_keeps_working(sync_server: str) -> None:
    with ipfi.sync.connect(sync_server) as peer:
        assert peer.call("add", 1, 1) == 2
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                peer.call("add", 1, 1)
            except ipfi.InheritedConnection:
                code = 0
            except BaseException:
                code = 2
            peer.close()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [peer.call("add", i, i) for i in range(100)] == [2 * i for i in range(100)]


def test_connection_refused_is_an_os_error(tmp_path: Any) -> None:
    with pytest.raises(OSError):
        ipfi.sync.connect(f"unix:{tmp_path}/nobody.sock")


def test_a_large_binary_is_received_into_a_bytes_of_its_own(sock_path: str) -> None:
    """What receiving a 1.5 MiB argument costs the blocking driver: its bytes, about once (the
    frame's own buffer and the copy decoded out of it took twice that)."""
    iface = ipfi.Interface()
    received: list[Any] = []

    @iface.procedure
    def keep(data: bytes) -> int:
        received.append(data)
        return len(data)

    size = 1536 * 1024
    payload = os.urandom(size)
    with ipfi.sync.serve(f"unix:{sock_path}", iface), ipfi.sync.connect(f"unix:{sock_path}") as peer:
        tracemalloc.start()
        try:
            assert peer.call("keep", payload) == size
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert type(received[0]) is bytes and received[0] == payload
    assert peak < 1.8 * size, f"{peak / size:.2f} times the binary"


def test_a_large_reply_is_received_into_a_bytes_of_its_own(sock_path: str) -> None:
    """The reply's side of the test above, read by the caller itself (a client without a reader
    thread, the blocking client's fast path): the reply's bytes, about once."""
    size = 1536 * 1024
    payload = os.urandom(size)
    iface = ipfi.Interface()

    @iface.procedure
    def large() -> bytes:
        return payload

    with ipfi.sync.serve(f"unix:{sock_path}", iface), ipfi.sync.connect(f"unix:{sock_path}") as peer:
        tracemalloc.start()
        try:
            reply = peer.call("large")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert reply == payload
    assert peak < 1.5 * size, f"{peak / size:.2f} times the reply"


def test_the_callers_own_deadline_ends_a_call_the_server_cannot_answer(
    async_server_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    """A call's deadline is kept by the caller too, not only by the server it travels to: a server
    process stopped (as by a debugger, or a machine stalled) answers nothing, and the call still
    fails in time. The caller reads for its own reply here (no reader thread)."""
    process, address = async_server_process
    with ipfi.sync.connect(address) as peer:
        assert peer.call("add", 1, 1) == 2
        os.kill(process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(ipfi.DeadlineExceeded):
                peer.with_options(timeout=0.3).call("add", 2, 2)
            assert time.monotonic() - start < 2.0
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert peer.call("add", 2, 2) == 4


def _answered_in_another_thread(peer: ipfi.sync.Peer) -> bool:
    """Whether a call made by another thread, while this one waits for nothing, is answered: it
    is, if nobody holds the reader role (the thread that last read let go of it)."""
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(peer.call("add", 2, 2)), daemon=True)
    thread.start()
    thread.join(5)
    return answers == [4]


def test_a_call_with_a_deadline_hands_the_read_on(sync_server: str) -> None:
    """A caller that reads for its own reply (no reader thread) and has a deadline reads as the
    general loop does; once answered, it lets go of the reader role like any other."""
    with ipfi.sync.connect(sync_server) as peer:
        assert peer.with_options(timeout=5).call("add", 1, 1) == 2
        assert _answered_in_another_thread(peer)


def test_a_call_interrupted_in_its_read_is_cancelled_and_hands_the_read_on(sync_server: str) -> None:
    """An exception raised in the caller while it reads for its reply (here a signal handler's)
    cancels the call on the peer and lets go of the reader role."""

    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    tag = f"interrupted-{time.monotonic_ns()}"
    with ipfi.sync.connect(sync_server) as peer:
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(Interrupted):
                peer.call("sleep", 5, tag)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert _answered_in_another_thread(peer)
        give_up_at = time.monotonic() + 5
        while tag not in calc.cancelled and time.monotonic() < give_up_at:
            time.sleep(0.01)
        assert tag in calc.cancelled


def _collect(read: Any, into: list[bytes]) -> threading.Thread:
    def reading() -> None:
        while data := read(1 << 20):
            into.append(data)

    thread = threading.Thread(target=reading)
    thread.start()
    return thread


@pytest.mark.parametrize("wire", ["socket", "pipe"])
def test_pieces_go_out_whole_and_in_order_however_much_each_write_takes(wire: str) -> None:
    pieces: list[Any] = [b"head", bytes(range(256)) * 3000, *(bytes([i]) * 7 for i in range(40)), memoryview(b"tail")]
    received: list[bytes] = []
    if wire == "socket":
        ours, theirs = socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # many partial writes
        reader = _collect(theirs.recv, received)
        link: Any = SocketLink(ours)
    else:
        read_fd, write_fd = os.pipe()
        reader = _collect(lambda size: os.read(read_fd, size), received)
        link = PipeLink(os.open(os.devnull, os.O_RDONLY), write_fd)
    link.send_pieces(pieces)
    link.close()
    reader.join(10)
    if wire == "socket":
        theirs.close()
    else:
        os.close(read_fd)
    assert b"".join(received) == b"".join(pieces)


def test_a_gathering_write_that_takes_part_of_the_pieces_is_continued_where_it_stopped() -> None:
    read_fd, write_fd = os.pipe()
    received: list[bytes] = []
    reader = _collect(lambda size: os.read(read_fd, size), received)
    pieces: list[Any] = [b"head", bytes(range(256)) * 40, b"x" * 3, *(bytes([i]) * 5 for i in range(20))]
    # Each call writes at most 1000 bytes of what it is given, as a system call may.
    write_all(lambda views: os.writev(write_fd, [bytes(b"".join(views))[:1000]]), pieces)
    os.close(write_fd)
    reader.join(10)
    os.close(read_fd)
    assert b"".join(received) == b"".join(pieces)
