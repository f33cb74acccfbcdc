"""Win32 event objects beside the WSA ones (SPEC S16.3), and cancellation (S15).

``CreateEvent`` makes manual- or auto-reset events; they are the same objects as
``WSACreateEvent``'s (so ``WSAWaitForMultipleEvents`` waits on them too), and the
``WaitFor*`` functions are the WSA waits under their kernel32 names, with the same
return values (``WAIT_OBJECT_0 + i``, ``WAIT_TIMEOUT``, ``WAIT_IO_COMPLETION``,
``WAIT_FAILED``) and the reason of a failure in ``GetLastError()``.  An auto-reset
event is reset by the wait it satisfies, so one ``SetEvent`` releases one waiter.

Named events live in this process only: a second ``CreateEvent`` with the same name
returns the same event with ``ERROR_ALREADY_EXISTS`` in ``GetLastError()``.
``CloseHandle`` (in :mod:`wsp_async.iocp`) closes events and completion ports.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

from . import apc
from ._completion.waits import wait_result
from ._core.handles import find_anywhere
from .constants import ERROR_INVALID_HANDLE, ERROR_NOT_FOUND, INFINITE, STATUS_PENDING
from .errors import Win32Err, WSAErr
from .events import LAST_ERROR, WSAEVENT, WSAWaitForMultipleEvents, refuse_on_loop_thread
from .ntstatus import ERROR_IO_INCOMPLETE, win32_of
from .structs import WSAOVERLAPPED, NoPortPacket, is_box, operation_of, store


def _fail(code: int) -> None:
    LAST_ERROR.code = code


__all__ = [
    "CancelIo",
    "CancelIoEx",
    "CreateEvent",
    "GetOverlappedResult",
    "ResetEvent",
    "SetEvent",
    "WaitForMultipleObjects",
    "WaitForMultipleObjectsEx",
    "WaitForSingleObject",
    "WaitForSingleObjectEx",
]

ERROR_ALREADY_EXISTS = int(Win32Err.ERROR_ALREADY_EXISTS)

_named: weakref.WeakValueDictionary[str, WSAEVENT] = weakref.WeakValueDictionary()
_named_lock = threading.Lock()


def CreateEvent(
    lpEventAttributes: object, bManualReset: bool, bInitialState: bool, lpName: object
) -> WSAEVENT | None:
    """A new event (or the existing one of that name in this process)."""
    if lpName is not None and not isinstance(lpName, str):
        LAST_ERROR.code = WSAErr.WSA_INVALID_PARAMETER
        return None
    if lpName is None:
        LAST_ERROR.code = 0
        return WSAEVENT(auto_reset=not bManualReset, signaled=bool(bInitialState))
    with _named_lock:
        existing = _named.get(lpName)
        if existing is not None and not existing.closed:
            LAST_ERROR.code = ERROR_ALREADY_EXISTS
            return existing
        event = WSAEVENT(auto_reset=not bManualReset, signaled=bool(bInitialState))
        _named[lpName] = event
    LAST_ERROR.code = 0
    return event


def _event_call(hEvent: object, set_it: bool) -> bool:
    if not isinstance(hEvent, WSAEVENT) or hEvent.closed:
        LAST_ERROR.code = WSAErr.WSA_INVALID_HANDLE
        return False
    return hEvent.set() if set_it else hEvent.reset()


def SetEvent(hEvent: object) -> bool:
    return _event_call(hEvent, True)


def ResetEvent(hEvent: object) -> bool:
    return _event_call(hEvent, False)


def WaitForMultipleObjectsEx(
    nCount: int,
    lpHandles: Sequence[WSAEVENT],
    bWaitAll: bool,
    dwMilliseconds: int,
    bAlertable: bool,
) -> int:
    """Wait for one (or all) of the events; alertable, run the thread's APCs (S6.3)."""
    return WSAWaitForMultipleEvents(nCount, lpHandles, bWaitAll, dwMilliseconds, bAlertable)


def WaitForMultipleObjects(
    nCount: int, lpHandles: Sequence[WSAEVENT], bWaitAll: bool, dwMilliseconds: int
) -> int:
    return WSAWaitForMultipleEvents(nCount, lpHandles, bWaitAll, dwMilliseconds, False)


def WaitForSingleObjectEx(hHandle: WSAEVENT, dwMilliseconds: int, bAlertable: bool) -> int:
    return WSAWaitForMultipleEvents(1, [hHandle], False, dwMilliseconds, bAlertable)


