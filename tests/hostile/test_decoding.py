"""Decoding cannot be used to amplify memory: a message's decoded form is bounded relative to its size."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgpack
import pytest

from ipfi.core.codecs import BUDGETED, BYTES_PER_CONTAINER, MsgpackCodec
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
