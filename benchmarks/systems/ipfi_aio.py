"""ipfi's asyncio driver (on uvloop or the standard loop, as the runner says)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import ipfi

IS_ASYNC = True
ITEM = b"x" * 16


def make_interface() -> ipfi.Interface:
    iface = ipfi.Interface()

    @iface.procedure
    def echo(value: bytes) -> bytes:
        return value

    @iface.procedure
    def items(count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield ITEM

    return iface


def address(endpoint: tuple[str, Any]) -> str:
    kind, where = endpoint
    return f"unix:{where}" if kind == "unix" else f"tcp://127.0.0.1:{where}"


async def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    server = await ipfi.serve(address(endpoint), make_interface(), binary_views=True)
    ready()
    await server.serve_forever()


class Client:
    def __init__(self, peer: ipfi.Peer) -> None:
        self.peer = peer
        self.call = peer.call

    def echo(self, payload: bytes) -> Any:
        return self.call("echo", payload)

    async def in_flight(self, payload: bytes, depth: int) -> None:
        call = self.call
        await asyncio.gather(*[call("echo", payload) for _ in range(depth)])

    async def stream(self, count: int) -> int:
        received = 0
        async for _ in self.peer.stream("items", count):
            received += 1
        return received

    async def close(self) -> None:
        await self.peer.aclose()


async def connect(endpoint: tuple[str, Any]) -> Client:
    return Client(await ipfi.connect(address(endpoint), binary_views=True))
