"""CPython's own ProactorEventLoop, unmodified, on Linux over wsp_async (SPEC S17.2).

The Proactor is pure Python: ``asyncio/windows_events.py`` in the running
interpreter's standard library.  What it lacks on Linux is the C module
``_overlapped``, a few ``_winapi`` and ``msvcrt`` names, and ``sys.platform ==
'win32'`` at the top of the file.  This module compiles the interpreter's own
``windows_events.py`` (and ``windows_utils.py``, which it imports) from their
source files, unmodified, and runs each in a fresh module namespace whose
``import`` statements find:

* ``_overlapped`` -> :mod:`wsp_async.overlapped`;
* ``_winapi`` and ``msvcrt`` -> the few names the socket paths use (below), every
  other name raising ``NotImplementedError`` (named pipes, subprocesses);
* ``sys`` -> a view of the real ``sys`` whose ``platform`` reads ``'win32'``;
* ``errno`` -> the real module plus Windows' ``WSAE*`` names;
* ``socket`` -> the real module, except that sockets the Proactor makes itself (the
  sockets ``AcceptEx`` accepts into) accept Windows' ``SO_UPDATE_ACCEPT_CONTEXT``;
* ``from . import windows_utils`` -> the copy loaded here.

Everything else -- ``asyncio.events``, ``proactor_events``, ``futures`` -- is the
process's own.  Nothing is added to ``sys.modules`` and nothing global changes, so
other code in the process is untouched; where the real ``_overlapped`` exists
(Windows), this module is not needed and loads nothing of its own
(:data:`ProactorEventLoop` is then the standard library's).

Use ``asyncio.Runner(loop_factory=wsp_async.proactor.ProactorEventLoop)``, or
:func:`new_event_loop`, or the pytest plugin (``pytest --asyncio-proactor``), or for a
whole program ``python -m wsp_async.proactor script.py [args]`` (:func:`main`: every loop
the program makes through the policy is the Proactor, as on Windows).
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import importlib.util
import socket as _socket
import sys
import types
from typing import TYPE_CHECKING, Any

from . import overlapped as _overlapped_face
from .errors import WSAErr

__all__ = [
    "IocpProactor",
    "ProactorEventLoop",
    "ProactorEventLoopPolicy",
    "load",
    "main",
    "msvcrt",
    "new_event_loop",
    "run_source",
    "win32_sys",
    "winapi",
]

#: ``_winapi`` names the socket paths of the Proactor use.
_WINAPI_NAMES = {
    "NULL": 0,
    "INFINITE": _overlapped_face.INFINITE,
    "WAIT_OBJECT_0": 0,
    "WAIT_TIMEOUT": _overlapped_face.WAIT_TIMEOUT,
    "CloseHandle": _overlapped_face.CloseHandle,
    "WaitForSingleObject": _overlapped_face.WaitForSingleObject,
}


class _Names(types.ModuleType):
    """A module of a few names; any other raises ``NotImplementedError`` when looked up."""

    def __init__(self, name: str, names: dict[str, Any], why: str) -> None:
        super().__init__(name)
        self.__dict__.update(names)
        self._why = why

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotImplementedError(f"{self.__name__}.{name}: {self._why}")


_WHY = "named pipes and subprocesses are not emulated by wsp_async (sockets only)"


def _get_osfhandle(fd: int) -> int:
    """msvcrt.get_osfhandle: on Linux a file's handle is its descriptor."""
    return fd


def _open_osfhandle(handle: int, flags: int) -> int:
    return handle


