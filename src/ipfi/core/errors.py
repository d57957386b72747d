"""Every exception ipfi raises, in one place (``ipfi`` exports them all).

Where a Python built-in means the same thing, the ipfi error is also one: a lost connection is a
``ConnectionError``, every timeout a ``TimeoutError``, a bad address or an oversize send a
``ValueError``, API misuse a ``RuntimeError``. As in h11, what this side did wrong
(:class:`LocalProtocolError`, :class:`InvalidState`, :class:`PayloadTooLarge`) is kept apart from
what the peer did wrong (:class:`RemoteProtocolError` and below), which only ever ends the peer's
own connection::

    IpfiError
    ├── ProtocolError
    │   ├── LocalProtocolError            this side asked for something the protocol forbids here
    │   └── RemoteProtocolError           the peer broke the protocol; its connection is closed
    │       ├── FrameError                a frame could not be decoded
    │       │   ├── InvalidMagic
    │       │   └── FrameTooLarge         a frame or message over this side's limits
    │       └── HandshakeError            the handshake was refused or malformed
    │           └── HandshakeTimeout      (also TimeoutError)
    ├── InvalidState                      (also RuntimeError) e.g. a call after close()
    ├── PayloadTooLarge                   (also ValueError) a send over the peer's limits
    ├── ConnectionLost                    (also ConnectionError) every pending call when a connection ends
    │   ├── KeepaliveTimeout              (also TimeoutError) the peer stayed silent too long
    │   └── IdleTimeout                   nothing happened on the connection for too long
    ├── InheritedConnection               a blocking connection used in a forked child
    ├── NotOnThisPlatform                 (also NotImplementedError) e.g. Unix sockets on Windows
    ├── AddressError                      (also ValueError)
    │   ├── AddressTooLong
    │   └── AddressInUse
    └── RemoteError                       a remote procedure failed
        ├── ProcedureNotFound
        ├── InvalidArguments              the arguments did not fit the signature or its type hints
        ├── InvalidResult                 (also TypeError) a result did not fit its declared type
        ├── Busy
        ├── DeadlineExceeded              (also TimeoutError)
        └── Cancelled
"""

from __future__ import annotations

from typing import Any


class IpfiError(Exception):
    """Base class of every ipfi exception."""


class ProtocolError(IpfiError):
    """A protocol rule was broken, by this side (:class:`LocalProtocolError`) or the peer."""


class LocalProtocolError(ProtocolError):
    """This side asked for something the protocol does not allow now (e.g. RPC with a plain
    ipcprims peer, a message on a channel that was not negotiated). Nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; only its own connection is closed."""


class FrameError(RemoteProtocolError):
    """A frame could not be decoded; the connection it came from cannot continue."""


class InvalidMagic(FrameError):
    """The first two bytes of a frame header were not ``b"IP"``."""


class FrameTooLarge(FrameError):
    """The peer announced a frame, or sent a message, larger than this side's limits allow."""


class HandshakeError(RemoteProtocolError):
    """The handshake was refused, malformed or too slow."""


class AuthenticationFailed(HandshakeError):
    """The server refused this client: its ``authenticate`` said no (the token, the user...).
    An ipfi server tells an ipfi client so before closing; the reason never holds the token."""


class HandshakeTimeout(HandshakeError, TimeoutError):
    """The peer did not complete the handshake in time (also a ``TimeoutError``)."""


class InvalidState(IpfiError, RuntimeError):
    """The API was used in a state that does not allow it, e.g. a call on a connection this side
    closed, or before its handshake completed (also a ``RuntimeError``)."""


class PayloadTooLarge(IpfiError, ValueError):
    """A message this side tried to send exceeds the peer's frame or message limit; nothing was sent
    (also a ``ValueError``)."""


class ConnectionLost(IpfiError, ConnectionError):
    """The connection ended while a call, stream or send was pending on it (a ``ConnectionError``)."""


class KeepaliveTimeout(ConnectionLost, TimeoutError):
    """The peer answered no ping for the keepalive's timeout (also a ``TimeoutError``)."""


class IdleTimeout(ConnectionLost):
    """Nothing was received and no call was in flight for ``Limits.idle_timeout`` seconds."""


class InheritedConnection(IpfiError):
    """A blocking connection was used in a process forked from the one that opened it.

    The child must open its own connection; the parent's keeps working.
    """


