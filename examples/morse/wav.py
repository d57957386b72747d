"""Morse symbols as tones in a WAV file (the standard library's ``wave``; ``play`` from sox, where
it is installed, makes them audible): a dot one unit of tone, a dash three, one unit of silence
after each, two more after each digit."""

from __future__ import annotations

import math
import wave

RATE = 8000
TONE = 700.0  # Hz
UNIT = 0.01  # seconds: machine speed (a person keys about 0.06)


def _samples(seconds: float, tone: bool) -> bytes:
    count = int(RATE * seconds)
    if not tone:
        return bytes(2 * count)
    return b"".join(
        int(12000 * math.sin(2 * math.pi * TONE * index / RATE)).to_bytes(2, "little", signed=True)
        for index in range(count)
    )


def write(path: str, symbols: bytes) -> float:
    """Write ``symbols`` to ``path``; returns the recording's length in seconds."""
    dot, dash, gap = _samples(UNIT, True), _samples(3 * UNIT, True), _samples(UNIT, False)
    letter_gap = _samples(2 * UNIT, False)
    sounds = {ord("."): dot + gap, ord("-"): dash + gap, ord(" "): letter_gap}
    frames = b"".join(sounds[symbol] for symbol in symbols)
    with wave.open(path, "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(RATE)
        recording.writeframes(frames)
    return len(frames) / 2 / RATE
