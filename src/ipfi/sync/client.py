"""Opening a blocking client's connection."""

from __future__ import annotations

import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ..core.connection import Role
from ..core.interface import Interface
from ..net.addresses import Address, parse_address
from ..net.credentials import size_pipes
from ..net.services import not_running
from ..net.tls import client_arguments as tls_client_arguments
from ..net.websocket import require_websockets
from ..options import Options
from .links import Link, PipeLink, SocketLink, stdio_link
from .peer import Peer
from .tls_link import tls_link
from .websocket_link import open_websocket


def open_client(
    address: str, iface: Interface | None, workers: int, settings: Options, *, background_reader: bool
) -> Peer:
    """:func:`connect`, with a reader thread or not."""
    target = parse_address(address)
    settings = settings.for_scheme(target.scheme)
    link = open_link(target, settings)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ipfi-worker") if iface else None
    peer = Peer(link, Role.CLIENT, iface, settings, executor=executor, owns_executor=True)
    peer.process = getattr(link, "process", None)
    try:
        return peer.open(background_reader=background_reader)
    except BaseException:
        link.close()
        raise


def open_link(address: Address, settings: Options) -> Link:
    """Connect to ``address`` as a client (``settings``: its TLS context, the handshake's
    deadline, an ``exec:`` child's env, cwd and stderr)."""
    timeout = settings.limits.handshake_timeout
    if address.is_unix:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.socket_file())
        except FileNotFoundError:
            sock.close()
            raise not_running(address) from None
        except BaseException:
            sock.close()
            raise
        return SocketLink(sock)
    if address.is_tcp:
        if address.is_websocket:
            require_websockets()
        tls = tls_client_arguments(address.scheme, address.host, settings.ssl, timeout)
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        link: Link = SocketLink(sock)
        if tls:
            link = tls_link(sock, tls["ssl"], server_side=False, server_hostname=address.host, timeout=timeout)
        return open_websocket(link, address, timeout) if address.is_websocket else link
    if address.scheme == "stdio":
        return stdio_link()
    process = subprocess.Popen(address.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, **settings.spawns)
    assert process.stdin is not None and process.stdout is not None
    # (Sized as the child starts, which is soon enough: it reads and writes them later; Popen's pipes
    # work on every system, pipes made here would not on Windows.)
    size_pipes((process.stdin.fileno(), process.stdout.fileno()), settings.unix_buffer_size)
    # The link owns the raw fds from here on; the file objects must not close them again.
    read_fd, write_fd = os.dup(process.stdout.fileno()), os.dup(process.stdin.fileno())
    process.stdout.close()
    process.stdin.close()
    return PipeLink(read_fd, write_fd, process)
