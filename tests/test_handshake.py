"""Handshake and control channel, at the protocol core (no I/O), against the ipcprims vectors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipfi.core.connection import Connection, Role
from ipfi.core.errors import FrameError, HandshakeError, ProtocolError
from ipfi.core.events import HandshakeComplete, MessageReceived, PongReceived, ShutdownRequested
from ipfi.core.frames import encode_frame
from ipfi.core.handshake import parse_hello, versions_compatible
from ipfi.core.limits import Limits

from .conftest import load_vectors, unhex

HANDSHAKE = load_vectors("ipcprims.json")["handshake"]
CONTROL = load_vectors("ipcprims.json")["control"]


def test_plain_client_hello_is_byte_exact() -> None:
    client = Connection(Role.CLIENT, channels=[1], rpc=False)
    client.start()
    assert b"".join(client.data_to_send()) == unhex(HANDSHAKE["client_hello_frame_hex"])


def test_server_reply_to_reference_hello_is_byte_exact() -> None:
    server = Connection(Role.SERVER, peer_id="peer-1")
    events = server.receive_data(unhex(HANDSHAKE["client_hello_frame_hex"]))
    assert b"".join(server.data_to_send()) == unhex(HANDSHAKE["server_reply_frame_hex"])
    assert isinstance(events[0], HandshakeComplete) and events[0].rpc is False
    assert server.channels == (1,)


def test_client_accepts_reference_reply() -> None:
    client = Connection(Role.CLIENT, channels=[1], rpc=False)
    client.start()
    client.data_to_send()
    events = client.receive_data(unhex(HANDSHAKE["server_reply_frame_hex"]))
    assert isinstance(events[0], HandshakeComplete)
    assert client.peer_id == "peer-1" and client.channels == (1,)


@pytest.mark.parametrize("case", HANDSHAKE["rejected_cases"], ids=lambda c: c["case"])
def test_rejected_cases(case: dict[str, Any]) -> None:
    server = Connection(Role.SERVER)
    with pytest.raises((HandshakeError, FrameError)):
        server.receive_data(unhex(case["client_sends_hex"]))
    assert server.data_to_send() == []  # the reference closes without an error frame


@pytest.mark.parametrize("case", HANDSHAKE["version_cases"], ids=lambda c: f"{c['server']}-{c['client']}")
def test_version_rule(case: dict[str, Any]) -> None:
    try:
        accepted = versions_compatible(case["server"], case["client"])
    except HandshakeError:
        accepted = False
    assert accepted is case["accepted"]


def _hello(**fields: Any) -> bytes:
    document = {"protocol": "ipcprims", "version": "1.0", "channels": [1], **fields}
    return encode_frame(0, json.dumps(document).encode())


def test_channels_deduplicated_in_order_and_intersected() -> None:
    server = Connection(Role.SERVER, channels=[1, 2, 3, 4])
    server.receive_data(_hello(channels=[3, 1, 3, 999, 1]))
    assert server.channels == (3, 1)


@pytest.mark.parametrize(
    "fields",
    [
        {"channels": []},
        {"channels": [999]},
        {"channels": list(range(1, 258))},
        {"channels": ["1"]},
        {"protocol": ""},
        {"protocol": "x" * 33},
        {"protocol": "other"},
        {"version": "1"},
        {"version": "1.0.0"},
        {"version": "x" * 17},
        {"auth_token": ""},
        {"auth_token": "t" * 4097},
    ],
)
def test_field_limits_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(HandshakeError):
        Connection(Role.SERVER).receive_data(_hello(**fields))


def test_field_limits_at_the_edge_accepted() -> None:
    server = Connection(Role.SERVER, channels=range(1, 257))
    server.receive_data(_hello(channels=list(range(1, 257)), auth_token="t" * 4096))
    assert len(server.channels) == 256
    assert server.peer_hello is not None and server.peer_hello.auth_token == "t" * 4096
    assert "t" * 10 not in repr(server.peer_hello)  # the token is never printed


def test_handshake_frame_size_at_and_past_limit() -> None:
    limit = Limits().handshake_max_payload
    padding = limit - len(_hello(pad="")[8:])
    at_limit = _hello(pad="p" * padding)
    assert len(at_limit) - 8 == limit
    Connection(Role.SERVER).receive_data(at_limit)
    past_limit = _hello(pad="p" * (padding + 1))
    with pytest.raises(FrameError):
        Connection(Role.SERVER).receive_data(past_limit[:8])


def test_pipelined_hello_and_frame() -> None:
    server = Connection(Role.SERVER, channels=[1, 2])
    events = server.receive_data(unhex(HANDSHAKE["client_hello_frame_hex"]) + encode_frame(1, b"hello"))
    assert events[1] == MessageReceived(1, b"hello")


def test_client_rejects_channels_it_did_not_request() -> None:
    client = Connection(Role.CLIENT, channels=[1], rpc=False)
    client.start()
    reply = {"protocol": "ipcprims", "version": "1.0", "channels": [1, 2], "peer_id": "p"}
    with pytest.raises(HandshakeError):
        client.receive_data(encode_frame(0, json.dumps(reply).encode()))


def _open_server(**kwargs: Any) -> Connection:
    server = Connection(Role.SERVER, **kwargs)
    server.receive_data(unhex(HANDSHAKE["client_hello_frame_hex"]))
    server.data_to_send()
    return server


def test_ping_gets_reference_pong() -> None:
    server = _open_server()
    assert server.receive_data(unhex(CONTROL["ping_frame_hex"])) == []
    assert b"".join(server.data_to_send()) == unhex(CONTROL["pong_frame_hex"])


def test_shutdown_request_gets_reference_ack() -> None:
    server = _open_server()
    events = server.receive_data(unhex(CONTROL["shutdown_request_frame_hex"]))
    assert events == [ShutdownRequested(force=False)]
    assert b"".join(server.data_to_send()) == unhex(CONTROL["shutdown_ack_frame_hex"])


def test_pong_measures_round_trip() -> None:
    now = [10.0]
    server = _open_server(clock=lambda: now[0])
    server.send_ping()
    now[0] = 10.25
    [event] = server.receive_data(unhex(CONTROL["pong_frame_hex"]))
    assert isinstance(event, PongReceived) and event.round_trip == pytest.approx(0.25)


@pytest.mark.parametrize(
    "payload", [b'{"type":"dance"}', b"not json", b"[1]"], ids=["unknown", "not-json", "not-object"]
)
def test_bad_control_disconnects(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        _open_server().receive_data(encode_frame(0, payload))


def test_frame_on_unnegotiated_channel_disconnects() -> None:
    with pytest.raises(ProtocolError):
        _open_server().receive_data(encode_frame(2, b"x"))


def test_control_flood_at_and_past_limit() -> None:
    ping = unhex(CONTROL["ping_frame_hex"])
    server = _open_server(limits=Limits(control_frames_per_second=10), clock=lambda: 5.0)
    server.receive_data(ping * 10)
    with pytest.raises(ProtocolError):
        server.receive_data(ping)


def test_control_rate_window_refills() -> None:
    now = [5.0]
    server = _open_server(limits=Limits(control_frames_per_second=10), clock=lambda: now[0])
    ping = unhex(CONTROL["ping_frame_hex"])
    server.receive_data(ping * 10)
    now[0] = 6.0
    server.receive_data(ping * 10)


def test_parse_hello_keeps_extension() -> None:
    hello = parse_hello(b'{"protocol":"ipcprims","version":"1.0","channels":[1],"ipfi":{"v":1}}', is_reply=False)
    assert hello.extension == {"v": 1}
