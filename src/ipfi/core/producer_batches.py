"""How many items a stream's producer gathers before it hands them to the core as one batch (one
encoding call, one credit check): both drivers' producers follow this."""

from __future__ import annotations

from .limits import BYTES_PER_TURN, ITEMS_PER_TURN

#: The first batch of a stream: one item, as nothing says yet how large its items are.
FIRST_BATCH = 1


def batch_room(last_bytes: int, last_items: int, most: int = ITEMS_PER_TURN) -> int:
    """Items in the next batch, credit allowing: ``most`` (a turn's worth by default), and within
    ``BYTES_PER_TURN`` at the size of the last batch's items (``last_bytes`` encoded for
    ``last_items``), so that a batch of large items holds no more memory than a turn may write."""
    per_item = max(1, last_bytes // max(1, last_items))
    return max(1, min(most, BYTES_PER_TURN // per_item))
