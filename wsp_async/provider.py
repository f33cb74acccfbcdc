"""The provider: the SPI face (``WSPSend`` and friends) over one I/O loop (SPEC S1-S10).

Every ``WSP*`` method keeps the ``ws2spi.h`` name and parameter order, returns
``0``/``SOCKET_ERROR`` (or a handle, or a BOOL) and reports its error through the
``lpErrno`` box -- never by raising (S0).  Each is safe to call from any thread,
including from inside completion routines (S6.5).

Where things are: the entry points in :mod:`wsp_async._socketcalls` (socket life
cycle, ioctls, options), :mod:`wsp_async._sendcalls` and :mod:`wsp_async._recvcalls`;
what they share in :mod:`wsp_async._base` and :mod:`wsp_async._args`; the engine
behind them in :mod:`wsp_async._socket` (one emulated socket over a transport),
:mod:`wsp_async._sendqueue` and :mod:`wsp_async._recvqueue` (the I/O-free decisions).

Threads: the provider either owns its I/O loop (started in a daemon thread) or
is *embedded* in a running loop.  A call made on the I/O loop's thread acts at
once (the fast path); a call from another thread that must touch the transport
is queued to the loop (sends, receives: they pend) or waits for a round trip
(connect, accept, close, ioctl).  Blocking waits refuse to run on the loop's
thread (S7.3): they fail with ``WSAEWOULDBLOCK`` instead of deadlocking.
"""

from __future__ import annotations

from ._recvcalls import RecvCalls
from ._sendcalls import SendCalls
from ._socketcalls import SocketCalls

__all__ = ["Provider"]


class Provider(SocketCalls, SendCalls, RecvCalls):
    """A Winsock service provider emulated over asyncio transports (SPEC S1).

    ``Provider()`` starts its own I/O loop in a daemon thread (uvloop when it
    imports and ``use_uvloop`` is true); ``Provider(loop=running_loop)`` lives on
    the caller's loop.  Use it as a context manager (``with`` or ``async with``);
    closing it completes every pending operation with ``WSA_OPERATION_ABORTED``
    (S2.4) and closes every socket.

    Options: ``max_pending`` (outstanding overlapped operations per socket,
    default 10000, beyond which posts fail with ``WSAEWOULDBLOCK``),
    ``max_pending_bytes`` (their bytes, beyond which ``WSAENOBUFS``), ``debug``
    (the verifier of S12.3, with ``slow_routine`` its threshold in seconds for a
    routine that blocks its loop), ``tracer`` (a callable receiving trace records, S12.2).
    """
