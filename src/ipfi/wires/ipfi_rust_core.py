"""The protocol core of IPFI's wire (``protocol="ipfi-rust"``): numbered procedures, both sides
call, results single values or streams of Chunk values ended by a Complete one. No I/O.

IPFI's faults are not kept: sizes are bounded (:class:`~ipfi.wires.ipfi_rust.MessageDecoder`),
any number of calls may be in flight up to ``Limits.max_concurrent_calls`` (IPFI drops calls past
10 silently), a call index is never reused while its call is pending (IPFI's u16 counters wrap
onto live calls), and a message that breaks the wire ends the connection with an error naming it
(IPFI ends it silently). What the wire cannot say stays unsaid: it has no error reply, so a
procedure that fails here ends the connection (Termination) and its caller gets
``ConnectionLost``; it has no cancel, so a call given up here is forgotten and its answer dropped;
it carries no deadline, so a call's timeout is kept on the calling side only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from ..core.codecs import Codec, MsgpackCodec
from ..core.contracts import ItemCheck
from ..core.errors import ConnectionLost, LocalProtocolError, PayloadTooLarge, RemoteProtocolError
from ..core.events import (
    CallReceived,
    Event,
    ItemsReceived,
    ResultReceived,
    ShutdownRequested,
    StreamEnded,
)
from ..core.interface import Procedure
from ..core.limits import Limits
from ..core.state import Role
from .foreign_core import NO_CREDIT_LIMIT, ForeignCore, log
from .ipfi_rust import (
    CALL,
    RESPONSE,
    TERMINATION,
    Message,
    MessageDecoder,
    Signal,
    Terminator,
    ValueAssembler,
    decode_values,
    encode,
)

#: IPFI counts call indices in a u16 (its default build): past it they wrap, skipping live ones.
CALL_INDICES: Final = 1 << 16
_TERMINATION_BYTES: Final = bytes((TERMINATION,))

Key = tuple[int, int]  # (procedure index, call index): a call's identity on this wire


class _OutputStream:
    __slots__ = ("check", "held")

    def __init__(self, check: ItemCheck | None) -> None:
        self.check = check
        #: The last item, encoded, held back until the next one (it goes out as a Chunk) or the
        #: end (as the Complete value): the wire marks the last value, not the end after it.
        self.held: bytes | None = None


class IpfiRustCore(ForeignCore):
    """One side of a connection on IPFI's wire (see the module's docstring).

    ``remote_indices`` maps names to the peer's procedure indices, so that ``peer.call("greet")``
    reaches the peer's procedure 0 where ``{"greet": 0}``; a number is always an index.
    """

    protocol = "ipfi-rust"
    decoder: MessageDecoder

    def __init__(
        self,
        role: Role,
        *,
        limits: Limits,
        peer_id: str,
        remote_indices: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(role, limits=limits, peer_id=peer_id, clock=clock)
        self.decoder = MessageDecoder(max_payload=limits.max_frame_payload)
        self._values = ValueAssembler(max_value=limits.max_message)
        self._codec = MsgpackCodec()
        self._remote_indices = dict(remote_indices or {})
        self._by_index: dict[int, Procedure] = {}
        self._next_id = 1
        self._next_index: dict[int, int] = {}  # per procedure of the peer's: the next call index to try
        self._outgoing: dict[int, Key] = {}  # calls made here, by call id
        self._awaiting: dict[Key, int] = {}  # ...by their identity on the wire
        self._abandoned: set[Key] = set()  # given up here, their answer not in yet: not reused
        self._streamed: set[int] = set()  # calls made here whose answer came as Chunks so far
        self._served: dict[int, Key] = {}  # calls served here, by the call id the driver knows
        self._serving_keys: set[Key] = set()
        self._streams: dict[int, _OutputStream] = {}

    @property
    def channels(self) -> tuple[int, ...]:
        return (1,)

    @property
    def codec(self) -> Codec | None:
        return self._codec

    # -- receiving -------------------------------------------------------------------------------

    def receive_from(self, buffer: bytes | bytearray | memoryview, count: int) -> list[Event]:
        """The events the first ``count`` bytes of ``buffer`` complete, in any chunking. Raises
        :class:`RemoteProtocolError` (a subclass for a message over the limits) for bytes that
        break the wire, :class:`ConnectionLost` once the connection is closed."""
        if not self.is_open:
            raise ConnectionLost(self._close_reason or "connection closed")
        events: list[Event] = []
        for message in self.decoder.feed(bytes(memoryview(buffer)[:count])):
            if type(message) is Signal:
                if message.kind == TERMINATION:
                    events.append(ShutdownRequested(force=False))
                    self.close("the peer ended the connection (Termination)")
                    break
                continue  # End-of-input: the peer is done writing for now, and owes nothing
            assert type(message) is Message
            payload = self._values.add(message)
            if payload is None:  # more of this value follows
                continue
            if message.kind == CALL:
                events.append(self._call_received(message, payload))
            elif message.kind == RESPONSE:
                events.extend(self._response_received(message, payload))
        return events

    def _call_received(self, message: Message, payload: bytes) -> CallReceived:
        if message.terminator is not Terminator.COMPLETE:
            raise RemoteProtocolError(f"ipfi-rust: a call to procedure {message.procedure} ends with a Chunk")
        procedure = self._procedure_at(message.procedure)
        if procedure is None:
            raise RemoteProtocolError(
                f"ipfi-rust: a call to procedure {message.procedure}, which this side does not offer"
            )
        key = (message.procedure, message.call)
        if key in self._serving_keys:
            raise RemoteProtocolError(f"ipfi-rust: call index {message.call} reused while its call runs")
        if len(self._served) >= self.limits.max_concurrent_calls:
            raise RemoteProtocolError(
                f"ipfi-rust: more than {self.limits.max_concurrent_calls} calls in flight (Limits.max_concurrent_calls)"
            )
        signature = procedure.signature
        takes_nothing = signature is not None and not signature.parameters
        args = [] if takes_nothing else decode_values(payload)  # (IPFI: such a procedure ignores them)
        call_id = self._new_id()
        self._served[call_id] = key
        self._serving_keys.add(key)
        return CallReceived(call_id, procedure, args, {}, None, False)

    def _procedure_at(self, index: int) -> Procedure | None:
        found = self._by_index.get(index)
        if found is None:  # (procedures registered since: look again)
            self._by_index = {p.index: p for p in self.procedures.values() if p.index is not None}
            found = self._by_index.get(index)
        return found

    def _response_received(self, message: Message, payload: bytes) -> list[Event]:
        key = (message.procedure, message.call)
        call_id = self._awaiting.get(key)
        last = message.terminator is Terminator.COMPLETE
        if call_id is None:  # the answer to a call given up here: dropped
            if last:
                self._abandoned.discard(key)
            return []
        if not last:
            self._streamed.add(call_id)
            return [ItemsReceived(call_id, [self._one_value(payload)])]
        self._end_call(call_id)
        if call_id in self._streamed:
            self._streamed.discard(call_id)
            if not payload:  # (ipfi's way of ending a stream of no more values)
                return [StreamEnded(call_id)]
            return [ItemsReceived(call_id, [self._one_value(payload)]), StreamEnded(call_id)]
        if not payload:
            return [StreamEnded(call_id)]
        return [ResultReceived(call_id, self._one_value(payload))]

    @staticmethod
    def _one_value(payload: bytes) -> Any:
        values = decode_values(payload)
        if len(values) != 1:
            raise RemoteProtocolError(f"ipfi-rust: a result holds {len(values)} msgpack values, not one")
        return values[0]

    # -- calling ---------------------------------------------------------------------------------

    def send_call(
        self,
        name: str | int,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        has_input: bool = False,
    ) -> int:
        """Queue a call of the peer's procedure ``name`` (its index, or a name in ``remote_indices``);
        returns its id. Raises ``TypeError`` (a value msgpack cannot encode), :class:`PayloadTooLarge`,
        ``ValueError`` (a timeout that is not positive), :class:`LocalProtocolError` (keyword
        arguments, an input stream, a name without an index), :class:`InvalidState` or
        :class:`ConnectionLost`."""
        self._check_open()
        if has_input:
            raise self._not_on_this_wire("input streams")
        if kwargs:
            raise LocalProtocolError("ipfi-rust: IPFI's procedures take positional arguments only")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        index = self._index_of(name)
        payload = b"".join(self._codec.encode_item(arg) for arg in args)
        if len(payload) > self.limits.max_frame_payload:
            raise PayloadTooLarge(f"arguments of {len(payload)} bytes exceed the limit {self.limits.max_frame_payload}")
        key = (index, self._free_call_index(index))
        call_id = self._new_id()
        self._outgoing[call_id] = key
        self._awaiting[key] = call_id
        self._queue(encode(Message(CALL, index, key[1], payload)))
        if timeout is not None:
            self._start_deadline(call_id, timeout)
        return call_id

    def _index_of(self, name: str | int) -> int:
        if isinstance(name, int):
            if not 0 <= name < 1 << 64:
                raise LocalProtocolError(f"ipfi-rust: procedure index {name} is out of range")
            return name
        index = self._remote_indices.get(name)
        if index is None:
            raise LocalProtocolError(
                f"ipfi-rust: IPFI's procedures are numbered: call {name!r} by its index, or name it in remote_indices"
            )
        return index

    def _free_call_index(self, procedure: int) -> int:
        start = self._next_index.get(procedure, 0)
        for offset in range(CALL_INDICES):
            candidate = (start + offset) % CALL_INDICES
            key = (procedure, candidate)
            if key not in self._awaiting and key not in self._abandoned:
                self._next_index[procedure] = candidate + 1
                return candidate
        raise LocalProtocolError(f"ipfi-rust: {CALL_INDICES} calls to procedure {procedure} are in flight already")

    def _new_id(self) -> int:
        call_id = self._next_id
        self._next_id += 1
        return call_id

    def _end_call(self, call_id: int) -> None:
        key = self._outgoing.pop(call_id)
        del self._awaiting[key]
        self._call_ended(call_id)

    def send_cancel(self, call_id: int) -> None:
        """Give up a call made here: its answer, when it comes, is dropped (the wire cannot tell
        the peer to stop)."""
        self._forget_call(call_id)

    def _forget_call(self, call_id: int) -> None:
        key = self._outgoing.get(call_id)
        if key is not None:
            self._end_call(call_id)
            self._streamed.discard(call_id)
            self._abandoned.add(key)

    # -- serving ---------------------------------------------------------------------------------

    def is_serving(self, call_id: int) -> bool:
        return call_id in self._served

    def send_result(self, call_id: int, value: Any) -> None:
        key = self._served.get(call_id)
        if key is None or not self.is_open:
            return
        try:
            payload = self._codec.encode_item(value)
        except TypeError as exc:
            self._end_for(key, f"its result cannot be sent: {exc}")
            return
        self._finish_serving(call_id)
        self._queue(encode(Message(RESPONSE, key[0], key[1], payload)))

    def send_error(
        self, call_id: int, remote_type: str, message: str, data: Any = None, traceback: str | None = None
    ) -> None:
        """IPFI's wire has no error reply: the connection ends (Termination), so that the caller
        is not left waiting for an answer that cannot come."""
        key = self._served.get(call_id)
        if key is not None and self.is_open:
            self._end_for(key, f"it raised {remote_type}: {message}")

    def _end_for(self, key: Key, reason: str) -> None:
        text = f"procedure {key[0]} (call {key[1]}): {reason}; IPFI's wire has no error reply: the connection ends"
        log.warning("peer %s: %s", self.peer_id, text)
        self._queue(_TERMINATION_BYTES)
        self.close(text)

    def _finish_serving(self, call_id: int) -> Key:
        key = self._served.pop(call_id)
        self._serving_keys.discard(key)
        return key

    def open_output_stream(self, call_id: int, item_check: ItemCheck | None = None) -> None:
        if call_id in self._served:
            self._streams[call_id] = _OutputStream(item_check)

    def stream_open(self, call_id: int) -> bool:
        return self.is_open and call_id in self._streams

    def send_items(self, call_id: int, items: Sequence[Any]) -> int:
        """Encode and queue items (each sent as a Chunk once the next one, or the end, is known).
        Raises ``TypeError`` for an item msgpack cannot encode (:class:`InvalidResult` if it does not
        fit the hint; the items before it are queued), :class:`ConnectionLost` if the stream has ended."""
        stream = self._streams.get(call_id)
        if stream is None or not self.is_open:
            raise ConnectionLost(f"stream {call_id} is closed")
        check = stream.check
        for item in items:
            encoded = self._codec.encode_item(item if check is None or type(item) is check.exact else check.check(item))
            if stream.held is not None:
                procedure, call = self._served[call_id]
                self._queue(encode(Message(RESPONSE, procedure, call, stream.held, Terminator.CHUNK)))
            stream.held = encoded
            self.item_bytes_queued += len(encoded)
        return NO_CREDIT_LIMIT

    def send_end(self, call_id: int) -> None:
        stream = self._streams.pop(call_id, None)
        if call_id not in self._served or not self.is_open:
            return
        procedure, call = self._finish_serving(call_id)
        last = stream.held if stream is not None and stream.held is not None else b""
        self._queue(encode(Message(RESPONSE, procedure, call, last)))

    # -- the rest ----------------------------------------------------------------------------------

    def send_message(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        raise self._not_on_this_wire("plain messages (channels)")

    def send_shutdown_request(self) -> bool:
        """Queue Termination: IPFI's peer answers nothing."""
        if self.is_open:
            self._queue(_TERMINATION_BYTES)
        return False

    def close(self, reason: str = "") -> None:
        super().close(reason)
        self._outgoing.clear()
        self._awaiting.clear()
        self._abandoned.clear()
        self._streamed.clear()
        self._served.clear()
        self._serving_keys.clear()
        self._streams.clear()
