"""Every value a peer announces is checked and clamped: each bound tested at and past it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipfi.core import wire
from ipfi.core.connection import Connection, Role
from ipfi.core.errors import HandshakeError
from ipfi.core.events import CallReceived
from ipfi.core.frames import FrameDecoder, encode_frame
from ipfi.core.negotiation import MAX_WINDOW, MIN_PEER_FRAME


def handshake_with(**announced: Any) -> tuple[Connection, Connection]:
    """A client whose hello announces ``announced`` in its ipfi extension, and the server that took it."""
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER)
    client.start()
    [(_, hello)] = FrameDecoder().feed(b"".join(client.data_to_send()))
    document = json.loads(hello)
    document["ipfi"].update(announced)
    server.receive_data(encode_frame(0, json.dumps(document).encode()))
    client.receive_data(b"".join(server.data_to_send()))
    return client, server


def frames_sent(connection: Connection) -> list[tuple[int, bytes | bytearray]]:
    return FrameDecoder(1 << 30).feed(b"".join(connection.data_to_send()))


@pytest.mark.parametrize("max_frame", [MIN_PEER_FRAME - 1, 1, 2, 0, -5])
def test_a_max_frame_below_the_floor_is_refused(max_frame: int) -> None:
    with pytest.raises(HandshakeError, match="max_frame"):
        handshake_with(max_frame=max_frame)


def test_a_max_frame_at_the_floor_is_honoured_and_a_reply_fragments_into_that_size() -> None:
    client, server = handshake_with(max_frame=MIN_PEER_FRAME)
    call_id = client.send_call("f", [])
    [call] = server.receive_data(b"".join(client.data_to_send()))
    assert isinstance(call, CallReceived)
    server.send_result(call_id, b"x" * 4096)
    frames = frames_sent(server)
    assert all(len(payload) <= MIN_PEER_FRAME for _, payload in frames)
    assert 4096 // MIN_PEER_FRAME <= len(frames) <= 4096 // (MIN_PEER_FRAME - 8) + 1


@pytest.mark.parametrize(
    ("announced", "kept"), [(MAX_WINDOW, MAX_WINDOW), (MAX_WINDOW + 1, MAX_WINDOW), (1 << 63, MAX_WINDOW)]
)
def test_a_stream_window_is_capped(announced: int, kept: int) -> None:
    client, server = handshake_with(window=announced)
    call_id = client.send_call("gen", [])
    server.receive_data(b"".join(client.data_to_send()))
    server.open_output_stream(call_id)
    assert server.credit(call_id) == kept


@pytest.mark.parametrize("grant", [MAX_WINDOW, MAX_WINDOW + 1, 0xFFFFFFFF])
def test_credit_grants_are_capped(grant: int) -> None:
    client, server = handshake_with()
    call_id = client.send_call("gen", [])
    server.receive_data(b"".join(client.data_to_send()))
    server.open_output_stream(call_id)
    server.receive_data(encode_frame(wire.RPC_CHANNEL, wire.CREDIT_MESSAGE.pack(wire.CREDIT, call_id, grant)))
    assert server.credit(call_id) == MAX_WINDOW


@pytest.mark.parametrize("field", ["window", "max_frame", "max_message"])
@pytest.mark.parametrize("value", [True, 1.5, "64", None, [], -1, 0])
def test_announced_values_must_be_positive_integers(field: str, value: Any) -> None:
    with pytest.raises(HandshakeError, match=field):
        handshake_with(**{field: value})


def test_a_frame_larger_than_own_limit_is_never_sent_whatever_the_peer_announces() -> None:
    client, server = handshake_with(max_frame=1 << 40, max_message=1 << 62)
    call_id = client.send_call("f", [])
    server.receive_data(b"".join(client.data_to_send()))
    server.send_result(call_id, b"y" * (server.limits.max_frame_payload + 1))
    assert max(len(payload) for _, payload in frames_sent(server)) <= server.limits.max_frame_payload
