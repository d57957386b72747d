"""WebSocket wires for the blocking driver: ipfi's byte stream in binary messages over the driver's
own socket link (``ws://``) or TLS link (``wss://``), the ``websockets`` library's Sans-I/O
protocol saying what the bytes on the wire mean (see :mod:`ipfi.net.websocket`).

Not ``websockets.sync``: its connections read in a thread of their own that waits in ``select()``
on the socket, which does not wake for bytes OpenSSL has already taken from it (with websockets
17.3 and 17.4, one ``wss://`` opening handshake in 25-250 waited out its timeout), and they use one
``ssl.SSLSocket`` from two threads at once (see :mod:`ipfi.sync.tls_link`). Here the connection's
reader is the peer's, and a server's connections need no thread but that one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

from ..core.codecs import Buffer
from ..net.addresses import Address
from ..net.hangup import wait_writable
from ..net.websocket import MESSAGE_SIZE, TextMessage, messages_of, url_of
from .links import Link

if TYPE_CHECKING:
    from websockets.protocol import Protocol

_NOTHING: Final = memoryview(b"")
#: Opcodes (RFC 6455 5.2): what carries a binary message, and a text one.
_DATA_OPCODES: Final = (0x2, 0x0)  # (binary, continuation)
_TEXT_OPCODE: Final = 0x1
#: Close codes of a connection that ended well: normal, going away, none given (websockets' OK_CLOSE_CODES).
_CLEAN_CLOSE_CODES: Final = frozenset((1000, 1001, 1005))
#: The most read from the link at once.
_RECEIVE_SIZE: Final = 64 * 1024


class WebSocketLink:
    """A :class:`~ipfi.sync.links.Link` over an open WebSocket connection on ``link``: a received
    message is handed out in as many reads as the reader's buffer needs; what is sent leaves in
    binary messages of at most :data:`~ipfi.net.websocket.MESSAGE_SIZE` bytes."""

    def __init__(self, link: Link, protocol: Protocol, path: str | None, received: list[Any]) -> None:
        from websockets.protocol import State

        self._link = link
        self._protocol = protocol
        self._open = State.OPEN  # (looked up once: each send checks it)
        # The reader feeds the protocol while other threads send: its state is touched under
        # _state_lock only, and what it owes the wire leaves under _send_lock, whole and in order.
        self._state_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._owed: list[bytes] = []  # what the reader owes the wire while a writer holds it (under _state_lock)
        self._messages: deque[memoryview] = deque()  # received, not yet read
        self._left = _NOTHING  # what the message being read still holds
        self._end: BaseException | None = None  # how the connection ended, for the read after the last message
        self._chunk: bytearray | None = None  # (allocated at the first read)
        self.extra: dict[str, Any] = {**link.extra, "path": path}
        self._take(received)

    def recv_into(self, buffer: memoryview) -> int:
        while not self._left:
            if self._messages:
                self._left = self._messages.popleft()
            elif self._end is None:
                self._receive()
            elif isinstance(self._end, EOFError):
                return 0
            else:
                raise self._end
        count = min(len(buffer), len(self._left))
        buffer[:count] = self._left[:count]
        self._left = self._left[count:]
        return count

    def readable(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self._left or self._messages or self._end is not None):
            # (bytes on the wire may be part of a frame, or a ping: read until a message is whole)
            if not self._link.readable(None if deadline is None else deadline - time.monotonic()):
                return False
            self._receive()
        return True

    def _receive(self) -> None:
        """One read from the link, its frames taken and what the protocol owes for them sent (a
        pong, the answer to a close); the link's ``OSError``, the end."""
        if self._chunk is None:
            self._chunk = bytearray(_RECEIVE_SIZE)
        try:
            count = self._link.recv_into(memoryview(self._chunk))
        except OSError as exc:
            self._end = exc
            return
        with self._state_lock:
            if count:  # (a view: the protocol's buffer copies it, once)
                self._protocol.receive_data(cast(bytes, memoryview(self._chunk)[:count]))
            else:
                self._protocol.receive_eof()
            events = self._protocol.events_received()
            owed = self._protocol.data_to_send()
        self._send_owed(owed)
        self._take(events)

    def _take(self, frames: list[Any]) -> None:
        """Received ``frames``: binary messages to read; a text message, or the protocol's end
        (a close frame, a frame it refused, the wire's EOF), the end of reading."""
        for frame in frames:
            if self._end is not None:
                return
            if frame.opcode in _DATA_OPCODES:
                if frame.data:
                    self._messages.append(memoryview(frame.data))
            elif frame.opcode == _TEXT_OPCODE:
                self._end = TextMessage()
                with self._state_lock:
                    self._protocol.fail(TextMessage.close_code, TextMessage.close_reason)
                    owed = self._protocol.data_to_send()
                self._send_owed(owed)
        protocol = self._protocol
        if self._end is None and (protocol.close_rcvd is not None or protocol.parser_exc is not None):
            closing = protocol.close_rcvd
            if protocol.parser_exc is not None:
                self._end = ConnectionResetError(f"WebSocket connection broken: {protocol.parser_exc}")
            elif closing is not None and closing.code in _CLEAN_CLOSE_CODES:
                self._end = EOFError()
            else:
                self._end = ConnectionResetError(f"WebSocket connection closed by the peer: {closing}")

    def _send_owed(self, owed: list[bytes]) -> None:
        """What the protocol owes the wire for frames received (a pong, a close frame). The reader
        never waits for the wire: a writer that holds it may be waiting for a peer that waits for
        this reader, so what it owes is left for that writer to send when it is done."""
        if owed:
            with self._state_lock:
                self._owed += owed
            self._send_left_owed()

    def _send_left_owed(self) -> None:
        """What the reader owes, sent if no writer holds the wire (else that writer sends it). A
        broken wire ends the next read, not this one."""
        while self._owed and self._send_lock.acquire(blocking=False):
            try:
                with self._state_lock:
                    owed, self._owed = self._owed, []
                with contextlib.suppress(OSError):
                    _write(self._link, owed)
            finally:
                self._send_lock.release()

    def send(self, data: Buffer) -> None:
        self.send_pieces([data])

    def send_pieces(self, pieces: list[Buffer]) -> None:
        with self._send_lock:
            with self._state_lock:
                if self._protocol.state is not self._open:
                    end = self._end  # (the reader's: why, when it knows)
                    raise ConnectionResetError(str(end) if isinstance(end, OSError) else "WebSocket connection closed")
                for piece in pieces:
                    for message in messages_of(piece) if piece else ():
                        self._protocol.send_binary(message)
                owed = self._protocol.data_to_send()
            _write(self._link, owed)
        if self._owed:  # (the reader's, left while this wrote)
            self._send_left_owed()

    def shutdown(self, code: int = 1000, reason: str = "") -> None:
        """A close frame with ``code`` and ``reason`` if it can leave at once (no writer holds the
        wire, room to write it), then the link shut: never waits for a peer that does not read."""
        fd = self._link.fileno()
        if self._send_lock.acquire(blocking=False):
            try:
                with self._state_lock:
                    if self._protocol.state is self._open:
                        self._protocol.send_close(code, reason)
                    owed, self._owed = self._owed + self._protocol.data_to_send(), []
                if owed and fd is not None and wait_writable(fd, 0):
                    with contextlib.suppress(OSError):
                        _write(self._link, owed)
            finally:
                self._send_lock.release()
        self._link.shutdown()

    def fileno(self) -> int | None:
        return self._link.fileno()

    def close(self) -> None:
        self._link.close()


