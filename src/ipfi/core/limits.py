"""Every limit ipfi enforces, with its default. Pass a :class:`Limits` to ``serve``/``connect``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .frames import DEFAULT_MAX_PAYLOAD

#: Fairness: a stream producer lets every other task, thread and peer run after this many items,
#: or once this many bytes of items wait to be written, whatever credit its consumer granted.
ITEMS_PER_TURN: Final = 256
BYTES_PER_TURN: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one connection (and, for ``max_connections``, of one server).

    Each is inclusive: a value exactly at the limit is accepted, one past it is refused.
    """

    #: Largest frame payload accepted (ipcprims' default, 16 MiB).
    max_frame_payload: int = DEFAULT_MAX_PAYLOAD
    #: Largest RPC message, which may span several frames.
    max_message: int = 64 * 1024 * 1024
    #: Largest handshake frame payload.
    handshake_max_payload: int = 16 * 1024
    #: Seconds a new connection has to complete its handshake.
    handshake_timeout: float = 5.0
    #: Calls and notifications one peer may have running here at once; past it a call gets ``Busy``.
    max_concurrent_calls: int = 1024
    #: Stream items a producer may send per stream before the consumer grants more credit.
    stream_window: int = 256
    #: Control frames (ping, shutdown, ...) accepted from a peer per second.
    control_frames_per_second: int = 256
    #: Plain framed messages queued for the application before reading from the peer pauses
    #: (frames already read in the same chunk, at most one read, are still queued).
    max_queued_messages: int = 1024
    #: The same in bytes of payload: reading pauses at this much, whatever the count.
    max_queued_bytes: int = 64 * 1024 * 1024
    #: Seconds without any byte from the peer before the connection is closed; ``None`` disables.
    idle_timeout: float | None = None
    #: Connections one server keeps at once; further ones are closed on accept.
    max_connections: int = 4096
    #: Items ``call()`` collects of a streamed result; past it the call fails with
    #: :class:`~ipfi.PayloadTooLarge` and the stream is cancelled (``stream()`` has no such bound).
    max_collected_items: int = 1 << 20

    def __post_init__(self) -> None:
        for name in (
            "max_frame_payload",
            "max_message",
            "handshake_max_payload",
            "max_concurrent_calls",
            "stream_window",
            "control_frames_per_second",
            "max_queued_messages",
            "max_queued_bytes",
            "max_connections",
            "max_collected_items",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")
        if self.max_frame_payload < 16:
            raise ValueError("Limits.max_frame_payload must be at least 16 bytes")