class _Errno(types.ModuleType):
    """The real ``errno`` with Windows' ``WSAE*`` names (its ``errno`` module has them)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("WSA") and name in WSAErr.__members__:
            return int(WSAErr[name])
        return getattr(errno, name)


class _Sys(types.ModuleType):
    """The real ``sys``, except that ``platform`` reads ``'win32'``."""

    platform = "win32"

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)


class _SocketMeta(type):
    """``isinstance(any_socket, socket.socket)`` stays true for the loaded module."""

    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, _socket.socket)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _socket.socket)


class _AcceptSocket(_socket.socket, metaclass=_SocketMeta):
    """A socket the Proactor makes: ``setsockopt`` takes Windows' context updates.

    After ``AcceptEx`` the Proactor calls ``setsockopt(SOL_SOCKET,
    SO_UPDATE_ACCEPT_CONTEXT, listener)``, which Linux does not know; the accepted
    connection already carries its context here, so the call has nothing to do.
    """

    # No slots of its own: a program's plain socket can take this class in place (see
    # _give_windows_answers), which needs the same layout.
    __slots__ = ()

    def setsockopt(self, level: int, optname: int, value: Any, optlen: Any = None) -> None:
        if level == _socket.SOL_SOCKET and optname == _overlapped_face.SO_UPDATE_ACCEPT_CONTEXT:
            return
        if optlen is None:
            super().setsockopt(level, optname, value)
        else:
            super().setsockopt(level, optname, value, optlen)

    def getpeername(self) -> Any:
        """Windows' answer on an accepted connection the peer has reset: the address
        AcceptEx reported (the Proactor asks for it right after AcceptEx completes)."""
        try:
            return super().getpeername()
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            peer = _overlapped_face.accepted_peer(self.fileno())
            if peer is None:
                raise
            return peer

    def shutdown(self, how: int) -> None:
        """Windows' answer after the connection has ended (S17.3): none.

        Linux refuses ``shutdown`` with ``ENOTCONN`` once the connection is gone -- after
        a reset, and after an orderly close in which this side's FIN went first -- where
        Windows accepts it.  The Proactor's transports call ``shutdown(SHUT_RDWR)`` just
        before they close their socket; the refusal would skip that close (the socket
        leaks) and let a later ``abort()`` call ``connection_lost`` a second time.
        """
        try:
            super().shutdown(how)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise


class _Socket(types.ModuleType):
    """The real ``socket`` module with :class:`_AcceptSocket` as its ``socket``."""

    socket = _AcceptSocket

    def __getattr__(self, name: str) -> Any:
        return getattr(_socket, name)


def run_source(name: str, importer: Any) -> types.ModuleType:
    """Compile the source file of module ``name`` (found by the running interpreter, not
    imported) and run it in a fresh namespace whose ``import`` statements go through
    ``importer``; the module is not added to ``sys.modules``."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or spec.loader is None:
        raise ImportError(f"this interpreter has no source for {name}")
    source = spec.loader.get_source(name)  # type: ignore[attr-defined]
    module = types.ModuleType(name)
    module.__file__ = spec.origin
    module.__package__ = name.rpartition(".")[0]
    namespace = dict(builtins.__dict__)
    namespace["__import__"] = importer
    module.__builtins__ = namespace  # type: ignore[attr-defined]
    exec(compile(source, spec.origin, "exec"), module.__dict__)
    return module


#: The ``sys`` the loaded modules import: ``platform`` reads ``'win32'``, the rest is real.
win32_sys = _Sys("sys")
#: The ``_winapi`` the loaded modules import (the names above; others raise).
winapi = _Names("_winapi", _WINAPI_NAMES, _WHY)
#: The ``msvcrt`` they import: a file's handle is its descriptor.
msvcrt = _Names(
    "msvcrt", {"get_osfhandle": _get_osfhandle, "open_osfhandle": _open_osfhandle}, _WHY
)


