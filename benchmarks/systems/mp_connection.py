"""The standard library's ``multiprocessing.connection``: length-prefixed messages, a thread per client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from multiprocessing.connection import Client as connect_to
from multiprocessing.connection import Connection, Listener
from typing import Any

IS_ASYNC = False
ITEM = b"x" * 16
ECHO, STREAM = b"E"[0], b"S"[0]


def location(endpoint: tuple[str, Any]) -> Any:
    kind, where = endpoint
    return where if kind == "unix" else ("127.0.0.1", where)


def _serve_one(conn: Connection) -> None:
    try:
        while True:
            message = conn.recv_bytes()
            if message[0] == ECHO:
                conn.send_bytes(message, 1)
            else:
                for _ in range(int(message[1:])):
                    conn.send_bytes(ITEM)
    except EOFError:
        conn.close()


def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    listener = Listener(location(endpoint))
    ready()
    while True:
        threading.Thread(target=_serve_one, args=(listener.accept(),), daemon=True).start()


class Client:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def echo(self, payload: bytes) -> bytes:
        self.conn.send_bytes(b"E" + payload)
        return self.conn.recv_bytes()

    def in_flight(self, payload: bytes, depth: int) -> None:
        message = b"E" + payload
        for _ in range(depth):
            self.conn.send_bytes(message)
        for _ in range(depth):
            self.conn.recv_bytes()

    def stream(self, count: int) -> int:
        self.conn.send_bytes(b"S%d" % count)
        for _ in range(count):
            self.conn.recv_bytes()
        return count

    def close(self) -> None:
        self.conn.close()


def connect(endpoint: tuple[str, Any]) -> Client:
    return Client(connect_to(location(endpoint)))
