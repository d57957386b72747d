"""An IPFI host written with ipfi: it starts module.py over ``exec:`` and calls its numbered
procedures as IPFI's example host does, on IPFI's wire (the asyncio driver). The module calls back.

Swap module.py for a Rust IPFI module's binary and nothing else changes.

Run: python examples/ipfi_rust/host.py
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import ipfi

MODULE = Path(__file__).resolve().with_name("module.py")

host = ipfi.Interface()


@host.procedure(index=0)
def thanks(message: str) -> None:
    print(f"host: the module says {message!r}")


async def main() -> None:
    command = shlex.join([sys.executable, str(MODULE)])
    # The module's names for its procedures 0-3, so they can be called by name too.
    names = {"answer": 0, "greet": 1, "farewell": 2, "tests": 3}
    async with ipfi.connect(f"exec:{command}", host, protocol="ipfi-rust", remote_indices=names) as module:
        await module.call(1, "John")
        await module.call("farewell", "Doe")
        print("host: the answer is", await module.call(0))
        print("host: streamed", [item async for item in module.stream("tests")])
    print("host: the module exited with status", await module.process.wait())


if __name__ == "__main__":
    asyncio.run(main())
