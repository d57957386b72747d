"""ipfi's asyncio driver (on uvloop or the standard loop, as the runner says).

Variants (``ipfi_aio:VARIANT``, see :func:`configure`): ``def`` or ``async`` procedures, each with
the default options or with ``binary_views=True`` (``+views``), their type hints checked (ipfi's
default) or not (``+untyped``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import ipfi

IS_ASYNC = True
ITEM = b"x" * 16
#: Set by :func:`configure`: plain functions or ``async def`` procedures, the connection options,
#: and whether the procedures' type hints are checked.
ASYNC_PROCEDURES = False
OPTIONS: dict[str, Any] = {}
CHECK_TYPES = True


def configure(variant: str) -> None:
    """``def`` or ``async``, then any of ``+views`` and ``+untyped``."""
    global ASYNC_PROCEDURES, OPTIONS, CHECK_TYPES  # (one process runs one variant)
    kind, *flags = variant.split("+")
    if kind not in {"def", "async"} or not set(flags) <= {"views", "untyped"}:
        raise ValueError(f"unknown variant {variant!r}")
    ASYNC_PROCEDURES = kind == "async"
    OPTIONS = {"binary_views": True} if "views" in flags else {}
    CHECK_TYPES = "untyped" not in flags


def make_interface() -> ipfi.Interface:
    iface = ipfi.Interface(check_types=CHECK_TYPES)
    if ASYNC_PROCEDURES:

        @iface.procedure(name="echo")
        async def echo_async(value: bytes) -> bytes:
            return value

        @iface.procedure(name="items")
        async def items_async(count: int) -> AsyncIterator[bytes]:
            for _ in range(count):
                yield ITEM

        return iface

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
    server = await ipfi.serve(address(endpoint), make_interface(), **OPTIONS)
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
    return Client(await ipfi.connect(address(endpoint), **OPTIONS))
