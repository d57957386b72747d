"""grpcio's asyncio API, client and server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from .grpc_common import ITEM, OPTIONS, STREAM_SECONDS, generated, target

IS_ASYNC = True
pb2, pb2_grpc = generated()


class Servicer(pb2_grpc.BenchServicer):  # type: ignore[misc]
    async def Echo(self, request: Any, context: Any) -> Any:
        return request

    async def Items(self, request: Any, context: Any) -> AsyncIterator[Any]:
        blob = pb2.Blob(data=ITEM)
        for _ in range(request.n):
            yield blob


async def serve(endpoint: tuple[str, Any], ready: Callable[[], None]) -> None:
    server = grpc.aio.server(options=OPTIONS)
    pb2_grpc.add_BenchServicer_to_server(Servicer(), server)
    server.add_insecure_port(target(endpoint))
    await server.start()
    ready()
    await server.wait_for_termination()


class Client:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.stub = pb2_grpc.BenchStub(channel)

    async def echo(self, payload: bytes) -> bytes:
        return (await self.stub.Echo(pb2.Blob(data=payload))).data  # type: ignore[no-any-return]

    async def in_flight(self, payload: bytes, depth: int) -> None:
        blob = pb2.Blob(data=payload)
        await asyncio.gather(*[self.stub.Echo(blob) for _ in range(depth)])

    async def stream(self, count: int) -> int:
        received = 0
        deadline = time.perf_counter() + STREAM_SECONDS
        async for _ in self.stub.Items(pb2.Count(n=count)):
            received += 1
            if not received % 1024 and time.perf_counter() > deadline:
                break  # cancels the call: its rate is known by now, and the run stays short
        return received

    async def close(self) -> None:
        await self.channel.close()


async def connect(endpoint: tuple[str, Any]) -> Client:
    # (each channel a connection of its own: by default channels to one target share one)
    channel = grpc.aio.insecure_channel(target(endpoint), options=[*OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
    await channel.channel_ready()
    return Client(channel)
