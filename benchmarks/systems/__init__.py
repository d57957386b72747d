"""The systems under test. Each module offers ``serve(endpoint, ready)`` and ``Client(endpoint)``.

A client has ``echo(payload)``, ``in_flight(payload, depth)`` (``depth`` calls at once, all awaited)
and ``stream(count)`` (items received); async systems make those coroutines. ``endpoint`` is
``("unix", path)`` or ``("tcp", port)`` on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    name: str
    module: str
    #: "uvloop", "asyncio", or None for a blocking client.
    loop: str | None
    #: The floor this system's figures are compared with (None: it is a floor or a competitor).
    floor: str | None = None
    #: The module ``serve`` comes from, when the server is another system's (e.g. blocking client, asyncio server).
    server_module: str | None = None
    server_loop: str | None = None
    #: Python packages it needs (from the ``bench`` extra).
    needs: tuple[str, ...] = ()

    @property
    def is_ipfi(self) -> bool:
        return self.name.startswith("ipfi")


RAW_ASYNC = "raw asyncio floor"
RAW_BLOCKING = "raw blocking floor"
GRPC_AIO = "grpc.aio"

SYSTEMS = [
    System("ipfi asyncio+uvloop", "ipfi_aio", "uvloop", floor=RAW_ASYNC),
    System("ipfi asyncio", "ipfi_aio", "asyncio", floor=RAW_ASYNC),
    System("ipfi blocking", "ipfi_blocking", None, floor=RAW_BLOCKING),
    System(
        "ipfi blocking->uvloop",
        "ipfi_blocking",
        None,
        floor=RAW_BLOCKING,
        server_module="ipfi_aio",
        server_loop="uvloop",
    ),
    System(GRPC_AIO, "grpc_aio", "asyncio", needs=("grpc", "grpc_tools")),
    System("grpc sync", "grpc_sync", None, needs=("grpc", "grpc_tools")),
    System("pyzmq", "zmq_dealer", None, needs=("zmq",)),
    System("multiprocessing", "mp_connection", None),
    System(RAW_ASYNC, "raw_aio", "uvloop"),
    System(RAW_BLOCKING, "raw_blocking", None),
]
