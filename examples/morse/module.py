"""The far end of the Morse link: started by ``host.py``, it serves over its stdin and stdout, which
carry nothing but Morse symbols."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from link import symbols_in, symbols_out

import ipfi

iface = ipfi.Interface()


@iface.procedure
async def greet(name: str) -> str:
    """A call, that calls the host back to ask who it is."""
    host = await ipfi.current_peer().call("whoami")
    return f"hello {name}, from the far end of a Morse link to {host}"


@iface.procedure
async def countdown(start: int) -> AsyncIterator[int]:
    """A stream."""
    for value in range(start, -1, -1):
        yield value


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    received = [0]
    async with await ipfi.accept_stream(symbols_in(reader, received), symbols_out(writer, None), iface) as host:
        await host.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
