"""The blocking driver from plain threads: python examples/sync_client.py

Starts a blocking server in this process, then 8 threads share one connection to it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator

import ipfi

iface = ipfi.Interface()


@iface.procedure
def add(a: int, b: int) -> int:
    return a + b


@iface.procedure
def squares(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * i


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        address = f"unix:{os.path.join(directory, 'sync.sock')}"
        with ipfi.sync.serve(address, iface), ipfi.sync.connect(address) as peer:
            totals = [0] * 8

            def worker(n: int) -> None:
                totals[n] = sum(peer.call("add", n, i) for i in range(100))

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            print("8 threads on one connection:", totals)
            print("a stream:", list(peer.stream("squares", 6)))


if __name__ == "__main__":
    main()
