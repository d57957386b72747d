"""RPC through the asyncio driver, over a real Unix socket and the in-memory pair: what is particular to
it. Behaviours both drivers share (deadlines, cancel, leaving a stream, messages...) are in tests/behaviour/."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import gc
import sys
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

import ipfi
from ipfi.aio.peer import _PACED_SLICE, _PacedWriter

from .behaviour.procedures import Record, interface
from .conftest import PYTHON
from .helpers import calc
from .helpers.servers import run_on


@pytest.fixture(params=["unix", "memory"])
async def peer(request: pytest.FixtureRequest, sock_path: str) -> AsyncIterator[ipfi.Peer]:
    client_iface = ipfi.Interface()
    client_iface.add(lambda name: f"hi {name}", name="greet")
    if request.param == "memory":
        client, _ = await ipfi.pair(client_iface, calc.iface)
        yield client
        await client.aclose()
        return
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        async with ipfi.connect(f"unix:{sock_path}", client_iface) as client:
            yield client


async def test_unary_calls(peer: ipfi.Peer) -> None:
    assert await peer.call("add", 1, 2) == 3
    assert await peer.call("add", a=1, b=2) == 3
    assert await peer.call("aecho", {"nested": [1, b"\x00"]}) == {"nested": [1, b"\x00"]}
    assert await peer.proxy().add(20, 22) == 42


async def test_each_procedure_sees_its_own_caller(sock_path: str) -> None:
    await calc.callers_are_told_apart(f"unix:{sock_path}")


@pytest.mark.parametrize("suspend", [False, True])
async def test_an_async_procedures_task_is_named_after_it(suspend: bool) -> None:
    """(What asyncio's debug output and ``all_tasks()`` show; unnamed, 3.11 formats "Task-<n>" for
    every call.)"""
    served = ipfi.Interface()

    @served.procedure
    async def task_name(suspend: bool) -> str:
        if suspend:
            await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        return task.get_name()

    client, _ = await ipfi.pair(ipfi.Interface(), served)
    assert await client.call("task_name", suspend) == "task_name"
    await client.aclose()


async def test_a_callback_over_the_in_memory_pair_sees_its_own_peer() -> None:
    """The pair hands bytes over in the writer's context: the reader must still see itself."""
    client, server = await ipfi.pair(calc.iface, calc.iface)
    for _ in range(2):
        assert await client.call("call_back", "whoami") == id(client)
        assert await client.call("whoami") == id(server)
    await client.aclose()


async def test_remote_exception_keeps_type_and_message(peer: ipfi.Peer) -> None:
    with pytest.raises(ipfi.RemoteError) as info:
        await peer.call("fail", "boom")
    assert info.value.remote_type == "ValueError" and info.value.message == "boom"
    assert await peer.call("add", 1, 1) == 2  # the connection lives on


async def test_distinct_error_classes(peer: ipfi.Peer) -> None:
    with pytest.raises(ipfi.ProcedureNotFound):
        await peer.call("nope")
    with pytest.raises(ipfi.InvalidArguments):
        await peer.call("add", 1)
    with pytest.raises(ipfi.InvalidArguments):
        await peer.call("add", 1, 2, c=3)
    with pytest.raises(ipfi.Busy) as busy:
        await peer.call("refuse")
    assert busy.value.data == {"retry_after": 1}
    with pytest.raises(ipfi.RemoteError, match="cannot send the result"):
        await peer.call("unencodable")


async def test_server_streams(peer: ipfi.Peer) -> None:
    assert [i async for i in peer.stream("count", 1000)] == list(range(1000))
    assert [i async for i in peer.stream("count_sync", 10)] == list(range(10))
    assert await peer.call("count", 5) == [0, 1, 2, 3, 4]  # call() collects a stream
    assert [i async for i in peer.stream("add", 1, 2)] == [3]  # stream() of a unary call


async def test_client_stream_and_bidirectional(peer: ipfi.Peer) -> None:
    assert await peer.with_options(input=range(1001)).call("total") == 500500

    async def numbers() -> AsyncIterator[int]:
        for i in range(600):
            yield i

    assert [i async for i in peer.with_options(input=numbers()).stream("double")] == [i * 2 for i in range(600)]


async def test_procedure_calls_back_its_caller(peer: ipfi.Peer) -> None:
    assert await peer.call("call_back", "greet", "you") == "hi you"


