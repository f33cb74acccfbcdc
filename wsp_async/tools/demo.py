"""The demo behind ``make demo`` and ``python -m wsp_async demo``.

It starts a plain-socket loopback server (independent of the emulator), then
drives overlapped sends through each completion mechanism -- completion routines
delivered in an alertable wait, event objects, ``WSPGetOverlappedResult``
polling, and non-overlapped blocking sends -- on one connection each, checks that
the server received exactly the bytes sent (SHA-256), and prints a table.  It
exits non-zero when anything is wrong.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
import time
from collections.abc import Callable

from .. import (
    AF_INET,
    DWORD,
    INT,
    SD_SEND,
    SOCK_STREAM,
    WAIT_IO_COMPLETION,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_INCOMPLETE,
    WSA_IO_PENDING,
    WSA_WAIT_EVENT_0,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    SleepEx,
    WSACreateEvent,
    WSAWaitForMultipleEvents,
)

SENDS = 2000
WINDOW = 32  # overlapped sends kept in flight at once


class Server:
    """Accepts connections and hashes what each one sends until it half-closes."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.digests: list[tuple[int, str]] = []
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._drain, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _drain(self, conn: socket.socket) -> None:
        h = hashlib.sha256()
        n = 0
        with conn:
            while chunk := conn.recv(1 << 20):
                h.update(chunk)
                n += len(chunk)
        with self._changed:
            self.digests.append((n, h.hexdigest()))
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        with self._changed:
            self._changed.wait_for(lambda: len(self.digests) >= count, timeout)

    def close(self) -> None:
        self.sock.close()


def _payload(i: int) -> tuple[bytes, bytes]:
    body = bytes([i % 251]) * (64 + (i * 37) % 4000)
    header = len(body).to_bytes(4, "big") + i.to_bytes(4, "big")
    return header, body


def _progress(name: str, done: int) -> None:
    if done % 250 < (WINDOW if name in ("event", "poll") else 1) or done == SENDS:
        bar = "#" * (30 * done // SENDS)
        print(f"\r  {name:<9} [{bar:<30}] {done:>5}/{SENDS}", end="", flush=True)


def _run(
    p: Provider, server: Server, name: str, drive: Callable[[Provider, int, hashlib._Hash], int]
) -> tuple[str, int, int, int, float, str]:
    err = INT()
    # Count before connecting: the server may finish with this connection before
    # WSPShutdown returns, and its digest must not be mistaken for a later one.
    before = len(server.digests)
    s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    if p.WSPConnect(s, server.address, None, None, None, None, None, err):
        raise SystemExit(f"connect failed: {err.value}")
    expected = hashlib.sha256()
    start = time.perf_counter()
    completions = drive(p, s, expected)
    elapsed = time.perf_counter() - start
    p.WSPShutdown(s, SD_SEND, err)
    server.wait_for(before + 1)
    p.WSPCloseSocket(s, err)
    print()
    got = server.digests[before] if len(server.digests) > before else (0, "")
    return (
        name,
        SENDS,
        got[0],
        completions,
        elapsed,
        "ok" if got[1] == expected.hexdigest() else "MISMATCH",
    )


def _routine(p: Provider, s: int, expected: hashlib._Hash) -> int:
    done = [0]
    in_flight = [0]

    def routine(error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        if error:
            raise SystemExit(f"send failed: {error}")
        done[0] += 1
        in_flight[0] -= 1
        _progress("routine", done[0])

    posted = 0
    while done[0] < SENDS:
        while posted < SENDS and in_flight[0] < WINDOW:
            header, body = _payload(posted)
            expected.update(header + body)
            rc = p.WSPSend(
                s,
                [WSABUF(8, header), WSABUF(len(body), body)],
                2,
                None,
                0,
                WSAOVERLAPPED(),
                routine,
                None,
                INT(),
            )
            posted += 1
            in_flight[0] += 1
            assert rc == 0 or rc == -1
        if SleepEx(10_000, True) != WAIT_IO_COMPLETION:
            raise SystemExit("routines stopped arriving")
    return done[0]


def _event(p: Provider, s: int, expected: hashlib._Hash) -> int:
    done = 0
    for base in range(0, SENDS, WINDOW):
        batch = []
        for i in range(base, min(SENDS, base + WINDOW)):
            header, body = _payload(i)
            expected.update(header + body)
            ov = WSAOVERLAPPED(hEvent=WSACreateEvent())
            err = INT()
            rc = p.WSPSend(
                s, [WSABUF(8, header), WSABUF(len(body), body)], 2, None, 0, ov, None, None, err
            )
            if rc and err.value != WSA_IO_PENDING:
                raise SystemExit(f"send failed: {err.value}")
            batch.append(ov)
        if (
            WSAWaitForMultipleEvents(len(batch), [ov.hEvent for ov in batch], True, 10_000, False)
            != WSA_WAIT_EVENT_0
        ):
            raise SystemExit("events were not set")
        done += sum(1 for ov in batch if ov.Internal == 0)
        _progress("event", done)
    return done


def _poll(p: Provider, s: int, expected: hashlib._Hash) -> int:
    done = 0
    for base in range(0, SENDS, WINDOW):
        batch = []
        for i in range(base, min(SENDS, base + WINDOW)):
            header, body = _payload(i)
            expected.update(header + body)
            ov = WSAOVERLAPPED()
            p.WSPSend(
                s, [WSABUF(8, header), WSABUF(len(body), body)], 2, None, 0, ov, None, None, INT()
            )
            batch.append(ov)
        for ov in batch:
            n, flags, err = DWORD(), DWORD(), INT()
            while not p.WSPGetOverlappedResult(s, ov, n, False, flags, err):
                if err.value != WSA_IO_INCOMPLETE:
                    raise SystemExit(f"send failed: {err.value}")
                time.sleep(0)
            done += 1
        _progress("poll", done)
    return done


def _blocking(p: Provider, s: int, expected: hashlib._Hash) -> int:
    for i in range(SENDS):
        header, body = _payload(i)
        expected.update(header + body)
        sent, err = DWORD(), INT()
        if p.WSPSend(
            s, [WSABUF(8, header), WSABUF(len(body), body)], 2, sent, 0, None, None, None, err
        ):
            raise SystemExit(f"send failed: {err.value}")
        _progress("blocking", i + 1)
    return SENDS


def main() -> int:
    server = Server()
    rows = []
    try:
        with Provider() as p:
            print(
                f"wsp_async demo: {SENDS} scatter/gather sends per mechanism to a plain-socket "
                f"server on {server.address[0]}:{server.address[1]} ({p.loop_kind} I/O loop)"
            )
            for name, drive in (
                ("routine", _routine),
                ("event", _event),
                ("poll", _poll),
                ("blocking", _blocking),
            ):
                rows.append(_run(p, server, name, drive))
    finally:
        server.close()
    print()
    print(
        f"{'mechanism':<10} {'sends':>6} {'bytes':>10} {'completions':>12} {'time (s)':>9}  check"
    )
    for name, sends, nbytes, completions, elapsed, verdict in rows:
        print(f"{name:<10} {sends:>6} {nbytes:>10} {completions:>12} {elapsed:>9.3f}  {verdict}")
    ok = all(r[5] == "ok" and r[3] == SENDS for r in rows)
    print("\nall bytes verified" if ok else "\nSOMETHING IS WRONG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
