"""A server of either driver for a test that is not itself async: the blocking one as it is, the
asyncio one on a loop of its own in a thread. Both stop when the test is done."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import ipfi
import ipfi.sync


@contextlib.contextmanager
def serving(driver: str, address: str, served: Any, **options: Any) -> Iterator[str]:
    """``served`` on ``address`` by a server of ``driver`` ("asyncio" or "blocking"); yields the
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

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5), "the server did not start"
    try:
        yield state["server"].bound_address
    finally:
        state["loop"].call_soon_threadsafe(state["server"].close)
        thread.join(5)
        assert not thread.is_alive(), "the server did not close"
