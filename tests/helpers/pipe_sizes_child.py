"""A child that tells, over them, the sizes of the pipes it was given as stdin and stdout (``exec:``)."""

from __future__ import annotations

import asyncio
import fcntl
import os

import ipfi

# (Serving stdio: points fd 1 at stderr: a copy of the pipe is kept to be asked about.)
_STDOUT = os.dup(1)

iface = ipfi.Interface()


@iface.procedure
def pipe_sizes() -> list[int]:
    return [fcntl.fcntl(0, fcntl.F_GETPIPE_SZ), fcntl.fcntl(_STDOUT, fcntl.F_GETPIPE_SZ)]


async def main() -> None:
    async with await ipfi.serve("stdio:", iface) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
