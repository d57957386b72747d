"""Frames against the bytes observed from the real ipcprims (shared/vectors/ipcprims.json)."""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipfi.core.errors import FrameTooLarge, InvalidMagic
from ipfi.core.frames import (
    BINARY_AHEAD,
    DEFAULT_MAX_PAYLOAD,
    HEADER_SIZE,
    LARGE_FRAME,
    FrameDecoder,
    PayloadWithBinary,
    encode_frame,
    frame_header,
)

from .conftest import load_vectors, unhex

VECTORS = load_vectors("ipcprims.json")


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: f"ch{c['channel']}")
def test_encode_matches_reference(case: dict[str, Any]) -> None:
    assert encode_frame(case["channel"], unhex(case["payload_hex"])) == unhex(case["frame_hex"])


def _decode_all(data: bytes, max_payload: int, chunk: int | None = None) -> tuple[str, list[Any], bytes]:
    decoder = FrameDecoder(max_payload)
    frames: list[Any] = []
    try:
        if chunk is None:
            frames += decoder.feed(data)
        else:
            for start in range(0, len(data), chunk):
                frames += decoder.feed(data[start : start + chunk])
    except InvalidMagic:
        return "error:invalid_magic", frames, b""
    except FrameTooLarge:
        return "error:payload_too_large", frames, b""
    return ("frames" if frames else "need_more"), frames, decoder.leftover()


@pytest.mark.parametrize("chunk", [None, 1, 3])
@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["case"])
def test_decode_matches_reference(case: dict[str, Any], chunk: int | None) -> None:
    result, frames, leftover = _decode_all(unhex(case["input_hex"]), case["max"], chunk)
    assert result == case["result"]
    if result == "frames":
        expected = [(f["channel"], unhex(f["payload_hex"])) for f in case["frames"]]
        assert frames == expected
        assert leftover == unhex(case.get("leftover_hex", ""))


@pytest.mark.parametrize("case", VECTORS["stream_eof"], ids=lambda c: c["case"])
def test_eof_cases_leave_no_frame(case: dict[str, Any]) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(unhex(case["input_hex"])) == []
    assert decoder.leftover() == unhex(case["input_hex"])  # what EOF cuts off: connection_closed


def test_limit_is_inclusive() -> None:
    decoder = FrameDecoder(max_payload=4)
    assert decoder.feed(encode_frame(1, b"abcd")) == [(1, b"abcd")]
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_payload=4).feed(encode_frame(1, b"abcde")[:8])


frames_strategy = st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), min_size=1, max_size=12)