def open_websocket(link: Link, address: Address, timeout: float) -> WebSocketLink:
    """The client's opening handshake for ``address`` on ``link`` within ``timeout`` seconds.
    Raises ``TimeoutError``, ``OSError`` or the library's ``InvalidHandshake`` (``InvalidStatus``
    for a refused upgrade: a 404 for a path not served); ``link`` is closed then."""
    from websockets.client import ClientProtocol
    from websockets.http11 import USER_AGENT
    from websockets.uri import parse_uri

    try:
        protocol = ClientProtocol(parse_uri(url_of(address)), max_size=MESSAGE_SIZE)
        request = protocol.connect()
        request.headers["User-Agent"] = USER_AGENT
        protocol.send_request(request)
        _write(link, protocol.data_to_send())
        received = _opening(link, protocol, time.monotonic() + timeout)
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
    except BaseException:
        link.close()
        raise
    return WebSocketLink(link, protocol, request.path, received[1:])


def accept_websocket(link: Link, serves: Callable[[str], object], timeout: float) -> WebSocketLink | None:
    """The server's side of a client's opening handshake on ``link``, within ``timeout`` seconds:
    the WebSocket link, or ``None`` when the request was answered with an HTTP error (404 for a
    path ``serves`` refuses with ``False``; 400 or 426 for a request that is no WebSocket upgrade)
    and ``link`` closed. Raises ``TimeoutError`` or ``OSError``; ``link`` is closed then."""
    from websockets.server import ServerProtocol

    try:
        protocol = ServerProtocol(max_size=MESSAGE_SIZE)
        received = _opening(link, protocol, time.monotonic() + timeout)
        request = received[0] if protocol.handshake_exc is None else None
        if request is None:
            response = None  # (the library answered a malformed request itself, or will just close)
        elif serves(request.path) is False:
            response = protocol.reject(404, "no ipfi service at this path\n")
        else:
            response = protocol.accept(request)
        if response is not None:
            protocol.send_response(response)
        _write(link, protocol.data_to_send())
    except BaseException:
        link.close()
        raise
    if request is None or response is None or response.status_code != 101:
        link.shutdown()
        link.close()
        return None
    return WebSocketLink(link, protocol, request.path, received[1:])


def _opening(link: Link, protocol: Any, deadline: float) -> list[Any]:
    """Read until the opening handshake's request or response has come, by ``deadline``: it and
    the frames that came with it. Raises ``TimeoutError``, or ``ConnectionResetError`` for a peer
    that left first (a request the library refused leaves its error in ``handshake_exc``)."""
    chunk = memoryview(bytearray(_RECEIVE_SIZE))
    received: list[Any] = []
    while not received and protocol.handshake_exc is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not link.readable(remaining):
            raise TimeoutError("no WebSocket opening handshake in time (limits.handshake_timeout)")
        count = link.recv_into(chunk)
        if not count:
            raise ConnectionResetError("the peer left during the WebSocket opening handshake")
        protocol.receive_data(bytes(chunk[:count]))
        received = protocol.events_received()
    return received


def _write(link: Link, owed: list[bytes]) -> None:
    """What the protocol owes the wire, on it. (Its empty piece, the protocol's "end of what is
    sent", is left to the link's shutdown, which follows.)"""
    pieces: list[Buffer] = [piece for piece in owed if piece]
    link.send_pieces(pieces)
