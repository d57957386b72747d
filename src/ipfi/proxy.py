"""Two ways to call a peer that both drivers share: a proxy whose attributes are remote procedures,
and a caller that carries call options (a deadline, an input stream) apart from the procedure's own
keyword arguments, so that no name a procedure takes is ever taken by ipfi."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, Protocol

#: Items streamed to a procedure (``with_options(input=...)``): any iterable, or with the asyncio
#: driver an async one; ``None`` for none.
InputItems = Iterable[Any] | AsyncIterable[Any] | None


class _Caller(Protocol):
    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any: ...


class _OptionedPeer(Protocol):
    def _call_with(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Any: ...

    def _stream_with(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Any: ...


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


class Caller:
    """The peer's ``call``, ``stream`` and ``proxy``, with call options (``notify`` takes none: it
    passes every keyword argument to the procedure as it is).

    Made by ``peer.with_options(timeout=..., input=...)``. Every keyword argument given to its
    methods goes to the procedure, so a procedure may have parameters named ``timeout`` or ``input``.

    - ``timeout`` (seconds) travels with each call: the peer cancels the procedure when it passes and
      the caller gets :class:`DeadlineExceeded` (a ``TimeoutError``).
    - ``input`` (an iterable, or an async iterable with the asyncio driver) streams items to the
      procedure, which receives them as its first argument. Give a fresh ``with_options`` to each
      call that streams: an iterator is consumed by the first.
    """

    __slots__ = ("_input", "_peer", "_timeout")

    def __init__(
        self,
        peer: _OptionedPeer,
        timeout: float | None,
        input_items: InputItems,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout!r}")
        self._peer = peer
        self._timeout = timeout
        self._input = input_items

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """As the peer's ``call``, with these options."""
        return self._peer._call_with(name, args, kwargs, self._timeout, self._input)

    def stream(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """As the peer's ``stream``, with these options."""
        return self._peer._stream_with(name, args, kwargs, self._timeout, self._input)

    def proxy(self) -> Proxy:
        """A proxy whose calls carry these options."""
        return Proxy(self)
