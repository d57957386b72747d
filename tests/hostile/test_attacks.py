"""Each class of hostile input, against each server: the server lives, a good client calling during
the attack is served (p99 within 10x), memory stays under a stated cap, and fds and threads come
back once the attacker leaves. (See docs/SECURITY.md for the limits these exercise.)"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import msgpack
import pytest

import ipfi
from ipfi.core import wire
from ipfi.core.frames import encode_frame, frame_header

from .conftest import Target, closed_by_server, good_client, handshaken, hello, raw, served_during

MiB = 1 << 20


def call(call_id: int, name: str, args: list[object] | bytes, flags: int = 0) -> bytes:
    body = args if isinstance(args, bytes) else msgpack.packb(args)
    message = wire.CALL_HEADER.pack(wire.CALL, call_id, flags, 0, len(name)) + name.encode() + body
    return encode_frame(wire.RPC_CHANNEL, message)


def notify(name: str, args: list[object]) -> bytes:
    message = wire.CALL_HEADER.pack(wire.NOTIFY, 0, 0, 0, len(name)) + name.encode() + msgpack.packb(args)
    return encode_frame(wire.RPC_CHANNEL, message)


def credit(call_id: int, amount: int) -> bytes:
    return encode_frame(wire.RPC_CHANNEL, wire.CREDIT_MESSAGE.pack(wire.CREDIT, call_id, amount))


@contextlib.contextmanager
def attackers(count: int, target: Target, act: Callable[[socket.socket], None]) -> Iterator[list[socket.socket]]:
    """``count`` raw connections, each handed to ``act``; all closed (the attacker leaves) at the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = raw(target)
            socks.append(sock)
            act(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_announced_limits_are_clamped(start: Callable[..., Target]) -> None:
    target = start()
    fds, threads = target.fds, target.threads
    refused = handshaken_or_closed(target, max_frame=1)
    assert refused
    with contextlib.ExitStack() as stack:

        def attack() -> list[socket.socket]:
            socks = []
            for _ in range(4):  # a window of 2^63 and grants of 2^32-1, then never reading
                sock = stack.enter_context(handshaken(target, window=1 << 63))
                sock.sendall(call(1, "flood", [1024]) + credit(1, 0xFFFFFFFF) * 8)
                socks.append(sock)
            time.sleep(0.5)
            return socks

        served_during(target, attack, rss_cap=64 * MiB)
    assert target.settled(fds, threads)


def handshaken_or_closed(target: Target, **extension: object) -> bool:
    """Whether the server refuses a hello announcing ``extension`` (it closes the connection)."""
    with raw(target) as sock:
        sock.sendall(hello(**extension))
        return closed_by_server(sock)


def test_frame_headers_announcing_large_payloads_commit_no_memory(start: Callable[..., Target]) -> None:
    target = start()
    fds, threads = target.fds, target.threads

    def announce(sock: socket.socket) -> None:
        sock.sendall(hello() + frame_header(2, 16 * MiB) + bytes(1000))

    with contextlib.ExitStack() as stack:
        served_during(target, lambda: stack.enter_context(attackers(40, target, announce)), rss_cap=32 * MiB)
    assert target.settled(fds, threads)


def test_a_generator_given_endless_credit_does_not_starve_others(start: Callable[..., Target]) -> None:
    target = start()
    fds, threads = target.fds, target.threads
    stop = threading.Event()

    def consume(sock: socket.socket) -> None:
        sock.settimeout(0.5)
        with contextlib.suppress(OSError):
            while not stop.is_set():
                sock.sendall(credit(1, 0xFFFFFFFF))
                sock.recv(1 << 20)

    def attack() -> list[threading.Thread]:
        readers = []
        for _ in range(2):
            sock = handshaken(target, window=1 << 16)
            # (items of 4 KiB: the 65,536 items of credit an attacker may hold then take long enough
            # to send that a producer which never yielded between batches would be seen)
            sock.sendall(call(1, "flood", [4096]))
            reader = threading.Thread(target=lambda s=sock: (consume(s), s.close()), daemon=True)
            reader.start()
            readers.append(reader)
        time.sleep(0.3)
        return readers

    try:
        served_during(target, attack, rss_cap=64 * MiB)
    finally:
        stop.set()
    assert target.settled(fds, threads)


def test_unread_messages_hold_nothing_once_their_sender_leaves(start: Callable[..., Target]) -> None:
    target = start()
    fds, threads = target.fds, target.threads

    def fill(sock: socket.socket) -> None:
        sock.sendall(hello())
        sock.settimeout(0.5)  # (half a second without progress: the server has stopped reading)
        with contextlib.suppress(OSError):  # the server stops reading: the send may not finish
            sock.sendall(encode_frame(2, bytes(4096)) * 2000)

    with contextlib.ExitStack() as stack:
        served_during(target, lambda: stack.enter_context(attackers(3, target, fill)), rss_cap=64 * MiB)
    assert target.settled(fds, threads), "a connection paused on its full queue outlived its peer"


MALFORMED = {
    "deep JSON hello": encode_frame(0, b"[" * 16_000),  # (within the handshake's 16 KiB)
    "deep JSON hello object": encode_frame(0, b'{"a":' * 3_000),
    "oversize hello": encode_frame(0, b" " * 20_000),
    "hello in UTF-16": encode_frame(0, json.dumps({"protocol": "ipcprims", "version": "1.0"}).encode("utf-16")),
    "bad magic": b"XX" + bytes(6),
    "control type is a list": hello() + encode_frame(0, b'{"type": []}'),
    "deep JSON control": hello() + encode_frame(0, b"[" * 200_000),
    "truncated call": hello() + encode_frame(1, b"\x01\x01"),
    "a reply to nothing": hello() + encode_frame(1, wire.ID_HEADER.pack(wire.RESULT, 7) + b"\xc0"),
    "a fragment in a fragment": hello() + encode_frame(1, b"\x10\x01") + encode_frame(1, b"\x11\x10"),
    "channel not negotiated": hello() + encode_frame(999, b"x"),
}


#: Messages framed well whose bodies do not decode: answered, and the connection goes on.
UNDECODABLE = {
    "deeply nested arguments": b"\x91" * 100_000 + b"\xc0",
    "not msgpack": b"\xc1",
    "a keyword flag without keywords": b"\x90",
}


@pytest.mark.parametrize("kind", UNDECODABLE)
def test_a_call_that_does_not_decode_is_answered_and_its_connection_lives(
    start: Callable[..., Target], kind: str
) -> None:
    target = start()
    fds, threads = target.fds, target.threads
    flags = 1 if kind == "a keyword flag without keywords" else 0

    def attack() -> None:
        with handshaken(target) as sock:
            for call_id in range(1, 200, 2):
                sock.sendall(call(call_id, "add", UNDECODABLE[kind], flags=flags))
            answers = b""
            sock.settimeout(5)
            while answers.count(b"InvalidArguments") < 100:
                data = sock.recv(65536)
                assert data, "the server closed the connection"
                answers += data
            assert not closed_by_server(sock, wait=0.2)

    served_during(target, attack, rss_cap=32 * MiB)
    assert target.settled(fds, threads)
    assert not [line for line in target.log if "Traceback" in line]


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_input_ends_only_its_own_connection(start: Callable[..., Target], kind: str) -> None:
    target = start()
    fds, threads = target.fds, target.threads

    def attack() -> None:
        for _ in range(3):
            with raw(target) as sock:
                with contextlib.suppress(OSError):  # (the server may close before it has all)
                    sock.sendall(MALFORMED[kind])
                if kind != "a reply to nothing":  # (ignored, as a late reply is)
                    assert closed_by_server(sock)

    served_during(target, attack, rss_cap=32 * MiB)
    assert target.settled(fds, threads)
    assert not [line for line in target.log if "Traceback" in line]


def test_decoding_cannot_amplify_memory(start: Callable[..., Target]) -> None:
    target = start()
    fds, threads = target.fds, target.threads
    size = 4 * MiB
    empty_lists = b"\xdd" + size.to_bytes(4, "big") + b"\x90" * size

    def attack() -> None:
        for name in ("add", "no_such_procedure"):
            with handshaken(target) as sock:
                sock.sendall(call(1, name, empty_lists))
                assert sock.recv(65536), "no reply"  # (the call is refused; the connection stays)

    served_during(target, attack, rss_cap=25 * size)  # unbounded, it took 64x
    assert target.settled(fds, threads)


def test_silent_connections_are_dropped_and_refusals_logged_once(start: Callable[..., Target]) -> None:
    target = start(limits={"handshake_timeout": 1.0, "max_connections": 30})
    fds, threads = target.fds, target.threads
    with attackers(60, target, lambda sock: None) as socks:
        refused = sum(closed_by_server(sock, wait=3) for sock in socks)
        assert refused == 60  # past the limit at once, the others at the handshake's deadline
    assert target.settled(fds, threads)
    with good_client(target) as client:
        assert client.p99(20) < 1.0
    assert len([line for line in target.log if "max_connections" in line]) == 1, target.log


def test_a_flood_of_bad_notifications_cannot_flood_the_log(start: Callable[..., Target]) -> None:
    target = start()
    fds, threads = target.fds, target.threads
    name = "\x1b[31m" + "n" * 10_000 + "\n"

    def attack() -> None:
        with handshaken(target) as sock:
            sock.sendall(notify(name, []) * 500 + call(1, "add", [1, 2]))
            sock.settimeout(5)
            assert sock.recv(4096)  # the call after them is answered

    served_during(target, attack, rss_cap=32 * MiB)
    assert target.settled(fds, threads)
    lines = [line for line in target.log if "unknown procedure" in line]
    assert 1 <= len(lines) <= 10
    assert all(len(line) < 400 and "\x1b" not in line for line in lines)


def test_out_of_file_descriptors_the_server_keeps_accepting(start: Callable[..., Target]) -> None:
    target = start(nofile=64)
    socks = []
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                socks.append(raw(target))
        time.sleep(0.5)
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with good_client(target) as client:
                assert client.p99(10) < 1.0
            break
        except (OSError, ipfi.HandshakeError):  # (uvloop resets what it cannot accept)
            assert time.monotonic() < deadline, "the server stopped accepting after running out of fds"
            time.sleep(0.2)
    assert target.alive


def test_a_peer_that_never_reads_cannot_make_a_stream_buffer_without_bound(start: Callable[..., Target]) -> None:
    """On every Python: the standard loop's writelines forgot to pause the protocol on 3.12.0-3.12.8
    and 3.13.0-3.13.1 (CPython gh-127655), and the stream it fed grew by its whole credit."""
    target = start()
    with handshaken(target, window=1 << 16) as sock:
        rss = target.rss
        sock.sendall(call(1, "flood", [4096]))  # 65,536 items of 4 KiB of credit: 256 MiB if unpaused
        time.sleep(1.5)
        assert target.rss - rss < 48 * MiB
