"""IPFI's wire (``protocol="ipfi-rust"``) in both drivers: the reference host-module transcript
replayed in both directions, whole and one byte at a time, byte for byte; numbered procedures
called by index or by name; values split across messages; End-of-input and Termination; many calls
in flight; and what IPFI did wrong (trusted lengths, silent ends) done right."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipfi
import ipfi.sync
from ipfi.core.codecs import MsgpackCodec
from ipfi.core.errors import RemoteProtocolError
from ipfi.core.events import ResultReceived
from ipfi.core.state import Role
from ipfi.wires import ipfi_rust_core
from ipfi.wires.ipfi_rust import CALL, RESPONSE, Message, MessageDecoder, Terminator, encode
from ipfi.wires.ipfi_rust_core import IpfiRustCore

from .conftest import load_vectors, unhex
from .helpers.servers import serving

TRANSCRIPT = load_vectors("ipfi-rust.json")["transcripts"]
HOST_BYTES = unhex(TRANSCRIPT["host_to_module_hex"])
MODULE_BYTES = unhex(TRANSCRIPT["module_to_host_hex"])
DRIVERS = ["asyncio", "blocking"]


def messages(data: bytes) -> list[bytes]:
    return [encode(message) for message in MessageDecoder().feed(data)]


HOST = messages(HOST_BYTES)  # call 1 'John', answer to 0, call 2 'Doe', call 0, call 3, Termination
MODULE = messages(MODULE_BYTES)  # call 0 'Thanks...', answers to 1, 2, 0 (42), three streamed values
# What a scripted module sends once it has received the host's n-th message, and a scripted host
# once it has received the module's n-th (the order the two reference programs kept; the module
# answers the host's first call once its own is answered: nothing orders a callback's answer
# against the caller's next call otherwise).
MODULE_AFTER_HOST = {1: [MODULE[0]], 2: [MODULE[1]], 3: [MODULE[2]], 4: [MODULE[3]], 5: MODULE[4:7]}
HOST_AFTER_MODULE = {1: [HOST[0], HOST[1]], 2: [HOST[2]], 3: [HOST[3]], 4: [HOST[4]], 7: [HOST[5]]}


def test_the_transcript_is_what_the_scripts_replay() -> None:
    assert b"".join(HOST) == HOST_BYTES and len(HOST) == 6
    assert b"".join(MODULE) == MODULE_BYTES and len(MODULE) == 7


class Script:
    """A scripted IPFI peer: records what it receives, and answers its n-th message as told, in
    whole messages or one byte at a time."""

    def __init__(self, replies: dict[int, list[bytes]], *, bytewise: bool) -> None:
        self.replies = replies
        self.bytewise = bytewise
        self.received = bytearray()
        self._decoder = MessageDecoder()
        self._count = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.received += data
        out: list[bytes] = []
        for _ in self._decoder.feed(data):
            self._count += 1
            out += self.replies.get(self._count, [])
        if self.bytewise:
            return [bytes((byte,)) for chunk in out for byte in chunk]
        return out


# The procedures of the reference example: the host's 0, and the module's 0-3.
host_iface = ipfi.Interface()


@host_iface.procedure(index=0)
def thanks(message: str) -> None:
    assert message == "Thanks very much!"


module_iface = ipfi.Interface()


@module_iface.procedure(index=0)
def answer() -> int:
    return 42


@module_iface.procedure(index=1)
def greet(name: str) -> None:
    assert name == "John"


@module_iface.procedure(index=2)
def farewell(name: str) -> None:
    assert name == "Doe"


@module_iface.procedure(index=3)
def three_values() -> Iterator[str]:
    yield from ["This is a test", "of the system", "And this is a second test!"]


async def as_host(peer: Any) -> None:
    assert await peer.call(1, "John") is None
    assert await peer.call(2, "Doe") is None
    assert await peer.call(0) == 42
    assert [item async for item in peer.stream(3)] == ["This is a test", "of the system", "And this is a second test!"]


def as_host_blocking(peer: Any) -> None:
    assert peer.call(1, "John") is None
    assert peer.call(2, "Doe") is None
    assert peer.call(0) == 42
    assert list(peer.stream(3)) == ["This is a test", "of the system", "And this is a second test!"]


async def as_module(peer: Any) -> None:
    assert await peer.call(0, "Thanks very much!") is None
    await asyncio.wait_for(peer.wait_closed(), 5)  # until the host's Termination


def as_module_blocking(peer: Any) -> None:
    assert peer.call(0, "Thanks very much!") is None
    peer.wait_closed(timeout=5)


async def over_callbacks(script: Script, iface: ipfi.Interface, program: Callable[[Any], Awaitable[None]]) -> None:
    """The asyncio driver fed by ``script`` through a byte source: each chunk as the script cut it."""
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def source() -> AsyncIterator[bytes]:
        while (chunk := await chunks.get()) is not None:
            yield chunk

    def sink(data: bytes) -> None:
        for chunk in script.feed(data):
            chunks.put_nowait(chunk)

    peer = await ipfi.connect_stream(source(), sink, iface, protocol="ipfi-rust")
    try:
        await program(peer)
        await peer.aclose()
    finally:
        chunks.put_nowait(None)


def over_a_socket(script: Script, iface: ipfi.Interface, program: Callable[[Any], None], path: str) -> None:
    """The blocking driver against ``script`` behind a Unix socket (one write per chunk)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(5)

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            while data := connection.recv(65536):
                for chunk in script.feed(data):
                    connection.sendall(chunk)
                    if script.bytewise:
                        time.sleep(0.0002)  # (so the reader mostly sees them one by one)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with ipfi.sync.connect(f"unix:{path}", iface, protocol="ipfi-rust") as peer:
        program(peer)
    thread.join(5)
    listener.close()
    assert not thread.is_alive()


