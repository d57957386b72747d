"""The wires of IPFI (Rust) and libIPC (C), byte for byte as the vectors observed them: every example
in both files, the IPFI host-module transcript whole and fed one byte at a time, and what broke the
reference implementations (huge lengths, two frames in one write, a frame split with a pause, NUL
bytes, payloads near the limit). The wire layer; tests/test_ipfi_rust_wire.py and test_libipc_wire.py
run them in the drivers."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfi.core.errors import FrameError, FrameTooLarge, RemoteProtocolError
from ipfi.wires import ipfi_rust, libipc
from ipfi.wires.ipfi_rust import CALL, END_OF_INPUT, RESPONSE, TERMINATION, Message, Signal, Terminator

from .conftest import load_vectors

IPFI = load_vectors("ipfi-rust.json")
LIBIPC = load_vectors("libipc.json")


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def one_at_a_time(decoder: Any, data: bytes) -> list[Any]:
    return [message for index in range(len(data)) for message in decoder.feed(data[index : index + 1])]


#: What each IPFI example is, by its description in the vectors (every example must be here).
IPFI_EXAMPLES = {
    "Call proc 0, call 0, argument 'John Doe', complete": (Message(CALL, 0, 0, b"\xa8John Doe"), ["John Doe"]),
    "Response proc 0, call 0, 'Hello, John Doe!', complete": (
        Message(RESPONSE, 0, 0, b"\xb0Hello, John Doe!"),
        ["Hello, John Doe!"],
    ),
    "Response proc 1, call 300 (u16 call index, multiflag c8), nil": (Message(RESPONSE, 1, 300, b"\xc0"), [None]),
    "Streamed chunk of proc 3, call 0: 'This is a test'": (
        Message(RESPONSE, 3, 0, b"\xaeThis is a test", Terminator.CHUNK),
        ["This is a test"],
    ),
    "Last streamed value of proc 3, call 0, complete": (
        Message(RESPONSE, 3, 0, b"\xbaAnd this is a second test!"),
        ["And this is a second test!"],
    ),
    "End-of-input": (Signal(END_OF_INPUT), None),
    "Termination": (Signal(TERMINATION), None),
}


@pytest.mark.parametrize("example", IPFI["examples"], ids=lambda example: example["what"])
def test_every_ipfi_example_decodes_and_encodes_byte_for_byte(example: dict[str, str]) -> None:
    data = hex_bytes(example["hex"])
    expected, values = IPFI_EXAMPLES[example["what"]]
    assert ipfi_rust.MessageDecoder().feed(data) == [expected]
    assert one_at_a_time(ipfi_rust.MessageDecoder(), data) == [expected]
    assert ipfi_rust.encode(expected) == data  # (the smallest widths, as IPFI picks them)
    if values is not None:
        assert isinstance(expected, Message)
        assert ipfi_rust.decode_values(expected.payload) == values


def test_the_vectors_examples_are_all_tests() -> None:
    assert sorted(IPFI_EXAMPLES) == sorted(example["what"] for example in IPFI["examples"])
    assert sorted(LIBIPC_EXAMPLES) == sorted(example["what"] for example in LIBIPC["examples"])


#: The transcript, message by message: the host calls the module's procedures 1 ("John"), 2 ("Doe"),
#: 0 and 3 (a stream), answers the module's call of its procedure 0, and ends the connection.
HOST_TO_MODULE = [
    (Message(CALL, 1, 0, b""), ["John"]),
    (Message(RESPONSE, 0, 0, b""), [None]),
    (Message(CALL, 2, 0, b""), ["Doe"]),
    (Message(CALL, 0, 0, b""), []),
    (Message(CALL, 3, 0, b""), []),
    (Signal(TERMINATION), None),
]
MODULE_TO_HOST = [
    (Message(CALL, 0, 0, b""), ["Thanks very much!"]),
    (Message(RESPONSE, 1, 0, b""), [None]),
    (Message(RESPONSE, 2, 0, b""), [None]),
    (Message(RESPONSE, 0, 0, b""), [42]),
    (Message(RESPONSE, 3, 0, b"", Terminator.CHUNK), ["This is a test"]),
    (Message(RESPONSE, 3, 0, b"", Terminator.CHUNK), ["of the system"]),
    (Message(RESPONSE, 3, 0, b""), ["And this is a second test!"]),
]


@pytest.mark.parametrize(
    ("side", "expected"), [("host_to_module_hex", HOST_TO_MODULE), ("module_to_host_hex", MODULE_TO_HOST)]
)
def test_the_host_module_transcript_decodes_whole_and_byte_by_byte_and_encodes_back(
    side: str, expected: list[tuple[Message | Signal, list[Any] | None]]
) -> None:
    data = hex_bytes(IPFI["transcripts"][side])
    for messages in (ipfi_rust.MessageDecoder().feed(data), one_at_a_time(ipfi_rust.MessageDecoder(), data)):
        assert len(messages) == len(expected)
        for message, (shape, values) in zip(messages, expected, strict=True):
            if isinstance(shape, Signal):
                assert message == shape
                continue
            assert isinstance(message, Message)
            assert (message.kind, message.procedure, message.call, message.terminator) == (
                shape.kind, shape.procedure, shape.call, shape.terminator,
            )  # fmt: skip
            assert ipfi_rust.decode_values(message.payload) == values
        # Built from the values alone, the messages are the transcript's bytes again.
        rebuilt = b"".join(
            ipfi_rust.encode(shape)
            if isinstance(shape, Signal)
            else ipfi_rust.encode(
                Message(
                    shape.kind, shape.procedure, shape.call, ipfi_rust.encode_arguments(values or []), shape.terminator
                )
            )
            for shape, values in expected
        )
        assert rebuilt == data


def test_a_value_split_across_messages_is_put_back_together_within_its_limit() -> None:
    value = ipfi_rust.encode_arguments(["a long text " * 20])
    pieces = [value[:7], value[7:100], value[100:]]
    messages = [Message(RESPONSE, 5, 9, piece, Terminator.NONE) for piece in pieces[:-1]]
    messages.append(Message(RESPONSE, 5, 9, pieces[-1], Terminator.COMPLETE))
    data = b"".join(ipfi_rust.encode(message) for message in messages)
    assembler = ipfi_rust.ValueAssembler()
    whole = [assembler.add(message) for message in one_at_a_time(ipfi_rust.MessageDecoder(), data)]  # type: ignore[arg-type]
    assert whole[:-1] == [None, None] and whole[-1] == value
    assert ipfi_rust.decode_values(whole[-1]) == ["a long text " * 20]
    small = ipfi_rust.ValueAssembler(max_value=len(value) - 1)
    small.add(messages[0])
    small.add(messages[1])
    with pytest.raises(FrameTooLarge, match="split across messages exceeds"):
        small.add(messages[2])
    at_limit = ipfi_rust.ValueAssembler(max_value=len(value))
    assert [at_limit.add(message) for message in messages][-1] == value


def test_ipfis_weaknesses_are_refused_before_memory_is_taken() -> None:
    # A call header claiming 2^46 bytes aborted the reference: refused from its header alone.
    huge = bytes((CALL, 0b00110000)) + b"\x00\x00" + (1 << 46).to_bytes(8, "little")
    decoder = ipfi_rust.MessageDecoder()
    with pytest.raises(FrameTooLarge, match="announces 70368744177664 bytes"):
        decoder.feed(huge)
    at = ipfi_rust.MessageDecoder(max_payload=4)
    assert at.feed(ipfi_rust.encode(Message(CALL, 0, 0, b"1234"))) == [Message(CALL, 0, 0, b"1234")]
    with pytest.raises(FrameTooLarge):
        at.feed(ipfi_rust.encode(Message(CALL, 0, 0, b"12345")))
    with pytest.raises(FrameError, match="terminator pair"):
        ipfi_rust.MessageDecoder().feed(bytes((CALL, 0b10000000)))
    with pytest.raises(FrameError, match="type 9"):
        ipfi_rust.MessageDecoder().feed(b"\x09")
    with pytest.raises(RemoteProtocolError, match="cut short"):
        ipfi_rust.decode_values(b"\xa8John")
    # Call indexes past u16 (IPFI's counter wrapped after 65,536 calls) and u64 procedures encode.
    for procedure, call in ((0, 1 << 16), (1 << 40, 3)):
        message = Message(CALL, procedure, call, b"\xc0")
        assert ipfi_rust.MessageDecoder().feed(ipfi_rust.encode(message)) == [message]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(min_value=1, max_value=8))
def test_any_bytes_make_messages_or_a_clear_error(data: bytes, cut: int) -> None:
    decoder = ipfi_rust.MessageDecoder(max_payload=1 << 16)
    with contextlib.suppress(RemoteProtocolError):
        for start in range(0, len(data), cut):
            for message in decoder.feed(data[start : start + cut]):
                if isinstance(message, Message):
                    with contextlib.suppress(RemoteProtocolError):
                        ipfi_rust.decode_values(message.payload)


#: What each libIPC example is (every example must be here).
LIBIPC_EXAMPLES = {
    "DATA, user_type 42, 'coucou' (pongd echoes it unchanged)": libipc.Frame(libipc.DATA, 42, b"coucou"),
    "DATA, user_type 42, empty payload (echoed)": libipc.Frame(libipc.DATA, 42, b""),
    "type 7, user_type 200 (the library does not interpret types: echoed)": libipc.Frame(7, 200, b"x"),
}


@pytest.mark.parametrize("example", LIBIPC["examples"], ids=lambda example: example["what"])
def test_every_libipc_example_decodes_and_encodes_byte_for_byte(example: dict[str, str]) -> None:
    data = hex_bytes(example["hex"])
    expected = LIBIPC_EXAMPLES[example["what"]]
    assert libipc.FrameDecoder().feed(data) == [expected]
    assert one_at_a_time(libipc.FrameDecoder(), data) == [expected]
    assert libipc.encode(expected) == data


def test_what_crashed_libipcs_own_service_decodes() -> None:
    nul = libipc.Frame(libipc.DATA, 1, b"before\x00after\x00")
    near_max = libipc.Frame(
        libipc.DATA, 2, bytes(range(256)) * (libipc.MAX_PAYLOAD // 256) + b"\x00" * (libipc.MAX_PAYLOAD % 256)
    )
    frames = [nul, libipc.Frame(libipc.DATA, 3, b"second"), near_max]
    data = b"".join(libipc.encode(frame) for frame in frames)
    decoder = libipc.FrameDecoder()
    assert decoder.feed(data) == frames  # several frames in one write
    got = []
    for start in range(0, len(data), 65_537):  # a frame split across writes, with pauses between
        got += decoder.feed(data[start : start + 65_537])
    assert got == frames and decoder.idle
    assert len(near_max.payload) == libipc.MAX_PAYLOAD  # at the limit: taken; past it: refused
    with pytest.raises(FrameTooLarge, match="announces 1999995 bytes"):
        libipc.FrameDecoder().feed(b"\x02" + (libipc.MAX_PAYLOAD + 1).to_bytes(4, "big") + b"\x01")
    with pytest.raises(ValueError, match="at most 1999994"):
        libipc.encode(libipc.Frame(libipc.DATA, 1, bytes(libipc.MAX_PAYLOAD + 1)))
