"""Two ways to call a peer that both drivers share: a proxy whose attributes are remote procedures,
and a caller that carries call options (a deadline, an input stream) apart from the procedure's own
keyword arguments, so that no name a procedure takes is ever taken by ipfi."""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, cast, overload

from .core import contracts
from .core.errors import InvalidResult

T = TypeVar("T")

#: Items streamed to a procedure (``with_options(input=...)``): any iterable, or with the asyncio
#: driver an async one; ``None`` for none.
InputItems = Iterable[Any] | AsyncIterable[Any] | None


class _Caller(Protocol):
    def call(self, name: str | int, /, *args: Any, **kwargs: Any) -> Any: ...
    def stream(self, name: str | int, /, *args: Any, **kwargs: Any) -> Any: ...


class _OptionedPeer(Protocol):
    def _call_with(
        self, name: str | int, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Any: ...

    def _stream_with(
        self, name: str | int, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Any: ...

    @property
    def asynchronous(self) -> bool: ...


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


class MakesProxies:
    """``proxy()`` of everything that calls a peer (both drivers' peers, their reconnecting
    clients, and :class:`Caller`)."""

    __slots__ = ()

    #: Calls are awaited (``True``, the asyncio driver) or block (``False``).
    asynchronous: bool

    @overload
    def proxy(self) -> Proxy: ...
    @overload
    def proxy(self, protocol: Callable[..., T]) -> T: ...

    def proxy(self, protocol: Callable[..., T] | None = None) -> Proxy | T:
        """An object whose attributes call the peer: ``peer.proxy().add(1, 2)`` (awaited with the
        asyncio driver).

        Given a ``typing.Protocol`` class, the proxy implements it, so that type checkers check
        each call: for an asyncio peer its ``async def`` methods are calls and ``def`` ones that
        return ``AsyncIterator[T]`` streams; for a blocking peer its ``def`` methods are calls, or
        streams where they return ``Iterator[T]``. Arguments travel as plain data (a dataclass as a
        map), and each result or item is checked against the method's return hint and rebuilt into
        it (a map into a dataclass), or raises :class:`InvalidResult`. Raises ``TypeError`` for a
        protocol method of another shape."""
        caller = cast(_Caller, self)
        if protocol is None:
            return Proxy(caller)
        return typed_proxy(caller, protocol, asynchronous=self.asynchronous)


class Caller(MakesProxies):
    """The peer's ``call``, ``stream`` and ``proxy``, with call options (``notify`` takes none: it
    passes every keyword argument to the procedure as it is).

    Made by ``peer.with_options(timeout=..., input=...)``. Every keyword argument given to its
    methods goes to the procedure, so a procedure may have parameters named ``timeout`` or ``input``;
    the calls of its ``proxy()`` carry the options.

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

    def call(self, name: str | int, /, *args: Any, **kwargs: Any) -> Any:
        """As the peer's ``call``, with these options."""
        return self._peer._call_with(name, args, kwargs, self._timeout, self._input)

    def stream(self, name: str | int, /, *args: Any, **kwargs: Any) -> Any:
        """As the peer's ``stream``, with these options."""
        return self._peer._stream_with(name, args, kwargs, self._timeout, self._input)

    @property
    def asynchronous(self) -> bool:  # type: ignore[override]
        return self._peer.asynchronous


class TypedProxy:
    """A proxy made from a protocol class (see :func:`typed_proxy`); its methods are attributes."""

    def __repr__(self) -> str:
        return f"<typed proxy of {', '.join(sorted(vars(self)))}>"


_ASYNC_ITEMS = (collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator)
_ITEMS = (collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator)


def typed_proxy(peer: _Caller, protocol: Callable[..., T], *, asynchronous: bool) -> T:
    """An object that implements ``protocol`` (a ``typing.Protocol`` class whose methods are the
    peer's procedures) by calling ``peer``: the arguments go as plain data, the result comes back
    checked against the method's return hint and rebuilt into it (raising :class:`InvalidResult`).

    For an asyncio peer, an ``async def`` method is a call and a ``def`` one returning an
    ``AsyncIterator[T]`` a stream; for a blocking peer, a ``def`` method is a call, or a stream when
    it returns an ``Iterator[T]``. Raises ``TypeError`` for a method that is neither.
    """
    proxy = TypedProxy()
    for name, method in inspect.getmembers(protocol, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = contracts.hints_of(method, name)
        streams = typing.get_origin(hints.get("return")) in (_ASYNC_ITEMS if asynchronous else _ITEMS)
        if inspect.iscoroutinefunction(method) != (asynchronous and not streams):
            shape = "async def (a call) or def returning an AsyncIterator (a stream)" if asynchronous else "def"
            raise TypeError(f"{getattr(protocol, '__name__', protocol)}.{name}: expected {shape}")
        outgoing = contracts.Outgoing(name, inspect.signature(method), hints, streams)
        if streams:
            remote = (_async_stream if asynchronous else _stream)(peer, outgoing)
        else:
            remote = (_async_call if asynchronous else _call)(peer, outgoing)
        remote.__name__ = name
        remote.__doc__ = method.__doc__
        setattr(proxy, name, remote)
    return proxy  # type: ignore[return-value]


def _call(peer: _Caller, outgoing: contracts.Outgoing) -> Callable[..., Any]:
    name = outgoing.name

    def remote(*args: Any, **kwargs: Any) -> Any:
        return outgoing.received(peer.call(name, *outgoing.arguments(args, kwargs), **kwargs))

    return remote


def _async_call(peer: _Caller, outgoing: contracts.Outgoing) -> Callable[..., Any]:
    name = outgoing.name

    async def remote(*args: Any, **kwargs: Any) -> Any:
        return outgoing.received(await peer.call(name, *outgoing.arguments(args, kwargs), **kwargs))

    return remote


def _stream(peer: _Caller, outgoing: contracts.Outgoing) -> Callable[..., Iterator[Any]]:
    name = outgoing.name

    def remote(*args: Any, **kwargs: Any) -> Iterator[Any]:
        items = peer.stream(name, *outgoing.arguments(args, kwargs), **kwargs)

        def received() -> Iterator[Any]:
            try:
                for item in items:
                    yield outgoing.received(item, "item")
            finally:
                items.close()  # (leaving early cancels the remote generator at once)

        return received()

    return remote


def _async_stream(peer: _Caller, outgoing: contracts.Outgoing) -> Callable[..., AsyncIterator[Any]]:
    name = outgoing.name

    def remote(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return _ReceivedItems(peer.stream(name, *outgoing.arguments(args, kwargs), **kwargs), outgoing)

    return remote


class _ReceivedItems:
    """A stream's items checked and rebuilt as they arrive; stops as the stream it reads does."""

    __slots__ = ("_items", "_outgoing")

    def __init__(self, items: Any, outgoing: contracts.Outgoing) -> None:
        self._items = items
        self._outgoing = outgoing

    def __aiter__(self) -> _ReceivedItems:
        return self

    async def __anext__(self) -> Any:
        item = await self._items.__anext__()
        try:
            return self._outgoing.received(item, "item")
        except InvalidResult:
            await self._items.aclose()
            raise

    async def aclose(self) -> None:
        await self._items.aclose()

    async def __aenter__(self) -> _ReceivedItems:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._items.aclose()
