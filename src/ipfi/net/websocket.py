"""What both drivers' WebSocket wires (``ws://``, ``wss://``) share: the library, the URL, how the
byte stream is cut into messages, and which interface serves which path. The ``websockets``
library is an extra: ``pip install 'ipfi[ws]'``.

ipfi's byte stream travels unchanged in binary messages of at most :data:`MESSAGE_SIZE` bytes
(message boundaries mean nothing: a frame may span messages, a message hold several frames); a
peer's larger message, or a text message, ends its connection.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from ..core.errors import AddressError
from ..core.interface import Interface
from .addresses import Address

#: The largest message sent, and received (``max_size``): what one message can make a peer hold.
MESSAGE_SIZE: Final = 1 << 20

#: Options of the ``websockets`` connections, both sides: no compression (its cost, and a peer's
#: zip bomb, for bytes that are mostly msgpack), messages bounded, and a peer that never answers
#: the closing handshake waited for 2 s, not the library's 10.
CONNECTION_OPTIONS: Final[dict[str, Any]] = {"compression": None, "max_size": MESSAGE_SIZE, "close_timeout": 2}


def require_websockets() -> None:
    """Raises ``ImportError`` saying how to install the extra when ``websockets`` is missing."""
    if importlib.util.find_spec("websockets") is None:
        raise ImportError("ws:// and wss:// addresses need the websockets library: pip install 'ipfi[ws]'")


def url_of(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{address.scheme}://{host}:{address.port}{address.path or '/'}"


def messages_of(data: bytes | bytearray | memoryview) -> Iterator[bytes | bytearray | memoryview]:
    """``data`` cut into messages of at most :data:`MESSAGE_SIZE` bytes."""
    if len(data) <= MESSAGE_SIZE:
        yield data
        return
    view = memoryview(data)
    for start in range(0, len(view), MESSAGE_SIZE):
        yield view[start : start + MESSAGE_SIZE]


class TextMessage(ConnectionError):
    """A peer sent a text message: ipfi's stream travels in binary ones. Its connection is closed
    with :attr:`close_code` (1003, unsupported data) and :attr:`close_reason`."""

    close_code: Final = 1003
    close_reason: Final = "ipfi's byte stream travels in binary messages"

    def __init__(self) -> None:
        super().__init__(f"a text WebSocket message: {self.close_reason}")


def interfaces_by_path(
    address: Address, served: Interface | Mapping[str, Interface | None] | None
) -> Callable[[str], Interface | bool | None]:
    """Which interface a WebSocket request's path gets: ``False`` for a path not served (HTTP 404).

    A mapping of paths serves each of its paths; one interface serves the address's path, or every
    path when the address has none. Raises :class:`AddressError` for a mapping with a path in the
    address too, or with any other scheme."""
    if isinstance(served, Mapping):
        if not address.is_websocket or address.path not in ("", "/"):
            raise AddressError("interfaces by path are for a ws:// or wss:// address without a path")
        table = dict(served)
        return lambda path: table.get(_without_query(path), False)
    if not address.is_websocket or address.path in ("", "/"):
        return lambda path: served
    return lambda path: served if _without_query(path) == address.path else False


def _without_query(path: str) -> str:
    return path.partition("?")[0]
