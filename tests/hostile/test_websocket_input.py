"""What a WebSocket peer sends the blocking driver's link, fuzzed: any bytes end in a clean end of
reading (EOF, or a ``ConnectionError`` saying why), never another exception or a wait; binary
messages in any frames and pieces read back byte for byte, up to whatever ends them."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from ipfi.net.websocket import MESSAGE_SIZE
from ipfi.sync.links import SocketLink
from ipfi.sync.websocket_link import WebSocketLink


def read_all(sent: list[bytes]) -> tuple[bytes, BaseException | None]:
    """``sent`` (pieces of the wire, written apart) read by a server's link until its end: the
    bytes read, and what ended them (``None``: EOF)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        protocol = ServerProtocol(state=State.OPEN, max_size=MESSAGE_SIZE)
        link = WebSocketLink(SocketLink(ours), protocol, "/", [])
        ours.settimeout(5)  # (a read that waits is a failure, not a hang)

        def write() -> None:
            with contextlib.suppress(OSError):  # (the link may end, and close, before all is sent)
                for piece in sent:
                    theirs.sendall(piece)
                theirs.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        read = bytearray()
        buffer = memoryview(bytearray(1000))
        ended: BaseException | None = None
        try:
            while count := link.recv_into(buffer):
                read += buffer[:count]
        except ConnectionError as exc:
            ended = exc
        link.shutdown()
        writer.join(5)
        return bytes(read), ended


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.binary(max_size=300), max_size=6))
def test_any_bytes_end_reading_cleanly(data: list[bytes]) -> None:
    read_all(data)  # (anything but EOF or a ConnectionError fails the test)


def frames(messages: list[tuple[str, bytes]], pieces: int) -> Iterator[bytes]:
    """A client's frames for ``messages`` (kind, payload), each cut into up to ``pieces`` frames."""
    client = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN)
    for kind, payload in messages:
        if kind == "ping":
            client.send_ping(payload[:125])
        elif kind == "close":
            client.send_close(1000)
        else:
            size = max(1, len(payload) // pieces)
            cuts = [payload[start : start + size] for start in range(0, len(payload), size)] or [b""]
            send = client.send_binary if kind == "binary" else client.send_text
            send(cuts[0], fin=len(cuts) == 1)
            for index, cut in enumerate(cuts[1:], 2):
                client.send_continuation(cut, fin=index == len(cuts))
        yield from client.data_to_send()
        if kind == "close":
            return


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.tuples(st.sampled_from(["binary", "binary", "ping", "text", "close"]), st.binary(max_size=2000)), max_size=8
    ),
    pieces=st.integers(1, 5),
    split=st.integers(1, 97),
)
def test_binary_messages_read_back_up_to_what_ends_them(
    messages: list[tuple[str, bytes]], pieces: int, split: int
) -> None:
    wire = b"".join(frames(messages, pieces))
    read, ended = read_all([wire[start : start + split] for start in range(0, len(wire), split)])
    expected = b""
    for kind, payload in messages:
        if kind in ("text", "close"):
            break
        if kind == "binary":
            expected += payload
    assert read == expected
    first_end = next((kind for kind, _ in messages if kind in ("text", "close")), None)
    if first_end == "text":
        assert isinstance(ended, ConnectionError) and "text" in str(ended)
    else:  # a close frame (1000), or the wire's end without one
        assert (ended is None) == (first_end == "close"), ended


def test_a_frame_over_the_limit_ends_reading_with_why() -> None:
    client = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=None)
    client.send_binary(b"\x00" * (MESSAGE_SIZE + 1))
    read, ended = read_all(client.data_to_send())
    assert read == b"" and isinstance(ended, ConnectionResetError) and "1048576" in str(ended)