async def test_many_calls_in_flight_replies_in_any_order(peer: ipfi.Peer) -> None:
    delays = [0.05, 0.0, 0.03, 0.01]
    results = await asyncio.gather(*(peer.call("sleep", d, str(i)) for i, d in enumerate(delays)))
    assert results == ["0", "1", "2", "3"]
    many = await asyncio.gather(*(peer.call("add", i, i) for i in range(1000)))
    assert many == [2 * i for i in range(1000)]


async def test_blocking_procedure_runs_in_a_thread(peer: ipfi.Peer) -> None:
    slow = asyncio.create_task(peer.call("blocking_sleep", 0.3))
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(peer.call("add", 1, 1), 0.2) == 2  # the loop was not blocked
    assert await slow == 0.3


async def test_notify(peer: ipfi.Peer) -> None:
    peer.notify("sleep", 0, "notified")
    for _ in range(100):
        if "notified" in calc.started:
            break
        await asyncio.sleep(0.01)
    assert "notified" in calc.started


async def test_notifications_of_plain_functions_free_their_slots(peer: ipfi.Peer) -> None:
    for i in range(3 * 1024):  # far past max_concurrent_calls, each finished before the next
        peer.notify("echo", i)
        if i % 256 == 0:
            await peer.ping()
    assert await peer.call("add", 1, 2) == 3  # not Busy


async def test_ping(peer: ipfi.Peer) -> None:
    assert 0 < await peer.ping() < 1


async def test_large_payload_spans_frames(sock_path: str) -> None:
    limits = ipfi.Limits(max_frame_payload=64 * 1024)
    blob = bytes(range(256)) * 4096 * 3  # 3 MiB over 64 KiB frames
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, limits=limits):
        async with ipfi.connect(f"unix:{sock_path}", limits=limits) as peer:
            assert await peer.call("echo", blob) == blob


async def test_sixteen_mib_echo_with_default_limits_both_drivers(sock_path: str) -> None:
    blob = bytes(range(256)) * 65536  # 16 MiB: with its header, just over one frame
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        async with ipfi.connect(f"unix:{sock_path}") as peer:
            assert await peer.call("echo", blob) == blob

        def blocking_echo() -> Any:
            with ipfi.sync.connect(f"unix:{sock_path}") as sync_peer:
                return sync_peer.call("echo", blob)

        assert await asyncio.to_thread(blocking_echo) == blob


@pytest.mark.parametrize("codec", ["json", "raw", "cbor"])
async def test_negotiated_codecs(sock_path: str, codec: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        async with ipfi.connect(f"unix:{sock_path}", codecs=[codec]) as peer:
            assert peer.codec == codec
            value: Any = b"raw bytes" if codec == "raw" else {"a": [1, 2]}
            assert await peer.call("echo", value) == value


async def test_no_common_codec_is_refused(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, codecs=["msgpack"]):
        with pytest.raises(ipfi.HandshakeError):
            await ipfi.connect(f"unix:{sock_path}", codecs=["json"])


async def test_auth_token_reaches_authenticate(sock_path: str) -> None:
    seen: list[str | None] = []

    def authenticate(peer: ipfi.Peer) -> bool:
        seen.append(peer.auth_token)
        return peer.auth_token == "secret"

    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, authenticate=authenticate):
        async with ipfi.connect(f"unix:{sock_path}", auth_token="secret") as peer:
            assert await peer.call("add", 1, 2) == 3
        with pytest.raises(ipfi.HandshakeError):
            await ipfi.connect(f"unix:{sock_path}", auth_token="wrong")
    assert seen == ["secret", "wrong"]


async def test_large_calls_in_flight_both_ways_do_not_deadlock(sock_path: str) -> None:
    # Both sides' writes back up at once: only the server may stop reading, or each waits forever.
    blobs = [bytes([n]) * (4 * 1024 * 1024) for n in range(6)]
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        async with ipfi.connect(f"unix:{sock_path}") as peer:
            calls = asyncio.gather(*(peer.call("echo", blob) for blob in blobs))
            assert await asyncio.wait_for(calls, 20) == blobs


