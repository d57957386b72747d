"""The sending end of a stream served by the asyncio driver: what a generator yields goes to the core
in batches, each encoded, typed and counted against the credit in one call (in C, per item)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Final

from ..core.errors import ConnectionLost
from ..core.producer_batches import FIRST_BATCH, batch_room

log = logging.getLogger("ipfi.aio")

if TYPE_CHECKING:
    from .peer import Peer


class Producer:
    """Runs one generator's stream, a batch at a time.

    A batch holds at most ``room`` items (:func:`~ipfi.core.producer_batches.batch_room`). Handing
    a full batch over ends the producer's turn: its items are written and other tasks run (or it
    waits for credit). An async generator may await something else before its batch is full: the
    items it yielded then go at once, as the loop calls :meth:`_hand_over_waiting`, scheduled as
    each batch starts; if the core refuses them (an item the codec cannot encode, one past its
    hint or the peer's limit), the generator is cancelled and the producer raises why.
    """

    __slots__ = ("_call_id", "_failure", "_items", "_peer", "_room", "_task")

    def __init__(self, peer: Peer, call_id: int) -> None:
        self._peer = peer
        self._call_id = call_id
        self._items: list[Any] = []
        self._room = FIRST_BATCH
        self._failure: Exception | None = None
        self._task: asyncio.Task[Any] | None = None

    async def run_async(self, iterator: AsyncIterator[Any]) -> None:
        """Stream what ``iterator`` yields. Raises what the core raised for an item, or
        :class:`ConnectionLost` once the stream has ended (cancelled, expired, closed)."""
        self._task = task = asyncio.current_task()
        assert task is not None
        items = self._items
        call_soon = self._peer._loop.call_soon
        try:
            async for item in iterator:
                if not items:  # a batch starts: if the generator awaits before it is full, it goes then
                    call_soon(self._hand_over_waiting)
                items.append(item)
                if len(items) >= self._room:
                    await self._hand_over()
            if items:
                self._send(items)
        except asyncio.CancelledError:
            if self._failure is None:
                raise
            task.uncancel()  # (the cancellation was this producer's own, to stop the generator)
            raise self._failure from None
        except Exception:
            if items and self._failure is None:  # what the generator yielded before it raised goes first
                self._send(items)
            raise
        if self._failure is not None:  # (a generator that ignored that cancellation, and ended)
            raise self._failure

    async def run(self, iterator: Iterator[Any]) -> None:
        """Stream what a plain generator yields (it cannot await: no batch waits for it). Raises as
        :meth:`run_async`."""
        items = self._items
        try:
            for item in iterator:
                items.append(item)
                if len(items) >= self._room:
                    await self._hand_over()
        except Exception:
            if items:  # what the generator yielded before it raised goes first
                self._send(items)
            raise
        if items:
            self._send(items)

    async def run_in_threads(self, iterator: Iterator[Any]) -> None:
        """Stream what a blocking generator yields. It runs in the loop's default executor, one job
        of at most a batch's room at a time (so a stream waiting for credit holds no thread); the
        loop takes what a job has made as it gets to it, woken once per take (so the items yielded
        before the generator blocks go out then). Raises as :meth:`run_async`, or what the
        generator raised, once the items it yielded before are sent."""
        core = self._peer._core
        pump = _Pump(iterator, self._peer._loop)
        try:
            pump.start(self._room)
            size = count = 0
            while True:
                await pump.changed()
                items, running = pump.take()
                if items:
                    queued_before = core.item_bytes_queued
                    self._send(items)
                    size += core.item_bytes_queued - queued_before
                    count += len(items)
                if running:
                    continue
                if pump.ended:
                    break
                await self._end_turn(core.credit(self._call_id), size, count)
                pump.start(self._room)
                size = count = 0
        finally:
            pump.stop()
        if pump.failure is not None:
            raise pump.failure

    def _send(self, items: list[Any]) -> int:
        """``items`` (not empty) to the core, and the list emptied; returns the credit left."""
        peer = self._peer
        try:
            credit = peer._core.send_items(self._call_id, items)
        finally:  # (refused: those before the refused one were taken, the others are dropped)
            items.clear()
        peer._schedule_flush()
        return credit

    def _hand_over_waiting(self) -> None:
        """(A loop callback) the generator awaits with a batch not yet full: send it now."""
        count = len(self._items)
        if not count:  # (handed over already)
            return
        try:
            self._send(self._items)
        except ConnectionLost:  # the stream has ended: whoever ended it stops the task, and the
            self._items.clear()  # producer's next hand-over raises this again
        except Exception as exc:
            self._items.clear()
            self._failure = exc
            self._room = 0  # (should the generator ignore the cancellation, its next item raises)
            assert self._task is not None
            self._task.cancel()
        else:
            self._room -= count  # (at least 1 left: the batch was not full)

    async def _hand_over(self) -> None:
        """A full batch to the core; then the turn ends, or the credit is awaited."""
        if self._failure is not None:
            raise self._failure
        core = self._peer._core
        count = len(self._items)
        queued_before = core.item_bytes_queued
        credit = self._send(self._items)
        await self._end_turn(credit, core.item_bytes_queued - queued_before, count)

    async def _end_turn(self, credit: int, size: int, count: int) -> None:
        """After a batch of ``count`` items that took ``size`` bytes: the credit is awaited, or else
        every other task and peer runs (a generator that never awaits would otherwise hold the
        loop, whatever its credit); then the next batch's room."""
        peer = self._peer
        if credit <= 0 or peer._writes_backed_up:
            await peer._await_credit(self._call_id)
            credit = peer._core.credit(self._call_id)
        else:  # (_send scheduled the write)
            await asyncio.sleep(0)
        self._room = min(credit, batch_room(size, count))


#: What ``next`` returns for a generator that has ended.
_END: Final = object()


class _Pump:
    """A blocking generator run in the loop's default executor, a job of a few items at a time:
    the items a job makes wait here for the loop, which takes them as it gets to them. Each job
    copies the context of the task that starts it (as ``asyncio.to_thread`` does)."""

    __slots__ = (
        "_items",
        "_iterator",
        "_lock",
        "_loop",
        "_running",
        "_signalled",
        "_stopped",
        "_waiter",
        "ended",
        "failure",
    )

    def __init__(self, iterator: Iterator[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._iterator = iterator
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._running = False  # a job runs (it alone may then touch the generator)
        self._signalled = False  # the loop was woken since it last took
        self._stopped = False
        self._waiter: asyncio.Future[None] | None = None
        #: The generator has ended (returned, or raised: :attr:`failure`).
        self.ended = False
        self.failure: BaseException | None = None

    def start(self, budget: int) -> None:
        """(In the loop, no job running) a job that makes at most ``budget`` items."""
        self._running = True
        try:
            self._loop.run_in_executor(None, contextvars.copy_context().run, self._job, budget)
        except BaseException:  # (the executor has shut down: the loop is closing)
            self._running = False
            raise

    async def changed(self) -> None:
        """Until the job has made items, or has stopped."""
        with self._lock:
            if self._items or not self._running:
                return
            waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def take(self) -> tuple[list[Any], bool]:
        """The items made so far, and whether the job still runs (if not, it made no more)."""
        with self._lock:
            items, self._items = self._items, []
            self._signalled = False
            return items, self._running

    def stop(self) -> None:
        """No more items are wanted: the generator is closed in a worker (its ``finally`` may block)
        at the next item of a job running, or now."""
        with self._lock:
            self._stopped = True
            idle = not self._running and not self.ended
        if idle:
            with contextlib.suppress(RuntimeError):  # (the executor has shut down: left to the collector)
                self._loop.run_in_executor(None, self._close)

    def _job(self, budget: int) -> None:
        """(In a worker thread) up to ``budget`` items of the generator, each handed to the loop."""
        iterator = self._iterator
        ended = True  # unless the budget runs out, or the loop stops the job
        failure = None
        try:
            while budget and not self._stopped:
                item = next(iterator, _END)
                if item is _END:
                    break
                budget -= 1
                with self._lock:
                    self._items.append(item)
                    if self._signalled:
                        continue
                    self._signalled = True
                self._wake_loop()
            else:
                ended = False
        except BaseException as exc:  # (handed to the loop: raised there, as an async generator's)
            failure = exc
        with self._lock:
            self._running = False
            self.ended, self.failure = ended, failure
            close = self._stopped and not ended
            signal = not self._signalled
            self._signalled = True
        if close:
            self._close()
        if signal:
            self._wake_loop()

    def _wake_loop(self) -> None:
        with contextlib.suppress(RuntimeError):  # (the loop has closed: nobody waits)
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _close(self) -> None:
        try:
            self._iterator.close()  # type: ignore[attr-defined]
        except Exception:
            log.warning("a blocking generator raised as it was closed", exc_info=True)
