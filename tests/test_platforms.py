"""Where Linux's calls are missing (Windows: no fcntl, no os.pipe2, no Unix sockets, no poll;
macOS: no pipe2, no SO_PEERCRED), ``import ipfi`` works, so do the in-memory pair, ``exec:`` and
``tcp://`` in both drivers, and what cannot work raises :class:`ipfi.NotOnThisPlatform` saying why.
Simulated here, in a child process, by hiding those modules and names before ipfi is imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from .conftest import ROOT

HIDE = """
import os, select, socket, sys
sys.modules["fcntl"] = None  # (as if there were no such module: its import raises ImportError)
# socketpair() still works without AF_UNIX (Windows makes one over TCP; asyncio needs it): here it
# keeps Linux's own family, which the name no longer gives it.
_unix, _socketpair = socket.AF_UNIX, socket.socketpair
socket.socketpair = lambda family=None, *args, **kwargs: _socketpair(family or _unix, *args, **kwargs)
for module, names in ((os, ["pipe2", "readv"]), (socket, ["AF_UNIX", "SO_PEERCRED"]), (select, ["poll"])):
    for name in names:
        delattr(module, name)
"""

PROGRAM = """
import asyncio
import ipfi, ipfi.sync
from tests.helpers.calc import iface

CHILD = f"exec:{sys.executable} -m tests.helpers.stdio_child"


async def asyncio_driver():
    client, server = await ipfi.pair(None, iface)
    assert await client.call("add", 1, 2) == 3
    async with await ipfi.serve("tcp://127.0.0.1:0", iface) as listening:
        async with ipfi.connect(listening.bound_address) as peer:
            assert await peer.call("add", 2, 3) == 5
            assert [n async for n in peer.stream("count", 3)] == [0, 1, 2]
    async with ipfi.connect(CHILD) as child:
        assert await child.call("add", 3, 4) == 7
    print("asyncio: pair, tcp, exec")


asyncio.run(asyncio_driver())

client, server = ipfi.sync.pair(None, iface)
assert client.call("add", 1, 2) == 3
with ipfi.sync.serve("tcp://127.0.0.1:0", iface) as listening:
    import threading
    threading.Thread(target=listening.serve_forever, daemon=True).start()
    with ipfi.sync.connect(listening.bound_address) as peer:
        assert peer.call("add", 2, 3) == 5
        assert list(peer.stream("count", 3)) == [0, 1, 2]
with ipfi.sync.connect(CHILD) as child:
    assert child.call("add", 3, 4) == 7
print("blocking: pair, tcp, exec")

for address in ("unix:/tmp/calc.sock", "service:calc"):
    for attempt in (lambda: ipfi.sync.connect(address), lambda: asyncio.run(ipfi.serve(address, iface))):
        try:
            attempt()
        except ipfi.NotOnThisPlatform as refused:
            assert isinstance(refused, NotImplementedError)
            print(refused)
try:
    ipfi.Options(allow_uids=[0])
except ipfi.NotOnThisPlatform as refused:
    print(refused)
from ipfi.cli import main
main(["doctor", "--format", "json"])
"""


def test_without_linux_only_calls_ipfi_imports_works_over_pair_tcp_and_exec_and_says_what_it_cannot() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HIDE) + textwrap.dedent(PROGRAM)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["asyncio: pair, tcp, exec", "blocking: pair, tcp, exec"]
    refusals, doctor = lines[2:7], [json.loads(line) for line in lines[7:]]
    detail = f"not on {sys.platform} yet: unix: and service: addresses"
    assert {"check": "unix sockets", "status": "warn", "detail": detail} in doctor, doctor
    for refusal, scheme in zip(refusals[:4], ["unix", "unix", "service", "service"], strict=True):
        assert f"{scheme}: addresses need Unix sockets" in refusal and "not on Windows yet" in refusal
        assert "use tcp://127.0.0.1:PORT" in refusal
    assert refusals[4].startswith("allow_uids needs the kernel's record of a peer (SO_PEERCRED")


def test_a_named_service_without_fcntl_says_so() -> None:
    """Unix sockets but no fcntl (no platform ipfi knows, but each is checked where it is used)."""
    program = """
import asyncio, sys, tempfile, os
sys.modules["fcntl"] = None
os.environ["IPFI_RUNDIR"] = tempfile.mkdtemp()
import ipfi
from tests.helpers.calc import iface
try:
    asyncio.run(ipfi.serve("service:calc", iface))
except ipfi.NotOnThisPlatform as refused:
    print(refused)
"""
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"named services need fcntl's locks, which {sys.platform} lacks"
