"""Bytes to Morse code and back: each byte as its two hexadecimal digits, each digit in International
Morse (dots, dashes), a space after each digit. A link that carries only ``.``, ``-`` and `` ``."""

from __future__ import annotations

CODE = {
    "0": "-----", "1": ".----", "2": "..---", "3": "...--", "4": "....-", "5": ".....",
    "6": "-....", "7": "--...", "8": "---..", "9": "----.", "A": ".-", "B": "-...",
    "C": "-.-.", "D": "-..", "E": ".", "F": "..-.",
}  # fmt: skip
DIGITS = {pattern: digit for digit, pattern in CODE.items()}
SYMBOLS = frozenset(".- ")


def encode(data: bytes) -> bytes:
    """The Morse symbols of ``data`` (about ten per byte)."""
    return "".join(CODE[digit] + " " for digit in data.hex().upper()).encode("ascii")


class Decoder:
    """Bytes back from Morse symbols, fed one symbol at a time (or any number at once)."""

    def __init__(self) -> None:
        self._pattern = ""
        self._high: str | None = None

    def feed(self, symbols: bytes) -> bytes:
        decoded = bytearray()
        for symbol in symbols.decode("ascii"):
            if symbol not in SYMBOLS:
                raise ValueError(f"{symbol!r} is not a Morse symbol")
            if symbol != " ":
                self._pattern += symbol
                continue
            digit = DIGITS[self._pattern]  # (a KeyError for a pattern that is no hex digit)
            self._pattern = ""
            if self._high is None:
                self._high = digit
            else:
                decoded.append(int(self._high + digit, 16))
                self._high = None
        return bytes(decoded)
