"""Where a ``TransmitFile``'s bytes come from (SPEC S14.5): head, file, tail, piece by piece.

The send queue asks for one piece at a time, and only when the send buffer has
room (see :mod:`wsp_async._core.sendqueue`), so the file is read as the connection
drains and never whole.  Reads are positional (``os.pread``): the operation reads
from the ``Offset``/``OffsetHigh`` it was given, and the file's own position is
the caller's, as with any overlapped read on Windows.

A read that fails ends the operation: the last piece is empty and ``error`` holds
the code it completes with.  A file shorter than announced ends early too, with
success and the bytes really sent (Windows reports what it transmitted).

The source reads through its own duplicate of the descriptor, closed once the last
piece is out (or when the source is dropped): as on Windows, where the operation
holds the file object, the program may close its handle meanwhile and the
transmission goes on -- and a descriptor number the OS reuses never makes it read
another file.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from ..errors import WSAErr, wsa_code_of

__all__ = ["DEFAULT_PER_SEND", "FileParts"]

#: The piece size when ``nNumberOfBytesPerSend`` is 0 (Windows' server default).
DEFAULT_PER_SEND = 65536


class FileParts:
    """Head buffer, ``count`` bytes of file ``fd`` from ``offset``, tail buffer."""

    __slots__ = (
        "__weakref__",
        "_release",
        "count",
        "disconnect",
        "error",
        "fd",
        "head",
        "offset",
        "per_send",
        "reuse",
        "sent",
        "tail",
    )

    def __init__(
        self, head: Any, fd: int | None, offset: int, count: int, per_send: int, tail: Any
    ) -> None:
        #: TF_DISCONNECT: once consumed, close the connection gracefully before completing;
        #: ``reuse`` (TF_REUSE_SOCKET): the socket is a fresh one again (S14.4).
        self.disconnect = False
        self.reuse = False
        self.head = head
        #: A duplicate of the caller's descriptor (see the module doc), or None.
        self.fd = os.dup(fd) if fd is not None else None
        self._release = weakref.finalize(self, os.close, self.fd) if self.fd is not None else None
        self.offset = offset
        #: File bytes still to read.
        self.count = count if fd is not None else 0
        self.per_send = per_send
        self.tail = tail
        self.sent = 0
        self.error = 0

    def take(self) -> tuple[Any, bool]:
        head = self.head
        if head is not None:
            self.head = None
            if len(head):
                return self._out(head)
        if self.count > 0 and not self.error:
            data = self._read()
            if data:
                return self._out(data)
        tail, self.tail = self.tail, None
        return self._out(tail if tail is not None else b"")

    def close(self) -> None:
        """Let go of the descriptor (the last piece is out, or the operation ended)."""
        if self._release is not None:
            self._release()

    def _tail_size(self) -> int:
        return len(self.tail) if self.tail is not None else 0

    def _read(self) -> bytes:
        assert self.fd is not None
        try:
            data = os.pread(self.fd, min(self.per_send, self.count), self.offset)
        except OSError as exc:
            self.error = wsa_code_of(exc, WSAErr.WSAEFAULT)
            self.count = 0
            self.tail = None  # a failed transmission sends nothing more
            return b""
        if not data:
            self.count = 0  # the file ended before the count announced
            return data
        self.offset += len(data)
        self.count -= len(data)
        return data

    def _out(self, data: Any) -> tuple[Any, bool]:
        """Hand out ``data``: the last piece when nothing of file or tail is left."""
        self.sent += len(data)
        last = self.head is None and self.count == 0 and not self._tail_size()
        if last:
            self.close()
        return data, last
