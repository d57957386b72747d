"""A server of the behaviour suite's procedures over stdio, for the ``exec:`` wire.

    python tests/behaviour/child.py DRIVER OPTIONS_JSON

DRIVER is asyncio, uvloop or blocking; OPTIONS_JSON the server's options (``limits`` as a mapping).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for tests.behaviour

import ipfi
from tests.behaviour.procedures import Record, interface


def options_from(text: str) -> dict[str, Any]:
    options: dict[str, Any] = json.loads(text)
    if "limits" in options:
        options["limits"] = ipfi.Limits(**options["limits"])
    return options


async def serve(iface: ipfi.Interface, options: dict[str, Any]) -> None:
    options.pop("workers", None)
    server = await ipfi.serve("stdio:", iface, **options)
    await server.serve_forever()


def main() -> None:
    driver, options = sys.argv[1], options_from(sys.argv[2])
    iface = interface(driver, Record())
    if driver == "blocking":
        ipfi.sync.serve("stdio:", iface, **options).serve_forever()
    elif driver == "uvloop":
        import uvloop

        uvloop.run(serve(iface, options))
    else:
        asyncio.run(serve(iface, options))


if __name__ == "__main__":
    main()
