"""A child that writes down, in the file named by its argument, the length and digest of what it is
sent (``keep``): a test reads it once the child has exited (``exec:``). ``stall`` stops it reading."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time

import ipfi

iface = ipfi.Interface()


@iface.procedure
def keep(data: bytes) -> None:
    with open(sys.argv[1], "a") as notes:
        notes.write(f"{len(data)} {hashlib.sha256(data).hexdigest()}\n")


@iface.procedure
def stall(seconds: float) -> None:
    time.sleep(seconds)  # (a plain function, run on the child's loop: it reads nothing meanwhile)


async def main() -> None:
    async with await ipfi.serve("stdio:", iface) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
