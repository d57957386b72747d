"""Every behaviour on every driver (see conftest.py): the same test body, the same assertions."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import decimal
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import ipfi
from ipfi.core import wire
from ipfi.core.connection import Connection, Role
from ipfi.core.events import ErrorReceived, ItemsReceived, ResultReceived, StreamEnded
from ipfi.core.frames import HEADER_SIZE, encode_frame
from ipfi.core.handshake import Hello

from .conftest import World
from .procedures import Record, interface


@pytest.fixture
def record() -> Record:
    return Record()


@pytest.fixture
def client(world: World, record: Record) -> Any:
    world.serve(interface(world.driver, record))
    return world.connect()


def test_calls_with_positional_and_keyword_arguments(client: Any) -> None:
    assert client.call("add", 1, 2) == 3
    assert client.call("add", a=2, b=3) == 5


def test_connections_get_unique_ids_and_are_logged_at_info(
    world: World, record: Record, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ipfi")
    server = world.serve(interface(world.driver, record))
    first, second = world.connect(), world.connect()
    ids = [first.peer.peer_id, second.peer.peer_id]
    assert ids[0] != ids[1] and all(re.fullmatch(r"peer-\d+-\d+", peer_id) for peer_id in ids), ids
    assert "connected to " in caplog.text and f"as {ids[0]}" in caplog.text
    if world.in_process:  # both ends name the connection alike, and the server logs it
        assert set(ids) <= {peer.peer_id for peer in server.connections}
        assert f"accepted {ids[0]} from " in caplog.text
    if world.wire in ("unix", "tcp"):
        assert f"serving {server.bound_address}" in caplog.text
    first.close()
    deadline = time.monotonic() + 5
    while f"{ids[0]} closed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f"{ids[0]} closed" in caplog.text
    assert "asked to shut down" not in caplog.text  # a normal close is not news


def test_errors_reach_the_caller(client: Any) -> None:
    with pytest.raises(ipfi.RemoteError, match="boom") as raised:
        client.call("fail", "boom")
    assert raised.value.remote_type == "ValueError"
    with pytest.raises(ipfi.ProcedureNotFound):
        client.call("no_such_procedure")
    with pytest.raises(ipfi.InvalidArguments):
        client.call("add", 1)
    # Type hints are contracts: a plain function's, an async generator's (before it starts).
    with pytest.raises(ipfi.InvalidArguments, match=r"^add: b: expected int, got str$"):
        client.call("add", 1, "1")
    with pytest.raises(ipfi.InvalidArguments, match=r"^count: n: expected int, got str$"):
        list(client.stream("count", "3"))
    assert client.call("add", 1, 1) == 2  # the connection lives on


@pytest.mark.parametrize("send_tracebacks", [True, False])
def test_a_failure_reaches_the_caller_whole_and_the_server_log(
    world: World, record: Record, caplog: pytest.LogCaptureFixture, send_tracebacks: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="ipfi")
    world.serve(interface(world.driver, record), send_tracebacks=send_tracebacks)
    client = world.connect()
    with pytest.raises(ipfi.RemoteError, match="over the quota of 3") as raised:
        client.call("over_quota", 3)
    error = raised.value
    assert (error.remote_type, error.data) == ("QuotaExceeded", {"limit": 3})
    if send_tracebacks:
        assert error.remote_traceback is not None and isinstance(error.__cause__, ipfi.RemoteTraceback)
        for part in ("KeyError: 'quota'", "direct cause", "in over_quota", "QuotaExceeded: over the quota of 3"):
            assert part in error.remote_traceback, part
    else:
        assert error.remote_traceback is None and error.__cause__ is None
    if world.in_process:
        assert "procedure over_quota raised QuotaExceeded" in caplog.text
        assert "Traceback (most recent call last)" in caplog.text and "KeyError: 'quota'" in caplog.text
    caplog.clear()
    with pytest.raises(ipfi.InvalidArguments):
        client.call("add", 1)
    assert "raised" not in caplog.text  # the caller's mistake is the caller's news
    assert client.call("add", 1, 1) == 2


def test_values_beyond_the_codecs_own_types_round_trip(client: Any) -> None:
    value = {
        (1, 2): "a tuple key",
        "when": datetime.datetime(2026, 11, 29, 12, 30, 15, 123456, tzinfo=datetime.UTC),
        "id": uuid.UUID(int=42),
        "price": decimal.Decimal("1.10"),
    }
    assert client.call("echo", value) == value
    assert client.call("echo", value=[value]) == [value]


def test_the_memory_a_large_message_grew_is_given_back_once_idle(world: World, record: Record) -> None:
    """Both ends keep a large frame's buffer for the next one, and give it back about half a second
    after the last: the client and, in this process, the server. (A blocking client that serves no
    interface has no reader thread: it gives them back when it next calls.)"""
    world.serve(interface(world.driver, record))
    client = world.connect(ipfi.Interface())
    large_binary, large_text = bytes(8 * 1024 * 1024), "x" * 4 * 1024 * 1024  # (text grows the packer)
    assert client.call("echo", b"warm") == b"warm"
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        assert len(client.call("echo", large_binary)) == len(large_binary)
        assert len(client.call("echo", large_text)) == len(large_text)
        deadline = time.monotonic() + 3
        while (held := tracemalloc.get_traced_memory()[0] - before) > 1024 * 1024 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held <= 1024 * 1024
    finally:
        tracemalloc.stop()


def test_large_binaries_arrive_whole_wherever_they_sit_in_a_message(client: Any) -> None:
    """The blocking driver receives a large binary that ends a message into a ``bytes`` of its own
    (FrameDecoder.split_at), every other one out of its frame: the values are the same either way."""
    big = bytes(range(256)) * 4096  # 1 MiB
    huge = os.urandom(3 * 1024 * 1024)  # more than one allocation takes at once
    for value in (big, huge, [1, "two", big], [big, huge], {"data": big}, [{"data": big}, big]):
        echoed = client.call("echo", value)
        assert echoed == value
        last = echoed if type(echoed) is not list else echoed[-1]
        assert type(last if type(last) is not dict else last["data"]) is bytes
    assert client.call("keywords", data=big) == {"data": big}


@dataclasses.dataclass
class Point:
    x: int
    y: int


POINT = ipfi.CustomType(Point, 16, lambda p: f"{p.x},{p.y}".encode(), lambda b: Point(*map(int, b.split(b","))))


def test_a_custom_type_round_trips(world: World, record: Record) -> None:
    in_process(world)  # (the exec child does not know the type)
    world.serve(interface(world.driver, record), custom_types=[POINT])
    client = world.connect(custom_types=[POINT])
    assert client.call("echo", [Point(1, 2)]) == [Point(1, 2)]


@pytest.mark.parametrize(
    ("codec", "args", "kwargs", "where"),
    [
        ("msgpack", [datetime.datetime(2026, 1, 1)], {}, r"argument 0: .*without a timezone"),
        ("msgpack", [[1, object()]], {}, r"argument 0\[1\]: object"),
        ("json", [[0, {1: "x"}]], {}, r"argument 0\[1\]: the map key 1 is not a string"),
        ("json", [], {"value": {"a": b"x"}}, r"keyword argument 'value'\['a'\]: bytes is not a JSON type"),
        ("cbor", [{"a": [{1, 2}]}], {}, r"argument 0\['a'\]\[0\]: set: not a CBOR type ipfi carries"),
    ],
)
def test_what_the_peer_could_not_decode_is_refused_at_the_call_site(
    world: World, record: Record, codec: str, args: list[Any], kwargs: dict[str, Any], where: str
) -> None:
    world.serve(interface(world.driver, record))
    client = world.connect(codecs=[codec])
    with pytest.raises(TypeError, match=where):
        client.call("echo", *args, **kwargs)
    with pytest.raises(TypeError, match=where):
        client.notify("echo", *args, **kwargs)
    assert client.call("echo", {"a": [1]}) == {"a": [1]}  # nothing was sent; the connection lives


def test_a_message_that_does_not_decode_is_answered_and_the_connection_lives(world: World, record: Record) -> None:
    if world.wire not in ("unix", "tcp"):
        pytest.skip("the peer that sends undecodable bytes is a hand-made socket client")
    world.serve(interface(world.driver, record))
    peer = RawRpcPeer(world.address)
    not_msgpack = b"\xc1"  # a byte MessagePack never uses
    sent = [peer.send_raw_call("add", not_msgpack), peer.send_raw_call("add", b"\x92\x01")]  # (a list cut short)
    peer.send_raw_call("note", not_msgpack, notify=True)  # dropped
    for call_id in sent:
        event = peer.next_event()
        assert isinstance(event, ErrorReceived) and event.call_id == call_id
        assert isinstance(event.error, ipfi.InvalidArguments) and "not decoded" in str(event.error), event
    assert peer.call("add", 2, 3) == 5
    peer.close()


class RawRpcPeer:
    """An RPC client made of the protocol core and a raw socket, to send what a driver never would."""

    def __init__(self, address: str) -> None:
        self.sock = raw_socket(address)
        self.core = Connection(Role.CLIENT)
        self.core.start()
        self.events: list[Any] = []
        self._flush()
        while not self.core.is_open:
            self._read()
        self.events.clear()  # (the handshake's)

    def send_raw_call(self, name: str, body: bytes, *, notify: bool = False) -> int:
        """A call of ``name`` with ``body`` as its encoded arguments, whatever they are; its id."""
        call_id = 0 if notify else self.core.send_call(name, [])  # (the core expects its reply)
        self.core.data_to_send()  # (the well-made call is not sent)
        kind = wire.NOTIFY if notify else wire.CALL
        self.sock.sendall(encode_frame(1, wire.CALL_HEADER.pack(kind, call_id, 0, 0, len(name)) + name.encode() + body))
        return call_id

    def call(self, name: str, *args: Any) -> Any:
        call_id = self.core.send_call(name, args)
        self._flush()
        event = self.next_event()
        assert isinstance(event, ResultReceived) and event.call_id == call_id, event
        return event.value

    def next_event(self) -> Any:
        while not self.events:
            self._read()
        return self.events.pop(0)

    def _read(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.events += self.core.receive_data(data)
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.core.data_to_send()))

    def close(self) -> None:
        self.sock.close()


def test_a_producer_batches_small_items_and_sends_large_ones_one_at_a_time(world: World, record: Record) -> None:
    """Stream items go out in batches (one ITEMS message for many), of at most a turn's worth of
    bytes (BYTES_PER_TURN) at the size of the items so far: 1 MiB items one by one, so that a
    producer never holds a window's worth of them."""
    if world.wire not in ("unix", "tcp"):
        pytest.skip("the consumer that counts messages is a hand-made socket client")
    world.serve(interface(world.driver, record))
    peer = RawRpcPeer(world.address)

    def messages(count: int, size: int) -> list[int]:
        """The items in each ITEMS message of a ``large_items`` stream (within the window: no credit granted)."""
        call_id = peer.core.send_call("large_items", [count, size])
        peer._flush()
        counts = []
        while not isinstance(event := peer.next_event(), StreamEnded):
            assert isinstance(event, ItemsReceived) and event.call_id == call_id, event
            assert all(len(item) == size for item in event.items)
            counts.append(len(event.items))
        return counts

    assert messages(6, 1 << 20) == [1] * 6
    small = messages(200, 16)
    assert sum(small) == 200 and len(small) <= 8, small
    peer.close()


