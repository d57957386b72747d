"""Fuzz of what a gateway parses before any service sees it: the client's hello (``HelloReader``)
and the frames after it (``FrameScanner``). Any bytes, cut anywhere, give the same answer as the
whole, or a typed error; nothing else escapes and nothing past a limit is kept."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ipfi.core.errors import FrameError, FrameTooLarge, HandshakeError
from ipfi.core.frames import CONTROL, encode_frame
from ipfi.core.handshake import Hello
from ipfi.core.relay import FrameScanner, HelloReader

MAX_HELLO = 512
MAX_PAYLOAD = 64


def _cuts(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in pieces at the offsets ``cuts`` (taken modulo its length, sorted)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in itertools.pairwise(points)]


def _read_hello(chunks: list[bytes]) -> tuple[Hello, bytes] | Exception | None:
    reader = HelloReader(MAX_HELLO)
    try:
        for index, chunk in enumerate(chunks):
            found = reader.feed(chunk)
            if found is not None:
                hello, rest = found
                return hello, rest + b"".join(chunks[index + 1 :])
    except HandshakeError as error:
        return error
    return None


def _scan(chunks: list[bytes], max_payload: int = MAX_PAYLOAD) -> int | Exception:
    scanner = FrameScanner(max_payload)
    try:
        return sum(scanner.feed(chunk) for chunk in chunks)
    except (FrameError, FrameTooLarge) as error:
        return error


def _same(first: object, second: object) -> bool:
    if isinstance(first, Exception) or isinstance(second, Exception):
        return type(first) is type(second) and str(first) == str(second)
    return first == second


_hello_documents = st.fixed_dictionaries(
    {"protocol": st.sampled_from(["ipcprims", "ipfi", ""]), "version": st.sampled_from(["1.0", "2.0", "x"])},
    optional={
        "channels": st.lists(st.integers(-1, 70_000), max_size=4),
        "auth_token": st.one_of(st.text(max_size=8), st.integers()),
        "ipfi": st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
        "forwarded_for": st.one_of(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3), st.text()),
    },
)
_first_frames = st.one_of(
    st.builds(  # JSON's white space makes a hello of any size: at, under and past the limit
        lambda document, padding: encode_frame(CONTROL, json.dumps(document).encode() + b" " * padding),
        _hello_documents,
        st.integers(0, MAX_HELLO),
    ),
    st.builds(encode_frame, st.integers(0, 300), st.binary(max_size=MAX_HELLO + 8)),
    st.binary(max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(first=_first_frames, after=st.binary(max_size=40), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_a_hello_read_in_any_pieces_is_the_hello_read_whole_or_a_handshake_error(
    first: bytes, after: bytes, cuts: list[int]
) -> None:
    stream = first + after
    whole = _read_hello([stream])
    assert _same(_read_hello(_cuts(stream, cuts)), whole)
    hello_size = int.from_bytes(stream[2:6], "little") if len(stream) >= 8 else 0
    if isinstance(whole, tuple):
        assert whole[1] == stream[8 + hello_size :]  # what follows the hello frame, all of it
    on_control = stream[:2] == b"IP" and stream[6:8] == b"\0\0"
    if on_control and hello_size > MAX_HELLO:
        assert isinstance(whole, HandshakeError)
        assert "over the limit" in str(whole)


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(st.builds(encode_frame, st.integers(0, 2**16 - 1), st.binary(max_size=MAX_PAYLOAD)), max_size=6),
    tail=st.binary(max_size=80),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_frames_scanned_in_any_pieces_count_as_scanned_whole_or_raise_a_frame_error(
    frames: list[bytes], tail: bytes, cuts: list[int]
) -> None:
    valid = b"".join(frames)
    assert _scan(_cuts(valid, cuts)) == len(frames)
    stream = valid + tail
    assert _same(_scan(_cuts(stream, cuts)), _scan([stream]))


@settings(max_examples=200, deadline=None)
@given(payload=st.integers(0, 3 * MAX_PAYLOAD), cut=st.integers(1, 16))
def test_the_scanner_refuses_a_frame_past_its_limit_from_the_header_alone(payload: int, cut: int) -> None:
    header = encode_frame(1, b"\0" * payload)[:8]
    outcome = _scan([header[:cut], header[cut:]])
    if payload > MAX_PAYLOAD:
        assert isinstance(outcome, FrameTooLarge)
    else:
        assert outcome == (payload == 0)
