"""The minimal RPC's client written blocking, against its asyncio server (:mod:`.minimal_rpc`): a
reference for what ipfi's blocking client against its asyncio server can reach in Python.

Its records are the minimal RPC's; its socket, framing and reads are the blocking floor's.
"""

from __future__ import annotations

from typing import Any

import msgpack

from . import raw_blocking
from .raw_blocking import send_frame

IS_ASYNC = False


class Client(raw_blocking.Client):
    next_id = 0

    def _send_call(self, name: str, *args: Any) -> None:
        self.next_id += 1
        send_frame(self.sock, msgpack.packb([self.next_id, name, args]))

    def _reply(self) -> Any:
        _, value = msgpack.unpackb(self.receive())
        return value

    def echo(self, payload: bytes) -> Any:
        self._send_call("echo", payload)
        return self._reply()

    def in_flight(self, payload: bytes, depth: int) -> None:
        for _ in range(depth):
            self._send_call("echo", payload)
        for _ in range(depth):
            self._reply()

    def stream(self, count: int) -> int:
        self._send_call("items", count)
        received = 0
        while (batch := self._reply()) is not None:
            received += len(batch)
        return received


def connect(endpoint: tuple[str, Any]) -> Client:
    return Client(raw_blocking.connect_socket(endpoint))