def test_a_refused_client_learns_it_was_refused(world: World, record: Record) -> None:
    if world.wire == "exec":
        pytest.skip("authenticate is a callable: it cannot be handed to the exec child")
    world.serve(interface(world.driver, record), authenticate=lambda peer: peer.auth_token == "letmein")
    with pytest.raises(ipfi.AuthenticationFailed, match="refused by the server's authenticate") as raised:
        world.connect(auth_token="guessed")
    assert "guessed" not in str(raised.value)
    assert world.connect(auth_token="letmein").call("add", 1, 2) == 3


def test_a_client_learns_why_the_handshake_failed(world: World, record: Record) -> None:
    if world.wire == "memory":
        pytest.skip("the two ends of a pair share one set of options")
    world.serve(interface(world.driver, record), codecs=["json"])
    with pytest.raises(ipfi.HandshakeError, match=r"server refused the connection: .*no common codec in .*raw"):
        world.connect(codecs=["raw"])


def test_a_child_that_prints_before_serving_is_named_as_the_cause(world: World) -> None:
    if world.wire != "exec":
        pytest.skip("a child process's standard output")
    program = "import sys, time; print('plugin v1.2 starting'); sys.stdout.flush(); time.sleep(5)"
    for script in (program, "print('hi')"):  # (then a stray line and an exit, shorter than a frame header)
        with pytest.raises(ipfi.HandshakeError, match=r"not an ipfi .*'plugin v1.2|not an ipfi .*'hi") as raised:
            world.open("exec:" + shlex.join([sys.executable, "-c", script]))
        assert "standard output" in str(raised.value)


