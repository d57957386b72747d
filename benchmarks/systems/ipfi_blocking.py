"""ipfi's blocking driver: a sync client (no thread of its own) and a sync server (worker threads).

Variants as :mod:`.ipfi_aio`'s (its ``configure``), but the blocking server serves plain functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ipfi

from . import ipfi_aio
from .ipfi_aio import address, configure, make_interface

IS_ASYNC = False
__all__ = ["Client", "configure", "connect", "serve"]


def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    with ipfi.sync.serve(address(endpoint), make_interface(), **ipfi_aio.OPTIONS) as server:
        ready()
        server.serve_forever()


class Client:
    def __init__(self, peer: ipfi.sync.Peer) -> None:
        self.peer = peer
        self.call = peer.call
        self._threads = ThreadPoolExecutor(max_workers=64)

    def echo(self, payload: bytes) -> Any:
        return self.call("echo", payload)

    def in_flight(self, payload: bytes, depth: int) -> None:
        # A blocking client has calls in flight only from threads; they share one connection.
        list(self._threads.map(self.echo, [payload] * depth))

    def stream(self, count: int) -> int:
        return sum(1 for _ in self.peer.stream("items", count))

    def close(self) -> None:
        self._threads.shutdown()
        self.peer.close()


def connect(endpoint: tuple[str, Any]) -> Client:
    return Client(ipfi.sync.connect(address(endpoint), **ipfi_aio.OPTIONS))
