"""A plugin host: three plugins (plugin.py) started over ``exec:``, callbacks both ways, and one
plugin killed in the middle of a call while the others go on.

Run: python examples/plugins/host.py [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import ipfi

PLUGIN = Path(__file__).resolve().with_name("plugin.py")
SETTINGS = {"prefix": "> "}

host = ipfi.Interface()  # what the plugins may call


@host.procedure
def setting(name: str) -> str:
    return SETTINGS[name]


@host.procedure
def log(line: str) -> None:
    print(f"host log: {line}")


async def main() -> None:
    print("loop:", type(asyncio.get_running_loop()).__module__)
    plugins: dict[str, ipfi.Peer] = {}
    for name in ("alpha", "beta", "gamma"):
        command = shlex.join([sys.executable, str(PLUGIN), name])
        # stderr=DEVNULL: the plugins' own chatter is not the host's (default: inherited).
        plugins[name] = await ipfi.connect(f"exec:{command}", host, stderr=subprocess.DEVNULL)
    for name, plugin in plugins.items():
        assert plugin.process is not None and await plugin.call("pid") == plugin.process.pid
        print(f"{name}: pid {plugin.process.pid}, connection {plugin.peer_id}")

    results = await asyncio.gather(*(plugin.call("transform", "hello") for plugin in plugins.values()))
    print("results:", results)

    beta = plugins.pop("beta")
    long_call = asyncio.create_task(beta.call("work", 30))
    await asyncio.sleep(0.3)  # the call is in flight in beta
    beta.process.send_signal(signal.SIGKILL)
    try:
        await long_call
    except ipfi.ConnectionLost as exc:
        print(f"beta's call ended: {type(exc).__name__}")
    print(f"beta exited with status {await beta.process.wait()}")  # -9: killed by signal 9

    print("gamma still answers:", await plugins["gamma"].call("transform", "still here"))
    for name, plugin in plugins.items():
        await plugin.aclose()
        print(f"{name} exited with status {await plugin.process.wait()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    if parser.parse_args().loop == "uvloop":
        ipfi.run(main())  # (uvloop when it is installed)
    else:
        asyncio.run(main())
