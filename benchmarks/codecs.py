"""Codec engines on the values a round trip carries: msgpack (ipfi's), msgspec's MessagePack (the
same bytes) and cbor2 (CBOR, which issue 19 asks for), encode and decode, nanoseconds per value.

    python -m benchmarks.codecs   (needs the bench extra: msgspec, cbor2)

Each figure is the best of 5 runs of 100,000; "same bytes" compares msgspec's encoding with msgpack's.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import cbor2
import msgpack
import msgspec

VALUES: dict[str, Any] = {
    "call arguments [16-byte bytes]": [b"0123456789abcdef"],
    "call arguments [1, 2]": [1, 2],
    "a record of 5 fields": {"id": 42, "name": "alpha", "tags": ["a", "b"], "score": 0.5, "ok": True},
    "a list of 100 ints": list(range(100)),
}


def nanoseconds(function: Callable[[], object], number: int = 100_000) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e9


def main() -> None:
    packer = msgpack.Packer(use_bin_type=True, autoreset=True, datetime=True)
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    columns = ["msgpack pack", "msgspec encode", "cbor2 dumps", "msgpack unpackb", "msgspec decode", "cbor2 loads"]
    print("| value | " + " | ".join(columns) + " | same bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, value in VALUES.items():
        packed, cbor = packer.pack(value), cbor2.dumps(value)
        figures = [
            nanoseconds(lambda: packer.pack(value)),  # noqa: B023 (timed here)
            nanoseconds(lambda: encoder.encode(value)),  # noqa: B023
            nanoseconds(lambda: cbor2.dumps(value)),  # noqa: B023
            nanoseconds(lambda: msgpack.unpackb(packed, strict_map_key=False, timestamp=3)),  # noqa: B023
            nanoseconds(lambda: decoder.decode(packed)),  # noqa: B023
            nanoseconds(lambda: cbor2.loads(cbor)),  # noqa: B023
        ]
        same = "yes" if encoder.encode(value) == packed else "no"
        print(f"| {name} | " + " | ".join(f"{figure:,.0f}" for figure in figures) + f" | {same} |")


if __name__ == "__main__":
    main()