def test_an_exec_child_is_managed_by_its_host(world: World, record: Record, tmp_path: Any) -> None:
    if world.wire != "exec":
        pytest.skip("a child process")
    world.serve(interface(world.driver, record))
    log = tmp_path / "child.err"
    with log.open("wb") as stderr:
        client = world.connect(env={**os.environ, "IPFI_TEST_MARKER": "set"}, cwd=str(tmp_path), stderr=stderr)
    seen = client.call("where")
    assert seen == {"pid": client.peer.process.pid, "cwd": str(tmp_path), "marker": "set"}
    assert f"(pid {seen['pid']})" in client.peer.get_extra_info("peername")
    assert client.peer.process.returncode is None
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(client.call, "wait_for_cancel", 30)
        time.sleep(0.3)
        client.peer.process.kill()  # (the host kills its plugin in the middle of a call)
        with pytest.raises(ipfi.ConnectionLost):
            in_flight.result(5)
    wait = client.peer.process.wait
    assert (wait(5) if world.loop is None else world.loop.run(wait())) == -signal.SIGKILL


def test_child_settings_are_refused_for_wires_that_start_no_child(world: World, record: Record) -> None:
    if world.wire not in ("unix", "tcp"):
        pytest.skip("an address of a wire that starts no child")
    world.serve(interface(world.driver, record))
    with pytest.raises(ValueError, match="for exec: addresses"):
        world.connect(cwd="/")
    with pytest.raises(ValueError, match="STDOUT would corrupt"):
        world.connect(stderr=subprocess.STDOUT)