class AddressError(IpfiError, ValueError):
    """An address string could not be understood (see :func:`ipfi.net.addresses.parse_address`)."""


class AddressTooLong(AddressError):
    """A Unix socket path (or a service name with its directory) does not fit the kernel's 108 bytes."""


class AddressInUse(AddressError):
    """Another server is serving this address (a live socket there, or a service's lock held)."""


class NotOnThisPlatform(IpfiError, NotImplementedError):
    """What this platform cannot do yet: ``unix:`` and ``service:`` addresses where Python has no
    Unix sockets (Windows: ipcprims uses named pipes there, ipfi does not yet); a named service's
    lock where there is no ``fcntl``."""


class SchemaError(IpfiError, ValueError):
    """A JSON Schema that cannot be loaded or compiled (see :class:`ipfi.Schemas`), or a payload that
    one refuses (the ``ipfi`` command's ``send --validate`` and ``listen --validate``)."""


class RemoteError(IpfiError):
    """A remote procedure failed.

    ``remote_type`` is the remote exception's type name, ``message`` its text, ``data`` a value it
    declared for the wire (see :meth:`Interface.procedure`) or ``None``, ``remote_traceback`` its
    traceback when the peer sends them.
    """

    wire_type = "RemoteError"

    def __init__(self, message: str, *, remote_type: str | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.remote_type = remote_type or self.wire_type
        self.data = data
        #: The remote exception's formatted traceback (with its causes), when the peer sends them
        #: (its ``send_tracebacks`` option); ``None`` otherwise.
        self.remote_traceback: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_remote_error, (type(self), self.message, self.remote_type, self.data))

    def __str__(self) -> str:
        if self.remote_type == self.wire_type:
            return self.message
        return f"{self.remote_type}: {self.message}"


def _rebuild_remote_error(cls: type[RemoteError], message: str, remote_type: str, data: Any) -> RemoteError:
    return cls(message, remote_type=remote_type, data=data)


class ProcedureNotFound(RemoteError):
    """The peer offers no procedure of that name."""

    wire_type = "ProcedureNotFound"


class InvalidArguments(RemoteError):
    """The arguments did not fit the procedure's signature, or its type hints (the message names
    the parameter and where in it: ``add: b: expected int, got str``)."""

    wire_type = "InvalidArguments"


class InvalidResult(RemoteError, TypeError):
    """A result (or a streamed item) did not fit the type its procedure declared: sent by a
    procedure whose return hint its result broke, and raised by a typed proxy (see
    ``peer.proxy(Protocol)``) for a result that does not fit the protocol's hint."""

    wire_type = "InvalidResult"


class Busy(RemoteError):
    """The peer refused the call because a limit was reached (e.g. too many calls in flight)."""

    wire_type = "Busy"


class DeadlineExceeded(RemoteError, TimeoutError):
    """The call's deadline passed before a reply arrived; the remote procedure was cancelled.

    Raised on the caller when its ``timeout`` passes, and sent by the callee when the deadline it
    received passes first (also a ``TimeoutError``).
    """

    wire_type = "DeadlineExceeded"


class Cancelled(RemoteError):
    """The remote procedure was cancelled (its caller cancelled, or the callee is shutting down)."""

    wire_type = "Cancelled"


_BY_WIRE_TYPE: dict[str, type[RemoteError]] = {
    cls.wire_type: cls
    for cls in (ProcedureNotFound, InvalidArguments, InvalidResult, Busy, DeadlineExceeded, Cancelled)
}


def remote_error_from_wire(remote_type: str, message: str, data: Any, traceback: str | None = None) -> RemoteError:
    """Build the most specific :class:`RemoteError` subclass for an error reply; a remote traceback
    becomes its ``__cause__``, so that it is printed with the local one."""
    cls = _BY_WIRE_TYPE.get(remote_type, RemoteError)
    error = cls(message, remote_type=remote_type, data=data)
    if traceback is not None:
        error.remote_traceback = traceback
        error.__cause__ = RemoteTraceback(traceback)
    return error


class RemoteTraceback(Exception):
    """The traceback of a remote procedure's exception, as its peer formatted it (the
    ``__cause__`` of a :class:`RemoteError` when the peer sends tracebacks)."""

    def __str__(self) -> str:
        return f"\n\nthe remote traceback:\n\n{self.args[0]}"
