"""Log lines a hostile peer cannot turn against the server: its strings cut and escaped, and
repeated lines limited in rate (the suppressed ones counted in the next line that gets through)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

#: Characters of a peer's string (a procedure name, a peer id) that reach a log line.
SHOWN_CHARACTERS: Final = 200


def shown(text: str | bytes | bytearray | memoryview) -> str:
    """``text`` from a peer, fit for a log line or an error message: at most
    :data:`SHOWN_CHARACTERS`, escaped (``repr``: no newline, ANSI escape or other control
    character passes), with the full length said when cut."""
    if isinstance(text, memoryview):
        text = bytes(text[: SHOWN_CHARACTERS + 1])
    if len(text) <= SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:SHOWN_CHARACTERS]!r}... ({len(text)} in all)"


class RateLimitedLog:
    """At most ``burst`` lines per ``period`` seconds through ``logger``; past that, lines are counted
    and the next line let through says how many were suppressed."""

    __slots__ = ("_clock", "_count", "_logger", "_suppressed", "_window_start", "burst", "period")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self.burst = burst
        self.period = period
        self._clock = clock
        self._window_start = -period
        self._count = 0
        self._suppressed = 0

    def log(self, level: int, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        if not self._logger.isEnabledFor(level):
            return
        now = self._clock()
        if now - self._window_start >= self.period:
            self._window_start = now
            self._count = 0
        self._count += 1
        if self._count > self.burst:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d similar lines suppressed)"
            args = (*args, self._suppressed)
            self._suppressed = 0
        self._logger.log(level, message, *args, exc_info=exc_info)

    def warning(self, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        self.log(logging.WARNING, message, *args, exc_info=exc_info)
