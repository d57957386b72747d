"""Coverage-guided fuzzing of the protocol core's error contract (atheris, libFuzzer).

Run for ten minutes (``pip install -e .[fuzz]`` first)::

    python fuzz/fuzz_core.py -max_total_time=600 fuzz/corpus

Each input picks a role, a codec, whether the handshake is done, and how the rest is cut into reads;
the rest is fed to ``Connection.receive_data``. Anything raised other than ``RemoteProtocolError``
(while open) or ``ConnectionLost`` (once closed) is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from ipfi.core.connection import Connection, Role
    from ipfi.core.errors import ConnectionLost, RemoteProtocolError
    from ipfi.core.limits import Limits

LIMITS = Limits(max_frame_payload=4096, max_message=16384, max_concurrent_calls=4, stream_window=4)
CODECS = ("msgpack", "json", "raw")


def connection(role: Role, codec: str, handshake: bool) -> Connection:
    client = Connection(Role.CLIENT, limits=LIMITS, codecs=[codec])
    server = Connection(Role.SERVER, limits=LIMITS)
    client.start()
    if handshake:
        server.receive_data(b"".join(client.data_to_send()))
        client.receive_data(b"".join(server.data_to_send()))
    return client if role is Role.CLIENT else server


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    role = Role.CLIENT if provider.ConsumeBool() else Role.SERVER
    codec = CODECS[provider.ConsumeIntInRange(0, 2)]
    target = connection(role, codec, handshake=provider.ConsumeBool())
    while provider.remaining_bytes():
        chunk = provider.ConsumeBytes(provider.ConsumeIntInRange(1, 512))
        try:
            target.receive_data(chunk)
            if target.reading_paused:
                target.message_taken(0)
            target.data_to_send()
        except RemoteProtocolError:
            target.close()
        except ConnectionLost:
            return


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
