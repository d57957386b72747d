"""The rules of a gateway's relay (``ipfi gateway``), no I/O: the client's hello checked and
forwarded with who the client is, the frames after it counted (not copied, not re-encoded) against
the limits, and the rates a client may send at."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from .errors import AuthenticationFailed, FrameError, FrameTooLarge, HandshakeError
from .frames import CONTROL, DEFAULT_MAX_PAYLOAD, HEADER_SIZE, MAGIC, encode_frame
from .handshake import Hello, parse_hello, token_among

_HEADER_SIZE: Final = HEADER_SIZE


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """What one gateway allows (each inclusive; ``None``: no limit)."""

    #: Clients connected at once; past it a new one is closed at once.
    max_clients: int = 4096
    #: Largest frame payload a client may send (ipcprims' default, 16 MiB).
    max_frame_payload: int = DEFAULT_MAX_PAYLOAD
    #: Largest hello.
    max_hello: int = 16 * 1024
    #: Seconds a client has to send its hello (and, before it, to finish its TLS or WebSocket
    #: opening handshake).
    hello_timeout: float = 5.0
    #: Frames per second a client may send, on average (bursts of one second's worth pass at once);
    #: past it the gateway reads from it more slowly.
    frames_per_second: float | None = 10_000.0
    #: Bytes per second a client may send, likewise.
    bytes_per_second: float | None = 64 * 1024 * 1024


class RateLimit:
    """A token bucket: ``rate`` per second, bursts of one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a rate must be positive")
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._last = clock()

    def delay(self, amount: float) -> float:
        """Take ``amount``; the seconds to wait before the sender may go on (0: at once)."""
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate) - amount
        self._last = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class FrameScanner:
    """Where the frames of a byte stream begin and end, without keeping their payloads: how many a
    chunk completes. Raises :class:`FrameError` for bytes that are not frames and
    :class:`FrameTooLarge` for a frame over ``max_payload`` (from its header)."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._header = bytearray()  # a header cut between chunks
        self._remaining = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        completed = 0
        view = memoryview(data)
        offset, size = 0, len(view)
        while offset < size:
            if self._remaining:
                step = min(self._remaining, size - offset)
                self._remaining -= step
                offset += step
                completed += not self._remaining
                continue
            piece = view[offset : offset + _HEADER_SIZE - len(self._header)]
            self._header += piece
            offset += len(piece)
            if len(self._header) < _HEADER_SIZE:
                break
            if self._header[:2] != MAGIC:
                raise FrameError(f"not a frame: it starts {bytes(self._header[:2])!r}, not {MAGIC!r}")
            length = int.from_bytes(self._header[2:6], "little")
            self._header.clear()
            if length > self.max_payload:
                raise FrameTooLarge(f"a frame of {length} bytes, over the gateway's limit of {self.max_payload}")
            self._remaining = length
            completed += not length
        return completed


class HelloReader:
    """The client's first frame, its hello, gathered from chunks of any size (at most
    ``max_hello`` bytes: more, or another channel, raises :class:`HandshakeError`)."""

    def __init__(self, max_hello: int) -> None:
        self.max_hello = max_hello
        self._buffer = bytearray()

    def feed(self, data: bytes) -> tuple[Hello, bytes] | None:
        """The hello and the bytes after it, once it is whole (``None`` until then)."""
        buffer = self._buffer
        buffer += data
        if len(buffer) < _HEADER_SIZE:
            return None
        if buffer[:2] != MAGIC or int.from_bytes(buffer[6:8], "little") != CONTROL:
            raise HandshakeError("the client's first frame is not a hello (control channel 0)")
        length = int.from_bytes(buffer[2:6], "little")
        if length > self.max_hello:
            raise HandshakeError(f"a hello of {length} bytes, over the limit of {self.max_hello}")
        if len(buffer) < _HEADER_SIZE + length:
            return None
        hello = parse_hello(bytes(buffer[_HEADER_SIZE : _HEADER_SIZE + length]), is_reply=False)
        return hello, bytes(buffer[_HEADER_SIZE + length :])


def refused(hello: Hello, tokens: frozenset[str] | None) -> AuthenticationFailed | None:
    """Why a client's hello may not pass ``tokens`` (``None``: it may). The client is told with
    :func:`~ipfi.core.negotiation.refusal`."""
    if tokens is None or token_among(hello.auth_token, tokens):
        return None
    return AuthenticationFailed("no token" if hello.auth_token is None else "a token the gateway does not accept")


def forwarded(hello: Hello, identity: dict[str, str]) -> bytes:
    """The hello frame the service gets: the client's, with ``forwarded_for`` saying who it is (what
    the client wrote there itself is dropped)."""
    return encode_frame(CONTROL, replace(hello, forwarded_for=identity).to_json())