#: Each side played by Python against the other scripted: the script's replies, Python's procedures
#: and program (asyncio, blocking), and the bytes Python must write.
SIDES = {
    "python host": (MODULE_AFTER_HOST, host_iface, as_host, as_host_blocking, HOST_BYTES),
    "python module": (HOST_AFTER_MODULE, module_iface, as_module, as_module_blocking, MODULE_BYTES),
}


@pytest.mark.parametrize("delivery", ["whole", "bytewise"])
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("side", SIDES)
def test_python_answers_the_reference_peer_with_the_reference_bytes(
    side: str, driver: str, delivery: str, sock_path: str
) -> None:
    replies, iface, program, blocking_program, expected = SIDES[side]
    other = Script(replies, bytewise=delivery == "bytewise")
    if driver == "asyncio":
        asyncio.run(over_callbacks(other, iface, program))
    else:
        over_a_socket(other, iface, blocking_program, sock_path)
    assert bytes(other.received) == expected


# -- a server of each driver, and raw IPFI clients ---------------------------------------------------


served = ipfi.Interface()


@served.procedure(index=0)
def echo(value: Any) -> Any:
    return value


@served.procedure(index=1)
def fail() -> None:
    raise ValueError("this procedure always fails")


@served.procedure(index=2)
async def gather(count: int, index: int) -> int:
    """Returns once ``count`` calls are running at once (never, were fewer allowed in flight)."""
    gathered = gathering.setdefault(asyncio.get_running_loop(), [0, asyncio.Event()])
    gathered[0] += 1
    if gathered[0] >= count:
        gathered[1].set()
    await asyncio.wait_for(gathered[1].wait(), 5)
    return index


@served.procedure(index=3)
def count_to(n: int) -> Iterator[int]:
    yield from range(n)


gathering: dict[Any, list[Any]] = {}


