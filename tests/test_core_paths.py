"""The core's fast path (a read that is exactly one whole RPC message) gives what its general path
(the frame decoder, here fed a byte at a time) gives, for every kind of message it takes."""

from __future__ import annotations

from typing import Any

import pytest

from ipfi.core import wire
from ipfi.core.connection import Connection

from .test_core_rpc import BIG, receive_in_place, wired


def through(connection: Connection, data: bytes, *, one_read: bool) -> list[Any]:
    if one_read:
        return connection.receive_data(data)
    events: list[Any] = []
    for i in range(len(data)):  # the general path: the decoder, never a whole message in one read
        events += connection.receive_data(data[i : i + 1])
    return events


@pytest.mark.parametrize(
    ("args", "kwargs"), [((1, 2), {}), ((b"x" * 5000,), {}), ((), {"a": [1, {"b": None}]}), (("é",), {})]
)
def test_a_call_and_its_result_decode_alike_on_both_paths(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    outcomes = []
    for one_read in (True, False):
        client, server = wired()
        assert server._plain_rpc  # the fast path is open to it
        call_id = client.send_call("echo", args, kwargs)
        [call] = through(server, b"".join(client.data_to_send()), one_read=one_read)
        server.send_result(call_id, [list(call.args), call.kwargs])
        [result] = through(client, b"".join(server.data_to_send()), one_read=one_read)
        outcomes.append((call, result, server.call_state(call_id), client.call_state(call_id)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2:] == ("done", "done")


def test_a_late_result_is_dropped_on_both_paths() -> None:
    for one_read in (True, False):
        client, server = wired()
        call_id = client.send_call("f", [])
        server.receive_data(b"".join(client.data_to_send()))
        client.send_cancel(call_id)
        server.send_result(call_id, 1)  # the CANCEL has not arrived yet: the result goes out
        assert through(client, b"".join(server.data_to_send()), one_read=one_read) == []


def test_the_inlined_framing_of_a_call_and_a_result_matches_the_general_framing() -> None:
    client, server = wired()
    for args in ([1, 2], [b"x" * 3000], []):
        call_id = client.send_call("echo", args)  # small, no timeout: framed inline
        [inlined] = client.data_to_send()
        body = client.codec.encode_args(args)  # type: ignore[union-attr]
        header = wire.CALL_HEADER.pack(wire.CALL, call_id, 0, 0, 4) + b"echo"
        client._queue_message(header, body)  # the general path
        assert [inlined] == client.data_to_send()
        server.receive_data(inlined)
        server.send_result(call_id, args)  # framed inline
        [inlined_result] = server.data_to_send()
        server._queue_message(wire.ID_HEADER.pack(wire.RESULT, call_id), server.codec.encode_value(args))  # type: ignore[union-attr, arg-type]
        assert [inlined_result] == server.data_to_send()


def test_a_sink_gets_what_the_event_carries() -> None:
    client, server = wired()
    call_id = client.send_call("echo", [1], {"k": "v"})
    data = b"".join(client.data_to_send())
    [event] = server.receive_data(data)  # the default sinks are the event classes
    taken: list[tuple[Any, ...]] = []
    _, other = wired()
    other.call_sink = lambda *fields: taken.append(fields)  # type: ignore[assignment,return-value]
    assert other.receive_data(data) == []
    assert taken == [(event.call_id, event.procedure, event.args, event.kwargs, event.timeout, event.has_input)]
    assert call_id == event.call_id


@pytest.mark.parametrize("args", [[BIG], [1, "two", BIG], [BIG, 2]], ids=["alone", "last", "not-last"])
@pytest.mark.parametrize("whole", [False, True], ids=["decoded", "binary-apart"])
def test_a_read_that_starts_a_large_message_gives_what_the_decoder_gives(args: list[Any], whole: bool) -> None:
    """A large call and its result, each begun by one read that holds its frame's header and more
    (the fast path starts the frame, its rest received in place), or by the header's first byte
    alone (the decoder's general path)."""
    outcomes = []
    for first in (1, 3000):
        client, server = wired()
        if whole:
            client.receive_binaries_whole()
            server.receive_binaries_whole()
        call_id = client.send_call("echo", args)
        [call] = receive_in_place(server, b"".join(client.data_to_send()), first, 100_000)
        server.send_result(call_id, call.args)
        [result] = receive_in_place(client, b"".join(server.data_to_send()), first, 100_000)
        outcomes.append((call, result))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1].value == args