def test_a_reconnecting_client_rides_out_server_restarts(world: World, record: Record) -> None:
    if world.wire not in ("unix", "tcp"):
        pytest.skip("a server that stops and starts again on its address")
    iface = interface(world.driver, record)
    world.stop(world.serve(iface))  # (the address is now known, and nothing listens there)
    connected: list[str] = []
    quick = ipfi.Reconnect(initial=0.01, maximum=0.05, wait=5)
    client = world.reconnecting(policy=quick, on_connect=lambda peer: connected.append(peer.peer_id))
    impatient = world.reconnecting(policy=ipfi.Reconnect(initial=0.01, maximum=0.05, wait=0))
    with pytest.raises(ipfi.ConnectionLost, match="not connected"):
        impatient.call("add", 1, 2)  # fails at once, saying why
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.call, "add", 1, 2)  # waits for the server
        time.sleep(0.2)
        server = world.serve(iface)
        assert waiting.result(5) == 3
        in_flight = pool.submit(client.call, "wait_for_cancel", 30)
        assert record.started.wait(5)
        world.stop(server)
        with pytest.raises(ipfi.ConnectionLost):
            in_flight.result(5)  # a call in flight is not sent again: the server may have run it
    world.serve(iface)
    assert client.call("add", 2, 2) == 4
    assert client.with_options(timeout=5).call("keywords", timeout=1) == {"timeout": 1}
    assert len(connected) == 2 and connected[0] != connected[1]  # on_connect ran for each connection


def test_a_reconnecting_client_gives_up_when_retrying_cannot_help(world: World, record: Record) -> None:
    if world.wire not in ("unix", "tcp"):
        pytest.skip("a server on an address")
    world.serve(interface(world.driver, record), authenticate=lambda peer: False)
    client = world.reconnecting(policy=ipfi.Reconnect(initial=0.01, wait=5))
    started = time.monotonic()
    with pytest.raises(ipfi.ConnectionLost, match="not reconnecting after AuthenticationFailed"):
        client.call("add", 1, 2)
    assert time.monotonic() - started < 3


def test_reconnect_backoff_grows_with_full_jitter_up_to_its_maximum() -> None:
    policy = ipfi.Reconnect(initial=0.1, maximum=1.0, multiplier=2)
    ceilings = [delay for delay, _ in zip(policy.delays(lambda low, high: high), range(6), strict=False)]
    assert ceilings == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    drawn = list(zip(policy.delays(), range(200), strict=False))
    assert all(0 <= delay <= 1.0 for delay, _ in drawn) and len({delay for delay, _ in drawn}) > 100
    for bad in ({"initial": 0}, {"initial": 2, "maximum": 1}, {"multiplier": 0.5}, {"wait": -1}):
        with pytest.raises(ValueError):
            ipfi.Reconnect(**bad)


def test_a_blocking_client_notices_a_dead_server_without_writing(world: World, record: Record) -> None:
    if world.driver != "blocking" or world.wire not in ("unix", "tcp", "exec"):
        pytest.skip("a blocking client without a reader thread, over a wire with an fd")
    server = world.serve(interface(world.driver, record))
    client = world.connect()
    assert client.call("add", 1, 2) == 3 and client.is_open
    if world.wire == "exec":
        client.peer.process.kill()
        client.peer.process.wait(5)
    else:
        world.stop(server)
    deadline = time.monotonic() + 5
    while client.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not client.is_open


@pytest.mark.parametrize("suspend", [False, True])
def test_an_async_procedure_runs_in_a_task_and_a_context_of_its_own(client: Any, suspend: bool) -> None:
    """Whether or not it suspends (one that does not may finish as it starts, eagerly)."""
    expected = {"seen": None, "in_a_task": True, "deadline": True}
    for value in ("first", "second"):  # the second call does not see the first one's context variable
        assert client.with_options(timeout=5).call("context_probe", value, suspend) == expected


def test_the_server_calls_the_client_back(world: World, record: Record) -> None:
    world.serve(interface(world.driver, record))
    mine = ipfi.Interface()
    mine.add(lambda text: f"client got {text}", name="hello")
    client = world.connect(mine)
    assert client.call("call_back", "hello") == "client got from the server"


@pytest.mark.parametrize("kind", ["", "_in_thread"], ids=["async", "in-thread"])
def test_streams_out_and_collected(client: Any, kind: str) -> None:
    assert list(client.stream("count" + kind, 1000)) == list(range(1000))
    assert client.call("count" + kind, 600) == list(range(600))  # collected, credit flowing
    assert client.call("count" + kind, 0) == []


