"""The sending end of a stream in the blocking driver (a procedure's output, or a call's input): a
thread runs the iterator and gathers its items; they reach the core in batches, each encoded, typed
and counted against the credit in one call (in C, per item)."""

from __future__ import annotations

from typing import Any

from ..core.errors import ConnectionLost
from ..core.limits import ITEMS_PER_TURN
from ..core.producer_batches import FIRST_BATCH, batch_room
from ..core.protocol_core import ProtocolCore


class Batch:
    """What a stream's iterator has yielded that nobody has handed to the core yet.

    The sending thread appends to ``items`` and takes them itself every ``room`` items (setting
    ``taking``); should its iterator block first, the peer's flusher thread takes them. Both take
    under the peer's lock, by count: an item the sender appends meanwhile (it holds no lock to
    append) stays for the next take. When a take the sender did not make fails, the flusher
    answers the error and sets ``failure``: the sender stops at its next take.
    """

    __slots__ = ("call_id", "failure", "items", "most", "room", "taking")

    def __init__(self, call_id: int, window: int) -> None:
        self.call_id = call_id
        self.items: list[Any] = []
        # At most a quarter of the consumer's window per take: the first items are written, and
        # credit for them comes back, while the next are made (a take per window stalled the
        # stream on credit at every window: 0.6x the items per second).
        self.most = max(1, min(ITEMS_PER_TURN, window // 4))
        self.room = FIRST_BATCH  # items until the next take, as batch_room() says after each (credit allowing)
        self.failure: Exception | None = None
        self.taking = False  # whether the sender took since the flusher last looked

    def take(self, core: ProtocolCore) -> int:
        """Under the peer's lock: the items here to the core; returns the credit left. Raises what
        :meth:`~ipfi.core.connection.Connection.send_items` raises (those taken are gone)."""
        items = self.items
        taken = items[:]
        del items[: len(taken)]  # (not clear(): the worker may have appended since the copy)
        if not taken:
            return core.credit(self.call_id)
        queued_before = core.item_bytes_queued
        credit = core.send_items(self.call_id, taken)
        self.room = batch_room(core.item_bytes_queued - queued_before, len(taken), self.most)
        return credit

    def check(self) -> None:
        """Raises :class:`ConnectionLost` once a take by another thread failed (it was answered)."""
        if self.failure is not None:
            raise ConnectionLost(f"stream {self.call_id} has ended: {self.failure}")
