"""Receiving ends of streams in the asyncio driver: items queue up, and consuming them grants credit."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..core.consumer_credit import credit_due, grant_at, items_before_grant


class ItemQueue:
    """Items of one stream, consumed by ``async for``; grants credit back as they are consumed.

    Memory stays bounded by the stream window: the producer may not run ahead of the credit.
    """

    def __init__(self, grant: Callable[[int], None], window: int) -> None:
        self._items: deque[Any] = deque()
        self._grant = grant
        self._grant_at = grant_at(window)
        self._consumed = 0
        self._waiter: asyncio.Future[None] | None = None
        self._finished = False
        self._error: BaseException | None = None

    def push(self, items: list[Any]) -> None:
        self._items.extend(items)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        self._error = error
        self._wake()

    @property
    def finished(self) -> bool:
        return self._finished

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> ItemQueue:
        return self

    def _grant_taken(self) -> None:
        """Grant the credit of the items taken so far, when it is due (asked for the next item)."""
        if credit_due(self._consumed, self._grant_at, self._finished):
            self._grant(self._consumed)
            self._consumed = 0

    def take(self) -> Any:
        """The next item if one is here, else :data:`EMPTY` (granting credit as :meth:`_grant_taken`)."""
        self._grant_taken()
        items = self._items
        if not items:
            return EMPTY
        self._consumed += 1
        return items.popleft()

    async def items(self, stop: Callable[[], None]) -> AsyncIterator[Any]:
        """The items for ``async for``: an async generator, resumed once per item (cheaper than a
        coroutine made per ``__anext__``), taking what is here without awaiting, a run at a time
        (up to the next grant of credit: the per-item work is a pop and a yield). ``stop()`` is
        called if the iteration fails or is left early (``break``, ``aclose()``)."""
        pending = self._items
        popleft = pending.popleft
        try:
            while True:
                if pending:
                    self._grant_taken()
                    # The items here, up to the next grant, handed out in one run: per item only a
                    # pop and a yield.
                    count = items_before_grant(len(pending), self._consumed, self._grant_at, self._finished)
                    for _ in range(count):
                        yield popleft()
                    self._consumed += count
                    continue
                try:
                    item = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        except BaseException:  # (GeneratorExit included)
            stop()
            raise

    async def __anext__(self) -> Any:
        while (item := self.take()) is EMPTY:
            if self._finished:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return item


#: What :meth:`ItemQueue.take` returns when no item is waiting.
EMPTY: Any = object()