@pytest.mark.parametrize("kind", ["", "_in_thread"], ids=["async", "in-thread"])
def test_a_generator_that_raises_ends_its_stream_after_the_items_before(client: Any, kind: str) -> None:
    received: list[Any] = []
    with pytest.raises(ipfi.RemoteError, match="no third") as caught:
        received.extend(client.stream("then_raises" + kind))
    assert received == [1, 2] and caught.value.remote_type == "ValueError"
    assert client.call("add", 1, 2) == 3  # the connection goes on


def test_an_item_that_cannot_be_encoded_ends_its_stream_with_an_error_saying_so(client: Any) -> None:
    received: list[Any] = []
    with pytest.raises(ipfi.RemoteError, match="object") as caught:
        received.extend(client.stream("then_unencodable"))  # (what came, even as it fails)
    assert received == [1, 2]  # what came before it arrives; nothing after it is sent
    assert caught.value.remote_type == "Unencodable"
    assert client.call("add", 1, 2) == 3  # the connection goes on


def test_streams_in(client: Any) -> None:
    assert client.with_options(input=range(1001)).call("total") == 500500


def test_input_items_go_out_before_their_iterator_waits(world: World, client: Any, record: Record) -> None:
    """An input stream's items are sent in batches too, and never wait for one to fill: here the
    iterator waits until the procedure has seen the first five."""
    in_process(world)

    def seen_all() -> bool:
        deadline = time.monotonic() + 3
        while len(record.seen) < 5:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def blocking() -> Iterator[int]:
        yield from range(5)
        if seen_all():
            yield 5

    async def awaiting() -> AsyncIterator[int]:
        for i in range(5):
            yield i
        if await asyncio.to_thread(seen_all):
            yield 5

    source = blocking() if world.driver == "blocking" else awaiting()
    assert client.with_options(input=source).call("noted_total") == 15