def WaitForSingleObject(hHandle: WSAEVENT, dwMilliseconds: int = INFINITE) -> int:
    return WSAWaitForMultipleEvents(1, [hHandle], False, dwMilliseconds, False)


def GetOverlappedResult(
    hFile: object, lpOverlapped: object, lpNumberOfBytesTransferred: object, bWait: object
) -> bool:
    """kernel32's view of an overlapped result (S16.2): the count, and the Win32 code of
    a failure in ``GetLastError()`` (``ERROR_NETNAME_DELETED`` for a reset, ...).

    Like Windows, it reads the structure only: a success status (any below
    0x80000000) is success; pending is ``ERROR_IO_INCOMPLETE`` unless ``bWait``, which
    waits for the operation (any provider's) or, for a structure no operation owns, for
    its event.  ``hFile`` is not consulted; it only matters on Windows when the
    structure has no event, and that wait would never end here (``ERROR_IO_INCOMPLETE``
    instead, as ``WSPGetOverlappedResult`` answers)."""
    if not isinstance(lpOverlapped, WSAOVERLAPPED) or not is_box(lpNumberOfBytesTransferred):
        _fail(WSAErr.WSA_INVALID_PARAMETER)
        return False
    status = _status(lpOverlapped)
    if status is None:
        return False
    if status == STATUS_PENDING:
        if not bWait:
            _fail(ERROR_IO_INCOMPLETE)
            return False
        if refuse_on_loop_thread("GetOverlappedResult(bWait=True)"):
            return False
        if operation_of(lpOverlapped) is not None:
            wait_result(lpOverlapped)
        else:
            hEvent = lpOverlapped.hEvent
            event = hEvent.event if isinstance(hEvent, NoPortPacket) else hEvent
            if not isinstance(event, WSAEVENT) or event.closed:
                _fail(ERROR_IO_INCOMPLETE)
                return False
            WSAWaitForMultipleEvents(1, [event], False, INFINITE, False)
        status = _status(lpOverlapped)
        if status is None:
            return False
        if status == STATUS_PENDING:
            status = 0  # the event was set: Windows reports success
    store(lpNumberOfBytesTransferred, lpOverlapped.InternalHigh)
    if status >= 0x80000000:  # warnings and errors; any other status is success
        _fail(win32_of(status))
        return False
    return True


def _status(ov: WSAOVERLAPPED) -> int | None:
    """``Internal`` as an int; None (and ERROR_INVALID_PARAMETER) if it holds no status."""
    status: object = ov.Internal  # typed int, but a program may put anything there
    if isinstance(status, int):
        return int(status)
    _fail(WSAErr.WSA_INVALID_PARAMETER)
    return None


def _cancel(hFile: object, which: Any, none_is_found: bool = False, op: Any = None) -> bool:
    sock: Any = find_anywhere(hFile)
    if sock is None or sock.run is None:
        _fail(ERROR_INVALID_HANDLE)
        return False
    found = sock.request_cancel(which, op)  # recorded, never waited for (S15.2)
    if found < 0 and not none_is_found:
        _fail(ERROR_NOT_FOUND)
        return False
    return True


def CancelIoEx(hFile: object, lpOverlapped: object) -> bool:
    """Cancel the operation of ``lpOverlapped`` on ``hFile`` (all of them with None), from
    any thread (S15.1).  Cancelled operations complete once, ``WSA_OPERATION_ABORTED``
    (routine, event or packet as usual); one already handed to the transport completes
    normally.  Nothing pending matched: False with ``ERROR_NOT_FOUND``."""
    if lpOverlapped is None:
        return _cancel(hFile, _any)
    op = operation_of(lpOverlapped) if isinstance(lpOverlapped, WSAOVERLAPPED) else None
    if op is None:
        if find_anywhere(hFile) is None:
            _fail(ERROR_INVALID_HANDLE)
        else:
            _fail(ERROR_NOT_FOUND)
        return False
    return _cancel(hFile, lambda candidate: candidate is op, op=op)


def CancelIo(hFile: object) -> bool:
    """Cancel the operations the calling thread issued on ``hFile`` (S15.1).  Nothing to
    cancel is still success (True), as on Windows (Wine's test_send_buffering_thread);
    only ``CancelIoEx`` reports ``ERROR_NOT_FOUND``."""
    me = apc.current_target()
    return _cancel(hFile, lambda op: op.issuer is me, none_is_found=True)


def _any(op: object) -> bool:
    return True
