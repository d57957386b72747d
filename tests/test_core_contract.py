"""The core's error contract: for any bytes, in any state, either role, ``receive_data`` raises only
:class:`RemoteProtocolError` (or a subclass) while open and :class:`ConnectionLost` once closed.

Hypothesis generates hostile input at each layer: raw bytes, frames with arbitrary payloads, hellos
with arbitrary JSON (deep nesting included), and RPC messages with arbitrary kinds, ids, credits and
fragments, fed whole and in arbitrary chunks, before and after the handshake.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfi.core import wire
from ipfi.core.connection import Connection, Role
from ipfi.core.errors import ConnectionLost, RemoteProtocolError
from ipfi.core.frames import encode_frame
from ipfi.core.limits import Limits

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = Limits(max_frame_payload=4096, max_message=16384, max_concurrent_calls=4, stream_window=4)


def fresh(role: Role, codec: str = "msgpack") -> Connection:
    connection = Connection(
        role, limits=LIMITS, codecs=[codec] if role is Role.CLIENT else ("msgpack", "json", "raw", "cbor")
    )
    connection.start()
    return connection


def opened(role: Role, codec: str = "msgpack") -> Connection:
    """A connection of ``role`` after a real handshake with a well-behaved peer."""
    client = fresh(Role.CLIENT, codec)
    server = fresh(Role.SERVER)
    server.receive_data(b"".join(client.data_to_send()))
    client.receive_data(b"".join(server.data_to_send()))
    assert client.rpc and server.rpc
    return client if role is Role.CLIENT else server


def feed_obeying_contract(connection: Connection, chunks: list[bytes]) -> None:
    """Feed every chunk; the only exceptions allowed are the documented ones."""
    for chunk in chunks:
        try:
            connection.receive_data(chunk)
            if connection.reading_paused:
                connection.message_taken(0)
        except ConnectionLost:
            assert connection.closed_here or connection.state.name == "CLOSED"
            return
        except RemoteProtocolError:
            connection.close()  # what a driver does; later input must then raise ConnectionLost
            try:
                connection.receive_data(b"IP")
            except ConnectionLost:
                return
            raise AssertionError("input after a protocol error did not raise ConnectionLost") from None


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return [piece for piece in pieces if piece]


roles = st.sampled_from([Role.CLIENT, Role.SERVER])
codecs = st.sampled_from(["msgpack", "json", "raw", "cbor"])
cuts = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=8)
channels = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 256]), st.integers(min_value=0, max_value=0xFFFF))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def frame(channel: int, payload: bytes) -> bytes:
    return encode_frame(channel, payload)


def rpc_message() -> st.SearchStrategy[bytes]:
    """RPC messages with any kind, id, flags, timeout, name and body, valid-looking or not."""
    ids = st.one_of(st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=wire.MAX_ID))
    kinds = st.one_of(st.integers(min_value=0, max_value=0x12), st.integers(min_value=0, max_value=255))
    body = st.one_of(
        st.binary(max_size=64),
        json_values.map(msgpack.packb),
        st.lists(json_values, max_size=4).map(msgpack.packb),
    )
    calls = st.builds(
        lambda kind, call_id, flags, timeout, name, body: (
            wire.CALL_HEADER.pack(kind, call_id, flags, timeout, len(name)) + name + body
        ),
        st.sampled_from([wire.CALL, wire.NOTIFY]),
        ids,
        st.integers(min_value=0, max_value=255),
        st.integers(min_value=0, max_value=wire.MAX_TIMEOUT_MS),
        st.binary(max_size=12),
        body,
    )
    others = st.builds(lambda kind, call_id, body: wire.ID_HEADER.pack(kind, call_id) + body, kinds, ids, body)
    credits = st.builds(
        lambda call_id, credit: wire.CREDIT_MESSAGE.pack(wire.CREDIT, call_id, credit),
        ids,
        st.integers(min_value=0, max_value=0xFFFFFFFF),
    )
    parts = st.builds(
        lambda last, body: bytes([wire.LAST_PART if last else wire.PART]) + body, st.booleans(), st.binary(max_size=64)
    )
    return st.one_of(calls, others, credits, parts, st.binary(max_size=32))


@SETTINGS
@given(role=roles, data=st.binary(max_size=512), cut=cuts, after_handshake=st.booleans())
def test_arbitrary_bytes(role: Role, data: bytes, cut: list[int], after_handshake: bool) -> None:
    connection = opened(role) if after_handshake else fresh(role)
    feed_obeying_contract(connection, chunked(data, cut))


@SETTINGS
@given(
    role=roles,
    frames=st.lists(st.tuples(channels, st.binary(max_size=96)), max_size=6),
    cut=cuts,
    after_handshake=st.booleans(),
)
def test_valid_frames_with_arbitrary_payloads(
    role: Role, frames: list[tuple[int, bytes]], cut: list[int], after_handshake: bool
) -> None:
    connection = opened(role) if after_handshake else fresh(role)
    feed_obeying_contract(connection, chunked(b"".join(frame(*pair) for pair in frames), cut))


def hello_documents() -> st.SearchStrategy[Any]:
    good_extension = st.fixed_dictionaries(
        {"v": st.sampled_from([1, 2, "1", None]), "codecs": st.one_of(st.just(["msgpack"]), json_values)},
        optional={
            "window": json_values | st.integers(),
            "max_frame": json_values | st.integers(),
            "max_message": json_values | st.integers(),
            "codec": st.sampled_from(["msgpack", "json", "raw", 3]),
        },
    )
    return st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"protocol": st.sampled_from(["ipcprims", "x", 1]), "version": st.sampled_from(["1.0", "1.9", "2.0", 1])},
            optional={
                "channels": st.one_of(st.lists(channels, max_size=4), json_values),
                "peer_id": json_values,
                "auth_token": json_values,
                "ipfi": st.one_of(good_extension, json_values),
            },
        ),
    )


@SETTINGS
@given(role=roles, document=hello_documents(), cut=cuts)
def test_arbitrary_hellos(role: Role, document: Any, cut: list[int]) -> None:
    connection = fresh(role)
    feed_obeying_contract(connection, chunked(frame(0, json.dumps(document).encode()), cut))


@SETTINGS
@given(role=roles, depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_nesting_in_a_hello_and_a_control_frame(role: Role, depth: int, opener: str) -> None:
    nested = (opener * depth).encode()
    feed_obeying_contract(fresh(role), [frame(0, nested)])
    feed_obeying_contract(opened(role), [frame(0, nested)])


@SETTINGS
@given(role=roles, document=json_values, kind=st.sampled_from(["ping", "pong", [], {}, None, 7]))
def test_arbitrary_control_frames(role: Role, document: Any, kind: Any) -> None:
    feed_obeying_contract(opened(role), [frame(0, json.dumps({"type": kind, "payload": document}).encode())])
    feed_obeying_contract(opened(role), [frame(0, json.dumps(document).encode())])


@SETTINGS
@given(role=roles, codec=codecs, messages=st.lists(rpc_message(), min_size=1, max_size=8), cut=cuts)
def test_arbitrary_rpc_messages(role: Role, codec: str, messages: list[bytes], cut: list[int]) -> None:
    connection = opened(role, codec)
    feed_obeying_contract(connection, chunked(b"".join(frame(wire.RPC_CHANNEL, m) for m in messages), cut))


@SETTINGS
@given(
    role=roles, codec=st.sampled_from(["msgpack", "json", "cbor"]), depth=st.integers(min_value=100, max_value=100_000)
)
def test_deeply_nested_arguments(role: Role, codec: str, depth: int) -> None:
    connection = opened(role, codec)
    body = {"msgpack": b"\x91" * depth + b"\xc0", "json": b"[" * depth, "cbor": b"\x81" * depth + b"\xf6"}[codec]
    message = wire.CALL_HEADER.pack(wire.CALL, 1 if role is Role.SERVER else 2, 0, 0, 1) + b"f" + body
    feed_obeying_contract(connection, [frame(wire.RPC_CHANNEL, message)])


def test_a_control_frame_whose_type_is_a_list_is_a_protocol_error() -> None:
    connection = opened(Role.SERVER)
    try:
        connection.receive_data(frame(0, b'{"type": []}'))
    except RemoteProtocolError as error:
        assert "control" in str(error)
    else:
        raise AssertionError("accepted")


def test_a_hello_that_is_not_utf8_is_refused() -> None:
    """The spec says UTF-8; Python's json.loads would also take UTF-16 and a BOM."""
    hello = {"protocol": "ipcprims", "version": "1.0", "channels": [1]}
    for encoded in (json.dumps(hello).encode("utf-16"), b"\xef\xbb\xbf" + json.dumps(hello).encode()):
        connection = fresh(Role.SERVER)
        try:
            connection.receive_data(frame(0, encoded))
        except RemoteProtocolError as error:
            assert "UTF-8" in str(error)
        else:
            raise AssertionError(f"accepted {encoded[:8]!r}")


def test_struct_sizes_used_above() -> None:
    assert struct.calcsize("<BIBIH") == wire.CALL_HEADER.size


def test_strings_a_hello_carries_must_encode_and_print() -> None:
    """A lone surrogate or a control character (an ANSI escape in a log line) is refused."""
    for peer_id in ("\ud800", "\x1b[31mred", "line\nbreak"):
        client = fresh(Role.CLIENT)
        client.data_to_send()
        reply = {"protocol": "ipcprims", "version": "1.0", "channels": [1], "peer_id": peer_id}
        try:
            client.receive_data(frame(0, json.dumps(reply).encode()))
        except RemoteProtocolError as error:
            assert "peer_id" in str(error) and "\x1b" not in str(error)
        else:
            raise AssertionError(f"accepted {peer_id!r}")
