"""An event loop in a thread of its own, for the ``async def`` procedures a blocking peer serves."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """Starts its thread and loop at the first :meth:`submit`; :meth:`close` stops both.

    Every future :meth:`submit` returned is done once :meth:`close` returns (cancelled, if its
    coroutine had not finished): a thread waiting on one is never left waiting on a stopped loop.
    """

    def __init__(self, name: str = "ipfi-async") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the loop; cancelling the returned future cancels its task.

        Raises ``RuntimeError`` once :meth:`close` has been called (the coroutine is closed unrun).
        """
        with self._lock:  # (held while scheduling: close() cannot stop the loop in between)
            if self._closed:
                coroutine.close()
                raise RuntimeError("the loop thread is closed")
            if self._loop is None:
                # Made in an empty context: the loop's own handles keep the context they were made
                # in, and this may run in a procedure's (holding its peer, for as long as the loop).
                self._loop = contextvars.Context().run(asyncio.new_event_loop)
                self._thread = threading.Thread(target=_run, args=(self._loop,), name=self._name, daemon=True)
                self._thread.start()
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> bool:
        """Run ``callback(*args)`` on the loop, after what is scheduled there already; ``False``
        (and not at all) once the loop is closed."""
        with self._lock:
            if self._closed or self._loop is None:
                return False
            self._loop.call_soon_threadsafe(callback, *args)
            return True

    def close(self) -> None:
        """Stop the loop (what still runs is cancelled and awaited there) and wait for its thread."""
        with self._lock:
            if self._closed:  # (a peer and its server may both close it)
                return
            self._closed = True
            loop, thread = self._loop, self._thread
            if loop is not None:
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)


def _run(loop: asyncio.AbstractEventLoop) -> None:
    """The thread: the loop until stopped, then asyncio.run's shutdown (cancel and await what is left)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
