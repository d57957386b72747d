"""Whether a peer has gone, without reading what it sent: a connection whose reading is paused
(its messages unread, its replies not taken, its calls at the limit) must still end when the peer
leaves, or its fd, memory and slot would be held for ever."""

from __future__ import annotations

import select
from typing import Final

#: Seconds between two looks at a paused connection.
HANGUP_CHECK_INTERVAL: Final = 1.0

# POLLRDHUP (Linux): the peer shut its writing side, even with unread bytes still queued.
_HANGUP: Final = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


def peer_hung_up(fd: int) -> bool:
    """The peer of socket or pipe ``fd`` has closed (or the fd broke); never blocks."""
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, _HANGUP)
    return any(events & _HANGUP for _, events in poller.poll(0))


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
