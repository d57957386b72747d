"""Listening sockets for both drivers: TCP, or a Unix socket with its permissions, lock and clean-up."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import Final

from ..core.errors import AddressError
from .addresses import Address, remove_stale_socket
from .services import ServiceLock, prepare_runtime_dir

log = logging.getLogger("ipfi.server")

BACKLOG = 4096  # (the kernel caps it at net.core.somaxconn; asyncio would listen with 100)
#: accept() failures that pass once a connection ends: back off and accept again, never give up.
OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds to wait after such a failure: doubling from the first to the second.
ACCEPT_BACKOFF_MIN: Final = 0.01
ACCEPT_BACKOFF_MAX: Final = 1.0


class Listener:
    """A bound, listening socket; :meth:`close` also removes the files a Unix socket left behind."""

    def __init__(self, address: Address, sock: socket.socket, lock: ServiceLock | None = None) -> None:
        self.address = address
        self.sock = sock
        self._lock = lock
        self._path = address.socket_file() if address.is_unix else ""
        #: The address clients can use, with the real port of a ``tcp://host:0`` listener (known
        #: now: a wss:// server's library takes the socket over).
        self.bound_address = str(address)
        if address.is_tcp:
            host, port = sock.getsockname()[:2]
            self.bound_address = str(Address(address.scheme, path=address.path, host=host, port=port))
        self._inode = os.stat(self._path).st_ino if address.is_unix else 0

    @classmethod
    def open(cls, address: Address, *, mode: int = 0o600, authenticated: bool = False) -> Listener:
        """Bind and listen on ``address`` (``unix:``, ``service:``, ``libipc:``, ``tcp://`` or ``tls://``).

        A Unix socket gets ``mode`` before it listens, so no client can connect while it is wider.
        A ``service:`` first takes the service's lock (a second server with the name fails here).
        Plain ``tcp://`` or ``ws://`` beyond the loopback without ``authenticated`` clients is logged
        as a warning.
        """
        if address.scheme in ("tcp", "ws") and not authenticated and not _is_loopback(address.host):
            log.warning(
                "serving %s without TLS or authentication: whoever reaches it may call it"
                " (use tls:// with ssl=, and tokens=)",
                address,
            )
        if address.is_tcp:
            sock = socket.create_server((address.host, address.port), backlog=BACKLOG)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
            return cls(address, sock)
        if not address.is_unix:
            raise AddressError(f"cannot listen on {address}")
        lock = None
        path = address.socket_file()
        if address.scheme == "service":
            directory = prepare_runtime_dir(Path(path).parent, group=bool(mode & 0o070))
            lock = ServiceLock(address.name, directory).acquire()
        else:
            if address.scheme == "libipc":  # (libIPC makes its directory so: group may list, others not)
                Path(path).parent.mkdir(mode=0o1750, parents=True, exist_ok=True)
            remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, mode)
            sock.listen(BACKLOG)
            return cls(address, sock, lock)
        except BaseException:
            sock.close()
            if lock is not None:
                lock.release()
            raise

    def close(self) -> None:
        """Close the socket (if the event loop has not already) and remove the socket and lock files."""
        self.sock.close()
        if self._lock is not None:
            self._lock.release()
        elif self.address.is_unix:
            # Only our own socket file: another server may have replaced a path we no longer own.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self._path).st_ino == self._inode:
                    os.unlink(self._path)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: where it leads is not known here
        return False
