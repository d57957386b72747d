"""A chat hub written as one event loop instead of callbacks (libIPC's style), on a named service.

Every plain frame a member sends on channel 2 is relayed to the other members; an operator's
lines arrive on a file descriptor; a timer reports how many are connected. The blocking driver has
the same API: ``for event in ipfi.sync.serve(...).events(): ...``.

Run: ``python examples/event_loop.py`` (a hub and two members in one process, then it stops).
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import ipfi

CHAT = 2


async def hub(server: ipfi.Server, operator_fd: int) -> None:
    members: set[ipfi.Peer] = set()
    server.add_timer(0.05, name="stats")
    server.add_fd(operator_fd)
    async for event in server.events():
        match event:
            case ipfi.Connected(peer=peer):
                members.add(peer)
                print(f"hub: {peer.peer_id} joined (pid {peer.credentials.pid if peer.credentials else '?'})")
            case ipfi.Disconnected(peer=peer, reason=reason):
                members.discard(peer)
                print(f"hub: {peer.peer_id} left ({reason})")
            case ipfi.Received(peer=sender, channel=CHAT, payload=text):
                for member in members - {sender}:
                    member.send(CHAT, sender.peer_id.encode() + b": " + text)
            case ipfi.TimerFired(name="stats"):
                print(f"hub: {len(members)} member(s) connected")
                server.cancel_timer("stats")  # once is enough for the demo
            case ipfi.FdReady(fd=fd):
                line = os.read(fd, 1024)
                if not line:  # the operator closed the pipe: shut the hub down
                    server.remove_fd(fd)
                    server.close()
                    continue
                for member in members:
                    member.send(CHAT, b"operator: " + line.strip())


async def main() -> None:
    with tempfile.TemporaryDirectory() as rundir:
        os.environ["IPFI_RUNDIR"] = rundir  # a private runtime directory for the demo
        operator_read, operator_write = os.pipe()
        server = await ipfi.serve("service:chat", None)
        loop_task = asyncio.create_task(hub(server, operator_read))
        async with ipfi.connect("service:chat") as alice, ipfi.connect("service:chat") as bob:
            await asyncio.sleep(0.1)  # let the stats timer fire with both members in
            alice.send(CHAT, b"hello bob")
            print("bob got:", (await bob.receive(CHAT)).payload.decode())
            os.write(operator_write, b"maintenance at noon\n")
            print("alice got:", (await alice.receive(CHAT)).payload.decode())
            print("bob got:", (await bob.receive(CHAT)).payload.decode())
        os.close(operator_write)
        await asyncio.wait_for(loop_task, 5)
        os.close(operator_read)
        print("hub: stopped; service files left:", os.listdir(rundir))


if __name__ == "__main__":
    ipfi.run(main())
