"""``binary_views``: large binaries arrive as read-only views of the received message, and such views
are sent without a copy, over both drivers and both event loops."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipfi
import ipfi.sync
from ipfi.aio.peer import _FORGETS_TO_PAUSE, _PacedWriter, _writelines_replacement
from ipfi.core.codecs import LARGE_BINARY, MsgpackCodec, RawCodec
from ipfi.core.errors import ProtocolError

BIG = bytes(range(256)) * (LARGE_BINARY // 256)  # exactly at the threshold
JUST_UNDER = BIG[:-1]

iface = ipfi.Interface()


@iface.procedure
def kinds(*values: Any, **named: Any) -> list[str]:
    return [type(value).__name__ for value in (*values, *named.values())]


@iface.procedure
def echo(value: Any) -> Any:
    return value


def _check_kinds(found: list[str]) -> None:
    # At the threshold a view; one byte under, bytes; inside a keyword map, decoded as bytes.
    assert found == ["memoryview", "bytes", "int", "bytes"]


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_asyncio_views_in_and_out(sock_path: str, use_uvloop: bool) -> None:
    if use_uvloop:
        pytest.importorskip("uvloop")

    async def scenario() -> None:
        async with await ipfi.serve(f"unix:{sock_path}", iface, binary_views=True):
            async with ipfi.connect(f"unix:{sock_path}", binary_views=True) as peer:
                _check_kinds(await peer.call("kinds", BIG, JUST_UNDER, 3, named=BIG))
                for size in (LARGE_BINARY, 16 * 1024 * 1024):  # one frame; two fragments
                    blob = (BIG * (size // len(BIG)))[:size]
                    result = await peer.call("echo", blob)
                    assert type(result) is memoryview and result.readonly and result == blob
                    assert await peer.call("echo", result) == blob  # a view is sent as it is
            async with ipfi.connect(f"unix:{sock_path}") as plain:
                assert type(await plain.call("echo", BIG)) is bytes  # off by default

    ipfi.run(scenario(), use_uvloop=use_uvloop)


def test_blocking_views_in_and_out(sock_path: str) -> None:
    with ipfi.sync.serve(f"unix:{sock_path}", iface, binary_views=True):
        with ipfi.sync.connect(f"unix:{sock_path}", binary_views=True) as peer:
            _check_kinds(peer.call("kinds", BIG, JUST_UNDER, 3, named=BIG))
            blob = BIG * 256  # 16 MiB
            result = peer.call("echo", blob)
            assert type(result) is memoryview and result == blob
            assert peer.call("echo", result) == blob


async def test_raw_codec_views(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", iface, binary_views=True):
        async with ipfi.connect(f"unix:{sock_path}", codecs=["raw"], binary_views=True) as peer:
            result = await peer.call("echo", BIG)
            assert type(result) is memoryview and result == BIG
            assert type(await peer.call("echo", JUST_UNDER)) is bytes


def test_only_read_only_views_are_sent_in_place() -> None:
    codec = MsgpackCodec()
    readonly = memoryview(BIG)
    writable = memoryview(bytearray(BIG))
    assert isinstance(codec.encode_args([readonly]), list)
    assert isinstance(codec.encode_args([writable]), bytes)  # it could change before the write
    assert isinstance(codec.encode_value(readonly[:-1]), bytes)  # under the threshold
    assert isinstance(RawCodec().encode_value(readonly), list)
    assert isinstance(RawCodec().encode_value(writable), bytes)


_scalars = st.one_of(
    st.integers(-(2**63), 2**64 - 1), st.text(max_size=20), st.none(), st.booleans(), st.binary(max_size=40)
)
_values = st.one_of(
    _scalars,
    st.sampled_from([BIG, JUST_UNDER, BIG * 3]),
    st.lists(_scalars, max_size=5),
    st.dictionaries(st.text(max_size=5), _scalars, max_size=3),
)


def _as_bytes(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


@settings(max_examples=200, deadline=None)
@given(st.one_of(_values, st.lists(_values, max_size=6)))
def test_viewing_decoder_agrees_with_msgpack(value: Any) -> None:
    encoded = msgpack.packb(value, use_bin_type=True)
    expected = msgpack.unpackb(encoded, strict_map_key=False)
    decoded = MsgpackCodec(binary_views=True).decode_value(encoded)
    if isinstance(decoded, list) and isinstance(expected, list):
        assert [_as_bytes(item) for item in decoded] == expected
        for item in decoded:
            if isinstance(item, memoryview):
                assert len(item) >= LARGE_BINARY
    else:
        assert _as_bytes(decoded) == expected
    for cut in (1, len(encoded) // 2, len(encoded) - 1):
        if cut and len(encoded[:cut]) >= LARGE_BINARY:
            with pytest.raises(ProtocolError):
                MsgpackCodec(binary_views=True).decode_value(encoded[:cut])


def test_viewing_decoder_refuses_trailing_bytes() -> None:
    encoded = msgpack.packb([BIG], use_bin_type=True) + b"\x01"
    with pytest.raises(ProtocolError, match="after the value"):
        MsgpackCodec(binary_views=True).decode_value(encoded)


async def test_views_stay_valid_after_later_messages(sock_path: str) -> None:
    async with await ipfi.serve(f"unix:{sock_path}", iface, binary_views=True):
        async with ipfi.connect(f"unix:{sock_path}", binary_views=True) as peer:
            blobs = [bytes([n]) * (1024 * 1024) for n in range(4)]
            kept = [await peer.call("echo", blob) for blob in blobs]
            kept += await asyncio.gather(*(peer.call("echo", blob) for blob in blobs))
            assert kept == blobs + blobs


class _Feeding(asyncio.Protocol):
    """A protocol that feeds a paced writer as the transport drains, as the peer does."""

    writer: Any = None

    def resume_writing(self) -> None:
        if isinstance(self.writer, _PacedWriter):
            self.writer.feed()


async def test_standard_transports_write_large_pieces_apart_and_in_order() -> None:
    """asyncio's default writelines joins every piece into one copy; the peer's writer does not."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, protocol = await loop.connect_accepted_socket(_Feeding, ours)
    apart = protocol.writer = _writelines_replacement(transport)  # type: ignore[arg-type]
    # Python 3.12's socket transports write lists with sendmsg, without joining: nothing to work around,
    # but the pause their writelines forgets before 3.12.9 and 3.13.2 (see _writelines_replacement).
    assert (apart is None) == (sys.version_info >= (3, 12) and not _FORGETS_TO_PAUSE)
    write_frames = apart or transport.writelines
    large = memoryview(bytes(range(256)) * 1024).toreadonly()  # 256 KiB
    larger = bytes(range(251)) * 12_000  # ~3 MiB: slices, past what the socket takes at once
    pieces: list[Any] = [b"a", b"bc", large, b"d", large[1:], b"e", larger, b"f"]
    write_frames(pieces)
    expected = b"".join(bytes(piece) for piece in pieces)
    theirs.setblocking(False)
    received = bytearray()
    while len(received) < len(expected):
        try:
            received += theirs.recv(1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.001)
    assert received == expected
    transport.close()
    theirs.close()
