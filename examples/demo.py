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

            async with await _connect_when_up(address, client_iface) as peer:
                print("add(1, 2) =", await peer.call("add", 1, 2))
                print("count(5) streams", [i async for i in peer.stream("count", 5)])
                print("sum of a client stream:", await peer.with_options(input=range(101)).call("total"))
                print("the server called us back:", await peer.call("call_me_back", "demo"))
                calc = peer.proxy()
                print("proxy: mul(6, 7) =", await calc.mul(6, 7))
                try:
                    await peer.call("divide", 1, 0)
                except ipfi.RemoteError as exc:
                    print("remote error:", exc)
                print(f"ping round trip: {await peer.ping() * 1e6:.0f} us")
        finally:
            server.terminate()
            server.wait(timeout=5)


async def _connect_when_up(address: str, iface: ipfi.Interface) -> ipfi.Peer:
    for _ in range(100):
        try:
            return await ipfi.connect(address, iface)
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"server at {address} did not come up")


if __name__ == "__main__":
    asyncio.run(main())
