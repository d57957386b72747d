"""Two processes that hold an ipfi RPC session over a link that carries nothing but Morse code: a
call, a stream, and a call back, every byte of ipfi's frames sent as dots, dashes and gaps, and read
back one symbol at a time (IPFI promised this demo; here it is).

    python examples/morse/host.py [--wav FILE [--play]]

``--wav`` writes the symbols the host sent as tones in a WAV file; ``--play`` plays it with sox's
``play``, where sox is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from link import symbols_in, symbols_out

import ipfi

HERE = Path(__file__).resolve().parent


async def main(wav: str | None, play: bool) -> None:
    module = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "module.py"), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert module.stdin is not None and module.stdout is not None
    iface = ipfi.Interface()

    @iface.procedure
    def whoami() -> str:
        return f"the host (pid {os.getpid()})"

    received, sent = [0], []
    link = (symbols_in(module.stdout, received), symbols_out(module.stdin, sent))
    async with await ipfi.connect_stream(*link, iface) as peer:
        print("call:", await peer.call("greet", "Ada"))
        print("stream:", [value async for value in peer.stream("countdown", 3)])
    print("the module exited with status", await module.wait())
    symbols = b"".join(sent)
    print(f"symbols: {len(symbols)} sent, {received[0]} received, each read one at a time")
    print("the first ones:", symbols[:60].decode())
    if wav:
        import wav as tones

        print(f"{wav}: {tones.write(wav, symbols):.0f} s of tones")
        if play and shutil.which("play"):
            player = await asyncio.create_subprocess_exec("play", "-q", wav)
            await player.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wav", help="write the symbols the host sent as tones in this WAV file")
    parser.add_argument("--play", action="store_true", help="play the WAV file with sox's play, if installed")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.wav, arguments.play))
