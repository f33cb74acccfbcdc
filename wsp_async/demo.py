"""The demo behind ``make demo``: events and APC delivery (the socket demo comes with the send path)."""

from __future__ import annotations

import threading

from . import (
    WAIT_IO_COMPLETION,
    WSA_WAIT_EVENT_0,
    WSATHREADID,
    SleepEx,
    WSACreateEvent,
    WSASetEvent,
    WSAWaitForMultipleEvents,
    queue_apc,
)


def main() -> int:
    ran: list[int] = []
    ready = threading.Event()
    box: list[WSATHREADID] = []
    results: list[int] = []

    def worker() -> None:
        box.append(WSATHREADID.current())
        ready.set()
        while len(ran) < 3:
            results.append(SleepEx(10_000, True))

    t = threading.Thread(target=worker)
    t.start()
    ready.wait(10)
    for i in range(3):
        queue_apc(box[0], ran.append, i)
    t.join(10)
    ok = ran == [0, 1, 2] and all(r == WAIT_IO_COMPLETION for r in results)
    print(f"APCs delivered in an alertable SleepEx: {ran} -> {'ok' if ok else 'WRONG'}")
    ev = WSACreateEvent()
    threading.Timer(0.01, WSASetEvent, (ev,)).start()
    rc = WSAWaitForMultipleEvents(1, [ev], False, 10_000, False)
    print(f"event set from another thread woke WSAWaitForMultipleEvents: rc={rc}")
    ok = ok and rc == WSA_WAIT_EVENT_0
    return 0 if ok else 1
