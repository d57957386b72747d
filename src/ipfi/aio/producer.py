"""The sending end of a stream served by the asyncio driver: what a generator yields goes to the core
in batches, each encoded, typed and counted against the credit in one call (in C, per item)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ..core.errors import ConnectionLost
from ..core.producer_batches import FIRST_BATCH, batch_room

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
                self._send()
        except asyncio.CancelledError:
            if self._failure is None:
                raise
            task.uncancel()  # (the cancellation was this producer's own, to stop the generator)
            raise self._failure from None
        if self._failure is not None:  # (a generator that ignored that cancellation, and ended)
            raise self._failure

    async def run(self, iterator: Iterator[Any]) -> None:
        """Stream what a plain generator yields (it cannot await: no batch waits for it). Raises as
        :meth:`run_async`."""
        items = self._items
        for item in iterator:
            items.append(item)
            if len(items) >= self._room:
                await self._hand_over()
        if items:
            self._send()

    def _send(self) -> int:
        """The batch (not empty) to the core; returns the credit left."""
        peer = self._peer
        credit = peer._core.send_items(self._call_id, self._items)
        self._items.clear()
        peer._schedule_flush()
        return credit

    def _hand_over_waiting(self) -> None:
        """(A loop callback) the generator awaits with a batch not yet full: send it now."""
        count = len(self._items)
        if not count:  # (handed over already)
            return
        try:
            self._send()
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
        peer = self._peer
        core = peer._core
        count = len(self._items)
        queued_before = core.item_bytes_queued
        credit = self._send()
        size = core.item_bytes_queued - queued_before
        if credit <= 0 or peer._writes_backed_up:
            await peer._await_credit(self._call_id)
            credit = core.credit(self._call_id)
        else:  # (_send scheduled the write) every other task and peer runs; a generator that never
            await asyncio.sleep(0)  # awaits would otherwise hold the loop, whatever its credit
        self._room = min(credit, batch_room(size, count))
