"""The asyncio floor reading in place: the floor's wire and echo on the same loop, but as a
``BufferedProtocol`` that has the transport read a large frame straight into a ``bytes`` of its own
(not zeroed first), with 1 MiB Unix socket buffers, as ipfi does by default. A reference for what
Python on an event loop reaches with large payloads (the 1 MiB and 16 MiB echoes), not a library.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import socket
from collections.abc import Callable
from typing import Any, cast

from . import raw_aio
from .raw_framing import LENGTH

IS_ASYNC = True
READ_SIZE = 256 * 1024  # (ipfi's asyncio driver reads as much)
UNIX_BUFFERS = 1 << 20  # (ipfi's default unix_buffer_size)
_new_bytes = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_char_p, ctypes.c_ssize_t)(
    ("PyBytes_FromStringAndSize", ctypes.pythonapi)
)


class _InPlace(asyncio.BufferedProtocol):
    """Splits the byte stream into frames for ``frame(header, payload)`` (the floor's), as its ``_Framed``;
    a frame that does not fit in what is left of the read buffer is read into its own memory."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock.family == socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_BUFFERS)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UNIX_BUFFERS)
        self.memory = bytearray(READ_SIZE)
        self.buffer = memoryview(self.memory)
        self.held = 0  # bytes of the buffer not yet handed out as frames
        self.large: io.BytesIO | None = None
        self.large_view: memoryview | None = None
        self.filled = 0
        self.last_large = b""

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.large_view is not None:
            return self.large_view[self.filled :]
        return self.buffer[self.held :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.large_view is not None:
            self.filled += nbytes
            if self.filled == len(self.large_view):
                self.large_view.release()
                self.large_view = None
                payload, self.large = cast(io.BytesIO, self.large).getvalue(), None
                self.frame(len(payload), payload)
                # Kept until the next one has its memory: freed first, glibc would give the heap's
                # top back to the kernel at every echo and fault its pages in again (~4x slower).
                self.last_large = payload
            return
        buffer, size = self.buffer, self.held + nbytes
        offset = raw_aio.hand_out_frames(self.frame, self.memory, size)
        if size - offset >= 4 and 4 + (length := LENGTH.unpack_from(buffer, offset)[0]) > len(buffer):
            self._start_large(length, buffer[offset + 4 : size])
            offset = size
        buffer[: size - offset] = buffer[offset:size]
        self.held = size - offset

    def _start_large(self, length: int, start: memoryview) -> None:
        # Referenced by the BytesIO alone, the bytes is neither copied by getbuffer() nor getvalue().
        self.large = io.BytesIO(_new_bytes(None, length))
        self.large_view = self.large.getbuffer()
        self.large_view[: len(start)] = start
        self.filled = len(start)

    def frame(self, header: int, payload: bytearray | bytes) -> None:
        raise NotImplementedError  # (the floor's server's or client's: raw_aio's EchoServing, Calling)


class _EchoServer(raw_aio.EchoServing, _InPlace):
    pass


class Client(raw_aio.Calling, _InPlace):
    pass


async def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    await raw_aio.serve_protocol(_EchoServer, endpoint, ready)


async def connect(endpoint: tuple[str, Any]) -> Client:
    return await raw_aio.connect_protocol(Client, endpoint)
