"""grpcio's blocking API: a thread-pool server, a blocking client (futures for calls in flight)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from .grpc_common import ITEM, OPTIONS, STREAM_SECONDS, generated, target

IS_ASYNC = False
pb2, pb2_grpc = generated()


class Servicer(pb2_grpc.BenchServicer):  # type: ignore[misc]
    def Echo(self, request: Any, context: Any) -> Any:
        return request

    def Items(self, request: Any, context: Any) -> Iterator[Any]:
        blob = pb2.Blob(data=ITEM)
        for _ in range(request.n):
            yield blob


def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    pb2_grpc.add_BenchServicer_to_server(Servicer(), server)
    server.add_insecure_port(target(endpoint))
    server.start()
    ready()
    server.wait_for_termination()


class Client:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.stub = pb2_grpc.BenchStub(channel)

    def echo(self, payload: bytes) -> bytes:
        return self.stub.Echo(pb2.Blob(data=payload)).data  # type: ignore[no-any-return]

    def in_flight(self, payload: bytes, depth: int) -> None:
        blob = pb2.Blob(data=payload)
        for future in [self.stub.Echo.future(blob) for _ in range(depth)]:
            future.result()

    def stream(self, count: int) -> int:
        received = 0
        deadline = time.perf_counter() + STREAM_SECONDS
        for _ in self.stub.Items(pb2.Count(n=count)):
            received += 1
            if not received % 1024 and time.perf_counter() > deadline:
                break  # cancels the call: its rate is known by now, and the run stays short
        return received

    def close(self) -> None:
        self.channel.close()


def connect(endpoint: tuple[str, Any]) -> Client:
    channel = grpc.insecure_channel(target(endpoint), options=OPTIONS)
    grpc.channel_ready_future(channel).result(timeout=10)
    return Client(channel)
