"""The RPC layer of the protocol core, driven by hand: two Connections joined by a list of bytes."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfi.core import wire
from ipfi.core.cbor_codec import CborCodec
from ipfi.core.codecs import JsonCodec, MsgpackCodec, RawCodec
from ipfi.core.connection import Connection, Role
from ipfi.core.errors import (
    FrameTooLarge,
    InvalidArguments,
    InvalidResult,
    LocalProtocolError,
    PayloadTooLarge,
    ProcedureNotFound,
    ProtocolError,
    RemoteProtocolError,
)
from ipfi.core.events import (
    CallReceived,
    CancelReceived,
    CreditReceived,
    ErrorReceived,
    Event,
    HandshakeComplete,
    ItemsReceived,
    MessageReceived,
    ResultReceived,
    StreamEnded,
)
from ipfi.core.frames import encode_frame
from ipfi.core.interface import Interface
from ipfi.core.limits import Limits


def wired(codec: str = "msgpack", **limits: Any) -> tuple[Connection, Connection]:
    client = Connection(Role.CLIENT, limits=Limits(**limits), codecs=[codec])
    server = Connection(Role.SERVER, limits=Limits(**limits))
    client.start()
    deliver(client, server)
    deliver(server, client)
    assert client.rpc and server.rpc and client.codec is not None and client.codec.name == codec
    return client, server


def deliver(source: Connection, target: Connection) -> list[Event]:
    return target.receive_data(b"".join(source.data_to_send()))


def test_call_and_result() -> None:
    client, server = wired()
    call_id = client.send_call("add", [1, 2], {"c": 3})
    [call] = deliver(client, server)
    assert call == CallReceived(call_id, "add", [1, 2], {"c": 3}, None, False)
    server.send_result(call_id, 6)
    assert deliver(server, client) == [ResultReceived(call_id, 6)]


def test_sinks_take_a_call_or_result_read_alone_and_events_keep_their_order_otherwise() -> None:
    client, server = wired()
    calls: list[tuple[Any, ...]] = []
    results: list[tuple[int, Any]] = []
    server.call_sink = lambda *fields: calls.append(fields)
    client.result_sink = lambda call_id, value: results.append((call_id, value))
    first = client.send_call("add", [1, 2], {"c": 3}, timeout=2.0)
    assert deliver(client, server) == [] and calls == [(first, "add", [1, 2], {"c": 3}, 2.0, False)]
    server.send_result(first, 6)
    assert deliver(server, client) == [] and results == [(first, 6)]
    # Two messages in one read go the usual way, as events in the order they came.
    second, third = client.send_call("f", []), client.send_call("g", [])
    assert deliver(client, server) == [
        CallReceived(second, "f", [], {}, None, False),
        CallReceived(third, "g", [], {}, None, False),
    ]
    server.send_error(second, "ValueError", "bad")
    server.send_result(third, "ok")
    errored, answered = deliver(server, client)
    assert isinstance(errored, ErrorReceived) and answered == ResultReceived(third, "ok")
    # Neither an error nor a notification goes to a sink, even read alone.
    fourth = client.send_call("h", [])
    deliver(client, server)
    server.send_error(fourth, "ValueError", "bad")
    assert isinstance(deliver(server, client)[0], ErrorReceived)
    client.send_notify("note", [1])
    assert deliver(client, server) == [CallReceived(0, "note", [1], {}, None, False)]
    assert len(calls) == 2 and results == [(first, 6)]


def test_a_result_that_cannot_be_sent_becomes_an_error_reply() -> None:
    client, server = wired()
    call_id = client.send_call("f", [])
    deliver(client, server)
    server.send_result(call_id, object())
    [event] = deliver(server, client)
    assert isinstance(event, ErrorReceived) and event.error.remote_type == "TypeError"
    assert "cannot send the result" in str(event.error)
    server.send_result(call_id, 1)  # answered: nothing more is sent
    assert not server.has_output
    client, server = wired(max_message=1000)
    call_id = client.send_call("f", [])
    deliver(client, server)
    server.send_result(call_id, b"x" * 1000)  # past the client's message limit
    [event] = deliver(server, client)
    assert isinstance(event, ErrorReceived) and event.error.remote_type == "PayloadTooLarge"


def test_ids_have_the_callers_parity_and_both_sides_call() -> None:
    client, server = wired()
    client_ids = [client.send_call("f", []) for _ in range(3)]
    server_ids = [server.send_call("g", []) for _ in range(3)]
    assert all(i % 2 == 1 for i in client_ids) and all(i % 2 == 0 for i in server_ids)
    assert len(deliver(client, server)) == 3 and len(deliver(server, client)) == 3


def test_timeout_travels_in_milliseconds() -> None:
    client, server = wired()
    client.send_call("slow", [], timeout=1.5)
    [call] = deliver(client, server)
    assert isinstance(call, CallReceived) and call.timeout == 1.5


def test_error_reply() -> None:
    client, server = wired()
    call_id = client.send_call("f", [])
    deliver(client, server)
    server.send_error(call_id, "ValueError", "bad", {"field": "x"})
    [event] = deliver(server, client)
    assert isinstance(event, ErrorReceived)
    assert event.error.remote_type == "ValueError" and event.error.data == {"field": "x"}


def test_late_reply_after_cancel_is_dropped() -> None:
    client, server = wired()
    call_id = client.send_call("f", [])
    deliver(client, server)
    client.send_cancel(call_id)
    assert deliver(client, server) == [CancelReceived(call_id)]
    server.send_result(call_id, 1)  # the slot was freed by CANCEL: nothing is sent
    assert deliver(server, client) == []


def test_concurrency_limit_at_and_past_holds_calls_back_and_never_refuses_them() -> None:
    client, server = wired(max_concurrent_calls=3)
    ids = [client.send_call("f", []) for _ in range(5)]
    client.send_notify("note", [])
    client.send_message(2, b"after the calls")
    events = deliver(client, server)
    assert [e.call_id for e in events if isinstance(e, CallReceived)] == ids[:3]
    assert server.calls_held and server.release_held() is None  # no slot yet: nothing is refused
    assert deliver(server, client) == []
    assert server.receive_data(encode_frame(2, b"read later")) == []  # a read under way is held too
    server.send_result(ids[0], None)  # one slot frees: the next call is handed out, and no more
    [fourth] = server.release_held() or []
    assert fourth == CallReceived(ids[3], "f", [], {}, None, False) and server.calls_held
    server.send_result(ids[1], None)
    server.send_result(ids[2], None)
    released = server.release_held() or []
    assert [type(event).__name__ for event in released] == ["CallReceived", "CallReceived"] + ["MessageReceived"] * 2
    assert released[0].call_id == ids[4] and released[1].procedure == "note" and not server.calls_held
    assert released[3] == MessageReceived(2, b"read later")
    client.send_call("f", [])  # the notification took the third slot: the limit holds again
    assert deliver(client, server) == [] and server.calls_held
    server.finish_notification()
    assert [type(event) for event in server.release_held() or []] == [CallReceived]
    assert [type(event) for event in deliver(server, client)] == [ResultReceived] * 3


def test_a_call_to_an_unknown_procedure_is_refused_before_its_arguments_are_decoded() -> None:
    client, server = wired()
    server.procedures = {"known": "the procedure"}
    call_id = client.send_call("unknown", [1])
    poisoned = b"".join(client.data_to_send())[:-1] + b"\xc1"  # 0xc1: never valid msgpack
    assert server.receive_data(poisoned) == []
    [error] = deliver(server, client)
    assert isinstance(error, ErrorReceived) and isinstance(error.error, ProcedureNotFound)
    assert error.call_id == call_id and "'unknown'" in str(error.error)
    client.send_call("known", [1])
    assert isinstance(deliver(client, server)[0], CallReceived)


def test_stream_with_credit() -> None:
    client, server = wired(stream_window=4)
    call_id = client.send_call("count", [10])
    deliver(client, server)
    server.open_output_stream(call_id)
    assert [server.send_items(call_id, [i]) for i in range(4)] == [3, 2, 1, 0]  # the credit left
    assert server.credit(call_id) == 0
    with pytest.raises(LocalProtocolError):
        server.send_items(call_id, [4])
    assert deliver(server, client) == [ItemsReceived(call_id, [0, 1, 2, 3])]  # sent one by one, one message
    client.grant_credit(call_id, 2)
    assert deliver(client, server) == [CreditReceived(call_id)]
    assert server.credit(call_id) == 2
    server.send_end(call_id)
    assert deliver(server, client) == [StreamEnded(call_id)]


def stream_of(window: int = 256, item_check: Any = None, **limits: Any) -> tuple[Connection, Connection, int]:
    client, server = wired(stream_window=window, **limits)
    call_id = client.send_call("items", [])
    deliver(client, server)
    server.open_output_stream(call_id, item_check)
    return client, server, call_id


def test_a_batch_of_items_is_one_message_within_the_credit() -> None:
    client, server, call_id = stream_of(window=8)
    assert server.send_items(call_id, [1, "two", b"three"]) == 5
    with pytest.raises(LocalProtocolError, match="5 credit left, not 6"):
        server.send_items(call_id, list(range(6)))  # (none of them sent)
    assert server.send_items(call_id, [4, 5]) == 3
    assert deliver(server, client) == [ItemsReceived(call_id, [1, "two", b"three"]), ItemsReceived(call_id, [4, 5])]
    assert server.credit(call_id) == 3


def test_a_batch_after_items_sent_one_by_one_joins_their_message() -> None:
    client, server, call_id = stream_of()
    server.send_items(call_id, [0])
    server.send_items(call_id, [1, 2])
    assert deliver(server, client) == [ItemsReceived(call_id, [0, 1, 2])]


@pytest.mark.parametrize("bad", [object(), {1j: 1}])
def test_a_batch_sends_the_items_before_one_that_cannot_be_encoded(bad: Any) -> None:
    client, server, call_id = stream_of()
    with pytest.raises(TypeError, match=r"complex|object"):
        server.send_items(call_id, [1, 2, bad, 3])
    assert deliver(server, client) == [ItemsReceived(call_id, [1, 2])]
    assert server.credit(call_id) == 254


def test_a_batch_checks_each_item_against_its_procedures_hint() -> None:
    iface = Interface()

    @iface.procedure
    def numbers() -> Iterator[float]:
        yield 1.0

    client, server, call_id = stream_of(item_check=iface["numbers"].item_check)
    server.send_items(call_id, [1.5, 2])  # (an int is a float here: checked, and kept)
    with pytest.raises(InvalidResult, match="item"):
        server.send_items(call_id, [3.5, "four", 5.5])
    assert deliver(server, client) == [ItemsReceived(call_id, [1.5, 2, 3.5])]


def test_a_batch_larger_than_a_frame_is_split_and_an_item_past_the_message_limit_refused() -> None:
    client, server, call_id = stream_of(max_frame_payload=1024, max_message=4096)
    items = [bytes([i]) * 100 for i in range(30)]
    server.send_items(call_id, items)
    events = deliver(server, client)
    assert len(events) > 1 and [item for event in events for item in event.items] == items  # type: ignore[attr-defined]
    with pytest.raises(PayloadTooLarge):
        server.send_items(call_id, [b"ok", b"x" * 5000])
    assert deliver(server, client) == [ItemsReceived(call_id, [b"ok"])]


@pytest.mark.parametrize("codec", ["msgpack", "json", "raw", "cbor"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_codecs_items_packer_makes_what_join_items_makes_of_the_items(codec: str, data: st.DataObject) -> None:
    """The batch encoding (one call) and the item by item one (joined) are the same bytes on the wire."""
    codecs = {"msgpack": MsgpackCodec(), "json": JsonCodec(), "raw": RawCodec(), "cbor": CborCodec()}
    value = (
        st.binary(max_size=40)
        if codec == "raw"
        else st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
            max_leaves=8,
        )
    )
    items = data.draw(st.lists(value, max_size=20))
    chosen = codecs[codec]
    assert chosen.items_packer()(items) == chosen.join_items([chosen.encode_item(item) for item in items])


@pytest.mark.parametrize(("last", "messages"), [(14, 1), (15, 2)])
def test_item_batches_fill_a_frame_and_no_more(last: int, messages: int) -> None:
    """Frames of 64 bytes leave 48 for items: encoded items of 16, 16 and 16 bytes are one batch;
    of 16, 16 and 17, two."""
    client, server = wired(max_frame_payload=64)
    call_id = client.send_call("items", [])
    deliver(client, server)
    server.open_output_stream(call_id)
    items = [b"a" * 14, b"b" * 14, b"c" * last]
    server.send_items(call_id, items)
    events = deliver(server, client)
    assert len(events) == messages and all(isinstance(event, ItemsReceived) for event in events)
    assert [item for event in events for item in event.items] == items


def test_items_beyond_credit_are_a_protocol_error() -> None:
    client, server = wired(stream_window=2)
    call_id = client.send_call("count", [])
    deliver(client, server)
    rogue = wire.ID_HEADER.pack(wire.ITEMS, call_id) + b"\x93\x01\x02\x03"
    with pytest.raises(ProtocolError):
        client.receive_data(encode_frame(wire.RPC_CHANNEL, rogue))


def test_input_stream() -> None:
    client, server = wired(stream_window=8)
    call_id = client.send_call("total", [], has_input=True)
    [call] = deliver(client, server)
    assert isinstance(call, CallReceived) and call.has_input
    for i in range(3):
        client.send_items(call_id, [i])
    client.send_end(call_id)
    assert deliver(client, server) == [ItemsReceived(call_id, [0, 1, 2]), StreamEnded(call_id)]


@pytest.mark.parametrize("codec", ["msgpack", "json", "raw", "cbor"])
def test_codecs(codec: str) -> None:
    client, server = wired(codec)
    value: Any = b"\x00bytes" if codec == "raw" else {"k": [1, "two", None]}
    call_id = client.send_call("echo", [value])
    [call] = deliver(client, server)
    assert isinstance(call, CallReceived) and call.args == [value]
    server.open_output_stream(call_id)
    server.send_items(call_id, [value])
    server.send_items(call_id, [value])
    server.send_end(call_id)
    assert deliver(server, client)[0] == ItemsReceived(call_id, [value, value])


def test_raw_codec_refuses_non_bytes() -> None:
    client, _ = wired("raw")
    with pytest.raises(TypeError):
        client.send_call("f", ["text"])


def test_large_message_is_fragmented_and_reassembled() -> None:
    client, server = wired(max_frame_payload=1024)
    blob = bytes(range(256)) * 40  # 10 KiB across about eleven frames
    call_id = client.send_call("echo", [blob])
    frames = client.data_to_send()
    assert len(frames) > 10
    [call] = server.receive_data(b"".join(frames))
    assert isinstance(call, CallReceived) and call.args == [blob] and call.call_id == call_id


def test_message_limit_at_and_past() -> None:
    client, server = wired(max_frame_payload=1024, max_message=4096)
    overhead = wire.CALL_HEADER.size + len(b"echo") + 1 + 3  # msgpack fixarray + bin16 headers
    at_limit = b"x" * (4096 - overhead)
    client.send_call("echo", [at_limit])
    [call] = deliver(client, server)
    assert isinstance(call, CallReceived) and call.args == [at_limit]
    with pytest.raises(PayloadTooLarge):  # refused before sending: a clear local error
        client.send_call("echo", [at_limit + b"x"])


def test_receiver_enforces_message_limit_against_a_lying_peer() -> None:
    _, server = wired(max_frame_payload=1024, max_message=2048)
    part = encode_frame(wire.RPC_CHANNEL, bytes([wire.PART]) + b"x" * 1000)
    server.receive_data(part * 2)
    with pytest.raises(FrameTooLarge):
        server.receive_data(part)


def test_frame_limit_at_and_past_when_a_whole_frame_arrives_in_one_read() -> None:
    """One whole message per read takes a shorter path through the core: it applies the frame limit too."""
    _, server = wired(max_frame_payload=1024)
    header = wire.CALL_HEADER.pack(wire.CALL, 1, 0, 0, 4) + b"echo"

    def call_of_size(size: int) -> bytes:
        blob = b"x" * (size - len(header) - 4)  # msgpack: fixarray, bin16 header
        return encode_frame(wire.RPC_CHANNEL, header + msgpack.packb([blob]))

    [call] = server.receive_data(call_of_size(1024))
    assert isinstance(call, CallReceived) and len(call.args[0]) == 1024 - len(header) - 4
    with pytest.raises(FrameTooLarge):
        server.receive_data(call_of_size(1025))


def test_message_fields_are_checked() -> None:
    for bad in [b"", b"\x01\x00", b"\x99\x00\x00\x00\x00", b"\x08\x01\x00\x00\x00"]:
        with pytest.raises(ProtocolError):
            wired()[1].receive_data(encode_frame(wire.RPC_CHANNEL, bad))


def test_peer_cannot_reuse_a_running_call_id() -> None:
    client, server = wired()
    client.send_call("f", [])
    frames = b"".join(client.data_to_send())
    server.receive_data(frames)
    with pytest.raises(ProtocolError):
        server.receive_data(frames)


def test_call_ids_wrap_and_skip_ids_in_use() -> None:
    client, _ = wired()
    first = client.send_call("f", [])
    client._next_id = wire.MAX_ID  # the last odd id
    assert client.send_call("f", []) == wire.MAX_ID
    assert client.send_call("f", []) == first + 2  # wrapped, skipping 1 which is still pending


def _script(client: Connection) -> bytes:
    client.send_call("add", [1, 2])
    client.send_call("echo", [b"x" * 3000], {"k": "v"}, timeout=2.0)
    client.send_notify("log", ["hello"])
    call_id = client.send_call("total", [], has_input=True)
    for i in range(5):
        client.send_items(call_id, [i])
    client.send_end(call_id)
    client.send_ping()
    return b"".join(client.data_to_send())


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_events_do_not_depend_on_chunking(cuts: list[int]) -> None:
    reference_client, reference_server = wired(max_frame_payload=1024)
    stream = _script(reference_client)
    expected = reference_server.receive_data(stream)

    client, server = wired(max_frame_payload=1024)
    assert _script(client) == stream
    points = sorted({c % (len(stream) + 1) for c in cuts})
    events: list[Event] = []
    previous = 0
    for point in [*points, len(stream)]:
        events += server.receive_data(stream[previous:point])
        previous = point
    assert events == expected


def test_one_byte_at_a_time_through_handshake_and_calls() -> None:
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER)
    client.start()
    hello = b"".join(client.data_to_send())
    events: list[Event] = []
    for i in range(len(hello)):
        events += server.receive_data(hello[i : i + 1])
    assert isinstance(events[0], HandshakeComplete)
    client.receive_data(b"".join(server.data_to_send()))
    stream = _script(client)
    events = []
    for i in range(len(stream)):
        events += server.receive_data(stream[i : i + 1])
    assert [type(e).__name__ for e in events] == [
        "CallReceived",
        "CallReceived",
        "CallReceived",
        "CallReceived",
        "ItemsReceived",
        "StreamEnded",
    ]


def test_protocol_md_example_bytes() -> None:
    """The worked example in docs/PROTOCOL.md, byte for byte."""
    client, server = wired()
    client.send_call("add", [1, 2])
    sent = b"".join(client.data_to_send())
    assert sent.hex(" ") == "49 50 12 00 00 00 01 00 01 01 00 00 00 00 00 00 00 00 03 00 61 64 64 92 01 02"
    server.receive_data(sent)
    server.send_result(1, 3)
    assert b"".join(server.data_to_send()).hex(" ") == "49 50 06 00 00 00 01 00 03 01 00 00 00 03"


def test_large_binaries_are_sent_without_copies_and_arrive_whole() -> None:
    codec = MsgpackCodec()
    big = bytes(range(256)) * 4096  # 1 MiB: four fragments of the 300 kB frames below
    parts = codec.encode_args([1, big, "x"])
    assert isinstance(parts, list) and any(part is big for part in parts)  # referenced, not copied
    assert msgpack.unpackb(b"".join(parts)) == [1, big, "x"]
    client, server = wired(max_frame_payload=300_000)
    client.send_call("echo", [big, big[:10]])
    frames = client.data_to_send()
    assert any(isinstance(frame, memoryview) for frame in frames)  # fragments are slices of the argument
    [call] = server.receive_data(b"".join(frames))
    assert isinstance(call, CallReceived) and call.args == [big, big[:10]]
    server.send_result(call.call_id, big)
    stream = b"".join(server.data_to_send())
    events = []
    for start in range(0, len(stream), 65536):  # in pieces: the fragments fill buffers of their own
        events += client.receive_data(stream[start : start + 65536])
    [result] = events
    assert isinstance(result, ResultReceived) and result.value == big


def test_has_output_follows_everything_queued() -> None:
    """Drivers write only when ``has_output`` says so: every way of queueing output must set it."""
    client, server = wired(stream_window=4, max_frame_payload=64)
    assert not client.has_output and not server.has_output

    def queued(connection: Connection) -> bool:
        said = connection.has_output
        sent = connection.data_to_send()
        assert said == bool(sent) and not connection.has_output
        return said

    call_id = client.send_call("f", [1])
    assert queued(client)  # a small call
    client.send_call("f", [b"x" * 200])
    assert queued(client)  # one fragmented into frames
    client.send_notify("n", [])
    assert queued(client)
    client.send_ping()
    assert queued(client)
    client.send_cancel(call_id)
    assert queued(client)
    server.send_message(2, b"plain")
    assert queued(server)
    stream_id = client.send_call("consume", [], has_input=True)
    client.data_to_send()
    client.send_items(stream_id, [1])
    client.send_items(stream_id, [2])
    assert queued(client)  # stream items, batched when taken
    client.send_items(stream_id, [3])
    assert queued(client)  # the first item of the next batch
    client.grant_credit(stream_id, 1)
    assert queued(client)
    client.send_end(stream_id)
    assert queued(client)
    client.send_shutdown_request()
    assert queued(client)
    assert not queued(client)


def test_a_reply_to_a_call_the_peer_made_itself_is_ignored() -> None:
    client, server = wired()
    call_id = client.send_call("f", [])
    deliver(client, server)
    assert server.call_state(call_id) == "running"
    bogus = encode_frame(wire.RPC_CHANNEL, wire.ID_HEADER.pack(wire.RESULT, call_id) + msgpack.packb(1))
    assert server.receive_data(bogus) == []  # the peer cannot answer its own call
    assert server.call_state(call_id) == "running"  # still due, and still answered normally
    server.send_result(call_id, 2)
    assert deliver(server, client) == [ResultReceived(call_id, 2)]


def _raw_message(kind: int, call_id: int, body: bytes) -> bytes:
    return encode_frame(1, wire.ID_HEADER.pack(kind, call_id) + body)


def test_a_reply_that_does_not_decode_fails_its_call_alone() -> None:
    client, server = wired()
    result_call, error_call, stream_call, other = (client.send_call(name, []) for name in ("a", "b", "c", "d"))
    deliver(client, server)
    events = client.receive_data(
        _raw_message(wire.RESULT, result_call, b"\xc1")
        + _raw_message(wire.ERROR, error_call, b"\x81\xa4type\x01")  # a record without a string type
        + _raw_message(wire.ITEMS, stream_call, b"\x91\xc1")
    )
    assert [type(event) for event in events] == [ErrorReceived] * 3
    assert [event.call_id for event in events] == [result_call, error_call, stream_call]
    assert all(isinstance(event.error, RemoteProtocolError) for event in events)
    assert deliver(client, server) == [CancelReceived(stream_call)]  # the stream's producer stops
    server.send_result(other, 4)
    assert deliver(server, client) == [ResultReceived(other, 4)]  # the connection goes on


def test_input_items_that_do_not_decode_end_their_call_with_invalid_arguments() -> None:
    client, server = wired()
    call_id = client.send_call("total", [], has_input=True)
    deliver(client, server)
    events = server.receive_data(_raw_message(wire.ITEMS, call_id, b"\x91\xc1"))
    assert events == [CancelReceived(call_id)]  # the procedure is stopped
    [error] = deliver(server, client)
    assert isinstance(error, ErrorReceived) and isinstance(error.error, InvalidArguments)
    assert "input item was not decoded" in str(error.error)


def test_a_bad_extension_value_is_answered_as_undecodable_arguments() -> None:
    client, server = wired()
    call_id = client.send_call("f", [])  # (the client awaits this id's reply)
    client.data_to_send()  # (the well-made call is not sent: this one is)
    bad_uuid = b"\x91\xc7\x03\x01abc"  # [ext 1 (a UUID) of 3 bytes, not 16]
    call = wire.CALL_HEADER.pack(wire.CALL, call_id, 0, 0, 1) + b"f" + bad_uuid
    assert server.receive_data(encode_frame(1, call)) == []
    [error] = deliver(server, client)
    assert isinstance(error, ErrorReceived) and isinstance(error.error, InvalidArguments), error
    assert "not decoded" in str(error.error)


def receive_in_place(target: Connection, data: bytes, first: int, step: int) -> list[Event]:
    """``data`` received as the blocking driver receives it: ``first`` bytes pushed, the rest
    written into receive_target() ``step`` at a time (or pushed while there is none)."""
    events = target.receive_data(data[:first])
    position = first
    while position < len(data):
        place = target.receive_target()
        if place is None:
            events += target.receive_data(data[position : position + step])
            position += step
            continue
        count = min(len(place), step, len(data) - position)
        place[:count] = data[position : position + count]
        del place
        position += count
        events += target.received_into(count)
    return events


BIG = bytes(range(256)) * 2048  # 512 KiB: a large frame


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [([BIG], None), ([1, "two", [3], BIG], None), ([BIG, BIG], None), ([1], {"data": BIG}), ([{"data": BIG}], None)],
    ids=["alone", "last", "two", "keyword", "nested"],
)
def test_a_large_binary_received_in_place_arrives_as_sent(args: list[Any], kwargs: dict[str, Any] | None) -> None:
    client, server = wired()
    client.receive_binaries_whole()
    server.receive_binaries_whole()
    call_id = client.send_call("echo", args, kwargs)
    [call] = receive_in_place(server, b"".join(client.data_to_send()), 3000, 100_000)
    assert call == CallReceived(call_id, "echo", args, kwargs or {}, None, False)
    binaries = [value for value in call.args if isinstance(value, bytes | bytearray | memoryview)]
    assert all(type(value) is bytes for value in binaries)  # (as sent: not views, not bytearrays)
    server.send_result(call_id, call.args)
    assert receive_in_place(client, b"".join(server.data_to_send()), 100, 7000) == [ResultReceived(call_id, args)]


@settings(max_examples=60, deadline=None)
@given(
    small=st.lists(st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=9), st.binary(max_size=9)), max_size=5),
    size=st.integers(300_000, 600_000),
    first=st.integers(1, 70_000),
    step=st.integers(1000, 300_000),
)
def test_receiving_in_place_gives_what_pushing_gives(small: list[Any], size: int, first: int, step: int) -> None:
    binary = bytes(size)
    for whole in (False, True):
        client, server = wired()
        if whole:
            server.receive_binaries_whole()
        call_id = client.send_call("echo", [*small, binary])
        events = receive_in_place(server, b"".join(client.data_to_send()), first, step)
        assert events == [CallReceived(call_id, "echo", [*small, binary], {}, None, False)]


def test_a_large_binary_received_in_place_is_held_once() -> None:
    """The memory a 4 MiB argument takes to receive: its bytes only, where the frame's own buffer
    and a copy out of it took twice that."""
    client, server = wired()
    server.receive_binaries_whole()
    client.send_call("echo", [bytes(4 * 1024 * 1024)])
    data = b"".join(client.data_to_send())
    tracemalloc.start()
    try:
        [call] = receive_in_place(server, data, 64 * 1024, 64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert call.args == [bytes(4 * 1024 * 1024)]
    assert peak < 1.2 * 4 * 1024 * 1024, f"{peak / 2**20:.1f} MiB"


def test_a_call_received_in_place_and_held_at_the_concurrency_limit_keeps_its_binary() -> None:
    client, server = wired(max_concurrent_calls=1)
    server.receive_binaries_whole()
    first = client.send_call("f", [])
    second = client.send_call("echo", [1, BIG])
    events = receive_in_place(server, b"".join(client.data_to_send()), 3000, 100_000)
    assert [event.call_id for event in events if isinstance(event, CallReceived)] == [first]
    assert server.calls_held
    server.send_result(first, None)
    assert server.release_held() == [CallReceived(second, "echo", [1, BIG], {}, None, False)]


def _outcome(client: Connection, server: Connection, data: bytes) -> Any:
    """What the server made of ``data`` (events, or the error that ends the connection), and what
    its replies are to the client (refusals by type: their texts name what could not be decoded)."""
    try:
        events = receive_in_place(server, data, 3000, 100_000)
    except RemoteProtocolError as exc:
        return type(exc)
    replies = deliver(server, client)
    return events, [(type(reply), type(getattr(reply, "error", None))) for reply in replies]


@settings(max_examples=400, deadline=None)
@given(position=st.integers(0, 60), value=st.integers(0, 255), args=st.sampled_from([[1, "two", BIG], [BIG]]))
def test_a_damaged_message_received_in_place_fares_as_one_pushed(position: int, value: int, args: list[Any]) -> None:
    """Whatever a peer puts before a large binary, receiving in place gives the events (or the
    error) and the replies that decoding the frame whole gives (arguments with items before the
    binary, and the binary alone: the shape the codec recognises without walking them)."""
    outcomes = []
    for whole in (False, True):
        client, server = wired()
        if whole:
            server.receive_binaries_whole()
        client.send_call("echo", args)
        data = bytearray(b"".join(client.data_to_send()))
        data[position] = value
        outcomes.append(_outcome(client, server, bytes(data)))
    assert outcomes[0] == outcomes[1]


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 30), value=st.integers(0, 255))
def test_a_damaged_result_received_in_place_fares_as_one_pushed(position: int, value: int) -> None:
    """A result that is a large binary, damaged in its headers: the client makes of it, receiving
    the binary in place, what it makes of the frame decoded whole (the result, or the same error)."""
    outcomes = []
    for whole in (False, True):
        client, server = wired()
        if whole:
            client.receive_binaries_whole()
        call_id = client.send_call("echo", [1])
        deliver(client, server)
        server.send_result(call_id, BIG)
        data = bytearray(b"".join(server.data_to_send()))
        data[position] = value
        try:
            events = receive_in_place(client, bytes(data), 3000, 100_000)
        except RemoteProtocolError as exc:
            outcomes.append(type(exc))
        else:  # (an error the peer is said to have sent is an exception: compared by its text)
            outcomes.append(repr(events))
    assert outcomes[0] == outcomes[1]
