"""Attribute access that turns into remote calls, for either driver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class _Caller(Protocol):
    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any: ...


class Proxy:
    """``proxy.add(1, 2)`` is ``peer.call("add", 1, 2)``: awaitable on an asyncio peer, a value on a
    blocking one."""

    def __init__(self, peer: _Caller) -> None:
        self._peer = peer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        peer = self._peer

        def remote(*args: Any, **kwargs: Any) -> Any:
            return peer.call(name, *args, **kwargs)

        remote.__name__ = name
        return remote
