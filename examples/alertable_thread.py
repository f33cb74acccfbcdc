"""A plain thread in an alertable SleepEx loop beside an asyncio application (SPEC S6.3).

The asyncio side serves an echo over the asyncio face; a worker thread (think: a
ported Windows worker) posts overlapped sends to it with completion routines
naming *itself*, and receives them only while it sleeps alertably.  The loop
thread never runs the worker's routines.
"""

from __future__ import annotations

import asyncio
import threading

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    SD_SEND,
    SOCK_STREAM,
    WAIT_IO_COMPLETION,
    WSA_FLAG_OVERLAPPED,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    SleepEx,
    aio,
)


def worker(address: tuple[str, int], report: list[str]) -> None:
    with Provider() as p:  # the worker's own provider and I/O loop
        err = INT()
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        p.WSPConnect(s, address, None, None, None, None, None, err)
        me = threading.get_ident()
        ran_on: list[int] = []

        def routine(error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
            assert error == 0
            ran_on.append(threading.get_ident())

        for i in range(100):
            data = f"line {i}\n".encode()
            p.WSPSend(s, [WSABUF(len(data), data)], 1, None, 0, WSAOVERLAPPED(), routine, None, err)
        wakeups = 0
        while len(ran_on) < 100:  # routines run only in here, on this thread
            if SleepEx(10_000, True) == WAIT_IO_COMPLETION:
                wakeups += 1
        p.WSPShutdown(s, SD_SEND, err)
        echoed = bytearray()
        buf = bytearray(4096)
        got = DWORD()
        while (
            p.WSPRecv(s, [WSABUF(4096, buf)], 1, got, DWORD(0), None, None, None, err) == 0
            and got.value
        ):
            echoed += buf[: got.value]
        p.WSPCloseSocket(s, err)
        report.append(
            f"worker: routines ran only on the worker thread: {set(ran_on) == {me}}, "
            f"in {wakeups} alertable wake-up(s); {echoed.count(b'line')} lines echoed back"
        )


async def main() -> None:
    async def echo(sock: aio.OverlappedSocket) -> None:
        while data := await sock.recv(4096):
            await sock.send(data)

    async with await aio.start_server(echo) as server:
        report: list[str] = []
        thread = threading.Thread(target=worker, args=(server.address, report))
        thread.start()
        ticks = 0
        while thread.is_alive():  # the asyncio application keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        print(report[0])
        print(f"asyncio side: served the echo and ticked {ticks} times meanwhile")


if __name__ == "__main__":
    asyncio.run(main())
