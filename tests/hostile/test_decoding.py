"""Decoding cannot be used to amplify memory: a message's decoded form is bounded relative to its size;
and the CBOR codec builds nothing but plain values from what a peer sends."""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Any

import cbor2
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfi.core.cbor_codec import CborCodec
from ipfi.core.codecs import BUDGETED, BYTES_PER_CONTAINER, LARGE_BINARY, MsgpackCodec
from ipfi.core.errors import RemoteProtocolError

SIZE = 1 << 18


def peak_while(decode: Any, data: bytes) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        try:
            value: Any = decode(data)
        except RemoteProtocolError as error:
            value = error
        return tracemalloc.get_traced_memory()[1], value
    finally:
        tracemalloc.stop()


def array_of(count: int, item: bytes) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + item * count


@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize("container", [b"\x90", b"\x80", b"\x91\x90"])
def test_a_message_of_empty_containers_is_refused_within_a_bounded_peak(views: bool, container: bytes) -> None:
    codec = MsgpackCodec(binary_views=views)
    data = array_of(SIZE // len(container), container)
    peak, outcome = peak_while(codec.decode_args, data)
    assert isinstance(outcome, RemoteProtocolError) and "list or map per" in str(outcome)
    assert peak < 20 * len(data), f"{peak / len(data):.1f}x the message"  # unbounded: 64x


@pytest.mark.parametrize("views", [False, True])
def test_structured_data_within_the_budget_decodes(views: bool) -> None:
    records = [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(SIZE // 32)]
    data = msgpack.packb([records])
    assert len(data) >= BUDGETED and len(data) // BYTES_PER_CONTAINER > 2 * len(records)
    assert MsgpackCodec(binary_views=views).decode_args(data) == [records]


def test_the_budget_is_inclusive() -> None:
    """One list or map per BYTES_PER_CONTAINER bytes passes; one more is refused."""
    count = BUDGETED // BYTES_PER_CONTAINER
    header = b"\xdd" + count.to_bytes(4, "big")  # 5 bytes: the outer list's budget share is 1
    at = header + b"\x93\x01\x02\x03" * count  # [1, 2, 3]: 4 bytes, one list each
    assert len(at) // BYTES_PER_CONTAINER == count + 1  # exactly the lists it holds
    assert MsgpackCodec().decode_args(at) == [[1, 2, 3]] * count
    past = header + b"\x93\x01\x02\x03" * (count - 1) + b"\x92\x90\xa1x"  # [[], "x"]: 4 bytes, 2 lists
    with pytest.raises(RemoteProtocolError, match="list or map per"):
        MsgpackCodec().decode_args(past)


@pytest.mark.parametrize("container", [b"\x80", b"\xa0", b"\x81\x80"])
def test_cbor_containers_are_budgeted_as_msgpack_ones(container: bytes) -> None:
    codec = CborCodec()
    count = SIZE // len(container)
    data = b"\x9a" + count.to_bytes(4, "big") + container * count
    peak, outcome = peak_while(codec.decode_args, data)
    assert isinstance(outcome, RemoteProtocolError) and "array or map per" in str(outcome)
    assert peak < 20 * len(data), f"{peak / len(data):.1f}x the message"
    # At the budget (one per 4 bytes: [1, 2, 3] is 4 bytes) it decodes; one container more does not.
    count = BUDGETED // BYTES_PER_CONTAINER
    at = b"\x9a" + count.to_bytes(4, "big") + b"\x83\x01\x02\x03" * count  # (the outer array: the 5-byte header's)
    assert codec.decode_args(at) == [[1, 2, 3]] * count
    with pytest.raises(RemoteProtocolError, match="array or map per"):
        codec.decode_args(at[:-4] + b"\x82\x80\x61x")
    # A large binary's bytes that look like array headers are not counted as arrays.
    blob = bytes([0x80]) * SIZE
    assert codec.decode_args(cbor2.dumps([blob, [1]])) == [blob, [1]]


@pytest.mark.parametrize(
    ("tag", "content"),
    [(35, "(a+)+$"), (36, "Content-Type: text/plain\n\nhi"), (258, [1, 2]), (30, [1, 3]), (260, b"\x7f\0\0\1")],
)
def test_cbor_tags_that_would_build_objects_are_refused(tag: int, content: Any) -> None:
    with pytest.raises(RemoteProtocolError, match=f"CBOR tag {tag} is not carried"):
        CborCodec().decode_args(cbor2.dumps([cbor2.CBORTag(tag, content)]))
    shared_cycle = bytes([0x81, 0xD8, 28, 0x81, 0xD8, 29, 0x00])  # [shareable([sharedref(0)])]
    with pytest.raises(RemoteProtocolError, match="not carried"):
        CborCodec().decode_args(shared_cycle)
    assert CborCodec().decode_args(cbor2.dumps([cbor2.CBORTag(9999, "x")])) == [cbor2.CBORTag(9999, "x")]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256))
def test_any_bytes_decode_as_cbor_or_are_refused_cleanly(data: bytes) -> None:
    codec = CborCodec()
    for decode in (codec.decode_value, codec.decode_args, codec.decode_items):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)


_SMALL_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(_SMALL_VALUES, max_size=4) | st.none(),
    size=st.integers(LARGE_BINARY - 2, LARGE_BINARY + 300),
    cut=st.integers(-30, 400),
)
def test_a_message_split_before_its_last_binary_decodes_as_the_whole(
    before: list[Any] | None, size: int, cut: int
) -> None:
    """Wherever a reader's first bytes end, a split is found only where a binary ends the value,
    and decoding the two pieces gives what decoding the whole gives, with the binary as it came."""
    codec = MsgpackCodec()
    binary = bytes(range(256)) * (size // 256) + bytes(size % 256)
    value = binary if before is None else [*before, binary]
    data = msgpack.packb(value, use_bin_type=True)
    start = codec.binary_start(memoryview(data)[: max(0, len(data) - size + cut)], len(data))
    if size < LARGE_BINARY or cut < 0:  # a small binary, or its header not all there: no split
        assert start is None
        return
    assert start == len(data) - size
    tail = data[start:]
    decoded = codec.decode_with_binary(data[:start], tail, args=before is not None)
    assert decoded == codec.decode_value(data)
    assert (decoded if before is None else decoded[-1]) is tail


@settings(max_examples=300, deadline=None)
@given(head=st.binary(max_size=64), extra=st.integers(0, 2 * LARGE_BINARY))
def test_any_bytes_before_a_binary_are_split_or_not_and_decode_or_are_refused_cleanly(head: bytes, extra: int) -> None:
    codec = MsgpackCodec()
    length = len(head) + extra
    start = codec.binary_start(memoryview(head), length)
    if start is None:
        return
    assert 0 < start <= len(head) and length - start >= LARGE_BINARY
    with contextlib.suppress(RemoteProtocolError):
        codec.decode_with_binary(head[:start], bytes(length - start), args=True)
