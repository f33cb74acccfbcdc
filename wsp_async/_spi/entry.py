"""The S2 return protocol, written once: what every ``WSP*`` entry point returns and reports.

Every entry point of :class:`~wsp_async.provider.Provider` is one definition
under :func:`entry_point`.  Its body returns the result of a call that worked,
returns :data:`PENDING` for "started, completes later", or raises; the wrapper
turns those into what Winsock returns:

======================  =================  ==========================  ==================
the body                returns            ``lpErrno``                 ``WSAGetLastError``
======================  =================  ==========================  ==================
returns a value         that value         untouched                   0 (S1)
returns ``PENDING``     ``SOCKET_ERROR``   ``WSA_IO_PENDING`` (S2.2)    ``WSA_IO_PENDING``
raises ``WSAError``     the failure value  its code (S2.3)             its code
raises ``OSError``      the failure value  the errno table's code      that code
raises anything else    the failure value  ``WSAEINVAL``, logged once  ``WSAEINVAL``
======================  =================  ==========================  ==================

A call whose arguments do not fit the ``ws2spi.h`` signature (too few, too many, an
unknown keyword) is the caller's mistake, not ours: ``WSAEFAULT`` (an argument the call
needs is missing), with one warning line that says what the signature wants -- never
an "internal error" traceback.

An ``lpErrno`` that is not a box fails the call before anything starts
(``WSAEFAULT`` in ``WSAGetLastError``): there would be nowhere to say
``WSA_IO_PENDING``, and an operation nobody hears of must not start.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from ..constants import SOCKET_ERROR
from ..errors import WSAErr, WSAError, wsa_code_of
from ..events import LAST_ERROR, WSASetLastError
from ..structs import INT, is_box

__all__ = ["PENDING", "direct_entry", "entry_point", "extension", "report"]

log = logging.getLogger("wsp_async")

P = ParamSpec("P")
R = TypeVar("R")


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


#: What a body returns for "started, completes later" (S2.2): cheaper than raising,
#: on the path every pending operation takes.
PENDING: Any = _Pending()
IO_PENDING = int(WSAErr.WSA_IO_PENDING)


def report(lpErrno: object, exc: BaseException, misfit: str | None = None) -> int:
    """Turn an exception into a Winsock code in ``lpErrno`` and ``WSAGetLastError``;
    ``misfit``: the signature the arguments did not fit (a ``TypeError`` of the call)."""
    if isinstance(exc, WSAError):
        code = exc.winerror
    elif isinstance(exc, OSError):
        code = wsa_code_of(exc, WSAErr.WSAEINVAL)
    elif misfit is not None:
        log.warning("%s; the call is %s", exc, misfit)
        code = WSAErr.WSAEFAULT
    else:
        log.error("internal error inside an SPI call", exc_info=exc)
        code = WSAErr.WSAEINVAL
    try:
        lpErrno.value = code  # type: ignore[attr-defined]
    except Exception:
        pass
    WSASetLastError(code)
    return code


def entry_point(failure: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a ``WSP*`` body in the S2 protocol; ``failure`` is what it returns on error."""

    def wrap(body: Callable[P, R]) -> Callable[P, R]:
        return _general(failure, body)

    return wrap


