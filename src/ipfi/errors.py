"""Every exception ipfi raises, in one place.

Local failures (bad bytes, a dead wire, a refused handshake) derive from :class:`IpfiError`.
A failure *inside a remote procedure* arrives as :class:`RemoteError` or one of its subclasses;
the remote side's exception type name, message and optional data travel with it.
"""

from __future__ import annotations

from typing import Any


class IpfiError(Exception):
    """Base class of every ipfi exception."""


class FrameError(IpfiError):
    """A frame could not be decoded; the connection it came from cannot continue."""


class InvalidMagic(FrameError):
    """The first two bytes of a frame header were not ``b"IP"``."""


class PayloadTooLarge(FrameError):
    """A frame or message announced a size above the configured limit."""


class ProtocolError(IpfiError):
    """The peer broke the protocol; only its own connection is closed."""


class HandshakeError(ProtocolError):
    """The handshake was refused, malformed or too slow."""


class HandshakeTimeout(HandshakeError, TimeoutError):
    """The peer did not complete the handshake in time (also a ``TimeoutError``)."""


class ConnectionLost(IpfiError):
    """The connection ended while a call, stream or send was pending on it."""


class InheritedConnection(IpfiError):
    """A blocking connection was used in a process forked from the one that opened it.

    The child must open its own connection; the parent's keeps working.
    """


class AddressError(IpfiError, ValueError):
    """An address string could not be understood (see :func:`ipfi.addresses.parse_address`)."""


class AddressTooLong(AddressError):
    """A Unix socket path (or a service name with its directory) does not fit the kernel's 108 bytes."""


class AddressInUse(AddressError):
    """Another server is serving this address (a live socket there, or a service's lock held)."""


class RemoteError(IpfiError):
    """A remote procedure failed.

    ``remote_type`` is the remote exception's type name, ``data`` an optional codec-encodable value.
    """

    wire_type = "RemoteError"

    def __init__(self, message: str, *, remote_type: str | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.remote_type = remote_type or self.wire_type
        self.data = data

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
    """The arguments did not fit the procedure's signature."""

    wire_type = "InvalidArguments"


class Busy(RemoteError):
    """The peer refused the call because a limit was reached (e.g. too many calls in flight)."""

    wire_type = "Busy"


class DeadlineExceeded(RemoteError):
    """The call's ``timeout`` passed before a reply arrived; the remote procedure was cancelled."""

    wire_type = "DeadlineExceeded"


class Cancelled(RemoteError):
    """The remote procedure was cancelled (its caller cancelled, or the callee is shutting down)."""

    wire_type = "Cancelled"


_BY_WIRE_TYPE: dict[str, type[RemoteError]] = {
    cls.wire_type: cls for cls in (ProcedureNotFound, InvalidArguments, Busy, DeadlineExceeded, Cancelled)
}


def remote_error_from_wire(remote_type: str, message: str, data: Any) -> RemoteError:
    """Build the most specific :class:`RemoteError` subclass for an error reply."""
    cls = _BY_WIRE_TYPE.get(remote_type, RemoteError)
    return cls(message, remote_type=remote_type, data=data)
