"""Opening a blocking client's connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..core.connection import Role
from ..core.interface import Interface
from ..net.addresses import parse_address
from ..options import Options
from .links import open_link
from .peer import Peer


def open_client(
    address: str, iface: Interface | None, workers: int, settings: Options, *, background_reader: bool
) -> Peer:
    """:func:`connect`, with a reader thread or not."""
    target = parse_address(address)
    settings = settings.for_scheme(target.scheme)
    link = open_link(target, settings.limits.handshake_timeout, settings.spawns)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ipfi-worker") if iface else None
    peer = Peer(link, Role.CLIENT, iface, settings, executor=executor, owns_executor=True)
    peer.process = getattr(link, "process", None)
    try:
        return peer.open(background_reader=background_reader)
    except BaseException:
        link.close()
        raise
