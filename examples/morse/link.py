"""An ipfi connection over a Morse link: a source that reads one symbol at a time and decodes it,
and a sink that encodes what ipfi writes into symbols. Optionally, every symbol sent is kept, to
be written as a WAV file of tones (``wav.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from morse import Decoder, encode


async def symbols_in(reader: asyncio.StreamReader, counted: list[int]) -> AsyncIterator[bytes]:
    """The bytes a Morse link carries, read one symbol at a time."""
    decoder = Decoder()
    while symbol := await reader.read(1):
        counted[0] += 1
        if data := decoder.feed(symbol):
            yield data


def symbols_out(writer: asyncio.StreamWriter, sent: list[bytes] | None) -> Callable[[bytes], object]:
    """A sink that writes what ipfi sends as Morse symbols (and keeps them in ``sent``, if given)."""

    async def send(data: bytes) -> None:
        symbols = encode(data)
        if sent is not None:
            sent.append(symbols)
        writer.write(symbols)
        await writer.drain()

    return send
