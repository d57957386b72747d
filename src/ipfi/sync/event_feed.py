"""A blocking server's events as one iterator: peers coming and going, plain frames, timers, fds.

The consuming thread sleeps in ``select()`` on the program's fds and a wake-up socket; the server's
threads queue events and write a byte to it when the consumer sleeps.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.events import MessageReceived
from ..server_events import Connected, Disconnected, FdReady, Received, ServerEvent, TimerFired, Timers, fileno_of


class EventFeed:
    """Events in arrival order, for one consumer; ends once the server is closed and its peers are gone."""

    def __init__(self, finished: Callable[[], bool]) -> None:
        self._finished = finished
        self._lock = threading.Lock()
        self._events: deque[ServerEvent] = deque()
        self._connected: set[Any] = set()
        self._timers = Timers()
        self._selector = selectors.DefaultSelector()
        # A socket pair, not a pipe: select() takes sockets on every platform (pipes not on Windows).
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._fds: set[int] = set()
        self._rearm: int | None = None
        self._sleeping = False
        self._consuming = False  # a thread is inside __next__
        self._stopping = False
        self._closed = False

    def __contains__(self, peer: object) -> bool:
        return peer in self._connected

    # -- what the server reports (any thread) ------------------------------------------------------

    def push(self, event: ServerEvent) -> None:
        with self._lock:
            self._events.append(event)
            self._wake_locked()

    def wake(self) -> None:
        with self._lock:
            self._wake_locked()

    def _wake_locked(self) -> None:
        if self._sleeping and not self._closed:
            self._sleeping = False
            with contextlib.suppress(BlockingIOError):
                self._wake_write.send(b"\0")

    def peer_opened(self, peer: Any) -> None:
        with self._lock:
            self._connected.add(peer)
            self._events.append(Connected(peer))
            self._wake_locked()
        peer._divert_messages(self.message_from)

    def peer_closed(self, peer: Any) -> None:
        with self._lock:
            if peer in self._connected:
                self._connected.discard(peer)
                self._events.append(Disconnected(peer, peer.close_reason or "closed"))
            self._wake_locked()

    def message_from(self, peer: Any, message: MessageReceived) -> None:
        self.push(Received(peer, message.channel, message.payload))

    # -- timers and fds (any thread) -----------------------------------------------------------------

    def add_timer(self, interval: float, *, name: str | None = None, repeat: bool = True) -> str:
        with self._lock:
            name = self._timers.add(interval, time.monotonic(), name=name, repeat=repeat)
            self._wake_locked()
        return name

    def cancel_timer(self, name: str) -> None:
        with self._lock:
            self._timers.cancel(name)

    def add_fd(self, fd: Any) -> int:
        number = fileno_of(fd)
        with self._lock:
            if number in self._fds:
                raise ValueError(f"fd {number} is watched already")
            self._fds.add(number)
            self._selector.register(number, selectors.EVENT_READ)
            self._wake_locked()
        return number

    def remove_fd(self, fd: Any) -> None:
        number = fileno_of(fd)
        with self._lock:
            if number in self._fds:
                self._fds.discard(number)
                with contextlib.suppress(KeyError):
                    self._selector.unregister(number)

    # -- the consumer's side -------------------------------------------------------------------------

    def __iter__(self) -> EventFeed:
        return self

    def __next__(self) -> ServerEvent:
        with self._lock:
            self._consuming = True
        try:
            return self._next()
        finally:
            with self._lock:
                self._consuming = False

    def _next(self) -> ServerEvent:
        with self._lock:
            if self._rearm is not None:  # the program has handled the fd it was last given
                if self._rearm in self._fds:
                    self._selector.register(self._rearm, selectors.EVENT_READ)
                self._rearm = None
        while True:
            with self._lock:
                for name in self._timers.due(time.monotonic()):
                    self._events.append(TimerFired(name))
                if self._events:
                    event = self._events.popleft()
                    break
                if self._finished() or self._stopping or self._closed:
                    self._close_locked()
                    raise StopIteration
                deadline = self._timers.next_deadline()
                self._sleeping = True
            self._wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if type(event) is Received:
            # Outside our lock: the peer's lock is taken before ours elsewhere.
            event.peer._message_taken(len(event.payload))
        elif type(event) is FdReady:
            self._rearm = event.fd
        return event

    def _wait(self, timeout: float | None) -> None:
        ready = self._selector.select(timeout)
        with self._lock:
            self._sleeping = False
            for key, _ in ready:
                if key.fileobj is self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_read.recv(4096)
                elif key.fd in self._fds:
                    # Level-triggered: unwatched until the program has had its turn to read it.
                    self._selector.unregister(key.fd)
                    self._events.append(FdReady(key.fd))

    def close(self) -> None:
        """Stop the timers, stop watching the fds, release the selector; the iterator ends."""
        with self._lock:
            if self._consuming:  # the consumer releases it on its way out of select()
                self._stopping = True
                self._wake_locked()
            else:
                self._close_locked()

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timers.clear()
        self._fds.clear()
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()
