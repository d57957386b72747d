"""Accounting of the plain messages a connection has handed out and the application has not yet
taken: past the limits, reading pauses (memory follows what the application consumes). Shared by
every protocol core. No I/O."""

from __future__ import annotations

from .events import MessageReceived
from .limits import Limits


class QueuedMessages:
    """Counts queued plain messages and their bytes against ``Limits.max_queued_messages`` and
    ``Limits.max_queued_bytes``."""

    limits: Limits
    messages_queued: int
    message_bytes_queued: int
    reading_paused: bool

    def _queue_message_event(self, channel: int, payload: bytes | bytearray) -> MessageReceived:
        """A plain frame for the application; past the queue's limits, reading pauses until
        :meth:`message_taken` has freed half of them."""
        self.messages_queued += 1
        self.message_bytes_queued += len(payload)
        limits = self.limits
        if self.messages_queued >= limits.max_queued_messages or self.message_bytes_queued >= limits.max_queued_bytes:
            self.reading_paused = True
        return MessageReceived(channel, payload)

    def message_taken(self, size: int) -> bool:
        """A plain message of ``size`` bytes, handed out as an event, was consumed. Returns True when
        reading, paused for the queue's limits, should resume (half of both limits free again)."""
        self.messages_queued -= 1
        self.message_bytes_queued -= size
        limits = self.limits
        if (
            self.reading_paused
            and self.messages_queued <= limits.max_queued_messages // 2
            and self.message_bytes_queued <= limits.max_queued_bytes // 2
        ):
            self.reading_paused = False
            return True
        return False