@contextlib.contextmanager
def server(driver: str, path: str, **options: Any) -> Iterator[str]:
    """``served`` on a Unix socket, by a server of ``driver``."""
    gathering.clear()
    # (the blocking server's async def procedures hold a worker thread each while they run)
    workers = {"workers": 48} if driver == "blocking" else {}
    with serving(driver, f"unix:{path}", served, protocol="ipfi-rust", **workers, **options) as address:
        yield address


def raw_client(address: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(address.removeprefix("unix:"))
    return client


def read_messages(client: socket.socket, count: int) -> list[Message]:
    decoder = MessageDecoder()
    found: list[Any] = []
    while len(found) < count:
        data = client.recv(65536)
        assert data, f"closed after {found}"
        found += decoder.feed(data)
    return found


def closed_by_server(client: socket.socket) -> bool:
    try:
        while client.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize("driver", DRIVERS)
def test_more_than_ten_calls_in_flight_on_one_connection(driver: str, sock_path: str) -> None:
    calls = 40  # (IPFI dropped every call past its 10th in flight)
    with server(driver, sock_path) as address:
        if driver == "asyncio":

            async def many() -> list[int]:
                async with ipfi.connect(address, protocol="ipfi-rust") as peer:
                    return list(await asyncio.gather(*(peer.call(2, calls, index) for index in range(calls))))

            results = asyncio.run(many())
        else:
            with ipfi.sync.connect(address, protocol="ipfi-rust") as peer:
                threads = [
                    threading.Thread(target=lambda i=i: found.append(peer.call(2, calls, i))) for i in range(calls)
                ]
                found: list[int] = []
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(10)
                results = found
    assert sorted(results) == list(range(calls))


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_value_split_across_messages_is_put_back_together(driver: str, sock_path: str) -> None:
    value = "split " * 50
    argument = encode_value(value)
    pieces = [argument[:7], argument[7:100], argument[100:]]
    with server(driver, sock_path) as address, raw_client(address) as client:
        for number, piece in enumerate(pieces):
            last = number == len(pieces) - 1
            client.sendall(encode(Message(CALL, 0, 5, piece, Terminator.COMPLETE if last else Terminator.NONE)))
        client.sendall(b"\x03")  # End-of-input: the client is done writing for now; nothing changes
        assert read_messages(client, 1) == [Message(RESPONSE, 0, 5, argument)]
        client.sendall(encode(Message(CALL, 3, 0, b"\x03")))  # a stream: two Chunks, then the last Complete
        assert read_messages(client, 3) == [
            Message(RESPONSE, 3, 0, b"\x00", Terminator.CHUNK),
            Message(RESPONSE, 3, 0, b"\x01", Terminator.CHUNK),
            Message(RESPONSE, 3, 0, b"\x02"),
        ]
        client.sendall(b"\x00")  # Termination: the server ends the connection
        assert client.recv(100) == b""


def encode_value(value: Any) -> bytes:
    return MsgpackCodec().encode_item(value)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_split_answer_and_a_terminating_peer_reach_a_python_caller(driver: str, sock_path: str) -> None:
    answer = encode_value(list(range(100)))
    # The scripted peer answers the first call in three pieces, then ends the connection.
    replies = {
        1: [
            encode(Message(RESPONSE, 7, 0, answer[:5], Terminator.NONE)),
            encode(Message(RESPONSE, 7, 0, answer[5:], Terminator.NONE)),
            encode(Message(RESPONSE, 7, 0, b"")),
            b"\x03",
        ],
        2: [b"\x00"],
    }
    script = Script(replies, bytewise=False)

    async def program(peer: Any) -> None:
        assert await peer.call(7) == list(range(100))
        with pytest.raises(ipfi.ConnectionLost):
            await peer.call(7)

    def blocking_program(peer: Any) -> None:
        assert peer.call(7) == list(range(100))
        with pytest.raises(ipfi.ConnectionLost):
            peer.call(7)

    if driver == "asyncio":
        asyncio.run(over_callbacks(script, ipfi.Interface(), program))
    else:
        over_a_socket(script, ipfi.Interface(), blocking_program, sock_path)


@pytest.mark.parametrize(
    ("wire_bytes", "reason"),
    [
        (b"\x09", "message type 9 is none of IPFI's"),
        (bytes((CALL, 0b10_00_00_00)), "terminator pair (0, 1) is invalid"),
        (encode(Message(CALL, 9, 0, b"\xc0")), "procedure 9, which this side does not offer"),
        (encode(Message(CALL, 0, 0, b"\xc1")), "not msgpack"),
        (encode(Message(CALL, 0, 0, b"\x01", Terminator.CHUNK)), "ends with a Chunk"),
        # A header claiming 2^46 bytes (it aborted IPFI): refused before anything is taken for it.
        (bytes((CALL, 0b00_11_00_00, 0, 0)) + (1 << 46).to_bytes(8, "little"), "announces 70368744177664 bytes"),
    ],
    ids=["unknown type", "invalid terminator", "unknown procedure", "not msgpack", "chunked call", "huge length"],
)
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_broken_message_ends_its_connection_with_a_clear_error_and_the_server_goes_on(
    driver: str, wire_bytes: bytes, reason: str, sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with server(driver, sock_path) as address:
        with caplog.at_level(logging.WARNING, "ipfi"), raw_client(address) as attacker:
            attacker.sendall(wire_bytes)
            assert closed_by_server(attacker)
        assert reason in caplog.text
        with raw_client(address) as client:  # the server and its other clients go on
            client.sendall(encode(Message(CALL, 0, 0, b"\xa2ok")))
            assert read_messages(client, 1) == [Message(RESPONSE, 0, 0, b"\xa2ok")]


@pytest.mark.parametrize("driver", DRIVERS)
def test_sizes_are_bounded_at_and_past_their_limits(driver: str, sock_path: str) -> None:
    limits = ipfi.Limits(max_frame_payload=1000, max_message=2000)
    at_limit = b"\xc5" + (997).to_bytes(2, "big") + b"x" * 997  # a 1000-byte msgpack binary
    with server(driver, sock_path, limits=limits) as address:
        with raw_client(address) as client:
            client.sendall(encode(Message(CALL, 0, 0, at_limit)))
            assert read_messages(client, 1) == [Message(RESPONSE, 0, 0, at_limit)]
            client.sendall(encode(Message(CALL, 0, 1, at_limit + b"\xc0")))  # one byte past
            assert closed_by_server(client)
        with raw_client(address) as client:  # a value split in pieces, each within the frame limit
            piece = encode(Message(CALL, 0, 0, b"y" * 1000, Terminator.NONE))
            client.sendall(piece * 2)  # 2000 bytes: at the value limit, still waiting for more
            client.sendall(encode(Message(CALL, 0, 0, b"y", Terminator.NONE)))  # one past it
            assert closed_by_server(client)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_failing_procedure_ends_the_connection_for_want_of_an_error_reply(
    driver: str, sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with server(driver, sock_path) as address, caplog.at_level(logging.WARNING, "ipfi"):
        if driver == "asyncio":

            async def call() -> None:
                async with ipfi.connect(address, protocol="ipfi-rust") as peer:
                    assert await peer.call(0, "before") == "before"
                    with pytest.raises(ipfi.ConnectionLost):
                        await asyncio.wait_for(peer.call(1), 5)

            asyncio.run(call())
        else:
            with ipfi.sync.connect(address, protocol="ipfi-rust") as peer:
                assert peer.call(0, "before") == "before"
                with pytest.raises(ipfi.ConnectionLost):
                    peer.with_options(timeout=5).call(1)
        assert "it raised ValueError: this procedure always fails; IPFI's wire has no error reply" in caplog.text


@pytest.mark.parametrize("driver", DRIVERS)
def test_calls_by_name_deadlines_and_what_the_wire_cannot_carry(driver: str, sock_path: str) -> None:
    names = {"echo": 0, "count_to": 3}
    with server(driver, sock_path) as address:
        if driver == "asyncio":

            async def calls() -> None:
                async with ipfi.connect(address, protocol="ipfi-rust", remote_indices=names) as peer:
                    assert await peer.call("echo", [1, "two"]) == [1, "two"]
                    assert [item async for item in peer.stream("count_to", 3)] == [0, 1, 2]
                    assert await peer.call("count_to", 0) == []  # (no values: an empty Complete)
                    for wrong in (
                        lambda: peer.call("nameless"),
                        lambda: peer.call(0, value=1),
                        lambda: peer.send(5, b""),
                    ):
                        with pytest.raises(ipfi.LocalProtocolError):
                            await wrong()
                    with pytest.raises(ipfi.DeadlineExceeded):
                        await peer.with_options(timeout=0.2).call(2, 99, 0)  # never gathers 99
                    assert await peer.call("echo", "still open") == "still open"

            asyncio.run(calls())
        else:
            with ipfi.sync.connect(address, protocol="ipfi-rust", remote_indices=names) as peer:
                assert peer.call("echo", [1, "two"]) == [1, "two"]
                assert list(peer.stream("count_to", 3)) == [0, 1, 2]
                assert peer.call("count_to", 0) == []
                for wrong in (lambda: peer.call("nameless"), lambda: peer.call(0, value=1), lambda: peer.send(5, b"")):
                    with pytest.raises(ipfi.LocalProtocolError):
                        wrong()
                with pytest.raises(ipfi.DeadlineExceeded):
                    peer.with_options(timeout=0.2).call(2, 99, 0)
                assert peer.call("echo", "still open") == "still open"


def test_a_call_index_is_not_reused_while_an_answer_may_still_come(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipfi_rust_core, "CALL_INDICES", 2)  # (IPFI's u16 counter, shrunk: it wraps at once)
    core = IpfiRustCore(Role.CLIENT, limits=ipfi.Limits(), peer_id="p")
    core.start()
    given_up = core.send_call(5, [])
    core.send_cancel(given_up)  # its answer may still come: its index stays taken
    pending = core.send_call(5, [])
    with pytest.raises(ipfi.LocalProtocolError, match="2 calls to procedure 5 are in flight"):
        core.send_call(5, [])
    late = encode(Message(RESPONSE, 5, 0, b"\x01"))
    assert core.receive_from(late, len(late)) == []  # dropped, and its index free again
    third = core.send_call(5, [])
    sent = MessageDecoder().feed(b"".join(core.data_to_send()))
    assert [message.call for message in sent] == [0, 1, 0]  # type: ignore[union-attr]
    for call_index, call_id in ((1, pending), (0, third)):
        answer = encode(Message(RESPONSE, 5, call_index, b"\x02"))
        assert core.receive_from(answer, len(answer)) == [ResultReceived(call_id, 2)]


def test_procedure_indices_are_checked_when_registered() -> None:
    iface = ipfi.Interface()
    iface.add(echo, index=0)
    with pytest.raises(ValueError, match="index 0 is already registered"):
        iface.add(fail, index=0)
    with pytest.raises(ValueError, match="out of range"):
        iface.add(fail, index=1 << 16)
    assert iface["echo"].describe()["index"] == 0
    with pytest.raises(ValueError, match="protocol must be one of"):
        ipfi.Options(protocol="corba")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), cut=st.integers(min_value=1, max_value=16))
def test_any_bytes_make_events_or_a_protocol_error(data: bytes, cut: int) -> None:
    core = IpfiRustCore(Role.SERVER, limits=ipfi.Limits(max_frame_payload=64, max_message=128), peer_id="p")
    core.procedures = served.callable
    core.start()
    with contextlib.suppress(RemoteProtocolError):
        for start in range(0, len(data), cut):
            core.receive_from(data[start : start + cut], min(cut, len(data) - start))
            if not core.is_open:
                break
    assert len(core.decoder._buffer) <= 64 + 2 + 24  # memory follows what a message may hold
