"""Whether a peer has gone, without reading what it sent: a connection whose reading is paused
(its messages unread, its replies not taken, its calls at the limit) must still end when the peer
leaves, or its fd, memory and slot would be held for ever. And waiting until an fd can be read, or
written.

Both use ``poll()``; where there is none (Windows), ``select()``, which cannot tell a hang-up from
data without reading (there a paused connection ends when it is read again), and takes only
sockets: a pipe is then always "readable", and a blocking reader of one waits in its read, its
timers (deadlines, keepalive) running when data comes."""

from __future__ import annotations

import select
from typing import Final

#: Seconds between two looks at a paused connection.
HANGUP_CHECK_INTERVAL: Final = 1.0

_HAS_POLL: Final = hasattr(select, "poll")
# POLLRDHUP (Linux): the peer shut its writing side, even with unread bytes still queued.
_HANGUP: Final = (getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR) if _HAS_POLL else 0


def peer_hung_up(fd: int) -> bool:
    """The peer of socket or pipe ``fd`` has closed (or the fd broke); never blocks."""
    if fd < 0:
        return True
    if not _HAS_POLL:
        return False
    poller = select.poll()
    poller.register(fd, _HANGUP)
    return any(events & _HANGUP for _, events in poller.poll(0))


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` can be read (data, its end, or an error) within ``timeout`` seconds."""
    return _wait(fd, timeout, writing=False)


def wait_writable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` can take bytes without blocking (or is broken) within ``timeout`` seconds."""
    return _wait(fd, timeout, writing=True)


def _wait(fd: int, timeout: float | None, *, writing: bool) -> bool:
    if not _HAS_POLL:
        watched = [fd]
        try:
            ready = select.select([] if writing else watched, watched if writing else [], watched, timeout)
        except OSError:  # Windows selects sockets only: a pipe is taken as ready, and blocks the read or write
            return True
        return any(ready)
    poller = select.poll()
    poller.register(fd, (select.POLLOUT if writing else select.POLLIN | select.POLLHUP) | select.POLLERR)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def transport_fd(transport: object) -> int | None:
    """The fd an asyncio transport reads from, if it has one (a socket or a pipe)."""
    get_extra_info = getattr(transport, "get_extra_info", None)
    if get_extra_info is None:
        return None
    for name in ("socket", "pipe"):
        source = get_extra_info(name)
        if source is not None:
            try:
                fd = source.fileno()
            except (OSError, ValueError):
                return -1
            return int(fd)
    return None
