"""The asyncio floor: a length-prefixed echo Protocol on the same loop and transport as ipfi, no RPC."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .raw_framing import ITEM_FRAME, LENGTH, STREAM_FLAG, stream_request

IS_ASYNC = True
_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class _Framed(asyncio.Protocol):
    """Splits the byte stream into frames and hands each header and payload to :meth:`frame`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        del buffer[: hand_out_frames(self.frame, buffer, len(buffer))]

    def frame(self, header: int, payload: bytearray | bytes) -> None:
        raise NotImplementedError


def hand_out_frames(frame: Callable[[int, bytearray | bytes], None], buffer: bytearray, size: int) -> int:
    """Each whole frame in ``buffer[:size]`` to ``frame(header, payload)``; returns where the rest
    (an incomplete frame) begins."""
    offset = 0
    while size - offset >= 4:
        (header,) = LENGTH.unpack_from(buffer, offset)
        if header & STREAM_FLAG:
            frame(header, b"")
            offset += 4
            continue
        end = offset + 4 + header
        if end > size:
            break
        frame(header, buffer[offset + 4 : end])
        offset = end
    return offset


class EchoServing:
    """The floor's server, whatever splits its frames (``_Framed``, or in_place_aio's)."""

    transport: asyncio.Transport

    def frame(self, header: int, payload: bytearray | bytes) -> None:
        if header & STREAM_FLAG:
            write = self.transport.write
            for _ in range(header & ~STREAM_FLAG):
                write(ITEM_FRAME)
        else:
            self.transport.writelines([LENGTH.pack(header), payload])


class _EchoServer(EchoServing, _Framed):
    pass


async def serve_protocol(
    factory: Callable[[], asyncio.Protocol], endpoint: tuple[str, Any], ready: Callable[[], None]
) -> None:
    """Serve ``factory``'s protocol on ``endpoint`` (the floor's and the minimal RPC's server)."""
    loop = asyncio.get_running_loop()
    kind, where = endpoint
    if kind == "unix":
        server = await loop.create_unix_server(factory, where, backlog=4096)  # (as ipfi listens)
    else:
        server = await loop.create_server(factory, "127.0.0.1", where, backlog=4096)
    ready()
    await server.serve_forever()


async def connect_protocol(factory: Callable[[], _P], endpoint: tuple[str, Any]) -> _P:
    loop = asyncio.get_running_loop()
    kind, where = endpoint
    if kind == "unix":
        _, client = await loop.create_unix_connection(factory, where)
    else:
        _, client = await loop.create_connection(factory, "127.0.0.1", where)
    return client


async def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    await serve_protocol(_EchoServer, endpoint, ready)


class Calling:
    """The floor's client, whatever splits its frames (``_Framed``, or in_place_aio's)."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.stream_left = 0

    def frame(self, header: int, payload: bytearray | bytes) -> None:
        if self.stream_left:
            self.stream_left -= 1
            if self.stream_left:
                return
        self.waiters.popleft().set_result(payload)

    def echo(self, payload: bytes) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.transport.writelines([LENGTH.pack(len(payload)), payload])
        return future

    async def in_flight(self, payload: bytes, depth: int) -> None:
        await asyncio.gather(*[self.echo(payload) for _ in range(depth)])

    async def stream(self, count: int) -> int:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.stream_left = count
        self.transport.write(stream_request(count))
        await future
        return count

    def close(self) -> None:
        self.transport.close()


class Client(Calling, _Framed):
    pass


async def connect(endpoint: tuple[str, Any]) -> Client:
    return await connect_protocol(Client, endpoint)
