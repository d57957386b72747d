"""A server of any driver for a test that is not itself async: the blocking one as it is, the
asyncio one on a loop of its own (the standard one, or uvloop) in a thread. Each stops when the
test is done. And a client's coroutine run to its end on a loop of a driver's."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import uvloop

import ipfi
import ipfi.sync

T = TypeVar("T")
#: The drivers, the asyncio one on either loop (uvloop's transports are not asyncio's).
DRIVERS = ["asyncio", "uvloop", "blocking"]


def run_on(driver: str, coroutine: Coroutine[Any, Any, T]) -> T:
    """``coroutine`` run to its end on a new loop of ``driver`` (``"asyncio"`` or ``"uvloop"``)."""
    return uvloop.run(coroutine) if driver == "uvloop" else asyncio.run(coroutine)


@contextlib.contextmanager
def serving(driver: str, address: str, served: Any, **options: Any) -> Iterator[str]:
    """``served`` on ``address`` by a server of ``driver`` (one of :data:`DRIVERS`); yields the
    address clients use (the real port of ``:0``)."""
    if driver == "blocking":
        with ipfi.sync.serve(address, served, **options) as server:
            yield server.bound_address
        return
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        async with await ipfi.serve(address, served, **options) as server:
            state["server"], state["loop"] = server, asyncio.get_running_loop()
            ready.set()
            await server.serve_forever()

    thread = threading.Thread(target=run_on, args=(driver, serve()), daemon=True)
    thread.start()
    assert ready.wait(5), "the server did not start"
    try:
        yield state["server"].bound_address
    finally:
        state["loop"].call_soon_threadsafe(state["server"].close)
        thread.join(5)
        assert not thread.is_alive(), "the server did not close"
