"""The blocking driver's loop thread leaves nobody waiting when it closes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from ipfi.sync.loop_thread import LoopThread


def test_close_finishes_every_future_and_refuses_later_work() -> None:
    loop_thread = LoopThread()
    cleaned = threading.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0)  # awaits while being cancelled: still let finish, not abandoned
            cleaned.set()

    future = loop_thread.submit(stubborn())
    loop_thread.submit(asyncio.sleep(0)).result(5)  # the loop is running
    loop_thread.close()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(0)  # done already: close() returned only after it finished
    assert cleaned.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        loop_thread.submit(asyncio.sleep(0))
    loop_thread.close()  # again: nothing happens


def test_close_without_use_starts_nothing() -> None:
    before = threading.active_count()
    LoopThread().close()
    assert threading.active_count() == before
