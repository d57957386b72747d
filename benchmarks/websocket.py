"""What WebSocket (and TLS) costs each driver: ``tcp://``, ``tls://``, ``ws://`` and ``wss://`` side
by side, ratios in one run.

    python -m benchmarks.websocket [--calls N] [--echoes N] [--repeat 3] [--quick]

For each driver (blocking; asyncio on uvloop) and each wire, a server of that driver runs in a
process of its own and a client of the same driver in this one: sequential ``add(1, 2)`` calls/s,
and 1 MiB echoes as MiB/s each way; the median of ``--repeat`` runs, and each wire's share of the
driver's ``tcp://`` figures.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trustme
import uvloop

import ipfi
import ipfi.sync

WIRES = ("tcp", "tls", "ws", "wss")
DRIVERS = ("blocking", "asyncio")
PAYLOAD = b"\x01" * (1 << 20)

SERVER = """
import sys, ipfi, ipfi.sync, uvloop

driver, address, cert = sys.argv[1:]
iface = ipfi.Interface()
iface.procedure(name="add")(lambda a, b: a + b)
iface.procedure(name="echo")(lambda data: data)
tls = {"ssl": ipfi.tls_server_context(cert)} if address.startswith(("tls", "wss")) else {}
if driver == "blocking":
    with ipfi.sync.serve(address, iface, **tls) as server:
        print(server.bound_address, flush=True)
        server.serve_forever()
else:
    async def main():
        async with await ipfi.serve(address, iface, **tls) as server:
            print(server.bound_address, flush=True)
            await server.serve_forever()
    uvloop.run(main())
"""


@contextlib.contextmanager
def served(driver: str, wire: str, cert: Path) -> Iterator[str]:
    """A server of ``driver`` on ``wire`` (127.0.0.1, a free port) in a process of its own: its address."""
    address = f"{wire}://127.0.0.1:0" + ("/bench" if wire.startswith("ws") else "")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, driver, address, str(cert)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip().replace("127.0.0.1", "localhost")  # (the name its certificate has)
    finally:
        server.kill()
        server.wait()


def blocking_client(address: str, options: dict[str, object], calls: int, echoes: int) -> tuple[float, float]:
    with ipfi.sync.connect(address, **options) as peer:
        peer.call("echo", PAYLOAD)  # (warm)
        began = time.perf_counter()
        for _ in range(calls):
            peer.call("add", 1, 2)
        rate = calls / (time.perf_counter() - began)
        began = time.perf_counter()
        for _ in range(echoes):
            peer.call("echo", PAYLOAD)
        return rate, echoes / (time.perf_counter() - began)


async def asyncio_client(address: str, options: dict[str, object], calls: int, echoes: int) -> tuple[float, float]:
    async with ipfi.connect(address, **options) as peer:
        await peer.call("echo", PAYLOAD)  # (warm)
        began = time.perf_counter()
        for _ in range(calls):
            await peer.call("add", 1, 2)
        rate = calls / (time.perf_counter() - began)
        began = time.perf_counter()
        for _ in range(echoes):
            await peer.call("echo", PAYLOAD)
        return rate, echoes / (time.perf_counter() - began)


def measure(
    driver: str, wire: str, certificates: tuple[Path, Path], arguments: argparse.Namespace
) -> tuple[float, float]:
    """Median calls/s and 1 MiB echoes/s of ``driver`` over ``wire``."""
    cert, ca = certificates
    options: dict[str, object] = {"ssl": ipfi.tls_client_context(ca)} if wire in ("tls", "wss") else {}
    rates, echoes = [], []
    for _ in range(arguments.repeat):
        with served(driver, wire, cert) as address:
            if driver == "blocking":
                rate, echo = blocking_client(address, options, arguments.calls, arguments.echoes)
            else:
                rate, echo = uvloop.run(asyncio_client(address, options, arguments.calls, arguments.echoes))
        rates.append(rate)
        echoes.append(echo)
    return statistics.median(rates), statistics.median(echoes)


def main(arguments: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        authority = trustme.CA()
        cert, ca = Path(directory, "server.pem"), Path(directory, "ca.pem")
        authority.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(cert))
        authority.cert_pem.write_to_path(str(ca))
        print(
            f"sequential add(1, 2) x {arguments.calls}; 1 MiB echo x {arguments.echoes}; median of {arguments.repeat}"
        )
        print("| driver | wire | calls/s | of tcp | 1 MiB echo MiB/s | of tcp |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for driver in DRIVERS:
            tcp_rate = tcp_echo = 0.0
            for wire in WIRES:
                rate, echo = measure(driver, wire, (cert, ca), arguments)
                tcp_rate, tcp_echo = tcp_rate or rate, tcp_echo or echo
                shares = f"{rate / tcp_rate:.2f} | {echo:,.0f} | {echo / tcp_echo:.2f}"
                print(f"| {driver} | {wire}:// | {rate:,.0f} | {shares} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--echoes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls, one repeat")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.calls, arguments.echoes, arguments.repeat = 50, 2, 1
    main(arguments)
