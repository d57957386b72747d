"""What a server's event loop yields (``server.events()``), and its timers. No I/O.

>>> # async for event in server.events():
>>> #     match event:
>>> #         case ipfi.Received(peer=peer, channel=channel, payload=payload):
>>> #             peer.send(channel, payload)
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Connected:
    """A peer completed its handshake; ``peer`` can be called, sent to, and compared."""

    peer: Any


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connected peer is gone; ``reason`` says why."""

    peer: Any
    reason: str


@dataclass(frozen=True, slots=True)
class Received:
    """A plain frame from ``peer`` on a non-RPC ``channel``."""

    peer: Any
    channel: int
    payload: bytes | bytearray


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The timer named ``name`` (from ``server.add_timer``) is due."""

    name: str


@dataclass(frozen=True, slots=True)
class FdReady:
    """A file descriptor added with ``server.add_fd`` can be read without blocking.

    It is not watched again until the loop asks for its next event, so read it before then.
    """

    fd: int


ServerEvent = Connected | Disconnected | Received | TimerFired | FdReady


@dataclass(order=True, slots=True)
class _Entry:
    deadline: float
    order: int
    name: str = field(compare=False)
    interval: float = field(compare=False)
    repeat: bool = field(compare=False)


class Timers:
    """Named timers on one clock the caller reads (so either driver can run them)."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[str, _Entry] = {}
        self._order = itertools.count()

    def add(self, interval: float, now: float, *, name: str | None = None, repeat: bool = True) -> str:
        if not interval > 0:
            raise ValueError(f"a timer's interval must be positive, got {interval}")
        order = next(self._order)
        name = name if name is not None else f"timer-{order}"
        if name in self._live:
            raise ValueError(f"a timer named {name!r} exists already")
        entry = _Entry(now + interval, order, name, interval, repeat)
        self._live[name] = entry
        heapq.heappush(self._heap, entry)
        return name

    def cancel(self, name: str) -> None:
        """Stop the timer; a name that is not running is ignored."""
        self._live.pop(name, None)

    def clear(self) -> None:
        self._live.clear()
        self._heap.clear()

    def next_deadline(self) -> float | None:
        while self._heap and self._live.get(self._heap[0].name) is not self._heap[0]:
            heapq.heappop(self._heap)  # cancelled
        return self._heap[0].deadline if self._heap else None

    def due(self, now: float) -> list[str]:
        """The names of timers due at ``now``, in deadline order; repeating ones are rescheduled."""
        fired = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            entry = heapq.heappop(self._heap)
            fired.append(entry.name)
            if entry.repeat:
                # From the old deadline, so a repeating timer does not drift; ticks a late loop missed are skipped.
                entry.deadline += entry.interval
                if entry.deadline <= now:
                    entry.deadline = now + entry.interval
                entry.order = next(self._order)
                heapq.heappush(self._heap, entry)
            else:
                del self._live[entry.name]
        return fired


def fileno_of(fd: Any) -> int:
    """An fd, from an int or anything with ``fileno()``."""
    number = fd if isinstance(fd, int) else fd.fileno()
    if number < 0:
        raise ValueError(f"not an open file descriptor: {fd!r}")
    return int(number)


class FeedControls(Protocol):
    def add_timer(self, interval: float, *, name: str | None = None, repeat: bool = True) -> str: ...
    def cancel_timer(self, name: str) -> None: ...
    def add_fd(self, fd: Any) -> int: ...
    def remove_fd(self, fd: Any) -> None: ...


class TimersAndFds:
    """The timer and fd methods of both servers; they go to the server's event feed."""

    def events(self) -> FeedControls:
        raise NotImplementedError

    def add_timer(self, interval: float, *, name: str | None = None, repeat: bool = True) -> str:
        """Report :class:`TimerFired` every ``interval`` seconds (once, without ``repeat``); returns its name."""
        return self.events().add_timer(interval, name=name, repeat=repeat)

    def cancel_timer(self, name: str) -> None:
        self.events().cancel_timer(name)

    def add_fd(self, fd: Any) -> int:
        """Report :class:`FdReady` when ``fd`` (an int or an object with ``fileno()``) is readable."""
        return self.events().add_fd(fd)

    def remove_fd(self, fd: Any) -> None:
        self.events().remove_fd(fd)
