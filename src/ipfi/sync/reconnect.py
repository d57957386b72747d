"""A client that connects again whenever its connection ends (blocking driver)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Unpack

from ..core.errors import InvalidState
from ..core.interface import Interface
from ..options import OptionArgs, Options, make_options
from ..proxy import Caller, MakesProxies
from ..reconnect_policy import Reconnect, not_connected
from .client import open_client
from .peer import Peer

log = logging.getLogger("ipfi.reconnect")


class ReconnectingPeer(MakesProxies):
    """A client of ``address`` that connects again, with backoff, whenever its connection ends:
    the blocking twin of :class:`ipfi.ReconnectingPeer` (same policy, same methods, blocking).
    A thread of its own connects and reads, so a dead server is noticed at once."""

    asynchronous = False

    def __init__(
        self,
        address: str,
        iface: Interface | None,
        *,
        policy: Reconnect,
        on_connect: Callable[[Peer], None] | None,
        workers: int,
        options: Options,
    ) -> None:
        self.address = address
        self._iface = iface
        self._policy = policy
        self._on_connect = on_connect
        self._workers = workers
        self._options = options
        self._peer: Peer | None = None
        self._error: BaseException | None = None
        self._gave_up = False
        self._closed = threading.Event()
        self._changed = threading.Condition()
        #: How many connections were made so far.
        self.connections = 0
        self._thread = threading.Thread(target=self._supervise, name=f"ipfi-reconnect {address}", daemon=True)
        self._thread.start()

    @property
    def peer(self) -> Peer | None:
        """The current connection, if there is one."""
        peer = self._peer
        return peer if peer is not None and peer.is_open else None

    def _supervise(self) -> None:
        delays = self._policy.delays()
        while not self._closed.is_set():
            try:
                peer = self._connect_once()
            except Exception as exc:
                self._error = exc
                if isinstance(exc, self._policy.give_up_on) and not isinstance(exc, TimeoutError):
                    log.warning("%s: giving up reconnecting: %s: %s", self.address, type(exc).__name__, exc)
                    with self._changed:
                        self._gave_up = True
                        self._changed.notify_all()
                    return
                delay = next(delays)
                log.debug("%s: cannot connect (%s); next attempt in %.2f s", self.address, exc, delay)
                self._closed.wait(delay)
                continue
            delays = self._policy.delays()
            ended = threading.Event()
            peer.on_close = lambda _peer, ended=ended: ended.set()
            with self._changed:
                self._peer, self._error = peer, None
                self.connections += 1
                self._changed.notify_all()
            if not peer.is_closed:  # (it may have ended before on_close was set)
                ended.wait()
            with self._changed:
                self._peer = None
            if self._closed.is_set():
                return
            log.info("%s: connection lost (%s); reconnecting", self.address, peer.close_reason)

    def _connect_once(self) -> Peer:
        peer = open_client(self.address, self._iface, self._workers, self._options, background_reader=True)
        if self._on_connect is not None:
            try:
                self._on_connect(peer)
            except BaseException:
                peer.abort()
                raise
        return peer

    def _current(self) -> Peer:
        wait = self._policy.wait
        deadline = None if wait is None else time.monotonic() + wait
        with self._changed:
            while True:
                if self._closed.is_set():
                    raise InvalidState(f"{self.address}: this reconnecting client is closed")
                peer = self.peer
                if peer is not None:
                    return peer
                left = None if deadline is None else deadline - time.monotonic()
                if self._gave_up or (left is not None and left <= 0):
                    raise not_connected(self.address, self._error, self._gave_up)
                self._changed.wait(left)

    def call(self, name: str | int, /, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`ipfi.sync.Peer.call`, on the current connection (waiting for one as the
        policy says)."""
        return self._call_with(name, args, kwargs, None, None)

    def _call_with(
        self, name: str | int, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Any:
        peer = self.peer or self._current()
        return peer._call_with(name, args, kwargs, timeout, input_items)

    def stream(self, name: str | int, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """As :meth:`ipfi.sync.Peer.stream`, on the current connection."""
        return self._stream_with(name, args, kwargs, None, None)

    def _stream_with(
        self, name: str | int, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, input_items: Any
    ) -> Iterator[Any]:
        peer = self.peer or self._current()
        return peer._stream_with(name, args, kwargs, timeout, input_items)

    def notify(self, name: str, /, *args: Any, **kwargs: Any) -> None:
        """As :meth:`ipfi.sync.Peer.notify`; raises :class:`~ipfi.ConnectionLost` at once when not
        connected."""
        peer = self.peer
        if peer is None:
            raise not_connected(self.address, self._error, self._gave_up)
        peer.notify(name, *args, **kwargs)

    def with_options(self, *, timeout: float | None = None, input: Iterable[Any] | None = None) -> Caller:
        """As :meth:`ipfi.sync.Peer.with_options`."""
        return Caller(self, timeout, input)

    def close(self, timeout: float = 1.0) -> None:
        """Stop reconnecting and close the connection (gracefully, up to ``timeout``)."""
        self._closed.set()
        with self._changed:
            peer = self._peer
            self._changed.notify_all()
        if peer is not None:
            peer.close(timeout)
        self._thread.join(timeout + 5)

    def __enter__(self) -> ReconnectingPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def reconnecting(
    address: str,
    iface: Interface | None = None,
    *,
    policy: Reconnect | None = None,
    on_connect: Callable[[Peer], None] | None = None,
    workers: int = 4,
    **options: Unpack[OptionArgs],
) -> ReconnectingPeer:
    """A blocking client of ``address`` that connects at once (in a thread of its own), and again
    whenever its connection ends (see :class:`~ipfi.Reconnect`). Raises ``ValueError`` for bad
    options."""
    return ReconnectingPeer(
        address,
        iface,
        policy=policy or Reconnect(),
        on_connect=on_connect,
        workers=workers,
        options=make_options(**options),
    )
