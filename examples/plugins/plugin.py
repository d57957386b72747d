"""A plugin: a child process that serves its procedures over its stdin/stdout and calls its host
back. The host starts it with ``ipfi.connect("exec:python plugin.py NAME", host_interface)``; here it
is the server of that one connection (``stdio:``).

Standard output carries the frames: whatever the plugin has to say goes to stderr (ipfi points fd 1
at stderr once it serves, so a stray ``print`` cannot corrupt the link).
"""

from __future__ import annotations

import asyncio
import os
import sys

import ipfi

NAME = sys.argv[1] if len(sys.argv) > 1 else "plugin"
iface = ipfi.Interface()


@iface.procedure
async def transform(text: str) -> str:
    host = ipfi.current_peer()  # the host that called: the plugin calls it back
    prefix = await host.call("setting", "prefix")
    await host.call("log", f"{NAME} transforms {text!r}")
    return f"{prefix}{text.upper()} (by {NAME})"


@iface.procedure
async def work(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"{NAME} worked {seconds} s"


@iface.procedure
def pid() -> int:
    return os.getpid()


async def main() -> None:
    server = await ipfi.serve("stdio:", iface)
    await server.serve_forever()  # until the host closes the connection


if __name__ == "__main__":
    print(f"plugin {NAME} starting", file=sys.stderr)
    ipfi.run(main())
