"""TLS for the blocking driver: a socket link whose bytes pass through an ``ssl.SSLObject``.

Not an ``ssl.SSLSocket``: the blocking driver reads in one thread while others write, and OpenSSL
forbids using one connection from two threads at once (``SSL_read`` beside ``SSL_write``; CPython
gh-151508 crashed so). Here the TLS state is touched under a lock only, and the socket itself is
read and written outside it, so a reader waiting for bytes never holds up a writer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Final, cast

from ..core.codecs import Buffer
from ..net.hangup import wait_readable
from .links import SocketLink

_RECEIVE_SIZE: Final = 256 * 1024


class TlsLink(SocketLink):
    """A connected socket, TLS on top (see the module's docstring). Build with :func:`tls_link`."""

    def __init__(
        self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
    ) -> None:
        super().__init__(sock)
        self._tls = tls
        self._incoming = incoming
        self._outgoing = outgoing
        self._tls_lock = threading.Lock()  # the TLS state
        self._send_lock = threading.Lock()  # the socket's writing: encrypted bytes leave in order
        self.extra.update(peercert=tls.getpeercert(), cipher=tls.cipher(), ssl_object=tls)
        self.recv_into = self._recv_into  # (SocketLink binds the socket's own: not here)
        self.send = self._send

    def send_pieces(self, pieces: list[Buffer]) -> None:
        with self._send_lock:
            with self._tls_lock:
                for piece in pieces:
                    if piece:
                        self._tls.write(piece)
                encrypted = self._outgoing.read()
            if encrypted:
                self.sock.sendall(encrypted)

    def _recv_into(self, buffer: memoryview) -> int:
        while True:
            with self._tls_lock:
                try:
                    return cast(int, self._tls.read(len(buffer), buffer))  # (0: the peer closed TLS)
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return 0
            data = self.sock.recv(_RECEIVE_SIZE)
            with self._tls_lock:
                if not data:
                    self._incoming.write_eof()
                else:
                    self._incoming.write(data)
                owed = self._outgoing.pending  # (TLS's own messages, a key update's answer)
            if owed:
                self._send(b"")

    def _send(self, data: Buffer) -> None:
        self.send_pieces([data])  # (empty: what TLS owes of its own, a key update's answer)

    def readable(self, timeout: float | None) -> bool:
        with self._tls_lock:
            if self._tls.pending() or self._incoming.pending:
                return True
        fd = self.sock.fileno()
        return fd < 0 or wait_readable(fd, timeout)


def tls_link(
    sock: socket.socket, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None, timeout: float
) -> TlsLink:
    """The TLS handshake over connected ``sock``, within ``timeout`` seconds. Raises
    ``ssl.SSLError`` (``ssl.SSLCertVerificationError`` for a certificate refused), ``TimeoutError``
    or ``OSError``; the socket is closed then."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=server_side, server_hostname=server_hostname)
    deadline = time.monotonic() + timeout
    try:
        sock.settimeout(timeout)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            finally:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no TLS handshake within {timeout} s")
            sock.settimeout(remaining)
            data = sock.recv(_RECEIVE_SIZE)
            if not data:
                raise ConnectionResetError("the peer closed the connection during the TLS handshake")
            incoming.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return TlsLink(sock, tls, incoming, outgoing)
