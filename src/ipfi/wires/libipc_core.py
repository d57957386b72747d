"""The protocol core of libIPC's wire (``libipc:NAME`` addresses): plain messages, no handshake, no
calls. No I/O.

A DATA frame surfaces as a plain message whose channel is its ``user_type`` (0-255), and
``peer.send(user_type, payload)`` sends one. A frame of another type (ERR, NETWORK_LOOKUP, or one
libIPC does not know, which it passes on as it is) surfaces on channel ``type * 256 + user_type``,
and sending on such a channel sends that type: an echo (``ipfi echo libipc:NAME``, libIPC's pongd)
answers every frame as it came. SERVER_CLOSE ends the connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..core.errors import ConnectionLost, LocalProtocolError, PayloadTooLarge
from ..core.events import Event, ShutdownRequested
from ..core.limits import Limits
from ..core.state import Role
from .foreign_core import ForeignCore
from .libipc import DATA, MAX_PAYLOAD, SERVER_CLOSE, Frame, FrameDecoder, encode

#: Channels: DATA's user types, then the other types' (type * 256 + user type).
CHANNELS: Final = 1 << 16


def channel_of(kind: int, user_type: int) -> int:
    """The channel a frame of type ``kind`` surfaces on (see the module's docstring)."""
    return user_type if kind == DATA else kind * 256 + user_type


class LibipcCore(ForeignCore):
    """One side of a connection on libIPC's wire (see the module's docstring)."""

    protocol = "libipc"
    decoder: FrameDecoder

    def __init__(
        self, role: Role, *, limits: Limits, peer_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(role, limits=limits, peer_id=peer_id, clock=clock)
        self.decoder = FrameDecoder(max_payload=min(MAX_PAYLOAD, limits.max_frame_payload))

    def receive_from(self, buffer: bytes | bytearray | memoryview, count: int) -> list[Event]:
        """The events the first ``count`` bytes of ``buffer`` complete, in any chunking. Raises
        :class:`~ipfi.FrameTooLarge` for a frame over the limit (from its header, before its
        payload is read), :class:`ConnectionLost` once the connection is closed."""
        if not self.is_open:
            raise ConnectionLost(self._close_reason or "connection closed")
        events: list[Event] = []
        for frame in self.decoder.feed(bytes(memoryview(buffer)[:count])):
            if frame.kind == SERVER_CLOSE:
                events.append(ShutdownRequested(force=False))
                self.close("the peer ended the connection (SERVER_CLOSE)")
                break
            events.append(self._queue_message_event(channel_of(frame.kind, frame.user_type), frame.payload))
        return events

    def send_message(self, channel: int, payload: bytes | bytearray | memoryview) -> None:
        """Queue a frame: DATA with user type ``channel`` below 256, else type ``channel // 256``.
        Raises :class:`LocalProtocolError` for a channel that is no frame's, :class:`PayloadTooLarge`
        past libIPC's limit (its peers would exit), :class:`InvalidState` or
        :class:`ConnectionLost` when the connection is not open."""
        self._check_open()
        if not 0 <= channel < CHANNELS or (channel >= 256 and channel >> 8 in (DATA, SERVER_CLOSE)):
            raise LocalProtocolError(
                f"libipc: channel {channel} is no frame's: 0-255 send DATA of that user type,"
                " type * 256 + user type another type (not DATA's 2, nor SERVER_CLOSE's 0)"
            )
        if len(payload) > self.decoder.max_payload:
            raise PayloadTooLarge(
                f"a libIPC payload holds at most {self.decoder.max_payload} bytes, not {len(payload)}"
            )
        kind, user_type = (DATA, channel) if channel < 256 else divmod(channel, 256)
        self._queue(encode(Frame(kind, user_type, bytes(payload))))

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(range(256))

    # -- no calls on this wire -------------------------------------------------------------------

    def _no_calls(self) -> LocalProtocolError:
        return LocalProtocolError("libipc: libIPC's wire carries plain messages, not calls")

    def send_call(
        self,
        name: str | int,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        has_input: bool = False,
    ) -> int:
        raise self._no_calls()

    def send_cancel(self, call_id: int) -> None:
        raise self._no_calls()

    def send_result(self, call_id: int, value: Any) -> None:
        raise self._no_calls()

    def send_error(
        self, call_id: int, remote_type: str, message: str, data: Any = None, traceback: str | None = None
    ) -> None:
        raise self._no_calls()

    def is_serving(self, call_id: int) -> bool:
        return False

    def stream_open(self, call_id: int) -> bool:
        return False

    def send_items(self, call_id: int, items: Sequence[Any]) -> int:
        raise self._no_calls()

    def send_end(self, call_id: int) -> None:
        raise self._no_calls()

    def send_shutdown_request(self) -> bool:
        """Nothing to send: a libIPC client just closes its socket."""
        return False
