"""Talk to a real peer that is not ours: an HTTP GET to Python's ``http.server`` (issue 4).

``python -m http.server`` runs in a child process and serves a file we write; the
request goes out through overlapped scatter/gather sends (request line, headers,
blank line as three WSABUFs) and the response comes back through overlapped
receives with completion routines.  The body must equal the file, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    SleepEx,
)


def start_server(root: str) -> tuple[subprocess.Popen[bytes], int]:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            root,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("http.server did not start")


def http_get(p: Provider, port: int, path: str) -> tuple[bytes, bytes]:
    """GET ``path`` with overlapped I/O; returns (headers, body)."""
    err = INT()
    s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    assert p.WSPConnect(s, ("127.0.0.1", port), None, None, None, None, None, err) == 0, err.value
    parts = [
        f"GET {path} HTTP/1.0\r\n".encode(),
        b"Host: 127.0.0.1\r\nUser-Agent: wsp_async\r\n",
        b"\r\n",
    ]
    sent = [0]
    p.WSPSend(
        s,
        [WSABUF(len(x), x) for x in parts],
        3,
        None,
        0,
        WSAOVERLAPPED(),
        lambda e, n, ov, f: sent.__setitem__(0, n),
        None,
        err,
    )
    response = bytearray()
    buffer = bytearray(65536)
    state = {"done": False}

    def received(error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        assert error == 0, error
        if n == 0:  # HTTP/1.0: the server closes after the body
            state["done"] = True
            return
        response.extend(buffer[:n])
        p.WSPRecv(
            s,
            [WSABUF(len(buffer), buffer)],
            1,
            None,
            DWORD(0),
            WSAOVERLAPPED(),
            received,
            None,
            INT(),
        )

    p.WSPRecv(
        s, [WSABUF(len(buffer), buffer)], 1, None, DWORD(0), WSAOVERLAPPED(), received, None, err
    )
    while not state["done"]:
        SleepEx(10_000, True)
    p.WSPCloseSocket(s, err)
    assert sent[0] == sum(map(len, parts))
    head, _, body = bytes(response).partition(b"\r\n\r\n")
    return head, body


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        content = os.urandom(300_000)
        pathlib.Path(root, "blob.bin").write_bytes(content)
        proc, port = start_server(root)
        try:
            with Provider() as p:
                head, body = http_get(p, port, "/blob.bin")
        finally:
            proc.kill()
            proc.wait()
    status = head.split(b"\r\n")[0].decode()
    assert status.endswith("200 OK"), status
    assert body == content, "body differs from the file"
    print(
        f"{status}: {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:16]}... matches the file"
    )


if __name__ == "__main__":
    main()
