"""Windows' Proactor loop beside the selector loop, on Linux: two behaviours from CPython's tracker.

The same code runs on asyncio's selector loop and on CPython's own
``ProactorEventLoop`` (``asyncio/windows_events.py``) over wsp_async:

1. ``loop.add_reader()`` -- what libraries such as Tornado and pyzmq relied on -- raises
   ``NotImplementedError`` on the Proactor.  When Python 3.8 made the Proactor Windows'
   default loop, they broke on Windows only (CPython issue bpo-37373 / gh-81554,
   "Configuration of windows event loop for libraries").
2. ``loop.sendfile()`` to a peer that resets the connection part-way: the selector loop
   leaves the file position after the bytes that went (``os.sendfile``), the Proactor
   leaves it where it was (one ``TransmitFile`` that failed) -- CPython's own
   ``test_sendfile`` exempts the Proactor from that check on Windows.

Before wsp_async, seeing either needed a Windows machine.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import tempfile
from collections.abc import Callable

from wsp_async import proactor

SIZE = 4 << 20


async def watch_with_add_reader() -> str:
    """A library-style readiness callback on a socket."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    with a, b:
        ready = loop.create_future()
        try:
            loop.add_reader(a.fileno(), lambda: ready.done() or ready.set_result(a.recv(5)))
        except NotImplementedError:
            return "add_reader -> NotImplementedError"
        b.send(b"ready")
        data = await asyncio.wait_for(ready, 10)
        loop.remove_reader(a.fileno())
        return f"add_reader -> callback got {data!r}"


async def sendfile_to_a_resetting_peer() -> str:
    """sendfile() of 4 MiB to a peer that reads 1 KiB, then resets the connection."""
    loop = asyncio.get_running_loop()
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    with server, tempfile.TemporaryFile() as f:
        f.write(b"x" * SIZE)
        f.seek(0)
        client = socket.create_connection(server.getsockname())
        client.setblocking(False)
        peer, _ = await loop.sock_accept(server)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        async def read_a_little_then_reset() -> None:
            await loop.sock_recv(peer, 1024)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()

        resetter = asyncio.ensure_future(read_a_little_then_reset())
        try:
            await loop.sock_sendfile(client, f)
            outcome = "completed"
        except ConnectionError as exc:
            outcome = type(exc).__name__
        await resetter
        client.close()
        return f"sendfile -> {outcome}, file position afterwards {f.tell()}"


async def both() -> list[str]:
    return [await watch_with_add_reader(), await sendfile_to_a_resetting_peer()]


def run_on(name: str, factory: Callable[[], asyncio.AbstractEventLoop]) -> list[str]:
    with asyncio.Runner(loop_factory=factory) as runner:
        lines = runner.run(both())
    print(f"{name}:")
    for line in lines:
        print(f"  {line}")
    return lines


def main() -> None:
    selector = run_on("selector loop", asyncio.SelectorEventLoop)
    windows = run_on(
        "ProactorEventLoop (Windows' loop, over wsp_async)", proactor.ProactorEventLoop
    )
    assert selector[0].startswith("add_reader -> callback") and "NotImplementedError" in windows[0]
    assert windows[1].endswith("file position afterwards 0"), windows[1]
    assert not selector[1].endswith("file position afterwards 0"), selector[1]


if __name__ == "__main__":
    main()
