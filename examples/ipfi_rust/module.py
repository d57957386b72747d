"""An IPFI module written with ipfi: the procedures of IPFI's own example module, numbered as it
numbers them, served over this process's stdin/stdout on IPFI's wire (the blocking driver).

A Rust IPFI host can start it as it starts its Rust modules; so does host.py beside it. On start it
calls the host's procedure 0, as IPFI's example module does.

Run: python examples/ipfi_rust/host.py
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import ipfi
import ipfi.sync

module = ipfi.Interface()


@module.procedure(index=0)
def answer() -> int:
    return 42


@module.procedure(index=1)
def greet(name: str) -> None:
    print(f"module: hello, {name}", file=sys.stderr)  # (stdout carries the wire)


@module.procedure(index=2)
def farewell(name: str) -> None:
    print(f"module: goodbye, {name}", file=sys.stderr)


@module.procedure(index=3)
def tests() -> Iterator[str]:
    yield "This is a test"
    yield "of the system"
    yield "And this is a second test!"


def main() -> None:
    with ipfi.sync.connect("stdio:", module, protocol="ipfi-rust") as host:
        host.call(0, "Thanks very much!")  # the host's procedure 0
        host.wait_closed()  # serve until the host ends the connection (Termination)


if __name__ == "__main__":
    main()
