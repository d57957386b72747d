"""A child serving the calc interface over its stdin/stdout (spawned through ``exec:``)."""

from __future__ import annotations

import asyncio

import ipfi

from .calc import iface


async def main() -> None:
    async with await ipfi.serve("stdio:", iface) as server:
        print("a stray print once serving must not corrupt the frames")
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