def _load() -> types.ModuleType:
    real_import = builtins.__import__
    fakes: dict[str, types.ModuleType] = {
        "_overlapped": _overlapped_face,
        "_winapi": winapi,
        "msvcrt": msvcrt,
        "sys": win32_sys,
        "errno": _Errno("errno"),
        "socket": _Socket("socket"),
    }
    siblings: dict[str, types.ModuleType] = {}

    def importer(
        name: str,
        globals: Any = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level == 0 and name in fakes:
            return fakes[name]
        if level == 1 and name == "" and fromlist and set(fromlist) <= set(siblings):
            return types.SimpleNamespace(**{n: siblings[n] for n in fromlist})
        if level == 1 and name == "" and fromlist and "windows_utils" in fromlist:
            raise ImportError("windows_utils is loaded before windows_events")
        return real_import(name, globals, locals, fromlist, level)

    siblings["windows_utils"] = run_source("asyncio.windows_utils", importer)
    module = run_source("asyncio.windows_events", importer)
    _answer_as_windows(module.ProactorEventLoop)
    _do_io_on_loop_thread(module.ProactorEventLoop)
    _refuse_subprocesses(module.ProactorEventLoop)
    return module


def _refuse_subprocesses(loop_class: Any) -> None:
    """``asyncio.create_subprocess_*`` on this (private) loop class raises
    ``NotImplementedError`` before anything starts.  Windows' Proactor runs a child
    through ``windows_utils.Popen`` and waits on its process handle; here the child
    was started by Linux's ``Popen`` and then the wait failed (``AttributeError:
    _handle``), leaving it running unwaited (aiohttp's ``test_subprocess_co``)."""

    async def _make_subprocess_transport(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(_WHY)

    loop_class._make_subprocess_transport = _make_subprocess_transport


def _give_windows_answers(sock: object) -> None:
    """Give a program's plain socket, as the Proactor makes a transport of it, the
    answers Windows gives to the calls the transport makes (``shutdown`` after the
    connection ended, on an unconnected datagram socket).  Only an exact
    ``socket.socket``: a program's own subclass keeps what it defined."""
    if type(sock) is _socket.socket:
        sock.__class__ = _AcceptSocket


def _answer_as_windows(loop_class: Any) -> None:
    """Every transport of this (private) loop class works on a socket that answers as
    on Windows.  The class is the copy loaded here; asyncio's own classes are untouched."""
    for name in ("_make_socket_transport", "_make_datagram_transport"):
        make = getattr(loop_class, name)

        def wrapped(self: Any, sock: Any, *args: Any, _make: Any = make, **kwargs: Any) -> Any:
            _give_windows_answers(sock)
            return _make(self, sock, *args, **kwargs)

        wrapped.__name__ = name
        wrapped.__doc__ = make.__doc__
        setattr(loop_class, name, wrapped)


def _do_io_on_loop_thread(loop_class: Any) -> None:
    """While a loop of this (private) class runs, its thread does the I/O of the
    operations it starts (SPEC S17.3): the provider's loop is lent to it and runs inside
    its ``GetQueuedCompletionStatus`` (see ``IoLoop.lend``).  A loop that runs while
    another thread holds the lease leaves the I/O to that thread's waits."""
    run = loop_class.run_forever

    def run_forever(self: Any) -> None:
        io = _overlapped_face.provider().io_loop
        lent = io.lend()
        try:
            run(self)
        finally:
            if lent:
                io.give_back()

    run_forever.__doc__ = run.__doc__
    loop_class.run_forever = run_forever


_loaded: types.ModuleType | None = None

if TYPE_CHECKING:  # the classes come from the loaded module (see __getattr__)
    ProactorEventLoop: Any
    IocpProactor: Any
    ProactorEventLoopPolicy: Any


def load() -> types.ModuleType:
    """The interpreter's ``asyncio.windows_events``: its own module on Windows, else the copy
    run here over :mod:`wsp_async.overlapped` (loaded once)."""
    global _loaded
    if _loaded is None:
        if sys.platform == "win32":
            import asyncio.windows_events as native

            _loaded = native
        else:
            _loaded = _load()
    return _loaded


def __getattr__(name: str) -> Any:
    if name in ("ProactorEventLoop", "IocpProactor"):
        return getattr(load(), name)
    if name == "ProactorEventLoopPolicy":
        return load().WindowsProactorEventLoopPolicy
    raise AttributeError(name)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new ProactorEventLoop."""
    return load().ProactorEventLoop()  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    """``python -m wsp_async.proactor script.py [args]`` (or ``-m module [args]``): run a
    program with Windows' ``WindowsProactorEventLoopPolicy`` set, so that
    ``asyncio.run`` and every loop made through the policy is the Proactor."""
    import runpy

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m wsp_async.proactor (script.py | -m module) [args...]")
        raise SystemExit(0 if args else 2)
    asyncio.set_event_loop_policy(load().WindowsProactorEventLoopPolicy())
    if args[0] == "-m" and len(args) > 1:
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    # Run as a script, this file is a second copy of the module: use the package's.
    from wsp_async.proactor import main as _main

    _main()