@pytest.mark.parametrize(
    ("source", "error", "match"),
    [(lambda: [1, object()], TypeError, "object"), (lambda: map(int, ["1", "x"]), ValueError, "invalid literal")],
    ids=["unencodable", "raising"],
)
def test_an_input_that_fails_fails_its_call_and_the_connection_lives(
    client: Any, source: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        client.with_options(input=source()).call("total")
    assert client.call("add", 1, 2) == 3


def test_every_keyword_reaches_the_procedure_and_options_go_apart(client: Any) -> None:
    assert client.call("keywords", timeout=5, input="abc") == {"timeout": 5, "input": "abc"}
    assert list(client.stream("keyword_items", timeout=1.5, input="x")) == [1.5, "x"]
    assert client.with_options(timeout=5).call("keywords", timeout=60) == {"timeout": 60}
    assert client.with_options(timeout=5).call("time_left") > 3  # the option is the call's deadline
    with pytest.raises(ValueError, match="positive"):
        client.with_options(timeout=0)


def in_process(world: World) -> None:
    if not world.in_process:
        pytest.skip("over exec: the procedures run in the child process, out of this test's sight")


#: The producers of a stream: a generator run where the driver runs it (an async one on the event
#: loop), and a blocking generator run in worker threads.
PRODUCERS = ["", "_in_thread"]


@pytest.mark.parametrize("kind", PRODUCERS, ids=["async", "in-thread"])
def test_leaving_a_stream_early_stops_the_producer(world: World, client: Any, record: Record, kind: str) -> None:
    in_process(world)
    items = client.stream("forever" + kind)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert record.stopped.wait(3), "the remote generator kept running"
    assert client.call("add", 2, 2) == 4


@pytest.mark.parametrize("kind", PRODUCERS, ids=["async", "in-thread"])
def test_each_stream_item_goes_out_as_it_is_produced(world: World, client: Any, record: Record, kind: str) -> None:
    """A producer that waits for its consumer between items gets each one through at once: a batch
    of items is written as soon as its first is queued, not once it fills."""
    in_process(world)
    for item in client.stream("lockstep" + kind, 20):
        record.seen.append(item)
    assert record.seen == list(range(20))


@pytest.mark.parametrize("kind", PRODUCERS, ids=["async", "in-thread"])
def test_items_yielded_before_a_producer_waits_go_out_without_waiting_for_more(
    world: World, client: Any, record: Record, kind: str
) -> None:
    """Items go to the core in batches; those a generator yielded before it blocks (or awaits)
    go out then, whether or not they fill a batch."""
    in_process(world)
    for count in (1, 5, 100):
        record.seen.clear()
        for item in client.stream("burst_then_wait" + kind, count):
            record.seen.append(item)
        assert record.seen == [*range(count), -1]


@pytest.mark.parametrize("kind", PRODUCERS, ids=["async", "in-thread"])
def test_an_item_refused_before_its_producer_waits_ends_the_stream_at_once(
    world: World, client: Any, record: Record, kind: str
) -> None:
    """The consumer gets the error while the producer still waits; an async generator is cancelled
    where it awaits, a blocking one closed at its next item."""
    in_process(world)
    received: list[Any] = []
    with pytest.raises(ipfi.RemoteError, match="object") as caught:
        received.extend(client.stream("refused_then_waits" + kind))
    assert received == [1] and caught.value.remote_type == "Unencodable"
    if world.driver != "blocking" and not kind:
        assert record.stopped.wait(3), "the async generator was not cancelled"
    record.released.set()
    assert record.stopped.wait(3), "the generator was not closed"
    assert client.call("add", 1, 2) == 3
    received.clear()
    with pytest.raises(ipfi.RemoteError, match="object"):  # (not a stream cut short without a word)
        received.extend(client.stream("refused_then_ends" + kind))
    assert received == [1]


def test_streams_waiting_for_their_consumers_hold_no_worker_thread(client: Any) -> None:
    """Blocking generators whose consumers are behind wait for credit without a thread: more of
    them than any worker pool here has threads (asyncio's default executor has at most 32), and a
    blocking procedure still runs at once."""
    streams = [client.stream("noted_count_in_thread") for _ in range(40)]
    for items in streams:
        assert next(items) == 0  # its producer has made a window's worth, and waits
    started = time.monotonic()
    assert client.call("time_left_in_thread") is None
    assert time.monotonic() - started < 2
    for items in streams:
        items.close()
    assert client.call("add", 1, 2) == 3


@pytest.mark.parametrize("kind", PRODUCERS, ids=["async", "in-thread"])
@pytest.mark.parametrize("how", ["next", "loop"])
def test_a_consumer_grants_credit_for_the_items_it_has_taken(
    world: World, client: Any, record: Record, how: str, kind: str
) -> None:
    """Half a window at a time, once the next item is asked for: never for an item still queued,
    so a producer runs at most a window ahead of what its consumer has taken. Items taken one
    ``next()`` at a time, or by the ``for`` / ``async for`` loop users write (taken in runs)."""
    in_process(world)
    window = ipfi.Limits().stream_window  # (the worlds' servers keep the default)
    half = window // 2
    #: How many items the producer may have made once the consumer has taken so many (and stops).
    expected = {half: window, half + 1: window + half}
    produced: list[int] = []  # what it had made at those points

    async def settle(taken: int) -> None:
        deadline = time.monotonic() + 3
        while len(record.seen) < expected[taken] and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)  # (what more the producer could send now, it has sent)
        produced.append(len(record.seen))

    def blocking_loop() -> None:
        for taken, _ in enumerate(client.peer.stream("noted_count" + kind), 1):
            if taken in expected:
                asyncio.run(settle(taken))
            if taken == half + 1:
                break

    async def asyncio_loop() -> None:
        taken = 0
        async for _ in client.peer.stream("noted_count" + kind):
            taken += 1
            if taken in expected:
                await settle(taken)
            if taken == half + 1:
                break

    if how == "next":
        items = client.stream("noted_count" + kind)
        for taken in range(1, half + 2):
            assert next(items) == taken - 1
            if taken in expected:
                asyncio.run(settle(taken))
        items.close()
    else:
        _run(world, blocking_loop if world.loop is None else asyncio_loop)
    beyond = [made - wanted for made, wanted in zip(produced, expected.values(), strict=True)]
    assert all(extra in (0, 1) for extra in beyond), beyond  # (1: an item made, waiting for credit)


def _run(world: World, job: Any) -> Any:
    """Run ``job`` as the client's own code would: awaited on the asyncio loop, called when blocking."""
    return job() if world.loop is None else world.loop.run(job())


@pytest.mark.parametrize("kind", PRODUCERS, ids=["async", "in-thread"])
@pytest.mark.parametrize("leave", ["break", "raise"])
def test_leaving_a_stream_loop_stops_the_producer(
    world: World, client: Any, record: Record, leave: str, kind: str
) -> None:
    """The README's pattern: no aclose(), no ``with``; the iterator's last reference goes."""
    in_process(world)

    def consume(i: int) -> bool:
        if i == 3 and leave == "raise":
            raise KeyError(i)
        return i == 3

    def blocking() -> None:
        for i in client.peer.stream("forever" + kind):
            if consume(i):
                break

    async def with_asyncio() -> None:
        async for i in client.peer.stream("forever" + kind):
            if consume(i):
                break

    with contextlib.suppress(KeyError):
        _run(world, with_asyncio if world.loop else blocking)
    assert record.stopped.wait(1), "the remote generator kept running"
    assert client.call("add", 2, 2) == 4


def test_a_proxy_passes_every_keyword_and_takes_options(world: World, client: Any) -> None:
    def blocking() -> Any:
        return client.peer.with_options(timeout=5).proxy().keywords(timeout=1, input=2)

    async def with_asyncio() -> Any:
        return await client.peer.with_options(timeout=5).proxy().keywords(timeout=1, input=2)

    assert _run(world, with_asyncio if world.loop else blocking) == {"timeout": 1, "input": 2}


