"""The exit codes of the ``ipfi`` command: ipcprims' table, so scripts written for it keep working."""

from __future__ import annotations

import json

from ..core.errors import (
    AddressError,
    AddressInUse,
    AddressTooLong,
    ConnectionLost,
    HandshakeError,
    InvalidArguments,
    LocalProtocolError,
    PayloadTooLarge,
    ProcedureNotFound,
    RemoteError,
    SchemaError,
)

OK = 0
DISCONNECTED = 1
TRANSPORT = 3
DOCTOR_FAILED = 30
PERMISSION = 50
INVALID_DATA = 60
USAGE = 64
TIMEOUT = 124
INTERNAL = 125

TABLE = {
    OK: "success",
    DISCONNECTED: "connection refused, closed or lost; or the remote procedure failed",
    TRANSPORT: "other transport error (e.g. socket path too long, address in use)",
    DOCTOR_FAILED: "a doctor check failed",
    PERMISSION: "permission denied",
    INVALID_DATA: "invalid JSON, payload too large, or a schema (--validate) refused it or did not load",
    USAGE: "usage error: bad arguments or address, unsupported channel, unknown procedure, RPC with a plain peer",
    TIMEOUT: "timeout",
    INTERNAL: "internal failure",
}


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code that reports ``exc``."""
    if isinstance(exc, UsageError | ProcedureNotFound | InvalidArguments | LocalProtocolError):
        return USAGE
    if isinstance(exc, PermissionError):
        return PERMISSION
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, PayloadTooLarge | SchemaError | json.JSONDecodeError):
        return INVALID_DATA
    if isinstance(exc, AddressInUse | AddressTooLong):
        return TRANSPORT
    if isinstance(exc, AddressError):
        return USAGE
    if isinstance(exc, ConnectionError | ConnectionLost | HandshakeError | RemoteError):
        return DISCONNECTED
    if isinstance(exc, OSError):
        return TRANSPORT
    return INTERNAL


def describe_failure(exc: BaseException) -> str:
    """One line for stderr: the error's type and what it says (a bare TimeoutError says it timed out)."""
    if isinstance(exc, UsageError):
        return str(exc)
    message = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def describe_table() -> str:
    """The table as ``--help`` shows it."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in TABLE.items())
