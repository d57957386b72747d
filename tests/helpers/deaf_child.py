"""A child that answers the handshake on its stdin and stdout and stops hearing: it closes its
stdin (a write to it fails) and keeps its stdout open and silent for SECONDS, then exits. Told
``stdout``, it goes mute instead: it closes its stdout once it has answered, and keeps its stdin.

    python -m tests.helpers.deaf_child SECONDS [stdin|stdout]
"""

from __future__ import annotations

import os
import sys
import time

from ipfi.core.connection import Connection
from ipfi.core.state import Role


def main(seconds: float, closes: str) -> None:
    server = Connection(Role.SERVER)
    while not server.is_open:
        data = os.read(0, 65536)
        if not data:
            return
        server.receive_data(data)
    if closes == "stdin":
        os.close(0)  # (before the reply: whatever the parent writes once it is connected finds it closed)
    for frame in server.data_to_send():
        view = memoryview(frame)
        while view:
            view = view[os.write(1, view) :]
    if closes == "stdout":
        os.close(1)
    time.sleep(seconds)


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "stdin")
