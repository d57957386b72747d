"""Reading frames off a raw socket, as a hand-made ipcprims peer does."""

from __future__ import annotations

import json
import re
import socket
from typing import Any


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer if the peer closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next frame's channel and payload."""
    header = recv_exactly(sock, 8)
    assert header[:2] == b"IP", header
    return int.from_bytes(header[6:], "little"), recv_exactly(sock, int.from_bytes(header[2:6], "little"))


def assert_reference_reply(sock: socket.socket, reference_json: str) -> None:
    """The server's handshake reply is the reference's but for the peer id, which is the server's to
    choose (ipfi's are unique on a machine: ``peer-PID-N``, where the reference says ``peer-N``)."""
    channel, payload = recv_frame(sock)
    reply: dict[str, Any] = json.loads(payload)
    expected: dict[str, Any] = json.loads(reference_json)
    assert channel == 0
    assert re.fullmatch(r"peer-\d+-\d+", reply.pop("peer_id")), payload
    expected.pop("peer_id")
    assert reply == expected
