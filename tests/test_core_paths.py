"""The core's fast path (a read that is exactly one whole RPC message) gives what its general path
(the frame decoder, here fed a byte at a time) gives, for every kind of message it takes."""

from __future__ import annotations

from typing import Any

import pytest

from ipfi.core.connection import Connection

from .test_core_rpc import wired


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
