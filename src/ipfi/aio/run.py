"""Running a program's event loop: uvloop when the ``speed`` extra is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """Like ``asyncio.run``, on uvloop when it is installed (``pip install ipfi[speed]``).

    ``use_uvloop=False`` forces the standard loop; ``True`` requires uvloop.
    """
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    if use_uvloop:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
