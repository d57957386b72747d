"""The asyncio driver on uvloop, whose transports are not asyncio.Transport subclasses."""

from __future__ import annotations

import asyncio
import socket

import pytest

import ipfi

from .helpers import calc

pytest.importorskip("uvloop")


def test_rpc_streams_and_backpressure_on_uvloop(sock_path: str) -> None:
    async def scenario() -> None:
        limits = ipfi.Limits(max_queued_messages=4)
        async with await ipfi.serve(f"unix:{sock_path}", calc.iface, limits=limits) as server:
            async with ipfi.connect(f"unix:{sock_path}") as peer:
                assert await peer.call("add", 1, 2) == 3
                blob = bytes(range(256)) * 65536  # 16 MiB, handed over in the loop's chunks
                assert await peer.call("echo", blob) == blob
                assert [i async for i in peer.stream("count", 2000)] == list(range(2000))
                assert await peer.with_options(input=range(100)).call("total") == 4950
                for _ in range(2000):
                    peer.send(2, bytes(1024))
                while not server.connections:
                    await asyncio.sleep(0.01)
                [server_peer] = server.connections
                assert len([await server_peer.receive() for _ in range(2000)]) == 2000
                with pytest.raises(ipfi.DeadlineExceeded):
                    await peer.with_options(timeout=0.05).call("sleep", 5)
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")

    ipfi.run(scenario(), use_uvloop=True)


def test_each_procedure_sees_its_own_caller_on_uvloop(sock_path: str) -> None:
    ipfi.run(calc.callers_are_told_apart(f"unix:{sock_path}"), use_uvloop=True)


def test_uvloop_reads_large_frames_in_place_and_small_ones_pushed(sock_path: str) -> None:
    """A peer on uvloop switches its transport to reading in place for large frames, and back."""

    async def scenario() -> None:
        async with await ipfi.serve(f"unix:{sock_path}", calc.iface) as server:
            async with ipfi.connect(f"unix:{sock_path}") as peer:
                transport = peer._transport
                assert transport is not None
                assert transport.get_protocol() is peer  # small messages: bytes pushed
                assert peer._writelines is None  # uvloop's writelines does not join what it writes
                blob = bytes(range(256)) * 16384  # 4 MiB
                for _ in range(2):
                    assert await peer.call("echo", blob) == blob
                    assert transport.get_protocol() is not peer  # read in place, and staying there
                    # The read that completed the reply was the first to end between frames.
                    for i in range(62):
                        assert await peer.call("add", i, 1) == i + 1
                    assert transport.get_protocol() is not peer
                    assert await peer.call("add", 1, 1) == 2  # the 64th read between frames
                    assert transport.get_protocol() is peer
                [server_peer] = server.connections
                assert server_peer._transport is not None
                assert server_peer._transport.get_protocol() is server_peer

    ipfi.run(scenario(), use_uvloop=True)


@pytest.mark.parametrize("views", ["unowned", "owned"])
def test_large_binaries_and_what_follows_them_in_one_write_arrive_in_order_on_uvloop(
    sock_path: str, views: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop holds the view it read a large frame into while the read that completes it is
    handled (a view that does not hold the frame's memory: see ipfi.aio.unowned_view; where
    ctypes is missing, one that does, and the binary is copied out). The bytes that arrived behind
    it (here, other calls written in the same write) are read after it, in order, and reading is
    never left paused."""
    if views == "owned":
        monkeypatch.setattr(ipfi.aio.unowned_view, "_view_maker", lambda: None)
    received: list[bytes] = []
    iface = ipfi.Interface()

    @iface.procedure
    def keep(data: bytes, tag: int) -> int:
        received.append(data)
        return tag

    async def scenario() -> None:
        async with await ipfi.serve(f"unix:{sock_path}", iface) as server:
            async with ipfi.connect(f"unix:{sock_path}") as peer:
                blobs = [bytes([i]) * (256 * 1024 * (i + 1)) for i in range(4)]
                calls = [peer.call("keep", blob, i) for i, blob in enumerate(blobs)]
                calls += [peer.call("keep", b"small", 10 + i) for i in range(50)]
                assert await asyncio.gather(*calls) == [*range(4), *range(10, 60)]
                assert received[:4] == blobs and received[4:] == [b"small"] * 50
                [serving] = server.connections
                assert serving._read_pauses == frozenset()

    ipfi.run(scenario(), use_uvloop=True)


def test_uvloop_sizes_unix_socket_buffers(sock_path: str) -> None:
    """uvloop hands out its own socket objects; the buffers are sized through them all the same."""

    async def scenario() -> None:
        async with await ipfi.serve(f"unix:{sock_path}", calc.iface, unix_buffer_size=768 * 1024) as server:
            async with ipfi.connect(f"unix:{sock_path}", unix_buffer_size=768 * 1024) as peer:
                assert await peer.call("add", 1, 2) == 3
                [serving] = server.connections
                for sock in (peer.get_extra_info("socket"), serving.get_extra_info("socket")):
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 768 * 1024
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 768 * 1024

    ipfi.run(scenario(), use_uvloop=True)
