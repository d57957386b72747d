"""The blocking floor: a length-prefixed echo over a plain blocking socket, a thread per client."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from .raw_framing import ITEM_FRAME, LENGTH, STREAM_FLAG, stream_request

IS_ASYNC = False
SMALL = 64 * 1024  # below this, header and payload go out in one write
ITEMS_PER_WRITE = 256  # a stream goes out in batches, as ipfi's drivers write theirs (ITEMS_PER_TURN)


def send_frame(sock: socket.socket, payload: bytes) -> None:
    if len(payload) < SMALL:
        sock.sendall(LENGTH.pack(len(payload)) + payload)
    else:
        sock.sendall(LENGTH.pack(len(payload)))
        sock.sendall(payload)


def _serve_one(sock: socket.socket) -> None:
    with sock, sock.makefile("rb") as reader:
        while header := reader.read(4):
            (length,) = LENGTH.unpack(header)
            if length & STREAM_FLAG:
                left = length & ~STREAM_FLAG
                while left:
                    batch = min(left, ITEMS_PER_WRITE)
                    sock.sendall(ITEM_FRAME * batch)
                    left -= batch
            else:
                send_frame(sock, reader.read(length))


def open_socket(endpoint: tuple[str, Any]) -> socket.socket:
    kind, _ = endpoint
    sock = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET)
    if kind == "tcp":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _where(endpoint: tuple[str, Any]) -> Any:
    kind, where = endpoint
    return where if kind == "unix" else ("127.0.0.1", where)


def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    listener = open_socket(endpoint)
    listener.bind(_where(endpoint))
    listener.listen(4096)  # (as ipfi listens)
    ready()
    while True:
        sock, _ = listener.accept()
        if endpoint[0] == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve_one, args=(sock,), daemon=True).start()


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def receive(self) -> bytes:
        (length,) = LENGTH.unpack(self.reader.read(4))
        return self.reader.read(length)

    def echo(self, payload: bytes) -> bytes:
        send_frame(self.sock, payload)
        return self.receive()

    def in_flight(self, payload: bytes, depth: int) -> None:
        self.sock.sendall((LENGTH.pack(len(payload)) + payload) * depth)
        for _ in range(depth):
            self.receive()

    def stream(self, count: int) -> int:
        self.sock.sendall(stream_request(count))
        for _ in range(count):
            self.receive()
        return count

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def connect_socket(endpoint: tuple[str, Any]) -> socket.socket:
    sock = open_socket(endpoint)
    sock.connect(_where(endpoint))
    return sock


def connect(endpoint: tuple[str, Any]) -> Client:
    return Client(connect_socket(endpoint))
