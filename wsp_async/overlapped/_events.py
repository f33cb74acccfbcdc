"""Events and waits of the face: ``CreateEvent`` ... ``UnregisterWaitEx``."""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs

from .. import iocp, kernel32
from .._core.handles import new_handle
from ..constants import INFINITE
from ..events import WSAEVENT
from ..iocp import GetLastError
from ._descriptors import descriptors
from ._errors import (
    ERROR_INVALID_HANDLE,
    INVALID_HANDLE_VALUE,
    WAIT_TIMEOUT,
    windows_error,
)

__all__ = [
    "CloseHandle",
    "CreateEvent",
    "RegisterWaitWithQueue",
    "ResetEvent",
    "SetEvent",
    "UnregisterWait",
    "UnregisterWaitEx",
    "WaitForSingleObject",
    "events_by_handle",
]

# --- events and waits ----------------------------------------------------------------------
events_by_handle: dict[int, WSAEVENT] = {}


def CreateEvent(attributes: Any, manual_reset: bool, initial_state: bool, name: Any) -> int:
    event = kernel32.CreateEvent(attributes, manual_reset, initial_state, name)
    if event is None:
        raise windows_error(GetLastError())
    handle = new_handle()
    events_by_handle[handle] = event
    return handle


def _event(handle: int) -> WSAEVENT:
    event = events_by_handle.get(handle)
    if event is None:
        raise windows_error(ERROR_INVALID_HANDLE)
    return event


def SetEvent(handle: int) -> None:
    _event(handle).set()


def ResetEvent(handle: int) -> None:
    _event(handle).reset()


def WaitForSingleObject(handle: int, milliseconds: int) -> int:
    """``WAIT_OBJECT_0`` (0) or ``WAIT_TIMEOUT`` for an event handle of this module."""
    result = kernel32.WaitForSingleObject(_event(handle), milliseconds)
    return 0 if result == 0 else WAIT_TIMEOUT


def CloseHandle(handle: int) -> None:
    """Close a port (its descriptors are swept: emulated sockets of closed ones go) or an
    event of this module."""
    event = events_by_handle.pop(handle, None)
    if event is not None:
        event.close()
        return
    if not iocp.CloseHandle(handle):
        raise windows_error(GetLastError())
    descriptors.sweep(force=True)


@attrs.define(eq=False)
class _Wait:
    thread: threading.Thread
    cancelled: threading.Event


_waits: dict[int, _Wait] = {}


def RegisterWaitWithQueue(obj: int, port: int, address: int, timeout: int) -> int:
    """When event ``obj`` is set (or ``timeout`` ms pass), post a packet for ``address``."""
    event = _event(obj)
    cancelled = threading.Event()
    handle = new_handle()

    def wait() -> None:
        deadline = None if timeout == INFINITE else time.monotonic() + timeout / 1000
        while not cancelled.is_set():
            left = 50 if deadline is None else min(50, (deadline - time.monotonic()) * 1000)
            if kernel32.WaitForSingleObject(event, max(0, int(left))) == 0 or (
                deadline is not None and time.monotonic() >= deadline
            ):
                if not cancelled.is_set():
                    iocp.PostQueuedCompletionStatus(port, 0, 0, address)
                return

    thread = threading.Thread(target=wait, name="wsp_async-wait", daemon=True)
    _waits[handle] = _Wait(thread, cancelled)
    thread.start()
    return handle


def UnregisterWait(wait_handle: int) -> None:
    wait = _waits.pop(wait_handle, None)
    if wait is None:
        raise windows_error(ERROR_INVALID_HANDLE)
    wait.cancelled.set()


def UnregisterWaitEx(wait_handle: int, event: int) -> None:
    """Unregister; ``event`` (if any) is set once the wait's callback cannot run any more."""
    wait = _waits.pop(wait_handle, None)
    if wait is None:
        raise windows_error(ERROR_INVALID_HANDLE)
    wait.cancelled.set()
    if event and event != INVALID_HANDLE_VALUE:
        target = _event(event)

        def signal() -> None:
            wait.thread.join()
            target.set()

        threading.Thread(target=signal, daemon=True).start()
