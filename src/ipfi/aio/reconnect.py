"""A client that connects again whenever its connection ends (asyncio driver)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Unpack

from ..core.errors import InvalidState
from ..core.interface import Interface
from ..net.addresses import parse_address
from ..options import OptionArgs, Options, make_options
from ..proxy import Caller, InputItems, MakesProxies
from ..reconnect_policy import Reconnect, not_connected
from .connect import _connect
from .peer import Peer

log = logging.getLogger("ipfi.reconnect")

OnConnect = Callable[[Peer], Awaitable[None] | None]


class ReconnectingPeer(MakesProxies):
    """A client of ``address`` that connects again, with backoff, whenever its connection ends.

    Made by :func:`reconnecting`. Its ``call``, ``stream``, ``notify``, ``with_options`` and
    ``proxy`` are the current connection's; what a call does while there is none is the policy's
    (:class:`~ipfi.Reconnect`): wait up to ``wait`` seconds for the connection, then raise
    :class:`~ipfi.ConnectionLost`. Calls in flight when a connection ends raise
    :class:`~ipfi.ConnectionLost` (they are not sent again: the peer may have run them).
    ``on_connect(peer)`` (a function or a coroutine function) runs after each connection and
    before any call is made on it: the place to subscribe again.
    """

    asynchronous = True

    def __init__(
        self, address: str, iface: Interface | None, policy: Reconnect, on_connect: OnConnect | None, options: Options
    ) -> None:
        self.address = address
        self._target = parse_address(address)
        self._iface = iface
        self._policy = policy
        self._on_connect = on_connect
        self._options = options
        self._peer: Peer | None = None
        self._settled = asyncio.Event()  # connected, given up or closed: waiting calls look again
        self._error: BaseException | None = None
        self._gave_up = False
        self._closed = False
        #: How many connections were made so far.
        self.connections = 0
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"ipfi-reconnect {address}")

    @property
    def peer(self) -> Peer | None:
        """The current connection, if there is one."""
        peer = self._peer
        return peer if peer is not None and peer.is_open else None

    async def _supervise(self) -> None:
        delays = self._policy.delays()
        while not self._closed:
            try:
                peer = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._error = exc
                if isinstance(exc, self._policy.give_up_on) and not isinstance(exc, TimeoutError):
                    log.warning("%s: giving up reconnecting: %s: %s", self.address, type(exc).__name__, exc)
                    self._gave_up = True
                    self._settled.set()
                    return
                delay = next(delays)
                log.debug("%s: cannot connect (%s); next attempt in %.2f s", self.address, exc, delay)
                await asyncio.sleep(delay)
                continue
            delays = self._policy.delays()
            self._peer, self._error = peer, None
            self.connections += 1
            self._settled.set()
            await peer.wait_closed()
            self._settled.clear()
            self._peer = None
            if not self._closed:
                log.info("%s: connection lost (%s); reconnecting", self.address, peer.close_reason)

    async def _connect_once(self) -> Peer:
        peer = await _connect(self._target, self._iface, self._options)
        if self._on_connect is not None:
            try:
                result = self._on_connect(peer)
                if inspect.isawaitable(result):
                    await result
            except BaseException:
                peer.abort()
                raise
        return peer

    async def _current(self) -> Peer:
        """The connection to call on, once there is one; raises as the policy says."""
        wait = self._policy.wait
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while True:
                    if self._closed:
                        raise InvalidState(f"{self.address}: this reconnecting client is closed")
                    peer = self.peer
                    if peer is not None:
                        return peer
                    if self._gave_up or wait == 0:
                        break
                    self._settled.clear()
                    await self._settled.wait()
        raise not_connected(self.address, self._error, self._gave_up)

    def call(self, name: str | int, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """As :meth:`Peer.call`, on the current connection (waiting for one as the policy says)."""
        return self._call_with(name, args, kwargs, None, None)

    async def _call_with(
        self,
        name: str | int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        input_items: InputItems,
    ) -> Any:
        peer = self.peer or await self._current()
        return await peer._call_with(name, args, kwargs, timeout, input_items)

    def stream(self, name: str | int, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """As :meth:`Peer.stream`, on the current connection (waiting for one as the policy says)."""
        return self._stream_with(name, args, kwargs, None, None)

    async def _stream_with(
        self,
        name: str | int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        input_items: InputItems,
    ) -> AsyncIterator[Any]:
        peer = self.peer or await self._current()
        async with peer._stream_with(name, args, kwargs, timeout, input_items) as items:
            async for item in items:
                yield item

    def notify(self, name: str, /, *args: Any, **kwargs: Any) -> None:
        """As :meth:`Peer.notify`; raises :class:`~ipfi.ConnectionLost` at once when not connected."""
        peer = self.peer
        if peer is None:
            raise not_connected(self.address, self._error, self._gave_up)
        peer.notify(name, *args, **kwargs)

    def with_options(self, *, timeout: float | None = None, input: InputItems = None) -> Caller:
        """As :meth:`Peer.with_options`."""
        return Caller(self, timeout, input)

    async def aclose(self, timeout: float = 1.0) -> None:
        """Stop reconnecting and close the connection (gracefully, up to ``timeout``)."""
        self._closed = True
        self._settled.set()
        self._task.cancel()  # first: no new connection may start while this one closes
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        peer, self._peer = self._peer, None
        if peer is not None:
            await peer.aclose(timeout)

    async def __aenter__(self) -> ReconnectingPeer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def reconnecting(
    address: str,
    iface: Interface | None = None,
    *,
    policy: Reconnect | None = None,
    on_connect: OnConnect | None = None,
    **options: Unpack[OptionArgs],
) -> ReconnectingPeer:
    """A client of ``address`` that connects at once, and again whenever its connection ends
    (see :class:`ReconnectingPeer` and :class:`~ipfi.Reconnect`). Call it in a running loop; use it
    as ``async with`` to close it. Raises ``ValueError`` for bad options and
    :class:`~ipfi.AddressError` for a bad address."""
    return ReconnectingPeer(address, iface, policy or Reconnect(), on_connect, make_options(**options))