async def test_an_idle_connection_holds_little_memory(sock_path: str) -> None:
    """Both ends of an idle connection that made a call hold under 15 KiB of Python memory in all
    (12.5-14.4 KiB on 3.11-3.13, asyncio's own transports included): no large per-connection
    buffer, no per-connection copy of what every connection shares, no table of finished calls."""
    connections = 50
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        async with ipfi.connect(f"unix:{sock_path}") as warm:  # (the loop's and the codec's shared parts)
            await warm.call("add", 1, 2)
            gc.collect()
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                peers = [await ipfi.connect(f"unix:{sock_path}") for _ in range(connections)]
                for peer in peers:
                    assert await peer.call("add", 1, 2) == 3
                await asyncio.sleep(0.05)
                gc.collect()
                per_connection = (tracemalloc.get_traced_memory()[0] - before) / connections
            finally:
                tracemalloc.stop()
            for peer in peers:
                await peer.aclose()
    assert per_connection < 15 * 1024


_IDLE_CLIENTS = """
import sys, ipfi.sync
peers = [ipfi.sync.connect(sys.argv[1]) for _ in range(int(sys.argv[2]))]
assert all(peer.call("add", 1, 2) == 3 and peer.call("sleep", 0.001) == "" for peer in peers)
print("open", flush=True)
sys.stdin.readline()
"""