def test_a_deadline_fails_the_call_and_stops_the_procedure(world: World, client: Any, record: Record) -> None:
    start = time.monotonic()
    with pytest.raises(ipfi.DeadlineExceeded) as raised:
        client.with_options(timeout=0.2).call("wait_for_cancel", 30)
    assert isinstance(raised.value, TimeoutError)
    assert time.monotonic() - start < 3
    if world.in_process:
        assert record.stopped.wait(3), "the procedure ran on past its deadline"
    assert client.call("add", 1, 2) == 3


def test_a_procedure_reads_its_deadline(world: World, client: Any) -> None:
    """In an async def procedure (suspending or not, among other calls), in a blocking one's
    thread, in a stream's generator; not in a task an async def procedure starts, on asyncio."""
    left = client.with_options(timeout=5).call("time_left")
    assert 3 < left <= 5
    assert client.call("time_left") is None
    assert 3 < client.with_options(timeout=5).call("time_left_in_thread") <= 5
    assert client.call("time_left_in_thread") is None
    assert all(3 < left <= 5 for left in client.with_options(timeout=5).call("times_left", 3))
    timeouts = [9, 7, 5, 3]
    with ThreadPoolExecutor(4) as pool:  # each suspended while the others run: each finds its own
        lefts = list(pool.map(lambda timeout: client.with_options(timeout=timeout).call("time_left", True), timeouts))
    assert all(timeout - 1 < left <= timeout for timeout, left in zip(timeouts, lefts, strict=True)), lefts
    # (the blocking driver runs async def procedures in a context of their own, which tasks copy)
    expected = "found" if world.driver == "blocking" else "not found"
    assert client.with_options(timeout=5).call("in_a_task_of_its_own") == expected


def test_cancelling_a_call_stops_the_procedure(world: World, client: Any, record: Record) -> None:
    if world.driver == "blocking":
        pytest.skip("a blocking call cannot be interrupted from outside; its stream can (test above)")
    in_process(world)
    assert world.loop is not None
    future = asyncio.run_coroutine_threadsafe(client.peer.call("wait_for_cancel", 30), world.loop.loop)
    assert record.started.wait(3)
    future.cancel()
    assert record.stopped.wait(3), "CANCEL did not reach the procedure"


def test_over_the_concurrency_limit_a_call_waits_for_a_slot(world: World, record: Record) -> None:
    world.serve(interface(world.driver, record), limits=ipfi.Limits(max_concurrent_calls=2), workers=4)
    client = world.connect()
    with ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(client.call, "wait_for_cancel", 0.5) for _ in range(2)]
        time.sleep(0.2)
        started = time.monotonic()
        assert client.call("add", 1, 2) == 3  # held until a slot frees, not refused
        assert time.monotonic() - started > 0.15
        assert [future.result(5) for future in slow] == ["finished", "finished"]


def test_a_burst_past_the_concurrency_limit_is_served_whole(world: World, record: Record) -> None:
    """Pipelined calls and notifications are never refused or dropped, however reads were cut."""
    world.serve(interface(world.driver, record), limits=ipfi.Limits(max_concurrent_calls=4), workers=4)
    client = world.connect()
    for i in range(300):
        client.notify("note", i)
    with ThreadPoolExecutor(16) as pool:
        sums = list(pool.map(lambda i: client.call("slow_add", i, 1), range(400)))
    assert sums == [i + 1 for i in range(400)]
    assert sorted(client.call("notes", 300)) == list(range(300))


def test_a_graceful_close_ends_the_connection_on_both_sides(world: World, record: Record) -> None:
    server = world.serve(interface(world.driver, record))
    client = world.connect()
    assert client.call("add", 1, 2) == 3
    client.close()
    if world.in_process:
        deadline = time.monotonic() + 3
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.connections
    with pytest.raises(ipfi.InvalidState):  # this side closed it: a misuse, not a lost connection
        client.call("add", 1, 2)


def test_an_abort_fails_pending_calls_at_once(world: World, client: Any, record: Record) -> None:
    in_process(world)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.call, "wait_for_cancel", 30)
        assert record.started.wait(3)
        client.abort() if world.driver == "blocking" else world.loop.loop.call_soon_threadsafe(client.peer.abort)  # type: ignore[union-attr]
        with pytest.raises(ipfi.ConnectionLost):
            pending.result(5)
    with pytest.raises(ipfi.InvalidState):
        client.call("add", 1, 2)


def test_losing_the_server_fails_pending_calls(world: World, record: Record) -> None:
    in_process(world)
    server = world.serve(interface(world.driver, record))
    client = world.connect()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.call, "wait_for_cancel", 30)
        assert record.started.wait(3)
        for peer in list(server.connections):
            peer.abort() if world.driver == "blocking" else world.loop.loop.call_soon_threadsafe(peer.abort)  # type: ignore[union-attr]
        with pytest.raises(ipfi.ConnectionLost) as raised:
            pending.result(5)
    assert isinstance(raised.value, ConnectionError)


