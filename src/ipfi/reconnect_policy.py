"""When and how a reconnecting client (either driver) tries again: the policy both share."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .core.errors import ConnectionLost, HandshakeError


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a reconnecting client waits between attempts, and what its calls do meanwhile.

    - ``initial``, ``maximum``, ``multiplier``: the n-th wait is drawn at random between 0 and
      ``min(maximum, initial * multiplier**n)`` seconds ("full jitter": clients that lost the same
      server do not all come back at the same moment).
    - ``wait``: how long a call made while disconnected waits for the connection to come back
      before it raises :class:`~ipfi.ConnectionLost`; ``0`` fails at once; ``None`` waits for ever.
    - ``give_up_on``: exception types after which trying again is pointless: the client stops and
      its calls raise. Default: a refused or failed handshake (:class:`~ipfi.HandshakeError`,
      :class:`~ipfi.AuthenticationFailed` among them), which no retry will change.
    """

    initial: float = 0.05
    maximum: float = 5.0
    multiplier: float = 2.0
    wait: float | None = 10.0
    give_up_on: tuple[type[BaseException], ...] = (HandshakeError,)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.multiplier < 1:
            raise ValueError("backoff: 0 < initial <= maximum, and multiplier >= 1")
        if self.wait is not None and self.wait < 0:
            raise ValueError("wait must be >= 0 seconds (or None)")

    def delays(self, draw: Callable[[float, float], float] = random.uniform) -> Iterator[float]:
        """The waits before each attempt after the first, for ever."""
        ceiling = self.initial
        while True:
            yield draw(0.0, ceiling)
            ceiling = min(self.maximum, ceiling * self.multiplier)


def not_connected(address: str, error: BaseException | None, gave_up: bool) -> ConnectionLost:
    """What a call raises when there is no connection to make it on."""
    if gave_up:
        return ConnectionLost(f"{address}: not reconnecting after {type(error).__name__}: {error}")
    reason = f" (last attempt: {type(error).__name__}: {error})" if error is not None else ""
    return ConnectionLost(f"{address}: not connected{reason}")


def describe(callback: Any) -> str:
    return getattr(callback, "__qualname__", repr(callback))
