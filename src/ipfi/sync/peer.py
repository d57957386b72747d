"""The blocking driver: one thread-safe :class:`Peer` per connection, on the same protocol core.

Reading is a role, not a thread: a caller that finds nobody reading reads the wire itself until its
own reply is in, handing other threads' replies to them on the way (no thread hand-off on the fast
path). A peer that serves an interface keeps a background reader thread, so the other side's calls
are answered while this side's threads are busy elsewhere.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import Any, Final, cast

from ..core.codecs import Buffer
from ..core.connection import Role
from ..core.consumer_credit import credit_due, grant_at, items_before_grant
from ..core.errors import (
    Cancelled,
    ConnectionLost,
    HandshakeError,
    InheritedConnection,
    InvalidState,
    KeepaliveTimeout,
    ProcedureNotFound,
    RemoteProtocolError,
)
from ..core.events import (
    CancelReceived,
    CreditReceived,
    DeadlinePassed,
    ErrorReceived,
    HandshakeComplete,
    ItemsReceived,
    MessageReceived,
    PongReceived,
    ShutdownAcknowledged,
    ShutdownRequested,
    StreamEnded,
)
from ..core.interface import Interface, Kind, Procedure, current_call_var, current_peer_var
from ..core.logs import shown
from ..net.hangup import HANGUP_CHECK_INTERVAL, peer_hung_up
from ..options import Options
from ..peer_base import PeerBase
from ..proxy import Caller, MakesProxies
from .links import Link
from .loop_thread import LoopThread
from .producer import Batch

log = logging.getLogger("ipfi.sync")
_get_ident = threading.get_ident  # (a global, not an attribute of one: this runs for every call)
_READ_SIZE = 64 * 1024  # bytes read at most per system call, but for the rest of a large frame
_JOIN_UP_TO = 64 * 1024  # frames written together are joined into one write up to this size

_live_peers: weakref.WeakSet[Peer] = weakref.WeakSet()


def _mark_inherited() -> None:
    for peer in list(_live_peers):
        peer._inherited = True


os.register_at_fork(after_in_child=_mark_inherited)


class _Pending:
    """The receiving end of a call made here, or of an input stream served here.

    ``collect``: the items of a streamed result are gathered into a list for :meth:`Peer.call`, and
    the reader grants the producer more credit as they arrive (nobody consumes them one by one).
    Items iterated one by one wait in a deque.

    Defaults in the class, not set by an ``__init__``: a blocking call makes one, and a Python
    ``__init__`` cost ~700 of its ~37,000 instructions. Whoever makes one sets ``items``.
    """

    value: Any = None
    error: BaseException | None = None
    finished = False
    consumed = 0
    collect = False
    items: list[Any] | deque[Any]

    def done(self) -> bool:
        return self.finished

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            self.error = error
            self.finished = True


class _Work:
    """A call the peer made here: what to run, then how it went."""

    __slots__ = ("args", "batch", "call_id", "error", "items", "kwargs", "procedure", "result")

    def __init__(self, call_id: int, procedure: Procedure, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.call_id = call_id
        self.procedure = procedure
        self.args = args
        self.kwargs = kwargs
        self.result: Any = None
        self.error: Exception | None = None
        self.items: Iterator[Any] | None = None  # a generator's, kept while it waits for credit
        self.batch: Batch | None = None  # what it gathers, once it streams

    def run(self) -> None:
        try:
            self.result = self.procedure.function(*self.args, **self.kwargs)
        except Exception as exc:
            self.error = exc


#: How often a flusher looks again for items gathered by workers, once it found some (seconds).
WATCH_INTERVAL: Final = 0.001


class _Flusher:
    """A thread that takes what streams' senders have gathered, and writes it, for senders whose
    iterators block before they take it themselves (see Peer._send_stream): a procedure's worker,
    or the thread feeding a call's input.

    A sender that starts a batch wakes it, unless it is ``watching``: while senders are taking
    (or it finds items to take), it looks every WATCH_INTERVAL, and takes the items of a sender
    that has not taken since it last looked; it sleeps once none has. A sender that runs on
    wakes nobody (a thread switch per batch cost a quarter of a stream's items per second). An
    item yielded before an iterator blocks therefore goes out at once, or within two
    WATCH_INTERVALs while items were flowing."""

    def __init__(self, flush: Callable[[_Flusher], None], name: str) -> None:
        self._flush = flush
        self._wanted = threading.Event()
        self._stopped = False
        self.watching = False
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def request(self) -> None:
        if not self._wanted.is_set():  # (set and not yet taken: the coming write takes this item too)
            self._wanted.set()

    def stop(self) -> None:
        self._stopped = True
        self._wanted.set()

    def _run(self) -> None:
        while True:
            if self.watching:  # (the whole interval: a request met while it looked changes nothing)
                time.sleep(WATCH_INTERVAL)
            else:
                self._wanted.wait()
            if self._stopped:
                return
            self._wanted.clear()
            self._flush(self)  # (which sets watching)


class _Waiter:
    __slots__ = ("event", "ready")

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.event = threading.Event()
        self.ready = ready


def _never() -> bool:
    return False


def _close(items: Iterator[Any] | None) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _close_items(work: _Work) -> None:
    _close(work.items)


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    return first if second is None else min(first, second)


class Peer(MakesProxies, PeerBase):
    """One blocking connection; every method may be called from any thread."""

    # Slots, not an instance dict: less memory per connection (other attributes still go in one).
    #: Calls are awaited (``True``, the asyncio driver) or block (``False``).
    asynchronous = False

    __slots__ = (
        "_announce_open",
        "_async_runs",
        "_batches",
        "_calls",
        "_closing_after_flush",
        "_core",
        "_error",
        "_executor",
        "_fatal",
        "_flusher",
        "_inherited",
        "_inline",
        "_inputs",
        "_link",
        "_lock",
        "_message_sink",
        "_messages",
        "_owns_executor",
        "_owns_loop_thread",
        "_parked",
        "_pauses",
        "_peer_left",
        "_pid",
        "_pings",
        "_read_buffer",
        "_reader",
        "_reading",
        "_room",
        "_send",
        "_shutdown_acked",
        "_timer_at",
        "_waiters",
        "_write_lock",
        "credentials",
        "interface",
        "loop_thread",
        "on_close",
        "on_open",
        "options",
        "process",
    )

    def __init__(
        self,
        link: Link,
        role: Role,
        interface: Interface | None,
        options: Options,
        *,
        executor: Executor | None = None,
        owns_executor: bool = False,
        peer_id: str | None = None,
    ) -> None:
        super().__init__(role, interface, options, peer_id)
        self._core.receive_binaries_whole()  # (_read_until lets go of the view before reporting)
        self._link = link
        # Reused by every read: a fresh buffer per read would cost an mmap, an mremap and an munmap.
        self._read_buffer = memoryview(bytearray(_READ_SIZE))
        self._executor = executor
        self._owns_executor = owns_executor
        #: Called once the handshake is done (outside the lock), and once the connection has ended.
        self.on_open: Callable[[Peer], None] | None = None
        self.on_close: Callable[[Peer], None] | None = None
        self._announce_open = False
        self._lock = threading.Lock()  # guards the core and every table below
        # Frames are taken from the core and written while holding this (always taken before _lock),
        # so they reach the wire in order; a peer that does not read blocks writers, not the reader.
        self._write_lock = threading.Lock()
        self._send = link.send
        self._reading = 0  # the id of the thread holding the reader role, or 0
        # Calls the reader runs itself: (call_id, procedure, args, kwargs).
        self._inline: list[tuple[int, Procedure, list[Any], dict[str, Any]]] = []
        self._waiters: set[_Waiter] = set()
        self._calls: dict[int, _Pending] = {}
        self._inputs: dict[int, _Pending] = {}
        #: ``async def`` procedures run on this loop (a server's, or the peer's own); see loop_thread.
        self.loop_thread: LoopThread | None = None
        self._async_runs: dict[int, concurrent.futures.Future[Any]] = {}  # call id -> its coroutine
        self._parked: dict[int, _Work] = {}  # generators waiting for credit, holding no thread
        # Streams being sent from threads here, by call id: how each fails if the flusher's take does.
        self._batches: dict[int, tuple[Batch, Callable[[Exception], None]]] = {}
        self._owns_loop_thread = False
        self._flusher: _Flusher | None = None
        # Clear while the reader thread must not read (plain frames unconsumed, calls held at the
        # concurrency limit: the reasons in _pauses); it waits for it, watching for the peer to leave.
        self._room = threading.Event()
        self._room.set()
        self._pauses: set[str] = set()
        self._peer_left = False
        self._pings: list[list[float]] = []
        self._shutdown_acked = False
        self._closing_after_flush = False
        self._error: ConnectionLost | None = None
        self._reader: threading.Thread | None = None
        self._timer_at: float | None = None  # the core's next moment, as last asked (see _note_timer)
        self._fatal: Exception | None = None  # what the core raised to end the connection
        self._read_error: OSError | None = None  # why the wire's last read failed
        self._pid = os.getpid()
        self._inherited = False
        _live_peers.add(self)

    # -- opening -----------------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Details of the wire, as asyncio's transports give them: ``"peername"``, ``"sockname"``,
        ``"socket"``; ``default`` where the wire has none."""
        return self._link.extra.get(name, default)

    def open(self, *, background_reader: bool) -> Peer:
        """Complete the handshake (client) or start serving (server, always with a reader thread)."""
        if not self._admit(getattr(self._link, "sock", None)):
            self.close(timeout=0.0)
            return self
        with self._lock:
            try:
                for event in self._core.start():  # (a wire without a handshake is open at once)
                    self._handlers[type(event)](self, event)
            except RemoteProtocolError as exc:  # (its server's authenticate refused the peer)
                self._violation(exc)
            self._note_timer()  # the handshake's deadline
            announce, self._announce_open = self._announce_open, False
        self._flush()
        if announce and self.on_open is not None:
            self.on_open(self)
        keeps_time = self.options.keepalive is not None or self.options.limits.idle_timeout is not None
        if self._core.role is Role.SERVER or background_reader or keeps_time:
            self._reader = threading.Thread(target=self._read_forever, name=f"ipfi-reader-{id(self):x}", daemon=True)
            self._reader.start()
        if self._core.role is Role.CLIENT:
            try:
                self._wait_until(lambda: self._core.is_open, None)  # the core's timer ends the handshake
            except ConnectionLost as exc:
                if self.process is not None:  # nobody will speak to an exec: child: killed now, not 2 s later
                    self.process.kill()  # (nothing if it has exited; closing reaps it)
                self.close()
                if isinstance(self._fatal, HandshakeError):  # (the timeout, a refusal, a stranger...)
                    raise type(self._fatal)(str(self._fatal)) from None
                raise HandshakeError(f"the handshake did not complete: {exc}") from None
        return self

    def _read_forever(self) -> None:
        current_peer_var.set(self)  # for the procedures this thread runs (its context is its own)
        with contextlib.suppress(ConnectionLost):
            self._wait_until(_never, None)
        if self._core.role is Role.SERVER:
            self.close(timeout=0.0)  # release the socket as soon as the peer is gone, not at server close

    # -- connection state -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._error is not None

    @property
    def is_open(self) -> bool:
        """Whether the handshake is done and the connection has not ended. A peer that nobody
        reads for (no reader thread, no call waiting) looks, without blocking, whether the other
        side has hung up: a dead server is noticed without a failed write."""
        if self._error is None and self._reader is None and not self._reading:
            fd = self._link.fileno()
            if fd is not None and peer_hung_up(fd):
                with self._lock:
                    self._lose(ConnectionLost(f"connection to {self.peer_id or 'peer'} closed by the peer"))
        return self._core.is_open and self._error is None

    @property
    def close_reason(self) -> str | None:
        """Why the connection ended, once it has."""
        return str(self._error) if self._error is not None else None

    # -- the reader role ---------------------------------------------------------------------------

    def _ended(self) -> Exception:
        """What a call on an ended connection raises: InvalidState after this side's own close."""
        if self._core.closed_here:
            return InvalidState("the connection was closed by this side")
        return ConnectionLost(str(self._error))

    def _check_process(self) -> None:
        if self._inherited:
            raise InheritedConnection(
                f"this connection was opened by process {self._pid}; a forked child must open its own"
            )

    def _wait_until(self, ready: Callable[[], bool], deadline: float | None) -> None:
        """Block until ``ready()`` (checked under the lock), reading the wire when nobody else is.

        The thread holding the reader role may wait too (a procedure it runs calls the peer back):
        it then reads on, nested, until its own answer is in.
        Raises ``TimeoutError`` past ``deadline`` and :class:`ConnectionLost` once the connection ends.
        """
        waiter: _Waiter | None = None
        me = _get_ident()
        while True:
            with self._lock:
                if ready():
                    return
                if self._error is not None:
                    raise ConnectionLost(str(self._error))
                reading = self._reading
                if not reading:
                    self._reading = me
                elif reading != me:
                    if waiter is None:
                        waiter = _Waiter(ready)
                    waiter.event.clear()
                    self._waiters.add(waiter)
            if not reading or reading == me:
                if self._read_until(ready, deadline, hold_role=reading == me):
                    return
                continue
            assert waiter is not None
            wake = _earliest(deadline, self._timer_at)
            woken = waiter.event.wait() if wake is None else waiter.event.wait(max(0.0, wake - time.monotonic()))
            with self._lock:
                self._waiters.discard(waiter)
                if woken or ready() or self._error is not None:
                    continue
                if self._timer_due():
                    self._run_timer()
                elif deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError
            self._flush()

    def _read_until(self, ready: Callable[[], bool], deadline: float | None, *, hold_role: bool) -> bool:
        """Read as the reader until ``ready()`` (returns True) or the connection ends (returns False).

        Gives up the reader role on the way out, unless ``hold_role`` (a nested read keeps it for the
        read it interrupted).
        """
        lock = self._lock
        core = self._core
        frames = core.decoder
        recv_into = self._link.recv_into
        buffer = self._read_buffer
        # (only the reader thread pauses, for the backpressure of the calls it hands out: a caller
        # reading for its own answer must not, nor pay for the test)
        pausable = self._reader is not None and threading.current_thread() is self._reader
        holding = True
        try:
            while True:
                if pausable and not self._room.is_set():
                    self._wait_for_room()
                wake = self._timer_at if deadline is None else _earliest(deadline, self._timer_at)
                if wake is not None and not self._link.readable(wake - time.monotonic()):
                    with lock:
                        if self._timer_due():
                            self._run_timer()
                            done = ready()
                        elif deadline is not None and time.monotonic() >= deadline:
                            raise TimeoutError
                        else:
                            done = False
                    self._flush()
                    if done or self._error is not None:
                        return done
                    continue
                # The rest of a large frame is read straight into its own memory.
                target = buffer if frames.idle else core.receive_target() or buffer
                try:
                    count = recv_into(target)
                except OSError as exc:  # reset, or closed by another thread (close() does not wait for us)
                    count, self._read_error = 0, exc
                filled = target is not buffer
                del target
                lock.acquire()  # (not "with": that costs ~85 ns more, and this runs for every read)
                try:
                    if not count:
                        self._receive_eof()
                    else:
                        try:
                            events = core.received_into(count) if filled else core.receive_from(buffer, count)
                        except RemoteProtocolError as exc:
                            self._violation(exc)
                        except ConnectionLost as exc:
                            self._lose(exc)
                        else:  # (a reply, the commonest read, makes no event: it went to result_sink)
                            if events or core.calls_held or core.timer_moved or self._waiters:
                                self._handle_read(events)
                    done = ready()
                    if done or self._error is not None:
                        if not hold_role:
                            if self._waiters:
                                self._give_up_reading()
                            else:
                                self._reading = 0  # (nobody to wake)
                        holding = False
                    announce = self._announce_open
                    if announce:
                        self._announce_open = False
                    inline = self._inline
                    if inline:
                        self._inline = []
                    output = core.has_output or self._closing_after_flush  # (IPFI's Termination asks none)
                finally:
                    lock.release()
                if output:
                    self._flush()
                if inline:
                    self._run_inline(inline)
                if announce and self.on_open is not None:
                    self.on_open(self)
                if not holding:
                    return done
        finally:
            if holding and not hold_role:
                with lock:
                    self._give_up_reading()

    def _handle_read(self, events: list[Any]) -> None:
        """Under the lock, after the core took a read: what it made happen."""
        core = self._core
        try:
            if events:
                handlers = self._handlers
                for event in events:
                    handlers[type(event)](self, event)
                # Nor may the reader keep the values while it waits for the next read:
                events.clear()
        except RemoteProtocolError as exc:
            self._violation(exc)
        except ConnectionLost as exc:
            self._lose(exc)
        if core.calls_held:
            self._release_held_calls()
        if core.timer_moved:
            self._note_timer()
        if self._waiters:
            self._wake_ready()

    def _outcome(self, call_id: int, pending: _Pending, reader: bool) -> Any:
        """Wait for the reply to call ``call_id``, sent by :meth:`_start`: return its value, or raise
        its error (as :meth:`call` says).

        A thread that took the reader role there (``reader``) reads for its reply in a loop of its
        own, the commonest wait: a read then costs a lock and a few tests (~2,000 instructions a call
        less than :meth:`_read_until`). Only a peer without a reader thread reads so (see _start): it
        serves nothing, so no call of the peer's is to run here, nor to hold back. Once a timer is
        set (a deadline) or a large frame is under way, it reads on as :meth:`_read_until`; any
        other thread waits for whoever reads (:meth:`_wait_until`)."""
        holding = reader
        try:
            if reader:
                lock = self._lock
                core = self._core
                decoder = core.decoder
                buffer = self._read_buffer
                recv_into = self._link.recv_into
                if pending.finished:  # (its write failed: nothing is coming to read for)
                    holding = False
                    with lock:
                        self._give_up_reading()
                while holding and self._timer_at is None and decoder.idle:
                    try:
                        count = recv_into(buffer)
                    except OSError as exc:  # reset, or closed by another thread
                        count, self._read_error = 0, exc
                    lock.acquire()
                    try:
                        if not count:
                            self._receive_eof()
                        else:
                            try:
                                events = core.receive_from(buffer, count)
                            except RemoteProtocolError as exc:
                                self._violation(exc)
                            except ConnectionLost as exc:
                                self._lose(exc)
                            else:
                                if events or core.timer_moved or self._waiters:
                                    self._handle_read(events)
                        if pending.finished or self._error is not None:
                            if self._waiters:
                                self._give_up_reading()
                            else:
                                self._reading = 0
                            holding = False
                        output = core.has_output or self._closing_after_flush  # (a pong, a grant of credit...)
                    finally:
                        lock.release()
                    if output:
                        self._flush()
                if holding:
                    holding = False  # (handed on with the role)
                    self._read_until(pending.done, None, hold_role=False)
            if not pending.finished:
                self._wait_until(pending.done, None)
        except BaseException:
            if holding:
                with self._lock:
                    self._give_up_reading()
            self._give_up(call_id)
            raise
        if pending.error is not None:
            raise pending.error
        return pending.value

    def _give_up_reading(self) -> None:
        """Under the lock: hand the reader role on, waking one thread still waiting, so somebody reads."""
        self._reading = 0
        for waiter in self._waiters:
            if not waiter.ready():
                waiter.event.set()
                break

    # -- the core's timer: whoever waits bounds its wait by it --------------------------------------

    def _note_timer(self) -> None:
        """Under the lock, when the core's next moment may have moved: remember it."""
        core = self._core
        core.timer_moved = False
        self._timer_at = core.next_timer()

    def _timer_due(self) -> bool:
        return self._timer_at is not None and time.monotonic() >= self._timer_at

    def _run_timer(self) -> None:
        """Under the lock: what the core says is due now (the caller flushes after)."""
        try:
            events = self._core.handle_timer()
        except ConnectionLost as exc:  # keepalive or idle timeout
            (log.warning if isinstance(exc, KeepaliveTimeout) else log.info)(
                "peer %s: %s; closing the connection", self.peer_id, exc
            )
            self._fatal = exc
            self._lose(exc)
            return
        except RemoteProtocolError as exc:  # the handshake's deadline
            self._fatal = exc
            self._violation(exc)
            return
        for event in events:
            self._handlers[type(event)](self, event)
        self._note_timer()
        if self._waiters:
            self._wake_ready()

    def _violation(self, exc: Exception) -> None:
        self._report_violation(exc)
        if isinstance(exc, HandshakeError) and not self._core.is_open:
            self._fatal = exc  # what open() raises
        refusal = self._core.refusal
        if refusal is not None:  # the client is told why, then the connection closes
            with contextlib.suppress(OSError):
                self._link.send(refusal)
        self._lose(ConnectionLost(f"protocol error: {exc}"))

    def _wake_ready(self) -> None:
        """Under the lock, after a read: wake the waiting threads whose wait is over."""
        for waiter in self._waiters:
            if waiter.ready():
                waiter.event.set()

    def _receive_eof(self) -> None:
        """Under the lock: the wire's end; a read that failed says why (a reset, a WebSocket close code)."""
        if self._read_error is not None:
            self._lose(ConnectionLost(f"connection to {self.peer_id or 'peer'} lost: {self._read_error}"))
            return
        try:
            self._core.receive_eof()
        except ConnectionLost as exc:
            self._lose(exc)
        self._lose(ConnectionLost(f"connection to {self.peer_id or 'peer'} closed by the peer"))

    def _lose(self, error: ConnectionLost) -> None:
        """Under the lock: end every call, stream and wait at once."""
        if self._error is not None:
            return
        self._error = error
        self._core.close()
        for pending in (*self._calls.values(), *self._inputs.values()):
            pending.fail(ConnectionLost(str(error)))
        self._calls.clear()
        self._inputs.clear()
        for waiter in self._waiters:
            waiter.event.set()
        self._room.set()
        for run in self._async_runs.values():
            run.cancel()
        self._async_runs.clear()
        for call_id in list(self._parked):
            self._drop_parked(call_id)
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None  # it holds self._flush: a reference cycle
        self._link.shutdown()
        _live_peers.discard(self)
        self._log_closed(error)
        if self.on_close is not None:
            self.on_close(self)

    def _result_received(self, call_id: int, value: Any) -> None:
        """Under the lock: the reply to a call made here (the core's ``result_sink``)."""
        pending = self._calls.pop(call_id, None)
        if pending is not None:
            pending.value = value
            pending.finished = True

    def _on_error(self, event: ErrorReceived) -> None:
        pending = self._calls.pop(event.call_id, None)
        if pending is not None:
            pending.fail(event.error)

    def _on_items(self, event: ItemsReceived) -> None:
        pending = self._calls.get(event.call_id) or self._inputs.get(event.call_id)
        if pending is not None:
            pending.items.extend(event.items)
            if pending.collect:
                error = self._collected_too_many(event.call_id, len(pending.items))
                if error is None:
                    self._grant_collected(event.call_id, pending)
                else:
                    del self._calls[event.call_id]
                    pending.items.clear()
                    pending.fail(error)

    def _on_end(self, event: StreamEnded) -> None:
        pending = self._calls.pop(event.call_id, None)
        if pending is not None:
            if pending.collect:
                pending.value = list(pending.items)  # what call() returns for a stream it collected
        else:
            pending = self._inputs.pop(event.call_id, None)
        if pending is not None:
            pending.finished = True

    def _pause_for_messages(self) -> None:
        self._pause("messages")

    def _resume_for_messages(self) -> None:
        self._resume("messages")

    def _pause(self, reason: str) -> None:
        """Under the lock: the reader thread stops before its next read."""
        if not self._peer_left:
            self._pauses.add(reason)
            self._room.clear()

    def _resume(self, reason: str) -> None:
        self._pauses.discard(reason)
        if not self._pauses:
            self._room.set()

    def _wait_for_room(self) -> None:
        """The reader is paused: wait to read again, or for the peer to leave (then read on to its
        EOF, so that the connection ends and frees what it holds)."""
        while not self._room.wait(HANGUP_CHECK_INTERVAL):
            fd = self._link.fileno()
            if fd is not None and peer_hung_up(fd):
                with self._lock:
                    log.info("peer %s left while reading was paused (%s)", self.peer_id, ", ".join(self._pauses))
                    self._peer_left = True
                    self._pauses.clear()
                    self._room.set()

    def _release_held_calls(self) -> None:
        """Under the lock: calls wait at the concurrency limit (the core holds them); hand out those
        that slots have opened for (plain functions among them run in this thread once the lock is
        released, see _settle), and let the reader read again only once none waits."""
        core = self._core
        handlers = self._handlers
        try:
            while core.calls_held and (events := core.release_held()) is not None:
                for event in events:
                    handlers[type(event)](self, event)
        except RemoteProtocolError as exc:
            self._violation(exc)
        except ConnectionLost as exc:
            self._lose(exc)
        if core.calls_held:
            self._pause("calls")
        else:
            self._resume("calls")

    def _on_pong(self, event: PongReceived) -> None:
        if self._pings:
            self._pings.pop(0).append(event.round_trip)

    def _on_handshake(self, _: HandshakeComplete) -> None:
        verdict = self._check_authenticated()
        if verdict is not None:  # an async def authenticate: awaited here, in this connection's reader
            self._judge(self._await_here(verdict))
        self._log_opened()
        self._announce_open = True

    def _on_shutdown_request(self, _: ShutdownRequested) -> None:
        self._closing_after_flush = True

    def _on_shutdown_ack(self, _: ShutdownAcknowledged) -> None:
        self._shutdown_acked = True

    def _on_credit(self, event: CreditReceived) -> None:
        """Under the lock: a parked generator produces again, in a worker."""
        work = self._parked.pop(event.call_id, None)
        if work is not None:
            self._start_work(self._produce_again, work)

    def _start_work(self, run: Callable[[_Work], None], work: _Work) -> None:
        """Hand ``work`` to the pool; if it has shut down (the server is closing), end it here."""
        assert self._executor is not None  # (parked work came from the pool)
        try:
            self._executor.submit(run, work)
        except RuntimeError:
            _close(work.items)

    def _drop_parked(self, call_id: int) -> None:
        """Under the lock: the stream of a parked generator has ended; close it (in a worker: its
        ``finally`` blocks are the procedure's code)."""
        work = self._parked.pop(call_id, None)
        if work is not None:
            self._start_work(_close_items, work)

    def _on_cancel(self, event: CancelReceived | DeadlinePassed) -> None:
        """Under the lock: the caller cancelled or the deadline passed; the core owes no answer any
        more. A generator's next item finds its stream closed and stops; an ``async def`` procedure
        is cancelled; a blocking function sees ``current_call().cancelled``."""
        run = self._async_runs.pop(event.call_id, None)
        if run is not None:
            run.cancel()
        self._drop_parked(event.call_id)
        pending = self._inputs.pop(event.call_id, None)
        if pending is not None:
            pending.fail(ConnectionLost(f"call {event.call_id} was cancelled"))

    # -- writing -----------------------------------------------------------------------------------

    def _flush(self, watcher: _Flusher | None = None) -> None:
        """Write what is queued, with what producers have gathered; for the ``watcher``, note
        whether they had gathered any (see _Flusher)."""
        write_lock, lock = self._write_lock, self._lock
        write_lock.acquire()  # (acquire and release, not "with": see _read_until)
        try:
            lock.acquire()
            try:
                if watcher is not None:
                    watcher.watching = False  # (before it looks: a worker that starts a batch after the look asks)
                    watcher.watching = self._take_batches()
                data = self._core.data_to_send()
            finally:
                lock.release()
            self._write(data)
        finally:
            write_lock.release()

    def _take_batches(self) -> bool:
        """Under the lock, for the flusher: what threads sending streams gathered and did not take
        since it last looked (their iterators block, or are slow), to the core. A take that fails
        is answered at once (see _send_stream); its thread stops at its next take. Returns
        whether any thread is taking, or had gathered items (the flusher looks again soon)."""
        core = self._core
        active = False
        for batch, answer in self._batches.values():
            if batch.taking:  # its thread runs: leave the items to it
                batch.taking = False
                active = True
            elif batch.items and batch.failure is None:
                active = True
                try:
                    batch.take(core)
                except ConnectionLost as exc:  # (cancelled, expired: no answer is owed)
                    batch.failure = exc
                except Exception as exc:
                    batch.failure = exc
                    answer(exc)
        return active

    def _write(self, data: list[Buffer]) -> None:
        """Holding the write lock (not the core lock): send frames taken from the core."""
        if data:
            try:
                if len(data) == 1:
                    self._send(data[0])
                elif sum(map(len, data)) <= _JOIN_UP_TO:
                    self._send(b"".join(data))
                else:
                    self._link.send_pieces(data)  # a large binary is sent from where it is, not copied
            except OSError as exc:
                self._write_failed(exc)
        if self._closing_after_flush:
            with self._lock:
                self._lose(ConnectionLost("the peer shut the connection down"))

    def _write_failed(self, error: OSError) -> None:
        with self._lock:
            self._lose(ConnectionLost(f"write failed: {error}"))

    # -- serving the peer's calls ------------------------------------------------------------------

    def _call_received(  # noqa: PLR0917 (the fields of CallReceived, in order: the core's call_sink)
        self,
        call_id: int,
        procedure: Procedure,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
        has_input: bool,
    ) -> None:
        """Under the lock: queue the call for the reader (a plain, non-blocking function: no thread
        hand-off, as in the asyncio driver) or hand it to a worker thread."""
        if procedure.inline and not has_input:
            self._inline.append((call_id, procedure, args, kwargs))
            return
        if self._executor is None:
            if call_id:
                message = f"{shown(procedure.name)} needs a worker thread"
                self._core.send_error(call_id, ProcedureNotFound.wire_type, message)
            else:
                self._core.finish_notification()
            return
        if has_input:
            pending = self._inputs[call_id] = _Pending()
            pending.items = deque()
            args.insert(0, self._items(call_id, pending))
        self._executor.submit(self._serve, _Work(call_id, procedure, args, kwargs))

    def _run_inline(self, calls: list[tuple[int, Procedure, list[Any], dict[str, Any]]]) -> None:
        """In the reader thread, outside the lock: run plain functions and send their replies together."""
        token = None if current_peer_var.get(None) is self else current_peer_var.set(self)
        results: list[tuple[int, Any]] = []
        others: list[_Work] = []  # errors and notifications
        try:
            for call_id, procedure, args, kwargs in calls:
                try:
                    result = procedure.function(*args, **kwargs) if kwargs else procedure.function(*args)
                except Exception as exc:
                    work = _Work(call_id, procedure, args, kwargs)
                    work.error = exc
                    others.append(work)
                else:
                    if call_id:
                        results.append((call_id, result))
                    else:
                        others.append(_Work(call_id, procedure, args, kwargs))
        finally:
            if token is not None:  # a server's reader thread serves this peer alone: it keeps the value
                current_peer_var.reset(token)
            calls.clear()  # (the reader's loop holds the list while it waits for the next read)
        self._settle(results, others)

    def _serve(self, work: _Work) -> None:
        """In a worker thread: run a blocking function, a generator, an ``async def`` procedure (on
        the loop thread), or a procedure fed a stream. A call its caller gave up on while it waited
        for a worker (cancelled, expired, or the peer left) is not run at all."""
        call_id = work.call_id
        if call_id and not self._core.is_serving(call_id):
            self._inputs.pop(call_id, None)
            return
        peer_token = current_peer_var.set(self)
        call_token = current_call_var.set((self, call_id, self._core))
        finished = True
        try:
            kind = work.procedure.kind
            if kind is Kind.GENERATOR:
                try:  # (arguments that do not fit raise here, before a generator exists)
                    work.items = work.procedure.function(*work.args, **work.kwargs)
                except Exception as exc:
                    work.error = exc
                else:
                    finished = self._produce(work)
            elif kind is Kind.ASYNC_GENERATOR:
                work.items = self._async_items(work)
                finished = self._produce(work)
            elif kind is Kind.COROUTINE:
                try:
                    result = self._on_loop(call_id, work.procedure.function(*work.args, **work.kwargs))
                    check = work.procedure.result_check
                    work.result = result if check is None or type(result) is check.exact else check.check(result)
                except Exception as exc:
                    work.error = exc
            else:
                work.run()
        finally:
            current_call_var.reset(call_token)
            current_peer_var.reset(peer_token)
        if finished:
            self._settle((), [work])

    def _produce_again(self, work: _Work) -> None:
        """In a worker thread: a parked generator has credit again (see _produce)."""
        peer_token = current_peer_var.set(self)
        call_token = current_call_var.set((self, work.call_id, self._core))
        try:
            finished = self._produce(work)
        finally:
            current_call_var.reset(call_token)
            current_peer_var.reset(peer_token)
        if finished:
            self._settle((), [work])

    def _await_here(self, verdict: Awaitable[Any]) -> Any:
        """``verdict`` awaited on the loop thread (within the handshake's time); False if it failed."""
        loop_thread = self._loop_thread()

        async def judged() -> Any:
            return await verdict

        judging = loop_thread.submit(judged())
        try:
            return judging.result(self.options.limits.handshake_timeout)
        except Exception as exc:  # (a broken or slow authenticate refuses: it never said yes)
            judging.cancel()
            log.warning("peer %s: authenticate() raised %s: %s", self.peer_id, type(exc).__name__, exc)
            return False

    def _loop_thread(self) -> LoopThread:
        """Where this peer's ``async def`` code runs: its server's loop thread, or one of its own."""
        if self.loop_thread is None:
            self.loop_thread = LoopThread()
            self._owns_loop_thread = True
        return self.loop_thread

    def _on_loop(self, call_id: int, awaitable: Any) -> Any:
        """Await ``awaitable`` on the loop thread, in this call's context; a cancel of the call
        (CANCEL, its deadline, the connection's end) cancels it there."""
        loop_thread = self._loop_thread()
        context = (self, call_id, self._core)

        started: list[bool] = []

        async def in_call() -> Any:
            started.append(True)
            current_peer_var.set(self)  # (in the task's own context)
            current_call_var.set(context)
            return await awaitable

        try:
            future = loop_thread.submit(in_call())
        except RuntimeError:  # closed: the connection is ending
            _close_unless_started(started, awaitable)
            raise ConnectionLost("the connection closed before the procedure could run") from None
        with self._lock:
            if call_id and not self._core.is_serving(call_id):
                future.cancel()
            else:
                self._async_runs[call_id] = future
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # If the task was cancelled before it started, nothing awaits ``awaitable``: close it
            # there (after the task's first step, which is scheduled already), or here once the
            # loop is closed (nothing runs there any more).
            if not loop_thread.call_soon(_close_unless_started, started, awaitable):
                _close_unless_started(started, awaitable)
            raise Cancelled(f"call {call_id} was cancelled") from None
        finally:
            with self._lock:
                self._async_runs.pop(call_id, None)
            # The exception the future may hold has this frame in its traceback: without this, a
            # reference cycle (through the call's context, the peer) for the cyclic GC to find.
            del future

    def _async_items(self, work: _Work) -> Iterator[Any]:
        """An async generator's items, each awaited on the loop thread."""
        items = work.procedure.function(*work.args, **work.kwargs)
        try:
            while True:
                try:
                    yield self._on_loop(work.call_id, items.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            with contextlib.suppress(Exception):
                self._on_loop(0, items.aclose())

    def _settle(self, results: Iterable[tuple[int, Any]], others: list[_Work]) -> None:
        """Send the ``results`` of plain functions, and how the ``others`` went: a result, an error,
        or (a notification) nothing but a freed slot."""
        core = self._core
        write_lock, lock = self._write_lock, self._lock
        write_lock.acquire()  # (acquire and release, not "with": see _read_until)
        try:
            lock.acquire()
            try:
                for call_id, result in results:
                    core.send_result(call_id, result)
                for work in others:
                    self._settle_other(work)
                inline = None
                if core.calls_held:
                    self._release_held_calls()
                    inline, self._inline = self._inline, []  # (filled under this lock by the release only)
                data = core.data_to_send()
            finally:
                lock.release()
            self._write(data)
        finally:
            write_lock.release()
        if inline:  # released calls to plain functions: the reader, paused, would not run them
            self._run_inline(inline)

    def _settle_other(self, work: _Work) -> None:
        core = self._core
        self._inputs.pop(work.call_id, None)
        error = work.error
        reply = None
        if error is not None and not isinstance(error, ConnectionLost):
            reply = self._failed(work.procedure, error, work.args, work.kwargs)
        if not work.call_id:
            core.finish_notification()
        elif not core.is_open or isinstance(error, ConnectionLost):
            return
        elif reply is not None:
            core.send_error(work.call_id, *reply)
        elif work.procedure.kind is not Kind.GENERATOR:
            core.send_result(work.call_id, work.result)

    def _produce(self, work: _Work) -> bool:
        """Stream ``work.items`` as the result of ``work``'s call (see :meth:`_send_stream`).

        Returns False when the consumer's credit is spent: the generator is parked, holding no
        thread, until its credit comes (_on_credit hands it to a worker again), so streams whose
        consumers do not read cannot take every worker."""
        core = self._core
        call_id = work.call_id
        items = work.items
        assert items is not None
        try:
            with self._lock:
                batch = work.batch
                if batch is None:
                    core.open_output_stream(call_id, work.procedure.item_check)
                    batch = work.batch = Batch(call_id, core.credit(call_id))
            if not self._send_stream(batch, items, self._answer_for(work), work):
                return False
            _close(items)
            with self._lock:
                if core.is_open:
                    core.send_end(call_id)
        except Exception as exc:
            work.error = exc
            _close(items)
        return True

    def _answer_for(self, work: _Work) -> Callable[[Exception], None]:
        """How the flusher answers a failed take of ``work``'s stream: with the error, at once."""

        def answer(exc: Exception) -> None:
            self._core.send_error(work.call_id, *self._failed(work.procedure, exc, work.args, work.kwargs))

        return answer

    def _send_stream(
        self, batch: Batch, items: Iterator[Any], answer: Callable[[Exception], None], parked: _Work | None
    ) -> bool:
        """Send what ``items`` yields on ``batch``'s stream. The items gather in ``batch``, which
        this thread takes to the core and writes, a few at a time (:meth:`_take_own`); should
        ``items`` block before it does, the flusher thread takes them (see :class:`_Flusher`), and
        should its take fail, it calls ``answer`` with the error (under the lock).

        Returns True once ``items`` is exhausted and all is taken (the caller ends the stream), or
        False when the credit is spent and ``parked`` is given (parked: its generator goes on in a
        worker when credit comes); without ``parked``, waits for the credit. Raises what the core
        raises for an item, or :class:`ConnectionLost` once the stream has ended."""
        call_id = batch.call_id
        with self._lock:
            self._batches[call_id] = (batch, answer)  # (not kept in the batch: no reference cycle)
            flusher = self._flusher
            if flusher is None:
                flusher = self._flusher = _Flusher(self._flush, f"ipfi-flush-{id(self):x}")
        gathered = batch.items
        room = 0  # items this thread may gather before it takes them itself
        try:
            while True:
                if room <= 0:
                    room = self._take_own(batch, parked)
                    if room <= 0:
                        return False
                try:
                    item = next(items)
                except StopIteration:
                    break
                except Exception:
                    self._take_rest(batch)  # what it yielded before it raised goes first
                    raise
                gathered.append(item)
                room -= 1
                if len(gathered) == 1 and not flusher.watching:  # (see _Flusher)
                    batch.check()
                    flusher.request()
            self._take_rest(batch)
            return True
        finally:
            with self._lock:
                self._batches.pop(call_id, None)

    def _take_rest(self, batch: Batch) -> None:
        """The items a stream's iterator yielded last (it has ended, or raised) to the core."""
        with self._lock:
            batch.check()
            if self._core.is_open:
                batch.take(self._core)

    def _take_own(self, batch: Batch, parked: _Work | None) -> int:
        """A sending thread's take: what it gathered to the core, and written (at the writer's
        pace: a peer that does not read stops it here; the GIL goes meanwhile). Returns how many
        items to gather before the next, once there is credit; or 0 once ``parked`` is parked for
        want of it."""
        core = self._core
        call_id = batch.call_id
        with self._lock:
            batch.check()
            credit = batch.take(core)
            batch.taking = True
        self._flush()
        while credit <= 0:
            if parked is None:
                self._wait_until(lambda: core.credit(call_id) > 0 or not core.stream_open(call_id), None)
            with self._lock:
                if not core.stream_open(call_id):
                    raise ConnectionLost(f"stream {call_id} is closed")
                credit = core.credit(call_id)
                if credit <= 0 and parked is not None:
                    self._parked[call_id] = parked
                    return 0
        return min(credit, batch.room)

    # -- calling the peer --------------------------------------------------------------------------

    def call(self, name: str | int, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``name`` and block for its result (a streaming procedure's items come as a list).
        Every keyword argument goes to the procedure; call options (a deadline, an input stream)
        go through :meth:`with_options`.

        Raises :class:`RemoteError` (or a subclass: :class:`ProcedureNotFound`,
        :class:`InvalidArguments`, :class:`Busy`, :class:`DeadlineExceeded`, :class:`Cancelled`) as
        the peer answers; :class:`ConnectionLost` if the connection ends first; ``TypeError`` for a
        value the codec cannot encode and :class:`PayloadTooLarge` past the peer's limits (nothing
        sent); :class:`InvalidState` after this side closed; :class:`LocalProtocolError` with a
        plain ipcprims peer; :class:`InheritedConnection` in a forked child.
        """
        call_id, pending, reader = self._start(name, args, kwargs, None, None, collect=True)
        return self._outcome(call_id, pending, reader)

    def _call_with(
        self, name: str | int, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Any:
        # (a deadline is the core's: it fails the call with DeadlineExceeded)
        call_id, pending, reader = self._start(name, args, kwargs, timeout, input_items, collect=True)
        return self._outcome(call_id, pending, reader)

    def with_options(self, *, timeout: float | None = None, input: Iterable[Any] | None = None) -> Caller:
        """This peer's ``call``, ``stream`` and ``proxy`` with call options:
        ``peer.with_options(timeout=5).call("wait_for_job", "j1", timeout=60)`` gives the call a 5 s
        deadline and the procedure its own ``timeout=60``. ``input`` streams items to the
        procedure's first argument. Raises ``ValueError`` for a timeout that is not positive."""
        return Caller(self, timeout, input)

    def _grant_collected(self, call_id: int, pending: _Pending) -> None:
        """Under the lock, as items arrive: keep the credit of a stream collected into a list flowing."""
        fresh = len(pending.items) - pending.consumed
        if credit_due(fresh, grant_at(self.options.limits.stream_window), pending.finished):
            pending.consumed = len(pending.items)
            self._core.grant_credit(call_id, fresh)

    def stream(self, name: str | int, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Call a streaming procedure and iterate its items. Leaving the loop early (``break``, an
        exception, the iterator's ``close()`` or its last reference dropped) cancels the remote
        generator. Every keyword argument goes to the procedure; call options go through
        :meth:`with_options`. Raises as :meth:`call` does (when sending, and as items are iterated)."""
        return self._stream_with(name, args, kwargs, None, None)

    def _stream_with(
        self, name: str | int, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Iterator[Any]:
        call_id, pending, _ = self._start(name, args, kwargs, timeout, input_items)
        return self._items(call_id, pending)

    def _start(
        self,
        name: str | int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        input_items: Any,
        *,
        collect: bool = False,
    ) -> tuple[int, _Pending, bool]:
        """Send the call. With ``collect`` (for :meth:`call`), also take the reader role if it is free
        and the peer has no reader thread: the last of the returned values says so."""
        if self._inherited:
            self._check_process()
        pending = _Pending()
        if collect:
            pending.collect = True
            pending.items = []  # (a call's result is seldom a stream: an empty list allocates nothing, a deque a block)
        else:
            pending.items = deque()
        write_lock, lock = self._write_lock, self._lock
        write_lock.acquire()  # (acquire and release, not "with": see _read_until)
        try:
            lock.acquire()
            try:
                if self._error is not None:
                    raise self._ended()
                core = self._core
                call_id = core.send_call(name, args, kwargs, timeout=timeout, has_input=input_items is not None)
                self._calls[call_id] = pending
                if core.timer_moved:
                    self._note_timer()
                data = core.data_to_send()
                # (a peer with a reader thread leaves reading to it, even in the moment after open()
                # before it takes the role: _outcome runs no call of the peer's)
                reader = collect and not self._reading and self._reader is None
                if reader:
                    self._reading = _get_ident()
            finally:
                lock.release()
            if len(data) == 1 and not self._closing_after_flush:  # (_write's commonest case, inlined)
                try:
                    self._send(data[0])
                except OSError as exc:
                    self._write_failed(exc)
            else:
                self._write(data)
        finally:
            write_lock.release()
        if input_items is not None:
            threading.Thread(target=self._feed, args=(call_id, input_items), daemon=True).start()
        return call_id, pending, reader

    def _feed(self, call_id: int, items: Iterable[Any]) -> None:
        """In a thread of its own: send ``items`` as the input stream of call ``call_id``, made here."""
        try:
            with self._lock:
                batch = Batch(call_id, self._core.credit(call_id))
            self._send_stream(batch, iter(items), functools.partial(self._fail_call, call_id), None)
            with self._lock:
                if self._core.is_open and call_id in self._calls:
                    self._core.send_end(call_id)
            self._flush()
        except ConnectionLost:
            return
        except Exception as exc:
            with self._lock:
                self._fail_call(call_id, exc)
            self._flush()

    def _fail_call(self, call_id: int, error: Exception) -> None:
        """Under the lock: a call made here fails with ``error`` (its input could not be sent), and
        is cancelled on the peer. Its caller wakes: one waiting for a reader is woken here; one
        that reads itself is blocked reading, and nothing comes after a CANCEL, so a ping goes too,
        whose pong wakes it."""
        pending = self._calls.pop(call_id, None)
        if pending is None:
            return
        pending.fail(error)
        self._wake_ready()
        if self._core.is_open:
            self._core.send_cancel(call_id)
            self._core.send_ping()
            self._pings.append([])  # (its pong answers nobody's ping())

    def _items(self, call_id: int, pending: _Pending) -> Iterator[Any]:
        grant_every = grant_at(self.options.limits.stream_window)
        popleft = cast("deque[Any]", pending.items).popleft  # (not collected: a deque)
        finished = False
        try:
            while True:
                self._wait_until(lambda: bool(pending.items) or pending.finished, None)
                with self._lock:
                    if not pending.items:
                        finished = True
                        if pending.error is not None:
                            raise pending.error
                        return
                    # (consumed < grant_every here: at least one)
                    count = items_before_grant(len(pending.items), pending.consumed, grant_every, pending.finished)
                # The items here, up to the next grant, handed out in one run: per item a pop and a
                # yield, no lock (only this consumer takes from the queue; the reader appends).
                for _ in range(count):
                    yield popleft()
                # Their credit, once they are all taken (the next is asked for): never for an item
                # still queued, so memory stays within the window.
                with self._lock:
                    pending.consumed += count
                    grant = credit_due(pending.consumed, grant_every, pending.finished)
                    if grant:
                        self._core.grant_credit(call_id, pending.consumed)
                        pending.consumed = 0
                if grant:
                    self._flush()
        finally:
            if not finished:
                self._give_up(call_id)

    def _give_up(self, call_id: int) -> None:
        with self._lock:
            if self._calls.pop(call_id, None) is not None and self._core.is_open:
                self._core.send_cancel(call_id)
        self._flush()

    def notify(self, name: str, /, *args: Any, **kwargs: Any) -> None:
        """Call ``name`` without a reply. Raises as :meth:`call` does before sending."""
        self._check_process()
        with self._lock:
            self._core.send_notify(name, args, kwargs)
        self._flush()

    # -- messages and control ----------------------------------------------------------------------

    def send(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        """Send a plain frame on a negotiated non-RPC channel.

        Raises :class:`LocalProtocolError` for a channel not negotiated, :class:`PayloadTooLarge`
        past the peer's frame limit, :class:`InvalidState` or :class:`ConnectionLost` when the
        connection is not open."""
        self._check_process()
        with self._lock:
            self._core.send_message(channel, payload)
        self._flush()

    def receive(self, channel: int | None = None, timeout: float | None = None) -> MessageReceived:
        """The next plain frame (on ``channel``, if given; others stay queued).

        Raises ``TimeoutError`` after ``timeout`` seconds (``None``: wait as long as it takes), or
        :class:`ConnectionLost` once the connection has ended and nothing is left.
        """
        self._check_process()
        taken: list[MessageReceived] = []

        def arrived() -> bool:  # (under the lock)
            message = self._take_message(channel)
            if message is not None:
                taken.append(message)
            return bool(taken)

        self._wait_until(arrived, None if timeout is None else time.monotonic() + timeout)
        self._message_taken(len(taken[0].payload))
        return taken[0]

    def messages(self, channel: int | None = None) -> Iterator[MessageReceived]:
        """Plain frames (on ``channel``, if given) until the connection ends."""
        while True:
            try:
                yield self.receive(channel)
            except ConnectionLost:
                return

    def _message_taken(self, size: int) -> None:
        with self._lock:
            super()._message_taken(size)

    def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time of a ping, in seconds. Raises ``TimeoutError`` after ``timeout`` seconds,
        :class:`ConnectionLost` if the connection is not open or ends first."""
        self._check_process()
        answer: list[float] = []
        with self._lock:
            self._core.send_ping()
            self._pings.append(answer)
        self._flush()
        self._wait_until(lambda: bool(answer), time.monotonic() + timeout)
        return answer[0]

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until the connection has ended (either side closed it, or it was lost). Raises
        ``TimeoutError`` after ``timeout`` seconds (``None``: wait as long as it takes)."""
        with contextlib.suppress(ConnectionLost):
            self._wait_until(lambda: self._error is not None, None if timeout is None else time.monotonic() + timeout)

    def close(self, timeout: float = 1.0) -> None:
        """Graceful close: ask the peer to shut down, wait up to ``timeout`` for its ack, then close.

        Pending calls raise :class:`ConnectionLost`, later ones :class:`InvalidState`. A forked
        child only drops its copy. Raises nothing.
        """
        self._end(timeout)

    def abort(self) -> None:
        """Abrupt close: at once, without the shutdown exchange. Pending calls raise
        :class:`ConnectionLost`, later ones :class:`InvalidState`. Raises nothing."""
        self._end(None)

    def _end(self, graceful_timeout: float | None) -> None:
        if self._inherited:
            self._link.close()
            return
        with self._lock:
            self._core.closed_here = True
            graceful = graceful_timeout is not None and self._core.is_open and self._error is None
            acknowledged = graceful and self._core.send_shutdown_request()
        if graceful:
            self._flush()
        if acknowledged:
            assert graceful_timeout is not None
            with contextlib.suppress(TimeoutError, ConnectionLost):
                self._wait_until(lambda: self._shutdown_acked, time.monotonic() + graceful_timeout)
        with self._lock:
            self._lose(ConnectionLost("connection closed"))
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(graceful_timeout or 1.0)
        self._link.close()
        if self._owns_loop_thread and self.loop_thread is not None:
            self.loop_thread.close()
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_unless_started(started: list[bool], awaitable: Any) -> None:
    """Close a coroutine, or an async generator's ``__anext__()`` or ``aclose()``, that the task
    which was to await it never did, so that Python does not warn it was never awaited."""
    close = getattr(awaitable, "close", None)
    if not started and close is not None:
        close()