def test_plain_messages_both_ways_beside_rpc(client: Any) -> None:
    client.send(2, b"to the server")
    assert client.call("drain", 2) == b"to the server"
    client.call("push", 3, b"to the client")
    message = client.receive(3, timeout=5)
    assert (message.channel, bytes(message.payload)) == (3, b"to the client")
    with pytest.raises(ipfi.LocalProtocolError):
        client.send(1, b"channel 1 carries RPC for an ipfi peer")


def test_a_frame_its_channel_schema_refuses_is_answered_on_error_and_never_delivered(
    world: World, record: Record
) -> None:
    if world.wire == "exec":
        pytest.skip("a Schemas object cannot be handed to the exec child")
    schemas = ipfi.Schemas({2: {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}})
    world.serve(interface(world.driver, record), schemas=schemas)
    client = world.connect()
    client.send(2, b'{"n": "one"}')
    refusal = client.receive(4, timeout=5)
    assert json.loads(bytes(refusal.payload)) == {
        "error": "schema validation error: validation failed on channel 2: /n: 'one' is not of type 'integer'"
    }
    client.send(2, b'{"n": 1}')
    client.send(3, b"channel 3 has no schema")
    assert client.call("drain", 2) == b'{"n": 1}'  # (the refused frame never arrived)
    assert client.call("drain", 3) == b"channel 3 has no schema"


def test_ping(client: Any) -> None:
    assert 0 <= client.ping() < 5


def raw_socket(address: str) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address[5:])
    else:
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    sock.settimeout(5)
    return sock


def raw_handshake(address: str) -> socket.socket:
    """A plain peer that completes the handshake and then answers nothing (not even pings)."""
    sock = raw_socket(address)
    sock.sendall(encode_frame(0, Hello((2,)).to_json()))
    header = sock.recv(HEADER_SIZE)
    assert header[:2] == b"IP"
    return sock


def read_until_eof(sock: socket.socket, limit: float) -> float:
    start = time.monotonic()
    sock.settimeout(limit)
    while sock.recv(4096):
        pass
    return time.monotonic() - start


def test_keepalive_ends_a_silent_peer(world: World, record: Record) -> None:
    if world.wire not in ("unix", "tcp"):
        pytest.skip("the silent peer is a hand-made socket client")
    world.serve(interface(world.driver, record), keepalive=0.1, keepalive_timeout=0.4)
    silent = raw_handshake(world.address)
    assert read_until_eof(silent, 5) < 4  # pings go unanswered: the server hangs up
    silent.close()


def test_keepalive_keeps_an_answering_peer(world: World, record: Record) -> None:
    world.serve(interface(world.driver, record), keepalive=0.1, keepalive_timeout=0.4)
    # A blocking client reads only while a call waits, unless it has a reader thread: an interface
    # or a keepalive of its own gives it one (README: "Blocking code").
    client = world.connect(keepalive=0.1) if world.driver == "blocking" else world.connect()
    time.sleep(0.8)  # the client's driver answers the pings
    assert client.call("add", 1, 2) == 3


def test_idle_timeout_closes_an_idle_connection(world: World, record: Record) -> None:
    world.serve(interface(world.driver, record), limits=ipfi.Limits(idle_timeout=0.3))
    client = world.connect()
    assert client.call("add", 1, 2) == 3
    client.wait_closed(5)
    assert not client.is_open


def test_idle_timeout_spares_a_connection_with_a_call_in_flight(world: World, record: Record) -> None:
    world.serve(interface(world.driver, record), limits=ipfi.Limits(idle_timeout=0.3), workers=4)
    client = world.connect()
    assert client.call("wait_for_cancel", 0.8) == "finished"


def test_streams_whose_consumers_stop_reading_hold_no_worker(world: World, record: Record) -> None:
    """A generator waiting for credit is parked; the pool's workers stay free for other calls."""
    world.serve(interface(world.driver, record), workers=2)
    client = world.connect()
    stalled = [client.stream("count", 1_000_000) for _ in range(4)]
    assert [next(stream) for stream in stalled] == [0, 0, 0, 0]  # each producer now waits for credit
    time.sleep(0.2)
    assert [client.call("slow_add", i, 1) for i in range(3)] == [1, 2, 3]
    assert next(stalled[0]) == 1  # a parked stream goes on when read again


def test_call_collects_a_stream_up_to_its_limit(world: World, record: Record) -> None:
    world.serve(interface(world.driver, record))
    client = world.connect(limits=ipfi.Limits(max_collected_items=10))
    assert client.call("count", 10) == list(range(10))
    with pytest.raises(ipfi.PayloadTooLarge, match="max_collected_items"):
        client.call("count", 11)
    assert client.call("add", 1, 2) == 3  # the connection goes on
