"""pyzmq: a ROUTER server and a DEALER client, zero-copy frames (``copy=False``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

IS_ASYNC = False
ITEM = b"x" * 16
ECHO, STREAM = b"E", b"S"


def url(endpoint: tuple[str, Any]) -> str:
    kind, where = endpoint
    return f"ipc://{where}" if kind == "unix" else f"tcp://127.0.0.1:{where}"


def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)  # a stream of 100,000 items would hit the default 1,000 and be dropped
    sock.bind(url(endpoint))
    ready()
    while True:
        peer, kind, payload = sock.recv_multipart(copy=False)
        if kind.bytes == ECHO:
            sock.send_multipart([peer, payload], copy=False)
        else:
            for _ in range(int(payload.bytes)):
                sock.send_multipart([peer, ITEM])


class Client:
    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def echo(self, payload: bytes) -> Any:
        self.sock.send_multipart([ECHO, payload], copy=False)
        return self.sock.recv(copy=False).buffer

    def in_flight(self, payload: bytes, depth: int) -> None:
        for _ in range(depth):
            self.sock.send_multipart([ECHO, payload], copy=False)
        for _ in range(depth):
            self.sock.recv(copy=False)

    def stream(self, count: int) -> int:
        self.sock.send_multipart([STREAM, str(count).encode()])
        for _ in range(count):
            self.sock.recv(copy=False)
        return count

    def close(self) -> None:
        self.sock.close(linger=0)


def connect(endpoint: tuple[str, Any]) -> Client:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(url(endpoint))
    return Client(sock)
