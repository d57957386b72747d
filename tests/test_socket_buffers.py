"""Unix socket buffers, sized at connection time on both sides, and an ``exec:`` child's pipes, sized
before it runs: in both drivers (``unix_buffer_size``)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from typing import Any

import pytest

import ipfi
import ipfi.sync

from .conftest import PYTHON, ROOT
from .helpers import calc

MiB = 1 << 20


def _buffers(sock: Any) -> tuple[int, int]:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def _system_default() -> tuple[int, int]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        return _buffers(left)


def _wanted(size: int | None) -> tuple[int, int]:
    # Linux reports twice what was asked (it counts its bookkeeping too), capped by wmem_max/rmem_max.
    if size is None:
        return _system_default()
    with open("/proc/sys/net/core/wmem_max") as wmem, open("/proc/sys/net/core/rmem_max") as rmem:
        return min(2 * size, 2 * int(wmem.read())), min(2 * size, 2 * int(rmem.read()))


@pytest.mark.parametrize("size", [MiB, 64 * 1024, None], ids=["default", "smaller", "system"])
async def test_asyncio_sizes_both_ends(sock_path: str, size: int | None) -> None:
    options: dict[str, Any] = {} if size == MiB else {"unix_buffer_size": size}
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, **options) as server:
        async with ipfi.connect(f"unix:{sock_path}", **options) as peer:
            assert await peer.call("add", 1, 2) == 3
            [serving] = server.connections
            assert _buffers(peer.get_extra_info("socket")) == _wanted(size)
            assert _buffers(serving.get_extra_info("socket")) == _wanted(size)


def test_blocking_driver_sizes_both_ends(sock_path: str) -> None:
    size = 512 * 1024
    with ipfi.sync.serve(f"unix:{sock_path}", calc.iface, unix_buffer_size=size) as server:
        with ipfi.sync.connect(f"unix:{sock_path}", unix_buffer_size=size) as peer:
            assert peer.call("add", 1, 2) == 3
            deadline = time.monotonic() + 5
            while not server.connections and time.monotonic() < deadline:
                time.sleep(0.01)
            [serving] = server.connections
            assert _buffers(peer._link.sock) == _wanted(size)  # type: ignore[attr-defined]
            assert _buffers(serving._link.sock) == _wanted(size)  # type: ignore[attr-defined]


async def test_large_messages_cross_buffers_far_smaller_than_them(sock_path: str) -> None:
    blob = bytes(range(256)) * 16384  # 4 MiB through 4 KiB buffers
    async with await ipfi.serve(f"unix:{sock_path}", calc.iface, unix_buffer_size=4096):
        async with ipfi.connect(f"unix:{sock_path}", unix_buffer_size=4096) as peer:
            assert await peer.call("echo", blob) == blob


@pytest.mark.parametrize("size", [0, -1])
def test_a_size_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="unix_buffer_size"):
        ipfi.Options(unix_buffer_size=size)


def _system_pipe_size() -> int:
    import fcntl

    read, write = os.pipe()
    try:
        return int(fcntl.fcntl(read, fcntl.F_GETPIPE_SZ))
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux sizes pipes")
@pytest.mark.parametrize("size", [MiB, 128 * 1024, None], ids=["default", "smaller", "system"])
@pytest.mark.parametrize("driver", ["asyncio", "uvloop", "blocking"])
def test_an_exec_childs_pipes_are_sized(driver: str, size: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    address = f"exec:{PYTHON} -m tests.helpers.pipe_sizes_child"
    options: dict[str, Any] = {} if size == MiB else {"unix_buffer_size": size}
    if driver == "blocking":
        with ipfi.sync.connect(address, **options) as blocking_peer:
            sizes = blocking_peer.call("pipe_sizes")
    else:

        async def ask() -> list[int]:
            async with ipfi.connect(address, **options) as peer:
                return list(await peer.call("pipe_sizes"))

        run = pytest.importorskip("uvloop").run if driver == "uvloop" else asyncio.run
        sizes = run(ask())
    assert sizes == [size or _system_pipe_size()] * 2