async def test_a_server_holds_little_memory_per_idle_connection(sock_path: str) -> None:
    """What ipfi's own code allocates on the server's side (its clients in another process) for a
    connection that made two calls (one of them an ``async def`` that suspends) and went idle:
    under 4,250 bytes (3,957-4,106 on 3.11-3.13; 4,277-4,426 when the emptied tables of calls
    are kept, as dicts keep them until cleared)."""
    connections = 50
    ours = [tracemalloc.Filter(True, str(Path(ipfi.__file__).parent / "*"))]
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface):
        async with ipfi.connect(f"unix:{sock_path}") as warm:  # (the loop's shared read buffer)
            await warm.call("add", 1, 2)
        gc.collect()
        tracemalloc.start()
        clients = await asyncio.create_subprocess_exec(
            PYTHON,
            "-c",
            _IDLE_CLIENTS,
            f"unix:{sock_path}",
            str(connections),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            before = tracemalloc.take_snapshot().filter_traces(ours)
            assert clients.stdout is not None
            assert await asyncio.wait_for(clients.stdout.readline(), 30) == b"open\n"
            await asyncio.sleep(0.05)
            gc.collect()
            after = tracemalloc.take_snapshot().filter_traces(ours)
        finally:
            tracemalloc.stop()
            clients.kill()
            await clients.wait()
    per_connection = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / connections
    assert per_connection < 4250


async def test_breaking_out_of_a_stream_loop_stops_it_while_the_stream_object_is_still_held() -> None:
    record = Record()
    iface = interface("asyncio", record)  # (the behaviour suite's ``forever``: sets record.stopped)
    client, _ = await ipfi.pair(None, iface)
    stream = client.stream("forever")
    async for i in stream:
        if i == 3:
            break
    assert await asyncio.to_thread(record.stopped.wait, 2)  # (``stream`` is still referenced here)
    assert await anext(client.stream("forever")) == 0  # __anext__ without a loop: no stop
    await client.aclose()


async def test_cbor_carries_msgpacks_types_and_custom_types_as_tags() -> None:
    @dataclasses.dataclass
    class Money:
        cents: int

    money = ipfi.CustomType(Money, 17, lambda m: str(m.cents).encode(), lambda b: Money(int(b)))
    value = {
        (1, 2): "a tuple key",
        "when": datetime.datetime(2026, 11, 29, 12, 30, tzinfo=datetime.UTC),
        "id": uuid.UUID(int=42),
        "price": decimal.Decimal("1.10"),
        "big": 2**100,
        "bytes": b"\x00\xff",
        "money": Money(250),
    }
    client, _ = await ipfi.pair(calc.iface, calc.iface, codecs=["cbor"], custom_types=[money])
    assert client.codec == "cbor"
    assert await client.call("echo", value) == value
    assert cbor2.loads(client._core.codec.encode_value(Money(3))) == cbor2.CBORTag(65536 + 17, b"3")  # type: ignore[union-attr]
    with pytest.raises(ipfi.Unencodable, match=r"argument 0\[1\]: frozenset: not a CBOR type ipfi carries"):
        await client.call("echo", [1, frozenset()])
    await client.aclose()


def _keeper(received: list[bytes]) -> ipfi.Interface:
    iface = ipfi.Interface()

    @iface.procedure
    def keep(data: bytes, tag: int = 0) -> int:
        received.append(data)
        return tag

    return iface


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_large_messages_and_what_follows_them_arrive_whole_and_in_order(sock_path: str, loop: str) -> None:
    """Written a slice at a time where the transport would move what it holds after every send
    (the standard loop on 3.11: see _PacedWriter), or whole: the same bytes, in the same order."""
    received: list[bytes] = []

    async def scenario() -> list[int]:
        address = f"unix:{sock_path}"
        async with await ipfi.serve(address, _keeper(received)), ipfi.connect(address) as peer:
            paced = isinstance(peer._writelines, _PacedWriter)
            assert paced == (loop == "asyncio" and sys.version_info < (3, 12))
            calls = [peer.call("keep", bytes([1]) * (9 << 20), 0)]
            calls += [peer.call("keep", b"small", tag) for tag in range(1, 21)]
            calls += [peer.call("keep", bytes(range(256)) * (20 << 12), 21), peer.call("keep", b"last", 22)]
            return await asyncio.gather(*calls)

    assert run_on(loop, scenario()) == list(range(23))
    assert received == [bytes([1]) * (9 << 20), *[b"small"] * 20, bytes(range(256)) * (20 << 12), b"last"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_what_was_written_before_a_close_arrives(sock_path: str, loop: str) -> None:
    received: list[bytes] = []

    async def scenario() -> None:
        address = f"unix:{sock_path}"
        async with await ipfi.serve(address, _keeper(received)):
            peer = await ipfi.connect(address)
            peer.notify("keep", bytes(range(256)) * 65536)  # 16 MiB
            await asyncio.sleep(0)  # (written: what a notification queues goes out a loop turn later)
            peer.abort()
            await peer.wait_closed()
            for _ in range(500):
                if received:
                    return
                await asyncio.sleep(0.01)

    run_on(loop, scenario())
    assert received == [bytes(range(256)) * 65536]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12's socket transport keeps what it holds as views")
def test_a_large_message_waits_in_slices_not_in_the_transports_buffer(sock_path: str) -> None:
    """On 3.11's standard loop, a 16 MiB message to a peer that does not read waits here a slice at
    a time: the transport holds about its high-water mark and one slice, not the 15 MiB its
    socket did not take (which it would move on every send)."""
    received: list[bytes] = []

    async def scenario() -> None:
        address = f"unix:{sock_path}"
        async with await ipfi.serve(address, _keeper(received)) as server, ipfi.connect(address) as peer:
            assert await peer.call("keep", b"", 1) == 1
            [serving] = server.connections
            serving._pause_reading("test")
            sent = asyncio.ensure_future(peer.call("keep", bytes(16 << 20), 2))
            try:
                await asyncio.sleep(0.1)
                transport = peer._transport
                assert transport is not None
                assert 0 < transport.get_write_buffer_size() <= 65536 + _PACED_SLICE
            finally:
                serving._resume_reading("test")
            assert await sent == 2

    asyncio.run(scenario())
    assert [len(data) for data in received] == [0, 16 << 20]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_large_binary_is_received_into_a_bytes_of_its_own(sock_path: str, loop: str) -> None:
    """What receiving a 1.5 MiB argument costs the asyncio driver: its bytes, about once (the
    frame's own buffer and the copy decoded out of it took twice that). uvloop holds its view of
    the memory it read into until the read is handled: the frame is completed a loop turn later."""
    size = 1536 * 1024
    payload = bytes(range(256)) * (size // 256)
    received: list[Any] = []
    iface = ipfi.Interface()

    @iface.procedure
    def keep(data: bytes) -> int:
        received.append(data)
        return len(data)

    async def scenario() -> int:
        address = f"unix:{sock_path}"
        async with await ipfi.serve(address, iface), ipfi.connect(address) as peer:
            tracemalloc.start()
            try:
                assert await peer.call("keep", payload) == size
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    peak = run_on(loop, scenario())
    assert type(received[0]) is bytes and received[0] == payload
    assert peak < 1.8 * size, f"{peak / size:.2f} times the binary"
