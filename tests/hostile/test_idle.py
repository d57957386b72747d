"""Ten thousand idle connections on one asyncio server: a good client is still served."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from .conftest import Target, good_client

IDLE = 10_000

# A process of its own holds the idle connections (each past the handshake, then silent).
HOLDER = textwrap.dedent(
    """
    import json, socket, struct, sys
    path, count = sys.argv[1], int(sys.argv[2])
    hello = json.dumps({"protocol": "ipcprims", "version": "1.0", "channels": [2]}).encode()
    frame = b"IP" + struct.pack("<IH", len(hello), 0) + hello
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.sendall(frame)
        held.append(sock)
    for sock in held:
        sock.recv(4096)  # the server's reply: every connection is open
    print("holding", flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("driver", ["asyncio", "uvloop"])
def test_ten_thousand_idle_connections_and_a_good_client_is_served(start: Callable[..., Target]) -> None:
    target = start(limits={"max_connections": IDLE + 10})
    with good_client(target) as client:
        client.p99(50)
        baseline = max(client.p99(), 0.002)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, target.path, str(IDLE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
            assert target.fds >= IDLE
            during = client.p99()
            assert during <= 10 * baseline, f"p99 {during * 1000:.2f} ms against {baseline * 1000:.2f} ms"
        finally:
            holder.communicate(b"", timeout=30)
    assert target.alive
