"""A loop iteration's sends leaving the queue whole, on real sockets (SPEC S5.3, S4.1).

The send queue takes the sends posted in one loop iteration off in one piece when they
are a run of plain pending sends within one gather write (issue 26,
``_core/sendqueue.py``), and looks at each one otherwise.  ``tests/test_sendqueue.py``
holds the two ways to the same batches without I/O; here a plain socket reads what
bursts that keep the run and bursts that spoil it put on the wire: every byte, once, in
posting order, and every routine once with its result.
"""

from __future__ import annotations

import wsp_async as w
from wsp_async import INT, WSABUF, WSAOVERLAPPED

from .conftest import connect, eventually, recv_exact, run_in_loop


class Routines:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, object]] = []

    def __call__(self, error: int, nbytes: int, ov: object, flags: int) -> None:
        self.calls.append((error, nbytes, ov))


def message(i: int, size: int) -> bytes:
    return (b"%05d|" % i * (size // 6 + 1))[:size]


def test_bursts_that_keep_or_spoil_the_run_put_every_byte_on_the_wire_in_order(  # type: ignore[no-untyped-def]
    provider, listener
):
    # SPEC S5.3 (posting order), S4.1, S2.4 (one completion each), S15.1 (a cancelled
    # send's bytes never go out): four bursts, each posted in one loop callback.
    s, conn = connect(provider, listener)
    routines = Routines()
    expected = bytearray()
    posted: list[tuple[WSAOVERLAPPED, int]] = []  # structure, and the count it reports

    def burst(sizes: list[int], cancel: int | None = None, pieces: int | None = None) -> None:
        err = INT()
        mine = []
        for i, size in enumerate(sizes):
            data = message(len(posted) + i, size)
            if i == pieces:  # one send in three buffers: still plain, still in the run
                third = len(data) // 3
                buffers = [WSABUF(third, data[:third]), WSABUF(third, data[third : 2 * third])]
                buffers.append(WSABUF(len(data) - 2 * third, data[2 * third :]))
            else:
                buffers = [WSABUF(len(data), data)]
            ov = WSAOVERLAPPED()
            rc = provider.WSPSend(s, buffers, len(buffers), None, 0, ov, routines, None, err)
            assert rc == 0 or err.value == w.WSA_IO_PENDING
            mine.append((ov, data))
        for i, (ov, data) in enumerate(mine):
            # Withdrawn before the iteration's end hands the queue on: aborted, not sent.
            if i == cancel:
                assert w.CancelIoEx(s, ov)
                posted.append((ov, -1))
            else:
                expected.extend(data)
                posted.append((ov, len(data)))

    # A run: sixty small sends, one of them in three buffers.
    run_in_loop(provider.loop, burst, [64 + i for i in range(60)], None, 20)
    # The same, with one withdrawn from the middle (the run outlives it uncounted).
    run_in_loop(provider.loop, burst, [100] * 40, 25)
    # Past one gather write (512 KiB): the queue looks at each and cuts there.
    run_in_loop(provider.loop, burst, [64 * 1024] * 12)
    # After all that, a run again.
    run_in_loop(provider.loop, burst, [10] * 30)
    assert recv_exact(conn, len(expected)) == bytes(expected)
    assert eventually(lambda: len(routines.calls) == len(posted))
    by_structure = {id(ov): (error, nbytes) for error, nbytes, ov in routines.calls}
    assert len(by_structure) == len(posted)  # each once
    for ov, size in posted:
        if size < 0:
            assert by_structure[id(ov)] == (w.WSA_OPERATION_ABORTED, 0)
        else:
            assert by_structure[id(ov)] == (0, size)
    assert [call[2] for call in routines.calls if call[0] == 0] == [
        ov for ov, size in posted if size >= 0
    ]  # and in posting order (S6.4)
    assert provider.socket_of(s).engine.pending.count == 0
    conn.settimeout(0.2)
    try:
        assert conn.recv(1) == b""  # nothing more than expected
    except TimeoutError:
        pass
