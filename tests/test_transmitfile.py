"""TransmitFile (SPEC S14.5): head, file bytes from the overlapped's offset, tail, in order
with the socket's other sends, the file read as the connection drains.

Plain sockets are the peers on 127.0.0.1; both loops.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, TRANSMIT_FILE_BUFFERS, WSABUF, WSAOVERLAPPED

from .conftest import connect, make_socket, recv_all, recv_exact, stall


class Box:
    value: object = None


def gqcs(port: int, ms: int) -> tuple[bool, int, object, object, int]:
    n, key, ov = DWORD(), Box(), Box()
    ok = w.GetQueuedCompletionStatus(port, n, key, ov, ms)
    return ok, n.value, key.value, ov.value, w.GetLastError()


def pattern(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(size))


@pytest.fixture
def data_file() -> Iterator[tuple[int, bytes]]:
    """An open file of 1 MiB plus a few bytes, and its contents."""
    content = pattern((1 << 20) + 123)
    with tempfile.TemporaryFile() as f:
        f.write(content)
        f.flush()
        yield f.fileno(), content


def event_ov(offset: int = 0) -> WSAOVERLAPPED:
    return WSAOVERLAPPED(
        Offset=offset & 0xFFFFFFFF, OffsetHigh=offset >> 32, hEvent=w.WSACreateEvent()
    )


def wait(ov: WSAOVERLAPPED) -> None:
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 20_000, False) == 0


def send(p: w.Provider, s: int, data: bytes) -> WSAOVERLAPPED:
    ov = event_ov()
    rc = p.WSPSend(s, [WSABUF(len(data), data)], 1, DWORD(), 0, ov, None, None, INT())
    assert rc == 0 or w.WSAGetLastError() == w.WSA_IO_PENDING
    return ov


def test_head_file_and_tail_arrive_in_order_and_the_count_covers_all(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5: head, file, tail; the completion reports every byte.
    fd, content = data_file
    s, conn = connect(provider, listener)
    buffers = TRANSMIT_FILE_BUFFERS(b"HEAD:", 5, bytearray(b":TAIL"), 5)
    ov = event_ov()
    assert not provider.TransmitFile(s, fd, 0, 0, ov, buffers, 0)
    assert w.WSAGetLastError() == w.WSA_IO_PENDING
    received = recv_exact(conn, 5 + len(content) + 5)
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 5 + len(content) + 5)
    assert received == b"HEAD:" + content + b":TAIL"


def test_offset_and_count_choose_the_file_bytes(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5: from Offset/OffsetHigh, nNumberOfBytesToWrite of them, in pieces of
    # nNumberOfBytesPerSend; the file's own position is left alone.
    fd, content = data_file
    s, conn = connect(provider, listener)
    os.lseek(fd, 17, os.SEEK_SET)
    ov = event_ov(1000)
    provider.TransmitFile(s, fd, 70_000, 4096, ov, None, 0)
    assert recv_exact(conn, 70_000) == content[1000:71_000]
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 70_000)
    assert os.lseek(fd, 0, os.SEEK_CUR) == 17


def test_a_count_past_the_end_sends_what_the_file_has(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5: the file ends first; the completion reports what was sent.
    fd, content = data_file
    s, conn = connect(provider, listener)
    ov = event_ov(len(content) - 10)
    provider.TransmitFile(s, fd, 1000, 0, ov, TRANSMIT_FILE_BUFFERS(None, 0, b"!", 1), 0)
    assert recv_exact(conn, 11) == content[-10:] + b"!"
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 11)


def test_no_file_sends_the_buffers_alone(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.5: hFile NULL transmits the head and tail only.
    s, conn = connect(provider, listener)
    ov = event_ov()
    provider.TransmitFile(s, None, 0, 0, ov, TRANSMIT_FILE_BUFFERS(b"ab", 2, b"cd", 2), 0)
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 4)
    assert recv_exact(conn, 4) == b"abcd"


def test_ordered_with_the_sockets_other_sends_from_any_thread(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5, S5.3: a send posted after TransmitFile never lands inside it, and
    # completions come in order (S6.4).  TransmitFile is posted by a worker thread that
    # lives until it completes (S10.4 would cancel it at that thread's exit).
    fd, content = data_file
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    before = send(provider, s, b"<before>")
    ov = event_ov()
    posted = threading.Event()

    def worker() -> None:
        provider.TransmitFile(s, fd, 0, 0, ov, None, 0)
        posted.set()
        wait(ov)

    poster = threading.Thread(target=worker)
    poster.start()
    assert posted.wait(10)
    after = send(provider, s, b"<after>")
    expected = b"<before>" + content + b"<after>"
    assert recv_exact(conn, len(expected)) == expected
    poster.join(10)
    for each in (before, ov, after):
        wait(each)
        assert each.Internal == 0


def test_the_file_is_read_as_the_connection_drains(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.5: not read whole at the call -- bytes written to the file's end after the
    # call, while the peer does not read yet, are the bytes that arrive.
    size = 32 << 20
    with tempfile.TemporaryFile() as f:
        f.truncate(size)  # sparse: 32 MiB of zeros
        s, conn = connect(provider, listener)
        stall(provider, s, conn)
        ov = event_ov()
        provider.TransmitFile(s, f.fileno(), 0, 0, ov, None, 0)
        os.pwrite(f.fileno(), b"late-end", size - 8)
        received = recv_exact(conn, size)
        wait(ov)
    assert ov.InternalHigh == size
    assert received[-8:] == b"late-end"
    assert received.count(0) == size - 8


def test_tf_disconnect_ends_the_connection_after_the_bytes(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5 with S14.4: TF_DISCONNECT closes gracefully once everything went.
    fd, content = data_file
    s, conn = connect(provider, listener)
    ov = event_ov()
    provider.TransmitFile(s, fd, 5000, 0, ov, None, w.TF_DISCONNECT)
    assert recv_all(conn) == content[:5000]  # then the FIN
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 5000)


def test_tf_reuse_socket_gives_a_socket_connect_ex_takes_again(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5 with S14.4: once complete, the socket is fresh: bind it and ConnectEx.
    fd, content = data_file
    s, conn = connect(provider, listener)
    ov = event_ov()
    provider.TransmitFile(s, fd, 100, 0, ov, None, w.TF_DISCONNECT | w.TF_REUSE_SOCKET)
    assert recv_all(conn) == content[:100]
    wait(ov)
    assert ov.Internal == 0
    assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    again = event_ov()
    provider.ConnectEx(s, listener.getsockname(), None, None, 0, DWORD(), again)
    second, _ = listener.accept()
    with second:
        wait(again)
        assert again.Internal == 0


def test_a_port_gets_one_packet_with_the_whole_count(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5 with S13.2: one packet per started operation.
    fd, content = data_file
    s, conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    assert w.CreateIoCompletionPort(s, port, 42, 0) == port
    ov = WSAOVERLAPPED()
    provider.TransmitFile(s, fd, 0, 0, ov, TRANSMIT_FILE_BUFFERS(b"h", 1, None, 0), 0)
    assert recv_exact(conn, 1 + len(content)) == b"h" + content
    assert gqcs(port, 10_000)[:4] == (True, 1 + len(content), 42, ov)
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # exactly one
    w.CloseHandle(port)


def test_close_aborts_a_transmission_in_progress_once(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.5 with S10.2: closing the socket aborts it, exactly once.
    with tempfile.TemporaryFile() as f:
        f.truncate(64 << 20)
        s, conn = connect(provider, listener)
        stall(provider, s, conn)
        port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
        w.CreateIoCompletionPort(s, port, 7, 0)
        ov = WSAOVERLAPPED()
        provider.TransmitFile(s, f.fileno(), 0, 0, ov, None, 0)
        assert provider.WSPCloseSocket(s, INT()) == 0
        ok, count, key, which, error = gqcs(port, 10_000)
    assert (ok, count, key, which, error) == (False, 0, 7, ov, w.ERROR_OPERATION_ABORTED)
    assert w.wsa_of(ov.Internal) == w.WSA_OPERATION_ABORTED
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # exactly once
    w.CloseHandle(port)


def test_cancel_io_ex_aborts_one_not_started_and_none_of_its_bytes_go(
    provider, listener, data_file
):  # type: ignore[no-untyped-def]
    # SPEC S14.5 with S15.1: queued behind a stalled drain, it is withdrawn whole.
    fd, _content = data_file
    s, conn = connect(provider, listener)
    provider.inject(s, delay_drain=float("inf"))
    ov = event_ov()
    provider.TransmitFile(s, fd, 0, 0, ov, TRANSMIT_FILE_BUFFERS(b"never", 5, None, 0), 0)
    assert w.CancelIoEx(s, ov)
    wait(ov)
    assert w.wsa_of(ov.Internal) == w.WSA_OPERATION_ABORTED
    provider.inject(s, delay_drain=None)
    later = send(provider, s, b"later")
    assert recv_exact(conn, 5) == b"later"
    wait(later)


def test_one_partly_sent_is_on_its_way_and_completes_whole(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.5 with S15.1 and S10.3: once its first piece went, CancelIoEx and SIO_FLUSH
    # leave it (as a send handed to the transport), so the stream is never cut inside it.
    size = 16 << 20
    with tempfile.TemporaryFile() as f:
        f.truncate(size)
        s, conn = connect(provider, listener)
        stall(provider, s, conn)
        ov = event_ov()
        provider.TransmitFile(s, f.fileno(), 0, 0, ov, None, 0)
        assert conn.recv(1)  # it started
        assert w.CancelIoEx(s, ov)  # found, but on its way
        err = INT()
        assert (
            provider.WSPIoctl(s, w.SIO_FLUSH, None, 0, None, 0, DWORD(), None, None, None, err) == 0
        )
        after = send(provider, s, b"\xffend")
        received = recv_exact(conn, size - 1 + 4)
        wait(ov)
        wait(after)
    assert (ov.Internal, ov.InternalHigh) == (0, size)
    assert received[-4:] == b"\xffend" and received.count(0) == size - 1


def test_the_blocking_form_uses_and_moves_the_file_pointer(provider, listener, data_file):  # type: ignore[no-untyped-def]
    # SPEC S14.5: without a WSAOVERLAPPED it returns when done, from the file pointer.
    fd, content = data_file
    s, conn = connect(provider, listener)
    os.lseek(fd, 300, os.SEEK_SET)
    assert provider.TransmitFile(s, fd, 1000, 0, None, None, 0)
    assert recv_exact(conn, 1000) == content[300:1300]
    assert os.lseek(fd, 0, os.SEEK_CUR) == 1300


def test_a_file_that_cannot_be_read_completes_with_an_error(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.5, S2.4: a read error ends it with an error, once; nothing is lost.  (A
    # regular file opened for writing only: every read of it fails.)
    with tempfile.NamedTemporaryFile() as named:
        named.write(b"x" * 4096)
        named.flush()
        fd = os.open(named.name, os.O_WRONLY)
        try:
            s, _conn = connect(provider, listener)
            ov = event_ov()
            provider.TransmitFile(s, fd, 0, 0, ov, None, 0)
            wait(ov)
        finally:
            os.close(fd)
    assert ov.Internal != 0 and ov.InternalHigh == 0


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"dwFlags": 0x4000}, w.WSAEINVAL),
        ({"dwFlags": w.TF_REUSE_SOCKET}, w.WSAEINVAL),
        ({"nNumberOfBytesToWrite": -1}, w.WSAEINVAL),
        ({"nNumberOfBytesToWrite": 1.5}, w.WSAEFAULT),
        ({"lpTransmitBuffers": [b"head"]}, w.WSAEFAULT),
        ({"lpTransmitBuffers": TRANSMIT_FILE_BUFFERS(b"ab", 3)}, w.WSAEFAULT),
        ({"hFile": "file.txt"}, w.WSA_INVALID_HANDLE),
        ({"hFile": 1 << 20}, w.WSA_INVALID_HANDLE),
    ],
)
def test_bad_arguments_fail_and_leave_the_structure(provider, listener, data_file, args, code):  # type: ignore[no-untyped-def]
    # SPEC S9, S2.3: a clear error, nothing started.
    fd, _content = data_file
    s, conn = connect(provider, listener)
    ov = event_ov()
    call = {
        "hFile": fd,
        "nNumberOfBytesToWrite": 0,
        "nNumberOfBytesPerSend": 0,
        "lpTransmitBuffers": None,
        "dwFlags": 0,
    } | args
    ok = provider.TransmitFile(
        s, call["hFile"], call["nNumberOfBytesToWrite"], call["nNumberOfBytesPerSend"], ov,
        call["lpTransmitBuffers"], call["dwFlags"],
    )  # fmt: skip
    assert not ok and w.WSAGetLastError() == code
    assert (ov.Internal, ov.InternalHigh) == (0, 0)
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 0, False) == w.WSA_WAIT_TIMEOUT
    send(provider, s, b"x")
    assert recv_exact(conn, 1) == b"x"  # nothing of the refused call went out


def test_an_unconnected_or_datagram_socket_is_not_connected(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.5 with S9: TransmitFile needs a connected stream socket.
    for kind in (w.SOCK_STREAM, w.SOCK_DGRAM):
        s = make_socket(provider, kind)
        assert not provider.TransmitFile(s, None, 0, 0, event_ov(), None, 0)
        assert w.WSAGetLastError() == w.WSAENOTCONN
    assert not provider.TransmitFile(12345, None, 0, 0, event_ov(), None, 0)
    assert w.WSAGetLastError() == w.WSAENOTSOCK


def test_the_guid_hands_out_transmit_file(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.1: WSAID_TRANSMITFILE.
    s = make_socket(provider)
    out = Box()
    code = w.SIO_GET_EXTENSION_FUNCTION_POINTER
    rc = provider.WSPIoctl(
        s, code, w.WSAID_TRANSMITFILE, 16, out, 8, DWORD(), None, None, None, INT()
    )
    assert rc == 0 and out.value == provider.TransmitFile


def test_the_program_may_close_its_file_while_the_transmission_goes_on(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.5 (a hostile user): as on Windows, where the operation holds the file, the
    # program's handle may be closed meanwhile -- every byte still goes, the packet comes
    # once, and a reused descriptor number is never read from.
    size = 8 << 20
    with tempfile.TemporaryFile() as f:
        f.write(pattern(size, 3))
        f.flush()
        fd = os.dup(f.fileno())
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    w.CreateIoCompletionPort(s, port, 3, 0)
    ov = WSAOVERLAPPED()
    provider.TransmitFile(s, fd, 0, 0, ov, None, 0)
    first = conn.recv(1)
    assert first  # started
    os.close(fd)
    with tempfile.TemporaryFile() as other:  # likely takes the number just closed
        other.write(b"\xee" * size)
        other.flush()
        received = first + recv_exact(conn, size - 1)
    assert received == pattern(size, 3)
    assert gqcs(port, 10_000)[:4] == (True, size, 3, ov)
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT
    w.CloseHandle(port)


@pytest.mark.parametrize(
    "offset",
    [{"Offset": 1.5}, {"OffsetHigh": -1}, {"Offset": 1 << 32}],
)
def test_a_bad_offset_is_refused_before_anything_starts(provider, listener, data_file, offset):  # type: ignore[no-untyped-def]
    # SPEC S9, S2.3: floats and out-of-range offsets fail at the call.
    fd, _content = data_file
    s, _conn = connect(provider, listener)
    ov = WSAOVERLAPPED(**offset)
    assert not provider.TransmitFile(s, fd, 0, 0, ov, None, 0)
    assert w.WSAGetLastError() in (w.WSAEFAULT, w.WSAEINVAL)
    assert (ov.Internal, ov.InternalHigh) == (0, 0)


@pytest.mark.parametrize("size", [4 << 20, 16 << 20], ids=["4 MiB", "16 MiB"])
def test_its_socket_is_fresh_when_its_completion_is_recorded(provider, listener, size):  # type: ignore[no-untyped-def]
    # SPEC S14.5, S12.2: with TF_DISCONNECT | TF_REUSE_SOCKET the disconnect comes before
    # the completion, so that the socket may be reused once its notice arrives -- also
    # when the last bytes are consumed as the connection drains (the transport's room
    # callback), not only in the loop's own hand-on: there the disconnect was put off
    # and the completion went first.  Seen at the completion's own trace record, on the
    # loop, before anything else runs: the socket has no name any more (fresh, unbound).
    s, conn = connect(provider, listener)
    stall(provider, s, conn)  # small kernel buffers: the transport holds the rest
    at_completion: list[int] = []

    def tracer(record: w.TraceRecord) -> None:
        if record.event == "complete" and record.kind == "send" and record.socket == s:
            err = INT()
            provider.WSPGetSockName(s, DWORD(), None, err)
            at_completion.append(err.value)

    with tempfile.TemporaryFile() as f:
        f.truncate(size)
        provider.tracer = tracer
        ov = event_ov()
        flags = w.TF_DISCONNECT | w.TF_REUSE_SOCKET
        rc = provider.TransmitFile(s, f.fileno(), 0, 0, ov, None, flags)
        assert rc or w.WSAGetLastError() == w.WSA_IO_PENDING
        received = recv_all(conn)
        wait(ov)
    provider.tracer = None
    assert len(received) == size and (ov.Internal, ov.InternalHigh) == (0, size)
    assert at_completion == [w.WSAEINVAL]  # not bound: already made fresh
