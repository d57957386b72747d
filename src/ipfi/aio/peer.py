"""The asyncio driver: a :class:`Peer` is one connection, an asyncio protocol around the core.

A peer can read in place (``asyncio.BufferedProtocol``): the socket transport reads into its buffer,
and the rest of a large frame straight into that frame's own memory (see :func:`new_peer` for when).
Transports that push bytes (pipes, the in-memory pair, byte streams) call ``data_received``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import sys
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, Final, Protocol, cast

from ..core.codecs import LARGE_BINARY, Buffer
from ..core.connection import Role
from ..core.errors import (
    Cancelled,
    ConnectionLost,
    HandshakeError,
    KeepaliveTimeout,
    RemoteProtocolError,
)
from ..core.events import (
    CancelReceived,
    CreditReceived,
    DeadlinePassed,
    ErrorReceived,
    Event,
    HandshakeComplete,
    ItemsReceived,
    MessageReceived,
    PongReceived,
    ShutdownAcknowledged,
    ShutdownRequested,
    StreamEnded,
)
from ..core.interface import Interface, Kind, Procedure, call_finders, current_call_var, current_peer_var
from ..core.protocol_core import ProtocolCore
from ..net.hangup import HANGUP_CHECK_INTERVAL, peer_hung_up, transport_fd
from ..options import Options
from ..peer_base import PeerBase
from ..proxy import Caller, InputItems, MakesProxies
from .producer import Producer
from .streams import EMPTY, ItemQueue
from .unowned_view import unowned_view

log = logging.getLogger("ipfi.aio")

Message = MessageReceived
_READ_SIZE = 256 * 1024  # as much as one read of a Unix socket usually brings
_PUSHED_AGAIN_AFTER = 64  # reads ending between frames before uvloop pushes bytes again
_per_thread = threading.local()
_NO_MEMBERS: Final[frozenset[Any]] = frozenset()  # (one for all: each empty one costs 216 bytes)


def _read_buffer() -> memoryview:
    """The buffer every peer of this thread's event loop reads into.

    One is enough, as a read is handled completely before the next one starts, and the core copies
    whatever it keeps; one per peer would cost a server of thousands of clients as many buffers.
    """
    try:
        return cast(memoryview, _per_thread.read_buffer)
    except AttributeError:
        buffer = _per_thread.read_buffer = memoryview(bytearray(_READ_SIZE))
        return buffer


class _StreamCall(ItemQueue):
    """A call consumed by ``async for`` over :meth:`Peer.stream`; a unary result is one item."""

    def on_result(self, value: Any) -> None:
        self.push([value])
        self.finish()

    on_items = ItemQueue.push

    def on_end(self) -> None:
        self.finish()

    def fail(self, error: BaseException) -> None:
        self.finish(error)


#: A procedure running here for the peer: its task, and the queue of its input stream if it has one
#: (a tuple: made for every call that runs in a task).
_Serving = tuple[asyncio.Task[None], ItemQueue | None]


class PeerWatcher(Protocol):
    """What keeps count of a server's peers: told once a peer's transport is connected (over TLS:
    once its handshake is done; a peer whose TLS handshake fails never is), once its handshake is
    done, and once its connection has ended. (One reference per peer, not three bound methods.)"""

    def _peer_made(self, peer: Peer) -> None: ...
    def _peer_opened(self, peer: Peer) -> None: ...
    def _peer_closed(self, peer: Peer) -> None: ...


class Peer(MakesProxies, PeerBase, asyncio.BufferedProtocol):
    """One connection: call the peer, stream from it, serve it an :class:`~ipfi.Interface`.

    Obtained from :func:`ipfi.connect` (client side) or a server (one per accepted connection).
    """

    # Slots, not an instance dict: less memory per connection (other attributes still go in one).
    #: Calls are awaited (``True``, the asyncio driver) or block (``False``).
    asynchronous = True

    __slots__ = (
        "_calls",
        "_close_error",
        "_closed",
        "_collected",
        "_core",
        "_credit_waiters",
        "_filling",
        "_flush_handle",
        "_frames",
        "_handshake_failure",
        "_hangup_check",
        "_inside_read",
        "_loop",
        "_message_sink",
        "_message_waiters",
        "_messages",
        "_notifications",
        "_opened",
        "_peer_left",
        "_pings",
        "_read_buffer",
        "_read_pauses",
        "_serving",
        "_shutdown_acked",
        "_streams",
        "_switch_for_large_frames",
        "_timer",
        "_transport",
        "_writelines",
        "_writes_backed_up",
        "credentials",
        "interface",
        "options",
        "process",
        "watcher",
    )

    def __init__(
        self,
        role: Role,
        interface: Interface | None,
        options: Options,
        *,
        peer_id: str | None = None,
    ) -> None:
        super().__init__(role, interface, options, peer_id)
        self._core.defer_verdict = role is Role.SERVER and inspect.iscoroutinefunction(options.authenticate)
        # A large binary that ends a message is received into a bytes of its own, handed out as it
        # is: data_received lets go of the view it gave (or waits until the transport has).
        self._core.receive_binaries_whole()
        self._loop = asyncio.get_running_loop()
        #: Told of this peer's connection, its handshake and its end (a server's bookkeeping).
        self.watcher: PeerWatcher | None = None
        self._transport: asyncio.Transport | None = None
        # How frames are written where the transport's own writelines will not do (see
        # _writelines_replacement; None: it will).
        self._writelines: Callable[[list[Buffer]], None] | None = None
        # Calls made here: awaited by call() (a future each, and the items of a streamed result
        # collected for it), or iterated over by stream().
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._collected: dict[int, list[Any]] = {}
        self._streams: dict[int, _StreamCall] = {}
        self._serving: dict[int, _Serving] = {}
        # Immutable, replaced on each change (rare): an empty set would cost 216 bytes per connection.
        self._notifications: frozenset[asyncio.Task[None]] = _NO_MEMBERS
        self._credit_waiters: dict[int, asyncio.Future[None]] = {}
        self._message_waiters: list[asyncio.Future[None]] = []
        self._pings: list[asyncio.Future[float]] = []
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._close_error: ConnectionLost | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_pauses: frozenset[str] = _NO_MEMBERS
        self._hangup_check: asyncio.TimerHandle | None = None  # while reading is paused
        self._peer_left = False  # seen while paused: read on to the EOF, whatever would pause
        self._writes_backed_up = False  # between pause_writing and resume_writing
        self._read_buffer = _read_buffer()
        self._filling: memoryview | None = None  # get_buffer handed out a large frame's memory
        self._frames = self._core.decoder
        #: The transport pushes bytes but could read into get_buffer (uvloop): switch it there while
        #: a large frame arrives (see _PushedPeer).
        self._switch_for_large_frames = False
        self._shutdown_acked: asyncio.Future[None] | None = None
        self._handshake_failure: Exception | None = None  # the core's HandshakeTimeout, for the opener
        #: Received bytes are being handled: replies queued now are written when that ends.
        self._inside_read = False

    # -- connection state -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed.done()

    @property
    def is_open(self) -> bool:
        """Whether the handshake is done and the connection has not ended."""
        return self._opened.done() and not self._closed.done()

    @property
    def close_reason(self) -> str | None:
        """Why the connection ended, once it has."""
        return str(self._close_error) if self._closed.done() and self._close_error else None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport details, e.g. ``"peername"``, ``"sockname"``."""
        return self._transport.get_extra_info(name, default) if self._transport else default

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self._transport = cast(asyncio.Transport, transport)
        if self.watcher is not None:
            self.watcher._peer_made(self)
        self._writelines = _writelines_replacement(self._transport)
        if not self._admit(transport.get_extra_info("socket")):
            self._close_error = ConnectionLost("refused: this user may not connect")
            self._transport.abort()
            return
        try:
            events = self._core.start()
            if events:  # (a wire without a handshake is open at once)
                self._dispatch(events)
        except RemoteProtocolError as exc:  # (its server's authenticate refused the peer)
            self._violation(exc)
            return
        self._flush()
        self._arm_timer()

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self._frames.idle:
            target = self._core.receive_target()
            if target is not None:
                self._filling = target
                return unowned_view(target)  # (uvloop holds it until the read is handled)
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_buffer, nbytes)

    def data_received(self, data: bytes | memoryview, count: int | None = None) -> None:
        """Bytes pushed by the transport, or the first ``count`` bytes of our buffer it read into (or
        of the large frame being filled): the core turns them into events, which are acted on here.
        A protocol violation closes the connection."""
        core = self._core
        self._inside_read = True  # (what procedures that finish now reply goes out with this read's write)
        try:
            if self._filling is None:
                events = core.receive_from(data, len(data) if count is None else count)
            else:
                # Let go of it, so that a binary received into a bytes of its own is not copied out
                # (see receive_binaries_whole). The transport held only an unowned view of it.
                with contextlib.suppress(BufferError):  # (unless ctypes is missing: then a copy)
                    self._filling.release()
                self._filling = None
                events = core.received_into(cast(int, count))
            if events:
                self._dispatch(events)
        except RemoteProtocolError as exc:
            self._inside_read = False
            self._violation(exc)
            return
        except ConnectionLost:
            self._inside_read = False
            return
        self._inside_read = False
        if core.calls_held:
            self._release_held_calls()
        if core.timer_moved:
            self._arm_timer()
        if core.has_output:  # (_flush, inlined: a server replies to most reads, a client to few)
            transport = self._transport
            if transport is not None and not transport.is_closing():
                if self._writelines is None:
                    transport.writelines(core.data_to_send())
                else:
                    self._writelines(core.data_to_send())
        if not self._frames.idle and self._switch_for_large_frames:
            self._read_large_frame_in_place()

    def _read_large_frame_in_place(self) -> None:
        if self._core.receive_target() is not None and self._transport is not None:
            self._switch_for_large_frames = False
            self._transport.set_protocol(_LargeFrameReader(self))

    def _read_pushed(self) -> None:
        """The large frame is in: back from :class:`_LargeFrameReader` to bytes pushed."""
        self._switch_for_large_frames = True
        if self._transport is not None:
            self._transport.set_protocol(self)

    def eof_received(self) -> bool:
        try:
            self._core.receive_eof()
        except ConnectionLost as exc:
            self._close_error = exc
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed.done():
            return
        error = self._close_error or ConnectionLost(
            f"connection to {self.peer_id or 'peer'} lost" + (f": {exc}" if exc else "")
        )
        self._core.close()
        self._writelines = None  # (with any pieces still waiting: nothing is written any more)
        for timer in (self._timer, self._flush_handle, self._hangup_check):
            if timer is not None:
                timer.cancel()
        # (a handle keeps the context it was made in, where current_peer_var may be this peer)
        self._timer = self._flush_handle = self._hangup_check = None
        calls, self._calls = self._calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(error)
        self._collected.clear()
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.fail(error)
        serving, self._serving = self._serving, {}
        for task, input_queue in serving.values():
            task.cancel()
            if input_queue is not None:
                input_queue.finish(error)
        for task in self._notifications:
            task.cancel()
        for waiter in self._credit_waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._credit_waiters.clear()
        for ping in self._pings:
            if not ping.done():
                ping.set_exception(error)
        self._pings.clear()
        self._wake_messages()
        if not self._opened.done():
            self._opened.set_exception(
                self._handshake_failure or HandshakeError(f"the handshake did not complete: {error}")
            )
            self._opened.exception()  # a server-side peer may never be awaited: mark it retrieved
        if self._shutdown_acked is not None and not self._shutdown_acked.done():
            self._shutdown_acked.set_result(None)
        self._close_error = error
        self._closed.set_result(None)
        self._log_closed(error)
        if current_peer_var.get(None) is self:
            # Set in the transport's context for its calls (see _call_received), which uvloop's
            # transport keeps: a reference cycle through the transport otherwise.
            current_peer_var.set(None)
        if self.watcher is not None:
            self.watcher._peer_closed(self)

    def pause_writing(self) -> None:
        self._writes_backed_up = True
        # A server stops reading from a client that does not read its replies, so that such a
        # client cannot make it buffer without bound. A client keeps reading: were both sides to
        # stop, two peers sending each other large messages would wait for each other forever.
        if self._core.role is Role.SERVER:
            self._pause_reading("writes")

    def resume_writing(self) -> None:
        self._writes_backed_up = False
        writer = self._writelines
        if isinstance(writer, _PacedWriter):
            writer.feed()  # (which may back the writes up again)
            if self._writes_backed_up:
                return
        self._resume_reading("writes")
        for waiter in self._credit_waiters.values():
            if not waiter.done():
                waiter.set_result(None)

    def _pause_reading(self, reason: str) -> None:
        if self._peer_left:
            return
        if not self._read_pauses and self._transport is not None:
            self._transport.pause_reading()
            self._hangup_check = self._loop.call_later(HANGUP_CHECK_INTERVAL, self._check_hangup)
        self._read_pauses |= {reason}

    def _resume_reading(self, reason: str) -> None:
        if reason not in self._read_pauses:
            return
        self._read_pauses -= {reason}
        if not self._read_pauses and self._transport is not None:
            self._transport.resume_reading()
            if self._hangup_check is not None:
                self._hangup_check.cancel()
                self._hangup_check = None

    def _check_hangup(self) -> None:
        """Reading is paused: if the peer has gone, read on to its EOF, so the connection ends."""
        self._hangup_check = None
        if not self._read_pauses or self._transport is None:
            return
        fd = transport_fd(self._transport)
        if fd is not None and peer_hung_up(fd):
            log.info("peer %s left while reading was paused (%s)", self.peer_id, ", ".join(self._read_pauses))
            self._peer_left = True
            self._read_pauses = _NO_MEMBERS
            self._transport.resume_reading()
        else:
            self._hangup_check = self._loop.call_later(HANGUP_CHECK_INTERVAL, self._check_hangup)

    def _release_held_calls(self) -> None:
        """Calls wait at the concurrency limit (the core holds them): hand out those that slots have
        opened for; read the peer again only once none waits."""
        core = self._core
        try:
            while core.calls_held and (events := core.release_held()) is not None:
                if events:
                    self._dispatch(events)
        except RemoteProtocolError as exc:
            self._violation(exc)
            return
        except ConnectionLost:
            return
        if core.calls_held:
            self._pause_reading("calls")
        else:
            self._resume_reading("calls")
            if core.has_output:
                self._schedule_flush()

    # -- writing -----------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_handle = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        core = self._core
        if core.calls_held:  # (a call has ended: its slot may take a held one)
            self._release_held_calls()
        data = core.data_to_send()
        if data:
            if self._writelines is None:
                transport.writelines(data)
            else:
                self._writelines(data)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _violation(self, exc: Exception) -> None:
        self._report_violation(exc)
        self._close_error = ConnectionLost(f"protocol error: {exc}")
        if not self._opened.done() and isinstance(exc, HandshakeError):
            self._handshake_failure = exc  # what the opener raises
        refusal = self._core.refusal
        if refusal is not None and self._transport is not None:
            self._transport.write(refusal)  # the client is told why, then the connection closes
            self._close_transport()
            return
        self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _close_transport(self) -> None:
        """Close the transport once it has written what it holds, and what waits here to be written."""
        if self._transport is None:
            return
        if isinstance(self._writelines, _PacedWriter):
            self._writelines.hand_over()
        self._transport.close()

    # -- the core's timer -------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        """(Re)schedule the one timer at the core's next moment (see Connection.next_timer)."""
        core = self._core
        core.timer_moved = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = core.next_timer()
        if when is not None:
            self._timer = self._loop.call_later(max(0.0, when - time.monotonic()), self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        try:
            events = self._core.handle_timer()
        except ConnectionLost as exc:  # keepalive or idle: the core ends the connection
            if isinstance(exc, KeepaliveTimeout):
                log.warning("peer %s: %s; closing the connection", self.peer_id, exc)
            else:
                log.info("peer %s: %s; closing the connection", self.peer_id, exc)
            self._close_error = exc
            self._abort()
            return
        except RemoteProtocolError as exc:  # the handshake's deadline
            self._handshake_failure = exc
            self._violation(exc)
            return
        if events:
            self._dispatch(events)
        self._arm_timer()
        self._flush()

    def _dispatch(self, events: list[Event]) -> None:
        handlers = self._handlers
        for event in events:
            handlers[type(event)](self, event)

    # -- events ------------------------------------------------------------------------------------

    def _on_handshake(self, event: HandshakeComplete) -> None:
        verdict = self._check_authenticated()
        if verdict is not None:  # (an async def authenticate: the core holds the reply meanwhile)
            self._pause_reading("authenticating")
            judging = self._loop.create_task(self._await_verdict(verdict))
            self._notifications |= {judging}  # (cancelled, as they are, if the connection ends first)
            judging.add_done_callback(self._notification_done)
            return
        self._finish_opening()

    def _finish_opening(self) -> None:
        self._log_opened()
        log.debug("peer %s: open (channels=%s)", self.peer_id, list(self.channels))
        self._opened.set_result(None)
        if self.watcher is not None:
            self.watcher._peer_opened(self)

    async def _await_verdict(self, verdict: Awaitable[Any]) -> None:
        try:
            accepted = await verdict
        except Exception as exc:  # (a broken authenticate refuses: it never said yes)
            log.warning("peer %s: authenticate() raised %s: %s", self.peer_id, type(exc).__name__, exc)
            accepted = False
        if self._closed.done():  # (the client left while it was judged)
            return
        try:
            self._judge(accepted)
            events = self._core.accept()
        except RemoteProtocolError as exc:
            self._violation(exc)
            return
        self._finish_opening()
        self._resume_reading("authenticating")
        if events:
            self._dispatch(events)
        self._flush()

    def _result_received(self, call_id: int, value: Any) -> None:
        """The reply to a call made here (the core's ``result_sink``: no event record on the fast path)."""
        future = self._calls.pop(call_id, None)
        if future is not None:
            if not future.done():
                future.set_result(value)
            return
        stream = self._streams.pop(call_id, None)
        if stream is not None:
            stream.on_result(value)

    def _on_error(self, event: ErrorReceived) -> None:
        self._fail_call(event.call_id, event.error)

    def _fail_call(self, call_id: int, error: BaseException) -> bool:
        """End a call made here with ``error``; False if it had ended already."""
        future = self._calls.pop(call_id, None)
        if future is not None:
            self._collected.pop(call_id, None)
            if not future.done():
                future.set_exception(error)
            return True
        stream = self._streams.pop(call_id, None)
        if stream is not None:
            stream.fail(error)
            return True
        return False

    def _on_items(self, event: ItemsReceived) -> None:
        call_id = event.call_id
        if call_id in self._calls:  # a streamed result, collected for call()
            collected = self._collected.setdefault(call_id, [])
            collected.extend(event.items)
            error = self._collected_too_many(call_id, len(collected))
            if error is None:
                self._grant(call_id, len(event.items))
            else:
                del self._collected[call_id]
                future = self._calls.pop(call_id)
                if not future.done():
                    future.set_exception(error)
                self._schedule_flush()
            return
        stream = self._streams.get(call_id)
        if stream is not None:
            stream.on_items(event.items)
            return
        input_queue = self._input_of(call_id)
        if input_queue is not None:
            input_queue.push(event.items)

    def _on_end(self, event: StreamEnded) -> None:
        call_id = event.call_id
        future = self._calls.pop(call_id, None)
        if future is not None:
            collected = self._collected.pop(call_id, [])
            if not future.done():
                future.set_result(collected)
            return
        stream = self._streams.pop(call_id, None)
        if stream is not None:
            stream.on_end()
            return
        input_queue = self._input_of(call_id)
        if input_queue is not None:
            input_queue.finish()

    def _input_of(self, call_id: int) -> ItemQueue | None:
        """The input stream of call ``call_id`` served here, if it has one."""
        serving = self._serving.get(call_id)
        return None if serving is None else serving[1]

    def _on_cancel(self, event: CancelReceived | DeadlinePassed) -> None:
        """The caller cancelled, or the deadline passed: the core has answered already (or owes no
        answer); the procedure stops."""
        serving = self._serving.pop(event.call_id, None)
        if serving is not None:
            task, _ = serving
            task.cancel()

    def _on_credit(self, event: CreditReceived) -> None:
        waiter = self._credit_waiters.pop(event.call_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause_for_messages(self) -> None:
        self._pause_reading("messages")

    def _resume_for_messages(self) -> None:
        self._resume_reading("messages")

    def _message_arrived(self) -> None:
        self._wake_messages()

    def _wake_messages(self) -> None:
        waiters, self._message_waiters = self._message_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _on_pong(self, event: PongReceived) -> None:
        waiter = self._pings.pop(0) if self._pings else None
        if waiter is not None and not waiter.done():
            waiter.set_result(event.round_trip)

    def _on_shutdown_request(self, event: ShutdownRequested) -> None:
        log.debug("peer %s asked to shut down%s", self.peer_id, " (forced)" if event.force else "")
        self._close_error = ConnectionLost("the peer shut the connection down")
        self._flush()
        self._close_transport()

    def _on_shutdown_ack(self, _: ShutdownAcknowledged) -> None:
        if self._shutdown_acked is not None and not self._shutdown_acked.done():
            self._shutdown_acked.set_result(None)

    # -- serving the peer's calls --------------------------------------------------------------------

    def _call_received(  # noqa: PLR0917 (the fields of CallReceived, in order: the core's call_sink)
        self,
        call_id: int,
        procedure: Procedure,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
        has_input: bool,
    ) -> None:
        input_queue = None
        if has_input:
            input_queue = ItemQueue(self._granter(call_id), self.options.limits.stream_window)
            args.insert(0, input_queue)
        if current_peer_var.get(None) is not self:
            # Set, not reset: this runs in the transport's own context, which keeps the value for the
            # next call (a set and a reset per call cost 3% of a round trip). A task copies it.
            current_peer_var.set(self)
        if procedure.inline:
            # The fast path: a plain function runs inline, no task.
            try:
                result = procedure.function(*args, **kwargs) if kwargs else procedure.function(*args)
            except Exception as exc:
                self._reply_error(call_id, procedure, exc, args, kwargs)
            else:
                if call_id:
                    self._core.send_result(call_id, result)
            if not call_id:
                self._core.finish_notification()  # frees its slot among the concurrent calls
            return
        if _EAGER_TASKS:
            # Started eagerly: it runs at once, up to its first suspension, as a real Task
            # (current_task(), asyncio.timeout() and a context of its own all hold); one that never
            # suspends is done here, its reply queued for this read's write: no loop turn.
            serving = self._serve(call_id, procedure, args, kwargs)
            task = asyncio.Task(serving, loop=self._loop, name=procedure.name, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            if task.done():
                return
        else:  # (3.11 has no eager start that keeps those promises: the task starts next turn)
            # (named after its procedure: 3.11 formats "Task-<n>" for a task without a name, ~1,100
            # instructions a call)
            task = asyncio.Task(self._serve(call_id, procedure, args, kwargs), loop=self._loop, name=procedure.name)
        if not call_id:
            self._notifications |= {task}
            task.add_done_callback(self._notification_done)
            return
        self._serving[call_id] = (task, input_queue)

    def _notification_done(self, task: asyncio.Task[None]) -> None:
        self._notifications -= {task}

    async def _serve(self, call_id: int, procedure: Procedure, args: list[Any], kwargs: dict[str, Any]) -> None:
        # current_call() finds the call this task serves in this coroutine's frame (_serving_call):
        # setting current_call_var for every call cost 3% of an async def round trip.
        try:
            kind = procedure.kind
            if kind is _COROUTINE:  # (an empty ** costs a dict copy: most calls have no keywords)
                result = await (procedure.function(*args, **kwargs) if kwargs else procedure.function(*args))
                check = procedure.result_check
                if check is not None and type(result) is not check.exact:
                    result = check.check(result)
            else:
                current_call_var.set((self, call_id, self._core))  # (for threads: this task's context is copied)
                if kind is Kind.FUNCTION:
                    result = await asyncio.to_thread(procedure.function, *args, **kwargs)
                else:
                    await self._produce(call_id, procedure, procedure.function(*args, **kwargs))
                    return
        except asyncio.CancelledError:
            # Cancelled from outside (e.g. loop shutdown): an answer is still due. (After a CANCEL,
            # an expired deadline or a lost connection the core owes none, and sends nothing.)
            self._core.send_error(call_id, Cancelled.wire_type, f"{procedure.name} was cancelled")
        except Exception as exc:
            self._reply_error(call_id, procedure, exc, args, kwargs)
        else:
            if call_id:  # (the core sends nothing for a call it no longer serves, nor once closed)
                self._core.send_result(call_id, result)
        finally:
            # (_finish_serving's first tests, inlined: an eager task done at once, the common case
            # on 3.12+, has nothing else to do; its reply goes out with the read's write)
            if not self._inside_read or not call_id or self._serving or self._credit_waiters:
                self._finish_serving(call_id)

    async def _produce(self, call_id: int, procedure: Procedure, iterator: Any) -> None:
        self._core.open_output_stream(call_id, procedure.item_check)
        if procedure.kind is Kind.ASYNC_GENERATOR:
            try:
                await Producer(self, call_id).run_async(iterator)
            finally:
                await iterator.aclose()
        elif procedure.blocking:
            await Producer(self, call_id).run_in_threads(iterator)
        else:
            await Producer(self, call_id).run(iterator)
        self._core.send_end(call_id)

    async def _await_credit(self, call_id: int) -> None:
        """Until the consumer grants credit and our writes are not backed up (pause_writing)."""
        core = self._core
        while core.credit(call_id) <= 0 or self._writes_backed_up:
            if not core.stream_open(call_id):
                raise ConnectionLost(f"stream {call_id} is closed")
            waiter = self._credit_waiters[call_id] = self._loop.create_future()
            self._flush()
            await waiter

    def _finish_serving(self, call_id: int) -> None:
        if call_id == 0:
            self._core.finish_notification()
            if self._core.calls_held:
                self._schedule_flush()
            return
        serving = self._serving
        if serving:  # (empty when the call was an eager task done at once: never entered)
            serving.pop(call_id, None)
            if not serving:  # (an emptied dict keeps its table until cleared)
                serving.clear()
        if self._credit_waiters:  # (a stream's)
            self._credit_waiters.pop(call_id, None)
        if self._inside_read:  # an eager task's reply goes out with the read's write
            return
        if serving:  # others may finish in this loop turn too: one write for them all
            self._schedule_flush()
        else:  # the last one written now, not a loop turn later (with what others scheduled)
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush()

    def _reply_error(
        self, call_id: int, procedure: Procedure, exc: Exception, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        reply = self._failed(procedure, exc, args, kwargs)
        if call_id:
            self._core.send_error(call_id, *reply)

    def _granter(self, call_id: int) -> Callable[[int], None]:
        return functools.partial(self._grant, call_id)

    def _grant(self, call_id: int, credit: int) -> None:
        self._core.grant_credit(call_id, credit)
        self._schedule_flush()

    # -- calling the peer ------------------------------------------------------------------------------

    def call(self, name: str | int, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Call ``name`` on the peer: await the result. Every keyword argument goes to the procedure;
        call options (a deadline, an input stream) go through :meth:`with_options`.

        A streaming procedure's items come back as a list. Cancelling the awaiting task cancels the
        remote procedure.

        Raises :class:`RemoteError` (or a subclass: :class:`ProcedureNotFound`,
        :class:`InvalidArguments`, :class:`Busy`, :class:`DeadlineExceeded`, :class:`Cancelled`) as
        the peer answers; :class:`ConnectionLost` if the connection ends first; ``TypeError`` for a
        value the codec cannot encode and :class:`PayloadTooLarge` past the peer's limits (nothing
        sent); :class:`InvalidState` after this side closed; :class:`LocalProtocolError` with a
        plain ipcprims peer.
        """
        return self._call_with(name, args, kwargs, None, None)

    async def _call_with(
        self,
        name: str | int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        input_items: InputItems,
    ) -> Any:
        core = self._core
        call_id = core.send_call(name, args, kwargs, timeout=timeout, has_input=input_items is not None)
        calls = self._calls
        future = calls[call_id] = self._loop.create_future()
        if len(calls) == 1 and self._flush_handle is None:
            # The only call in flight: write it now, not one loop turn later (_flush, inlined).
            transport = self._transport
            if transport is not None and self._writelines is None and not transport.is_closing():
                transport.writelines(core.data_to_send())
            else:
                self._flush()
        else:
            self._schedule_flush()  # calls made in one loop turn go out in one write
        if core.timer_moved:  # the call's deadline is the core's: one timer for all
            self._arm_timer()
        if input_items is not None:
            feeder = self._loop.create_task(self._feed(call_id, input_items))
            future.add_done_callback(lambda _: feeder.cancel())
        try:
            return await future
        except asyncio.CancelledError:
            self._give_up(call_id)
            raise

    def stream(self, name: str | int, /, *args: Any, **kwargs: Any) -> CallStream:
        """Call a streaming procedure; iterate the result with ``async for``. Every keyword argument
        goes to the procedure; call options go through :meth:`with_options`.

        Leaving the loop early (``break``, an exception, ``async with`` exit, :meth:`CallStream.aclose`,
        or dropping the last reference) cancels the remote generator. Iterating raises as
        :meth:`call` does.
        """
        return CallStream(self, name, args, kwargs, timeout=None, input_items=None)

    def _stream_with(
        self,
        name: str | int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        input_items: InputItems,
    ) -> CallStream:
        return CallStream(self, name, args, kwargs, timeout=timeout, input_items=input_items)

    def with_options(self, *, timeout: float | None = None, input: InputItems = None) -> Caller:
        """This peer's ``call``, ``stream`` and ``proxy`` with call options:
        ``await peer.with_options(timeout=5).call("wait_for_job", "j1", timeout=60)`` gives the call
        a 5 s deadline and the procedure its own ``timeout=60``. ``input`` streams items (an iterable
        or an async iterable) to the procedure's first argument. Raises ``ValueError`` for a
        timeout that is not positive."""
        return Caller(self, timeout, input)

    def notify(self, name: str, /, *args: Any, **kwargs: Any) -> None:
        """Call ``name`` without waiting for (or getting) a reply. Raises as :meth:`call` does before
        sending (an unencodable value, the size, the connection's state)."""
        self._core.send_notify(name, args, kwargs)
        self._schedule_flush()

    def _abandon(self, call_id: int, error: BaseException) -> None:
        """Fail a call made here with ``error``, and cancel it on the peer."""
        if self._fail_call(call_id, error):
            self._cancel_remote(call_id)

    def _give_up(self, call_id: int) -> None:
        """Forget a call made here (its caller is gone), and cancel it on the peer."""
        self._collected.pop(call_id, None)
        if self._calls.pop(call_id, None) is not None or self._streams.pop(call_id, None) is not None:
            self._cancel_remote(call_id)

    def _cancel_remote(self, call_id: int) -> None:
        if self._core.is_open:
            self._core.send_cancel(call_id)
            self._schedule_flush()

    async def _feed(self, call_id: int, source: Iterable[Any] | AsyncIterable[Any]) -> None:
        try:
            producer = Producer(self, call_id)
            if isinstance(source, AsyncIterable):
                await producer.run_async(aiter(source))
            else:
                await producer.run(iter(source))
            if self._core.is_open:
                self._core.send_end(call_id)
                self._schedule_flush()
        except ConnectionLost:
            return
        except Exception as exc:
            self._abandon(call_id, exc)

    # -- plain messages ------------------------------------------------------------------------------

    def send(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        """Send a plain frame on a negotiated channel (not the RPC channel 1 of an ipfi peer).

        Raises :class:`LocalProtocolError` for a channel not negotiated, :class:`PayloadTooLarge`
        past the peer's frame limit, :class:`InvalidState` or :class:`ConnectionLost` when the
        connection is not open."""
        self._core.send_message(channel, payload)
        self._schedule_flush()

    async def receive(self, channel: int | None = None, timeout: float | None = None) -> Message:
        """The next plain frame from the peer (on ``channel``, if given; others stay queued).

        Raises ``TimeoutError`` after ``timeout`` seconds (``None``: wait as long as it takes), and
        :class:`ConnectionLost` once the connection has ended and nothing is left.
        """
        async with asyncio.timeout(timeout):
            while (message := self._take_message(channel)) is None:
                if self._closed.done():
                    raise self._close_error or ConnectionLost("connection closed")
                waiter = self._loop.create_future()
                self._message_waiters.append(waiter)
                await waiter
        self._message_taken(len(message.payload))
        return message

    async def messages(self, channel: int | None = None) -> AsyncIterator[Message]:
        """Plain frames (on ``channel``, if given) until the connection closes."""
        while True:
            try:
                yield await self.receive(channel)
            except ConnectionLost:
                return

    # -- control ---------------------------------------------------------------------------------------

    async def ping(self, timeout: float | None = 5.0) -> float:
        """Round-trip time in seconds of a ping/pong on the control channel. Raises
        ``TimeoutError`` after ``timeout`` seconds, :class:`ConnectionLost` if the connection is not
        open or ends first."""
        if not self._core.is_open:
            raise ConnectionLost("connection is not open")
        self._core.send_ping()
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pings.append(waiter)
        self._flush()
        return await asyncio.wait_for(waiter, timeout)

    async def wait_opened(self) -> None:
        await self._opened

    async def wait_closed(self) -> None:
        """Until the connection has ended; over ``exec:``, until its child has exited too (it is
        killed if it outlives the connection by 2 s): a program may end its loop right after."""
        await asyncio.shield(self._closed)
        if self.process is not None:
            await self.process.wait()

    async def aclose(self, timeout: float = 1.0) -> None:
        """Graceful close: ``shutdown_request``, wait up to ``timeout`` for the ack, then close.
        Pending calls raise :class:`ConnectionLost`, later ones :class:`InvalidState`."""
        self._core.closed_here = True
        if self._closed.done():
            await self.wait_closed()  # (an exec: child may still be exiting)
            return
        if self._core.is_open:
            acknowledged = self._core.send_shutdown_request()
            self._flush()
            if acknowledged:
                self._shutdown_acked = self._loop.create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(self._shutdown_acked), timeout)
                except TimeoutError:
                    log.debug("peer %s: no shutdown_ack within %s s", self.peer_id, timeout)
        self._close_error = self._close_error or ConnectionLost("connection closed")
        self.abort()
        await self.wait_closed()

    def abort(self) -> None:
        """Abrupt close: at once, without the shutdown exchange. Pending calls raise
        :class:`ConnectionLost`, later ones :class:`InvalidState`. Raises nothing."""
        self._core.closed_here = True
        if self._transport is not None and not self._transport.is_closing():
            self._close_error = self._close_error or ConnectionLost("connection closed")
            self._close_transport()

    async def __aenter__(self) -> Peer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _PushedPeer(Peer, asyncio.Protocol):
    """A :class:`Peer` that uvloop hands bytes (``data_received``) instead of letting it read into
    :meth:`Peer.get_buffer`: on uvloop that is about 1 µs a call faster for small messages. While a
    large frame arrives, a :class:`_LargeFrameReader` stands in, so that the rest of the frame is
    read straight into its memory, not copied twice."""

    def __init__(self, role: Role, interface: Interface | None, options: Options, *, peer_id: str | None) -> None:
        super().__init__(role, interface, options, peer_id=peer_id)
        self._switch_for_large_frames = True


class _LargeFrameReader(asyncio.BufferedProtocol):
    """The transport's protocol while large frames arrive for a :class:`_PushedPeer`.

    It stays until :data:`_PUSHED_AGAIN_AFTER` reads in a row have ended between frames: each switch
    back costs the next large frame a first read into a fresh 256 KiB ``bytes`` (~8% of a 16 MiB
    echo's throughput when switching for every frame).
    """

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._idle_reads = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._peer.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        peer = self._peer
        peer.buffer_updated(nbytes)
        if not peer._frames.idle:
            self._idle_reads = 0
        elif (idle_reads := self._idle_reads + 1) < _PUSHED_AGAIN_AFTER:
            self._idle_reads = idle_reads
        else:
            peer._read_pushed()

    def eof_received(self) -> bool:
        return self._peer.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer.connection_lost(exc)

    def pause_writing(self) -> None:
        self._peer.pause_writing()

    def resume_writing(self) -> None:
        self._peer.resume_writing()


def _writelines_replacement(transport: asyncio.Transport) -> Callable[[list[Buffer]], None] | None:
    """How to write frames taken from the core where the transport's own ``writelines`` will not do
    (``None``: it will, as uvloop's does).

    - asyncio's default one (the standard loop's socket transports on Python 3.11, its pipe
      transports on every Python, under the ``joins_writes`` of ipfi's pipe transports) joins
      everything into one ``bytes`` first: a 16 MiB message was then copied three times before the
      socket saw it (joined, sliced after the first send, buffered). See :class:`_PacedWriter`.
    - The selector socket transport's own one (Python 3.12.0-3.12.8, 3.13.0-3.13.1) never pauses the
      protocol however much it buffers (CPython gh-127655): a peer that does not read could make a
      stream producer buffer without bound. The pause it forgets is made after each write.
    """
    kind = type(transport)
    writelines = getattr(kind, "writelines", None)
    if writelines is asyncio.WriteTransport.writelines or getattr(transport, "joins_writes", False):
        return _PacedWriter(transport)
    pause = getattr(transport, "_maybe_pause_protocol", None)
    if writelines is None or pause is None or not _FORGETS_TO_PAUSE or "Selector" not in kind.__name__:
        return None

    def write_and_pause(data: list[Buffer]) -> None:
        transport.writelines(data)
        pause()

    return write_and_pause


class _PacedWriter:
    """Writes frames to a transport whose own ``writelines`` joins them and which keeps what a send
    leaves in one ``bytearray``, moving what is left to its start after each later send (asyncio's
    selector socket transports on Python 3.11, its pipe transports on every Python). Large pieces
    go out as they are, not joined; and a piece larger than :data:`_PACED_SLICE` a slice at a time,
    the next once the transport has sent what it holds down to its high-water mark (each write is
    checked; the peer's ``resume_writing`` feeds more): a 16 MiB message left whole in that buffer
    was moved ~80 times over (memmove and page faults, 220 MiB/s against 700 on 3.12, which keeps
    views in a deque).

    A peer closing its transport hands everything still waiting over first (:meth:`hand_over`):
    a pipe's transport drops what it is given once closing.
    """

    __slots__ = ("_high", "_transport", "_waiting", "_write")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._write = transport.write
        self._waiting: list[Buffer] = []  # (a few slices: a deque would cost 600 bytes a connection)
        self._high = transport.get_write_buffer_limits()[1]

    def __call__(self, data: list[Buffer]) -> None:
        waiting = self._waiting
        if len(data) == 1 and not waiting and len(data[0]) <= _PACED_SLICE:
            self._write(data[0])
            return
        small: list[Buffer] = []
        for piece in data:
            if len(piece) < LARGE_BINARY:
                small.append(piece)
                continue
            if small:
                waiting.append(b"".join(small))
                small = []
            view = memoryview(piece)
            waiting.extend(view[start : start + _PACED_SLICE] for start in range(0, len(view), _PACED_SLICE))
        if small:
            waiting.append(b"".join(small))
        self.feed()

    def feed(self) -> None:
        """Hand pieces over until the transport holds more than its high-water mark (it has paused
        the peer, whose ``resume_writing`` calls this again) or none is left."""
        waiting = self._waiting
        size = self._transport.get_write_buffer_size
        while waiting and size() <= self._high:
            self._write(waiting.pop(0))

    def hand_over(self) -> None:
        """Everything waiting, to the transport at once (it is about to close)."""
        waiting, self._waiting = self._waiting, []
        for piece in waiting:
            self._write(piece)


#: The slices :class:`_PacedWriter` hands a large piece over in.
_PACED_SLICE: Final = 1024 * 1024

_FORGETS_TO_PAUSE: Final = (3, 12) <= sys.version_info < (3, 12, 9) or (3, 13) <= sys.version_info < (3, 13, 2)


#: Python 3.12+ starts a Task eagerly when asked (``eager_start``).
_EAGER_TASKS: Final = sys.version_info >= (3, 12)


_SERVE: Final = Peer._serve.__code__
#: (a module constant: reading an Enum's member off its class cost ~900 instructions per call on 3.11)
_COROUTINE: Final = Kind.COROUTINE


def _serving_call() -> tuple[Peer, int, ProtocolCore] | None:
    """The call the running task serves, if it is a peer's (see current_call): read off the frame of
    the coroutine the task runs, :meth:`Peer._serve`, when asked, rather than set for every call."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no loop runs in this thread
        return None
    coroutine = None if task is None else task.get_coro()
    frame = getattr(coroutine, "cr_frame", None)
    if frame is None or frame.f_code is not _SERVE:
        return None
    names = frame.f_locals
    peer = names["self"]
    return peer, names["call_id"], peer._core


call_finders.append(_serving_call)


def new_peer(role: Role, interface: Interface | None, options: Options, *, peer_id: str | None = None) -> Peer:
    """A peer for a socket of the running loop.

    uvloop hands small messages over faster than it reads into a buffer of ours, so a peer lets it
    push bytes there, and reads in place only while large frames keep arriving. The standard loop
    reads in place always: otherwise it allocates a fresh 256 KiB object for every read.
    """
    on_uvloop = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    return (_PushedPeer if on_uvloop else Peer)(role, interface, options, peer_id=peer_id)


class CallStream:
    """The items of one streaming call (see :meth:`Peer.stream`)."""

    def __init__(
        self,
        peer: Peer,
        name: str | int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
        input_items: InputItems,
    ) -> None:
        self._peer = peer
        self._request = (name, args, kwargs, timeout, input_items)
        self._call_id = 0
        self._queue: _StreamCall | None = None
        self._feeder: asyncio.Task[None] | None = None

    def _start(self) -> _StreamCall:
        peer = self._peer
        name, args, kwargs, timeout, input_items = self._request
        call_id = peer._core.send_call(name, args, kwargs, timeout=timeout, has_input=input_items is not None)
        self._call_id = call_id
        queue = self._queue = _StreamCall(peer._granter(call_id), peer.options.limits.stream_window)
        peer._streams[call_id] = queue
        peer._schedule_flush()
        if peer._core.timer_moved:
            peer._arm_timer()
        if input_items is not None:
            self._feeder = peer._loop.create_task(peer._feed(call_id, input_items))
        return queue

    def __aiter__(self) -> AsyncIterator[Any]:
        return (self._queue or self._start()).items(self._stop)

    async def __anext__(self) -> Any:
        queue = self._queue or self._start()
        item = queue.take()  # items already here need no awaiting
        if item is not EMPTY:
            return item
        try:
            return await queue.__anext__()
        except BaseException:
            self._stop()
            raise

    async def aclose(self) -> None:
        """Stop early: cancels the remote generator."""
        self._stop()

    def _stop(self) -> None:
        _stop_stream(self._peer, self._call_id, self._queue, self._feeder)

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop()

    def __del__(self) -> None:
        # ``break`` out of ``async for`` drops the last reference without calling aclose(). The
        # stop waits for the loop's next turn: a collection may run in the middle of the core's work.
        queue = self._queue
        if queue is not None and not queue.finished:
            with contextlib.suppress(RuntimeError):  # (the loop is closed: the connection is gone)
                self._peer._loop.call_soon_threadsafe(_stop_stream, self._peer, self._call_id, queue, self._feeder)


def _stop_stream(peer: Peer, call_id: int, queue: _StreamCall | None, feeder: asyncio.Task[None] | None) -> None:
    if queue is not None and not queue.finished:
        peer._give_up(call_id)
        queue.finish(ConnectionLost("stream closed"))
    if feeder is not None:
        feeder.cancel()
