"""A child that tells, over them, the sizes of the pipes it was given as stdin and stdout (``exec:``)."""

from __future__ import annotations

import asyncio
import fcntl
import os

import ipfi

# (Serving stdio: points fd 1 at stderr: a copy of the pipe is kept to be asked about.)
_STDOUT = os.dup(1)

iface = ipfi.Interface()


def _pipe_size(fd: int) -> int | None:
    try:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:  # not a pipe (uvloop gives a child socket pairs)
        return None


@iface.procedure
def pipe_sizes() -> list[int | None]:
    return [_pipe_size(0), _pipe_size(_STDOUT)]


async def main() -> None:
    async with await ipfi.serve("stdio:", iface) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
