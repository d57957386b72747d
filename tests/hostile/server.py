"""The server under attack, in a process of its own (so that its memory, fds and threads can be
measured, and its death seen):

    python tests/hostile/server.py DRIVER ADDRESS OPTIONS_JSON

DRIVER is asyncio, uvloop or blocking; OPTIONS_JSON the server's options (``limits`` as a mapping,
``nofile`` to lower RLIMIT_NOFILE first). Prints ``ready`` once listening; logs go to stderr at INFO.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

import ipfi

WORKERS = 4


def interface() -> ipfi.Interface:
    iface = ipfi.Interface()

    @iface.procedure
    def add(a: int, b: int) -> int:
        return a + b

    @iface.procedure
    def flood(size: int) -> Iterator[bytes]:
        """A generator that never awaits and never ends."""
        item = b"x" * size
        while True:
            yield item

    @iface.procedure
    async def nap(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return iface


async def serve_async(address: str, options: dict[str, Any]) -> None:
    async with await ipfi.serve(address, interface(), **options) as server:
        print("ready", flush=True)
        await server.serve_forever()


def main() -> None:
    driver, address, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    nofile = options.pop("nofile", None)
    if nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    if "limits" in options:
        options["limits"] = ipfi.Limits(**options["limits"])
    if driver == "blocking":
        with ipfi.sync.serve(address, interface(), workers=WORKERS, **options) as server:
            # Every worker started now: the pool keeps them, so the threads counted before an
            # attack are those counted after it (any more are the attack's).
            for _ in range(WORKERS):
                server._executor.submit(time.sleep, 0.1)
            time.sleep(0.2)
            print("ready", flush=True)
            server.serve_forever()
    elif driver == "uvloop":
        import uvloop

        uvloop.run(serve_async(address, options))
    else:
        asyncio.run(serve_async(address, options))


if __name__ == "__main__":
    main()
