"""A TransmitFile sender (SPEC S14.5): a header, a file and a trailer as one operation.

The sender makes a 4 MiB file, connects to a plain ``socket`` receiver (independent
code, in a thread), and posts one ``TransmitFile``: the head buffer carries a small
header with the file's length, the file follows from an offset given in the
``WSAOVERLAPPED``, the tail buffer carries its SHA-256.  The provider reads the file
in 64 KiB pieces as the connection drains, never whole, and closes the connection
gracefully afterwards (``TF_DISCONNECT``).  The receiver checks length and digest.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import tempfile
import threading

from wsp_async import (
    AF_INET,
    INT,
    SOCK_STREAM,
    TF_DISCONNECT,
    TRANSMIT_FILE_BUFFERS,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_PENDING,
    WSAOVERLAPPED,
    Provider,
    WSACreateEvent,
    WSAGetLastError,
    WSAWaitForMultipleEvents,
)

SIZE = 4 << 20
SKIP = 1000  # the file is sent from this offset (WSAOVERLAPPED.Offset)


def receive(server: socket.socket, result: list[str]) -> None:
    conn, _ = server.accept()
    with conn:
        data = bytearray()
        while chunk := conn.recv(1 << 20):
            data += chunk
    (length,) = struct.unpack_from("!Q", data)
    body, digest = data[8 : 8 + length], data[8 + length :]
    ok = len(body) == length and hashlib.sha256(body).digest() == digest
    result.append(
        f"received {length} file bytes between header and digest: {'ok' if ok else 'BAD'}"
    )


def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    result: list[str] = []
    receiver = threading.Thread(target=receive, args=(server, result))
    receiver.start()
    with tempfile.TemporaryFile() as f, Provider() as p:
        f.write(os.urandom(SIZE))
        f.flush()
        sent_part = os.pread(f.fileno(), SIZE, SKIP)
        head = struct.pack("!Q", len(sent_part))
        tail = hashlib.sha256(sent_part).digest()

        err = INT()
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        assert p.WSPConnect(s, server.getsockname(), None, None, None, None, None, err) == 0
        ov = WSAOVERLAPPED(Offset=SKIP, hEvent=WSACreateEvent())
        buffers = TRANSMIT_FILE_BUFFERS(head, len(head), tail, len(tail))
        ok = p.TransmitFile(s, f, 0, 0, ov, buffers, TF_DISCONNECT)
        assert ok or WSAGetLastError() == WSA_IO_PENDING
        assert WSAWaitForMultipleEvents(1, [ov.hEvent], False, 30_000, False) == 0
        assert ov.Internal == 0, ov
        print(f"TransmitFile: {ov.InternalHigh} bytes (header, file from offset {SKIP}, digest)")
        receiver.join(30)
        p.WSPCloseSocket(s, err)
    server.close()
    print(result[0])
    assert "ok" in result[0]


if __name__ == "__main__":
    main()
