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
#: The least an RPC in Python does, on the asyncio floor (a reference, see systems/minimal_rpc.py).
MINIMAL_RPC = "minimal rpc (reference)"
#: Its client written blocking, against its asyncio server (systems/minimal_rpc_blocking.py).
MINIMAL_BLOCKING_TO_ASYNC = "minimal rpc blocking->uvloop (reference)"
#: The asyncio floor reading large frames in place, as ipfi does (systems/in_place_aio.py).
IN_PLACE_ASYNC = "asyncio floor in place (reference)"
#: The path users write: ``async def`` procedures and async generators, default options, uvloop.
USERS_PATH = "ipfi uvloop async-def"
PLAIN_PATH = "ipfi uvloop def"
#: The fastest path: plain functions, ``binary_views=True`` (the rows before issue 16 were these).
FASTEST_PATH = "ipfi uvloop def views"
BLOCKING = "ipfi blocking"
BLOCKING_TO_ASYNC = "ipfi blocking->uvloop async-def"
BLOCKING_TO_PLAIN = "ipfi blocking->uvloop def"


def _ipfi_aio(name: str, variant: str, loop: str = "uvloop") -> System:
    return System(name, f"ipfi_aio:{variant}", loop, floor=RAW_ASYNC)


def _ipfi_blocking(name: str, server_variant: str | None) -> System:
    """The blocking client (default options) against the blocking server, or the asyncio one on uvloop."""
    if server_variant is None:
        return System(name, "ipfi_blocking:def", None, floor=RAW_BLOCKING)
    return System(
        name,
        "ipfi_blocking:def",
        None,
        floor=RAW_BLOCKING,
        server_module=f"ipfi_aio:{server_variant}",
        server_loop="uvloop",
    )


SYSTEMS = [
    _ipfi_aio(USERS_PATH, "async"),
    _ipfi_aio(USERS_PATH + " views", "async+views"),
    _ipfi_aio(USERS_PATH + " untyped", "async+untyped"),
    _ipfi_aio(PLAIN_PATH, "def"),
    _ipfi_aio(FASTEST_PATH, "def+views"),
    _ipfi_aio("ipfi asyncio async-def", "async", loop="asyncio"),
    _ipfi_blocking(BLOCKING, None),
    System(BLOCKING + " views", "ipfi_blocking:def+views", None, floor=RAW_BLOCKING),
    _ipfi_blocking(BLOCKING_TO_ASYNC, "async"),
    _ipfi_blocking(BLOCKING_TO_PLAIN, "def"),
    System(GRPC_AIO, "grpc_aio", "asyncio", needs=("grpc", "grpc_tools")),
    System("grpc sync", "grpc_sync", None, needs=("grpc", "grpc_tools")),
    System("pyzmq", "zmq_dealer", None, needs=("zmq",)),
    System("multiprocessing", "mp_connection", None),
    System(MINIMAL_RPC, "minimal_rpc", "uvloop", floor=RAW_ASYNC),
    System(
        MINIMAL_BLOCKING_TO_ASYNC,
        "minimal_rpc_blocking",
        None,
        floor=RAW_BLOCKING,
        server_module="minimal_rpc",
        server_loop="uvloop",
    ),
    System(RAW_ASYNC, "raw_aio", "uvloop"),
    System(IN_PLACE_ASYNC, "in_place_aio", "uvloop"),
    System(RAW_BLOCKING, "raw_blocking", None),
]
