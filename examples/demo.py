"""The README's demo: a real server process and a client talking to it over a Unix socket.

Run: python examples/demo.py
The server (examples/calc_server.py) runs as a child process; the client calls it, streams from it,
and serves a procedure the server calls back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import ipfi

HERE = Path(__file__).resolve().parent


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        address = f"unix:{os.path.join(directory, 'calc.sock')}"
        # Started once, before the loop has any other work: a blocking Popen is fine here.
        server = subprocess.Popen([sys.executable, str(HERE / "calc_server.py"), address])  # noqa: ASYNC220
        try:
            client_iface = ipfi.Interface()

            @client_iface.procedure
            def greet(name: str) -> str:
                return f"hello, {name}"

            # A client that connects (and would connect again) whenever the server is there: its
            # first call waits for the server, which is still starting.
            async with ipfi.reconnecting(address, client_iface) as client:
                print("add(1, 2) =", await client.call("add", 1, 2))
                print("count(5) streams", [i async for i in client.stream("count", 5)])
                print("sum of a client stream:", await client.with_options(input=range(101)).call("total"))
                print("the server called us back:", await client.call("call_me_back", "demo"))
                calc = client.proxy()
                print("proxy: mul(6, 7) =", await calc.mul(6, 7))
                try:
                    await client.call("divide", 1, 0)
                except ipfi.RemoteError as exc:
                    print("remote error:", exc)
                assert client.peer is not None  # the connection itself
                print(f"ping round trip: {await client.peer.ping() * 1e6:.0f} us")
        finally:
            server.terminate()
            server.wait(timeout=5)


if __name__ == "__main__":
    asyncio.run(main())
