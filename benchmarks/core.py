"""The protocol core alone, no I/O: one call and its result through two in-memory ``Connection`` objects.

    python -m benchmarks.core [--calls N]

What ipfi's own Python costs per round trip (both sides), apart from sockets and event loops:
the benchmark runner's figures minus this are the drivers' and the kernel's share.
"""

from __future__ import annotations

import argparse
import time

from ipfi.core.connection import Connection, Role

PAYLOAD = b"0123456789abcdef"


def connected() -> tuple[Connection, Connection]:
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    client.start()
    server.receive_data(b"".join(client.data_to_send()))
    client.receive_data(b"".join(server.data_to_send()))
    return client, server


def round_trips(calls: int) -> float:
    """Seconds per call: encode the call, decode it, encode the result, decode it."""
    client, server = connected()
    start = time.perf_counter()
    for _ in range(calls):
        client.send_call("echo", (PAYLOAD,))
        [call] = server.receive_data(client.data_to_send()[0])
        server.send_result(call.call_id, call.args[0])  # type: ignore[attr-defined]
        client.receive_data(server.data_to_send()[0])
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    round_trips(args.calls // 10)  # warm-up
    print(f"protocol core: {round_trips(args.calls) * 1e6:.2f} µs per call and result, both sides")


if __name__ == "__main__":
    main()
