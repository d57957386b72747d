"""One string names a wire everywhere: ``unix:/path``, ``tcp://host:port``, ``tls://host:port`` (TCP with
TLS), ``ws://host:port/path`` and ``wss://host:port/path`` (WebSocket, plain or over TLS), ``stdio:``,
``exec:cmd args``,
``service:NAME``, and ``libipc:NAME`` (a libIPC service: the socket ``NAME`` in ``$IPC_RUNDIR``,
default ``/run/ipc``, speaking libIPC's wire)."""

from __future__ import annotations

import errno
import os
import shlex
import socket
import stat
import sys
from dataclasses import dataclass

from ..core.errors import AddressError, AddressInUse, AddressTooLong, NotOnThisPlatform
from .services import SUN_PATH_MAX, check_name_form, socket_path

SCHEMES = ("unix", "tcp", "tls", "ws", "wss", "stdio", "exec", "service", "libipc")
#: Where libIPC keeps its services' sockets unless ``$IPC_RUNDIR`` says otherwise.
LIBIPC_RUNDIR = "/run/ipc"


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0
    argv: tuple[str, ...] = ()
    #: A named service's name (its socket is found by :meth:`socket_file` when it is used).
    name: str = ""

    def socket_file(self) -> str:
        """The Unix socket's path: a ``unix:`` path as given; a service's in the runtime directory,
        looked up now (parsing an address never reads the environment or the file system)."""
        if self.scheme == "libipc":
            return os.path.join(os.environ.get("IPC_RUNDIR") or LIBIPC_RUNDIR, self.name)
        return socket_path(self.name) if self.scheme == "service" else self.path

    @property
    def is_tcp(self) -> bool:
        """Whether this is a TCP socket (``tcp://``, ``tls://``, ``ws://`` or ``wss://``)."""
        return self.scheme in ("tcp", "tls", "ws", "wss")

    @property
    def is_websocket(self) -> bool:
        return self.scheme in ("ws", "wss")

    @property
    def uses_tls(self) -> bool:
        return self.scheme in ("tls", "wss")

    @property
    def is_unix(self) -> bool:
        """Whether this is a Unix socket (``unix:``, ``service:`` or ``libipc:``)."""
        return self.scheme in ("unix", "service", "libipc")

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.path}"
        if self.is_tcp:
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{self.scheme}://{host}:{self.port}{self.path}"
        if self.scheme == "exec":
            return "exec:" + shlex.join(self.argv)
        if self.scheme in ("service", "libipc"):
            return f"{self.scheme}:{self.name}"
        return "stdio:"


def parse_address(text: str) -> Address:
    """Parse an address string; raises :class:`~ipfi.errors.AddressError` with the reason.

    >>> parse_address("tcp://127.0.0.1:7000")
    Address(scheme='tcp', path='', host='127.0.0.1', port=7000, argv=(), name='')
    """
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in SCHEMES:
        raise AddressError(
            f"unknown address {text!r}: expected one of unix:PATH, tcp://HOST:PORT, tls://HOST:PORT,"
            " ws://HOST:PORT/PATH, wss://HOST:PORT/PATH, stdio:, exec:CMD, service:NAME, libipc:NAME"
        )
    if scheme in ("unix", "service", "libipc") and not hasattr(socket, "AF_UNIX"):
        raise NotOnThisPlatform(
            f"{text!r}: {scheme}: addresses need Unix sockets, which Python has not here ({sys.platform});"
            " not on Windows yet (ipcprims uses named pipes there): use tcp://127.0.0.1:PORT"
        )
    if scheme in ("service", "libipc"):
        return Address(scheme, name=check_name_form(rest))
    if scheme == "unix":
        path = rest.removeprefix("//")
        if not path:
            raise AddressError(f"{text!r}: a unix address needs a path")
        if len(os.fsencode(path)) > SUN_PATH_MAX:
            raise AddressTooLong(f"{text!r}: a Unix socket path can have at most {SUN_PATH_MAX} bytes")
        return Address("unix", path=path)
    if scheme in ("tcp", "tls", "ws", "wss"):
        return _parse_host_port(scheme, text, rest)
    if scheme == "stdio":
        if rest:
            raise AddressError(f"{text!r}: stdio takes nothing after the colon")
        return Address("stdio")
    argv = tuple(shlex.split(rest))
    if not argv:
        raise AddressError(f"{text!r}: exec needs a program")
    return Address("exec", argv=argv)


def _parse_host_port(scheme: str, text: str, rest: str) -> Address:
    if not rest.startswith("//"):
        raise AddressError(f"{text!r}: expected {scheme}://HOST:PORT")
    hostport, slash, path = rest[2:].partition("/")
    if slash and scheme not in ("ws", "wss"):
        raise AddressError(f"{text!r}: a {scheme} address has no path")
    if hostport.startswith("["):
        host, bracket, port_text = hostport[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise AddressError(f"{text!r}: expected {scheme}://[IPv6]:PORT")
        port_text = port_text[1:]
    else:
        host, colon, port_text = hostport.rpartition(":")
        if not colon:
            raise AddressError(f"{text!r}: missing port")
    if not host:
        raise AddressError(f"{text!r}: missing host")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AddressError(f"{text!r}: port must be 0..65535")
    return Address(scheme, path="/" + path if slash else "", host=host, port=int(port_text))


def remove_stale_socket(path: str) -> None:
    """Unlink a socket file nobody listens on (left by a crashed server); refuse a live one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AddressError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            os.unlink(path)
            return
        raise
    finally:
        probe.close()
    raise AddressInUse(f"{path}: another server is listening there")
