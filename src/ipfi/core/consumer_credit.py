"""When the consuming end of a stream grants credit (docs/PROTOCOL.md, "Streams"): for the items
taken, half a window at a time, once the next is asked for; never for an item still queued (memory
stays within the window), nor once the stream has ended. Both drivers' consumers follow these."""

from __future__ import annotations


def grant_at(window: int) -> int:
    """Items taken between two grants, for a stream ``window`` items wide."""
    return max(1, window // 2)


def items_before_grant(waiting: int, taken: int, grant_at: int, finished: bool) -> int:
    """How many of ``waiting`` items to hand out in one run, ``taken`` being taken since the last
    grant (fewer than ``grant_at``): up to the next grant, or all once the stream has ended."""
    return waiting if finished else min(waiting, grant_at - taken)


def credit_due(taken: int, grant_at: int, finished: bool) -> bool:
    """Whether the ``taken`` items are granted back now (as the next item is asked for)."""
    return taken >= grant_at and not finished
