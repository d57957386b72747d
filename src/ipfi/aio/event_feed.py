"""A server's events as one ``async for``: peers coming and going, plain frames, timers, fds."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.events import MessageReceived
from ..server_events import Connected, Disconnected, FdReady, Received, ServerEvent, TimerFired, Timers, fileno_of


class EventFeed:
    """Events in arrival order, for one consumer; ends once the server is closed and its peers are gone."""

    def __init__(self, finished: Callable[[], bool]) -> None:
        self._loop = asyncio.get_running_loop()
        self._finished = finished
        self._events: deque[ServerEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._connected: set[Any] = set()
        self._timers = Timers()
        self._timer_handle: asyncio.TimerHandle | None = None
        self._fds: set[int] = set()
        self._rearm: int | None = None

    def __contains__(self, peer: object) -> bool:
        return peer in self._connected

    # -- what the server reports ----------------------------------------------------------------------

    def push(self, event: ServerEvent) -> None:
        self._events.append(event)
        self.wake()

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def peer_opened(self, peer: Any) -> None:
        self._connected.add(peer)
        self.push(Connected(peer))
        peer._divert_messages(self.message_from)

    def peer_closed(self, peer: Any) -> None:
        if peer in self._connected:
            self._connected.discard(peer)
            self.push(Disconnected(peer, peer.close_reason or "closed"))
        else:
            self.wake()  # the feed may be waiting for the last peer to go

    def message_from(self, peer: Any, message: MessageReceived) -> None:
        self.push(Received(peer, message.channel, message.payload))

    # -- timers and fds ------------------------------------------------------------------------------

    def add_timer(self, interval: float, *, name: str | None = None, repeat: bool = True) -> str:
        name = self._timers.add(interval, self._loop.time(), name=name, repeat=repeat)
        self._arm_timer()
        return name

    def cancel_timer(self, name: str) -> None:
        self._timers.cancel(name)
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        deadline = self._timers.next_deadline()
        self._timer_handle = None if deadline is None else self._loop.call_at(deadline, self._fire_timers)

    def _fire_timers(self) -> None:
        self._timer_handle = None
        for name in self._timers.due(self._loop.time()):
            self.push(TimerFired(name))
        self._arm_timer()

    def add_fd(self, fd: Any) -> int:
        number = fileno_of(fd)
        if number in self._fds:
            raise ValueError(f"fd {number} is watched already")
        self._fds.add(number)
        self._loop.add_reader(number, self._fd_ready, number)
        return number

    def remove_fd(self, fd: Any) -> None:
        number = fileno_of(fd)
        if number in self._fds:
            self._fds.discard(number)
            self._loop.remove_reader(number)

    def _fd_ready(self, fd: int) -> None:
        # Level-triggered: watching on would report it again every turn until the program reads it.
        self._loop.remove_reader(fd)
        self.push(FdReady(fd))

    # -- the consumer's side -------------------------------------------------------------------------

    def __aiter__(self) -> EventFeed:
        return self

    async def __anext__(self) -> ServerEvent:
        if self._rearm is not None:  # the program has handled the fd it was last given
            fd, self._rearm = self._rearm, None
            if fd in self._fds:
                self._loop.add_reader(fd, self._fd_ready, fd)
        while not self._events:
            if self._finished():
                self.close()
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = self._events.popleft()
        if type(event) is Received:
            event.peer._message_taken(len(event.payload))
        elif type(event) is FdReady:
            self._rearm = event.fd
        return event

    def close(self) -> None:
        """Stop the timers and stop watching the fds."""
        self._timers.clear()
        self._arm_timer()
        for fd in list(self._fds):
            self.remove_fd(fd)