def _general(failure: Any, body: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(body)
    def entry(*args: P.args, **kwargs: P.kwargs) -> R:
        lpErrno = args[-1] if not kwargs else kwargs.get("lpErrno", args[-1])
        if type(lpErrno) is not INT and not is_box(lpErrno):
            WSASetLastError(WSAErr.WSAEFAULT)
            return failure  # type: ignore[no-any-return]
        try:
            result = body(*args, **kwargs) if kwargs else body(*args)  # type: ignore[call-arg]
        except Exception as exc:
            report(lpErrno, exc, _misfit(body, args, kwargs, exc))
            return failure  # type: ignore[no-any-return]
        if result is PENDING:
            lpErrno.value = IO_PENDING  # type: ignore[attr-defined]
            LAST_ERROR.code = IO_PENDING
            return SOCKET_ERROR  # type: ignore[return-value]
        LAST_ERROR.code = 0
        return result

    return entry


#: The wrapper of :func:`direct_entry`, written for the parameters of the function it shows.
#: A wrapper taking ``*args, **kwargs`` packs a tuple and a dict on every call and
#: unpacks them into the body's; named parameters cost neither (about 50 ns a call on
#: CPython 3.11, issue 26).  Each defaults to a marker, so that a call missing one, or
#: passing more, is still answered by ``public`` itself (its misfit: WSAEFAULT).
_FIXED = """
def entry({params}, *more, **named):
    if {first} is _MISSING or lpErrno is _MISSING or more or named:
        return refit(({values},), more, named)
    if type(lpErrno) is not INT and not is_box(lpErrno):
        WSASetLastError(WSAEFAULT)
        return failure
    try:
        result = body({passed})
    except Exception as exc:
        report(lpErrno, exc)
        return failure
    if result is PENDING:
        lpErrno.value = IO_PENDING
        LAST_ERROR.code = IO_PENDING
        return SOCKET_ERROR
    LAST_ERROR.code = 0
    return result
"""

_MISSING: Any = object()


def direct_entry(failure: Any, body: Callable[..., Any], public: Callable[P, R]) -> Callable[P, R]:
    """The S2 protocol around ``body``, called with the arguments of ``public`` (whose
    name, documentation and signature the wrapper shows, and the misfit message names).

    A provider binds its ``WSPSend`` this way straight to the send body, whose parameters
    are ``WSPSend``'s: the method in between only passed its arguments on, and that frame
    was a twentieth of a send's Python (issue 26).  The wrapper is :data:`_FIXED`, written
    with ``public``'s own parameters (its last is ``lpErrno``, which ``body`` is not
    passed).  An argument left out but for the first and ``lpErrno`` reaches ``body`` as a
    marker that every check of S9 refuses as a bad pointer: ``WSAEFAULT``, as ``public``
    answers a misfit."""
    names = list(inspect.signature(public).parameters)
    assert names[-1] == "lpErrno"

    def refit(values: tuple[Any, ...], more: tuple[Any, ...], named: dict[str, Any]) -> Any:
        # The call as it was made, as far as binding tells: the values before the
        # first one missing by position, the others by name.
        cut = next((i for i, v in enumerate(values) if v is _MISSING), len(values))
        rest = {
            name: v for name, v in zip(names[cut:], values[cut:], strict=True) if v is not _MISSING
        }
        return public(*values[:cut], *more, **rest, **named)

    source = _FIXED.format(
        first=names[0],
        params=", ".join(f"{name}=_MISSING" for name in names),
        values=", ".join(names),
        passed=", ".join(names[:-1]),
    )
    namespace: dict[str, Any] = {
        "_MISSING": _MISSING, "refit": refit, "INT": INT, "is_box": is_box,
        "WSASetLastError": WSASetLastError, "WSAEFAULT": WSAErr.WSAEFAULT, "failure": failure,
        "body": body, "report": report, "PENDING": PENDING, "IO_PENDING": IO_PENDING,
        "LAST_ERROR": LAST_ERROR, "SOCKET_ERROR": SOCKET_ERROR,
    }  # fmt: skip
    exec(source, namespace)  # the text of _FIXED, with the parameters' names
    return functools.wraps(public)(namespace["entry"])


def extension(body: Callable[P, Any]) -> Callable[P, bool]:
    """Wrap an ``mswsock`` extension function: it returns a BOOL and leaves its error in
    ``WSAGetLastError()`` (S14.1) -- ``WSA_IO_PENDING`` when the operation started."""

    @functools.wraps(body)
    def call(*args: P.args, **kwargs: P.kwargs) -> bool:
        try:
            result = body(*args, **kwargs)
        except Exception as exc:
            report(None, exc, _misfit(body, args, kwargs, exc))
            return False
        if result is PENDING:
            LAST_ERROR.code = IO_PENDING
            return False
        LAST_ERROR.code = 0
        return True

    return call


def _misfit(
    body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> str | None:
    """``body``'s signature, as ``WSPSend(s, lpBuffers, ...)``, when ``exc`` is the
    arguments not fitting it (asked only once a call failed: nothing on the path of a
    call that works)."""
    if type(exc) is not TypeError:
        return None
    signature = inspect.signature(body)
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        names = [name for name in signature.parameters if name != "self"]
        return f"{body.__name__}({', '.join(names)})"
    return None