@given(frames=frames_strategy, cuts=st.lists(st.integers(0, 4000), max_size=20))
def test_any_split_gives_the_same_frames(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(channel, payload) for channel, payload in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    decoder = FrameDecoder()
    decoded = []
    previous = 0
    for point in [*points, len(stream)]:
        decoded += decoder.feed(stream[previous:point])
        previous = point
    assert decoded == frames
    assert decoder.buffered == 0


@given(frames=frames_strategy)
def test_one_byte_at_a_time(frames: list[tuple[int, bytes]]) -> None:
    stream = b"".join(encode_frame(channel, payload) for channel, payload in frames)
    decoder = FrameDecoder()
    decoded = []
    for i in range(len(stream)):
        decoded += decoder.feed(stream[i : i + 1])
    assert decoded == frames


LARGE_STREAM = encode_frame(2, b"a") + encode_frame(3, bytes(range(256)) * 1200) + encode_frame(4, b"bc")


@given(cuts=st.lists(st.integers(0, len(LARGE_STREAM)), max_size=12))
def test_large_frames_fill_in_place_whatever_the_chunking(cuts: list[int]) -> None:
    decoder = FrameDecoder()
    frames: list[tuple[int, Any]] = []
    previous = 0
    for point in [*sorted(cuts), len(LARGE_STREAM)]:
        frames += decoder.feed(LARGE_STREAM[previous:point])
        previous = point
    assert frames == [(2, b"a"), (3, bytes(range(256)) * 1200), (4, b"bc")]
    assert decoder.buffered == 0


def test_a_large_frame_cut_short_is_reported_whole() -> None:
    large = encode_frame(3, b"z" * 300_000)
    decoder = FrameDecoder()
    assert decoder.feed(large[:100_000]) == []
    assert decoder.buffered == 100_000
    assert decoder.leftover() == large[:100_000]  # what EOF would cut off
    [(channel, payload)] = decoder.feed(large[100_000:])
    assert channel == 3 and isinstance(payload, bytearray) and payload == b"z" * 300_000


def _large_frame_in_two_reads(decoder: FrameDecoder, frame: bytes) -> bytes | bytearray:
    [(_, payload)] = decoder.feed(frame[:1000]) + decoder.feed(frame[1000:])
    return payload


def test_a_large_frame_reuses_the_last_ones_memory_only_once_nothing_refers_to_it() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(5, bytes(range(256)) * 1200)  # 300 kB: past LARGE_FRAME
    first = _large_frame_in_two_reads(decoder, frame)
    first_id = id(first)
    del first
    second = _large_frame_in_two_reads(decoder, frame)
    assert id(second) == first_id  # dropped: its memory is used again
    view = memoryview(second)
    third = _large_frame_in_two_reads(decoder, frame)
    assert third is not second  # still viewed: left alone
    assert view == frame[8:] and third == frame[8:]


def test_a_large_frame_is_received_in_place() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(7, bytes(range(256)) * 1200)
    assert decoder.fill_target() is None
    assert decoder.feed(frame[:1000]) == []
    position = 1000
    frames: list[tuple[int, bytes | bytearray]] = []
    while not frames:
        target = decoder.fill_target()
        assert target is not None and 0 < len(target) <= len(frame) - position
        count = min(len(target), 7000)
        target[:count] = frame[position : position + count]
        position += count
        frames = decoder.filled(count)
        assert bool(frames) is (position == len(frame)) and decoder.idle is bool(frames)
    [(channel, payload)] = frames
    assert channel == 7 and payload == frame[8:] and decoder.fill_target() is None


def test_a_target_still_viewed_when_the_buffer_must_grow_moves_the_frame_to_new_memory() -> None:
    decoder = FrameDecoder()
    payload = bytes(range(256)) * 4096  # 1 MiB: the buffer starts at 256 KiB and must grow
    frame = encode_frame(3, payload)
    decoder.feed(frame[:HEADER_SIZE])
    held = []
    position = HEADER_SIZE
    while position < len(frame):
        target = decoder.fill_target()
        assert target is not None
        held.append(target)  # never released: growing in place is impossible
        target[:] = frame[position : position + len(target)]
        position += len(target)
        done = decoder.filled(len(target))
    assert done == [(3, payload)]


def test_memory_follows_the_bytes_received_not_the_length_announced() -> None:
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        decoder.feed(frame_header(1, DEFAULT_MAX_PAYLOAD) + bytes(1000))
        held, _ = tracemalloc.get_traced_memory()
        assert decoder.buffered == HEADER_SIZE + 1000
        assert held < 2 * LARGE_FRAME  # not the 16 MiB the header announced
        for _ in range(4):
            decoder.feed(bytes(LARGE_FRAME))
        held, _ = tracemalloc.get_traced_memory()
        assert held < 3 * (4 * LARGE_FRAME + 1000)
    finally:
        tracemalloc.stop()


def _split_at(offset: int) -> Any:
    """A split_at that splits every frame at ``offset`` (the protocol core finds a real binary)."""
    return lambda channel, head, length: offset if len(head) >= offset else None


def _receive_in_place(decoder: FrameDecoder, frame: bytes, first: int, step: int, hold: bool = False) -> Any:
    """``frame`` fed as a driver receives it: ``first`` bytes through feed(), the rest written into
    fill_target() ``step`` at a time (each view kept alive to the end with ``hold``)."""
    frames = decoder.feed(frame[:first])
    position = first
    held = []
    while not frames:
        target = decoder.fill_target()
        assert target is not None
        count = min(len(target), step)
        target[:count] = frame[position : position + count]
        position += count
        if hold:
            held.append(target)
        del target
        frames = decoder.filled(count)
    assert position == len(frame)
    return frames


@pytest.mark.parametrize("step", [1000, 64 * 1024, 4 * 1024 * 1024])
@pytest.mark.parametrize("hold", [False, True], ids=["released", "views-held"])
def test_a_split_frame_ends_in_a_bytes_of_its_own_however_it_arrives(step: int, hold: bool) -> None:
    payload = bytes(range(256)) * 12 * 1024  # 3 MiB: past what the first read lets the binary have at once
    decoder = FrameDecoder()
    decoder.split_at = _split_at(100)
    [(channel, received)] = _receive_in_place(decoder, encode_frame(5, payload), 2000, step, hold)
    assert channel == 5 and decoder.idle and decoder.fill_target() is None
    assert type(received) is PayloadWithBinary and received == payload[:100]
    assert type(received.binary) is bytes and received.binary == payload[100:]


def test_a_split_frame_fed_in_pieces_is_the_same_and_a_frame_fed_whole_is_not_split() -> None:
    payload = bytes(range(256)) * 2048
    frame = encode_frame(5, payload)
    decoder = FrameDecoder()
    decoder.split_at = _split_at(10)
    frames = []
    for start in range(0, len(frame), 100_000):  # pushed (feed), as a transport that pushes bytes
        frames += decoder.feed(frame[start : start + 100_000])
    frames += decoder.feed(frame)  # whole in one read: nothing to receive in place
    [(_, first), (_, second)] = frames
    assert type(first) is PayloadWithBinary and first == payload[:10] and first.binary == payload[10:]
    assert type(second) is bytes and second == payload
    assert decoder.idle


def test_no_split_where_split_at_finds_no_binary() -> None:
    payload = bytes(512 * 1024)
    decoder = FrameDecoder()
    decoder.split_at = lambda channel, head, length: None
    [(_, received)] = _receive_in_place(decoder, encode_frame(1, payload), 5000, 100_000)
    assert type(received) is bytearray and received == payload


def test_a_split_frame_cut_short_is_left_over_whole() -> None:
    frame = encode_frame(1, bytes(range(256)) * 2048)
    decoder = FrameDecoder()
    decoder.split_at = _split_at(40)
    decoder.feed(frame[:3000])
    target = decoder.fill_target()
    assert target is not None
    target[:5000] = frame[3000:8000]
    del target
    decoder.filled(5000)
    assert decoder.buffered == 8000 and decoder.leftover() == frame[:8000]


def test_a_split_binary_takes_memory_as_its_bytes_arrive() -> None:
    decoder = FrameDecoder()
    decoder.split_at = _split_at(20)
    tracemalloc.start()
    try:
        decoder.feed(frame_header(1, DEFAULT_MAX_PAYLOAD) + bytes(1000))
        held, _ = tracemalloc.get_traced_memory()
        assert held < 2 * LARGE_FRAME  # not the 16 MiB the header announced
        for _ in range(3):
            decoder.feed(bytes(LARGE_FRAME))
            held, _ = tracemalloc.get_traced_memory()
            assert held <= 4 * decoder.buffered + 4096  # grown in proportion to what arrived
        held, _ = tracemalloc.get_traced_memory()
        assert held < 4 * 1024 * 1024  # with 768 KiB received, of the 16 MiB announced
        decoder = FrameDecoder()
        decoder.split_at = _split_at(20)
        decoder.feed(frame_header(1, DEFAULT_MAX_PAYLOAD) + bytes(64 * 1024))
        held, _ = tracemalloc.get_traced_memory()
        assert held <= BINARY_AHEAD * 64 * 1024 + 4096  # a first read's worth, times BINARY_AHEAD at most
    finally:
        tracemalloc.stop()


def test_a_split_binary_is_received_into_memory_not_cleared_first_or_cleared_without_ctypes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bytes(size) zeroes its memory, which costs what receiving in place saves: the binary's
    ``bytes`` is made uninitialised through ctypes (a prototype of its own, not pythonapi's), or
    zeroed where ctypes is missing; either way only what was received is handed out."""
    import ctypes

    from ipfi.core import frames

    payload = bytes(range(256)) * 4096
    try:
        for ctypes_module in (ctypes, None):
            monkeypatch.setitem(sys.modules, "ctypes", ctypes_module)
            frames._bytes_maker.cache_clear()
            made = frames._unfilled_bytes(300_000)
            assert type(made) is bytes and len(made) == 300_000
            if ctypes_module is None:
                assert made == bytes(300_000)
            decoder = FrameDecoder()
            decoder.split_at = _split_at(30)
            [(_, received)] = _receive_in_place(decoder, encode_frame(1, payload), 2000, 50_000)
            assert received.binary == payload[30:]
    finally:
        frames._bytes_maker.cache_clear()  # (made again with ctypes back, at the next use)
    assert ctypes.pythonapi.PyBytes_FromStringAndSize.restype is not ctypes.py_object
