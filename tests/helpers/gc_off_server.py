"""A server with the cyclic GC off, for tests that count what closed connections leave alive:
``python -m tests.helpers.gc_off_server ADDRESS LOOP`` (``asyncio`` or ``uvloop``) prints "ready"."""

from __future__ import annotations

import asyncio
import gc
import sys

import uvloop

import ipfi
from ipfi.aio.peer import Peer


def interface() -> ipfi.Interface:
    iface = ipfi.Interface()

    @iface.procedure
    async def echo(value: bytes) -> bytes:
        return value

    @iface.procedure
    def peers_alive() -> int:
        """Peers in memory, reachable or not (the collector being off, garbage stays)."""
        return sum(isinstance(candidate, Peer) for candidate in gc.get_objects())

    return iface


async def serve(address: str) -> None:
    async with await ipfi.serve(address, interface()) as server:
        print("ready", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    gc.disable()
    address, loop = sys.argv[1:]
    (uvloop.run if loop == "uvloop" else asyncio.run)(serve(address))
