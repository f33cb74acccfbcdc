"""CPython's own Proactor tests, run on Linux against ``wsp_async.proactor`` (SPEC S17).

``python -m wsp_async cpython-suite`` (``make proactor-suite``, part of ``make test``)
runs the test classes CPython runs against ``ProactorEventLoop`` on Windows, from
the running interpreter's own ``test.test_asyncio`` package:

* ``test_events``: ``EventLoopTestsMixin`` (CPython's ``ProactorEventLoopTests``);
* ``test_sock_lowlevel``: ``BaseSockTestsMixin``;
* ``test_sendfile``: ``SendfileTestsBase``;
* ``test_server``: ``BaseStartServer``;
* ``test_streams``: ``StreamTests``, with the Proactor as the event loop policy's loop;
* ``test_windows_events``: the socket tests of ``ProactorTests`` and the loop tests
  beside it, the module loaded as :mod:`wsp_async.proactor` loads the Proactor.

It prints pass / fail / skip per class and the pass rate of the tests that ran.
A test is *skipped* (not run) when CPython itself does not run it against the
Proactor on Windows -- its own Windows class overrides it, or its skip decorator
tests ``sys.platform`` or a POSIX-only name -- or when it needs what this project
does not emulate (named pipes, subprocesses); each is listed with its reason.  A
test known to fail is run and listed with its reason.  The command exits non-zero
when the pass rate falls under 90% or a test not known to fail fails.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import faulthandler
import importlib.util
import io
import sys
import time
import traceback
import types
import unittest
from collections.abc import Iterable
from typing import Any

#: Tests CPython does not run against the Proactor on Windows, by class and name.
NOT_ON_WINDOWS: dict[str, str] = {
    # CPython's ProactorEventLoopTests (test_events) overrides these with SkipTest.
    "test_reader_callback": "IocpEventLoop does not have add_reader() (CPython's own skip)",
    "test_reader_callback_cancel": "IocpEventLoop does not have add_reader() (CPython's own skip)",
    "test_writer_callback": "IocpEventLoop does not have add_writer() (CPython's own skip)",
    "test_writer_callback_cancel": "IocpEventLoop does not have add_writer() (CPython's own skip)",
    "test_remove_fds_after_closing": "IocpEventLoop does not have add_reader() (CPython's own skip)",
    # skipUnless(sys.platform != 'win32', "Don't support pipes for Windows")
    "test_read_pipe": "Don't support pipes for Windows (CPython skips it on win32)",
    "test_unclosed_pipe_transport": "Don't support pipes for Windows (CPython skips it on win32)",
    "test_write_pipe": "Don't support pipes for Windows (CPython skips it on win32)",
    "test_write_pipe_disconnect_on_close": "Don't support pipes for Windows (CPython skips it on win32)",
    "test_read_pty_output": "Don't support pipes for Windows (CPython skips it on win32)",
    "test_write_pty": "Don't support pipes for Windows (CPython skips it on win32)",
    "test_bidirectional_pty": "needs os.openpty(), which Windows lacks (CPython skips it there)",
    # skipUnless(hasattr(signal, 'SIGKILL' / 'SIGALRM')): Windows has neither.
    "test_add_signal_handler": "No SIGKILL on Windows (CPython skips it there)",
    "test_signal_handling_args": "No SIGALRM on Windows (CPython skips it there)",
    "test_signal_handling_while_selecting": "No SIGALRM on Windows (CPython skips it there)",
    # socket_helper.skip_unless_bind_unix_socket: Windows' socket module has no AF_UNIX.
    "test_create_unix_connection": "No UNIX sockets on Windows (CPython skips it there)",
    "test_create_ssl_unix_connection": "No UNIX sockets on Windows (CPython skips it there)",
    "test_create_unix_server": "No UNIX sockets on Windows (CPython skips it there)",
    "test_create_unix_server_path_socket_error": "No UNIX Sockets on Windows (CPython skips it there)",
    "test_create_unix_server_ssl": "No UNIX sockets on Windows (CPython skips it there)",
    "test_create_unix_server_ssl_verified": "No UNIX sockets on Windows (CPython skips it there)",
    "test_create_unix_server_ssl_verify_failed": "No UNIX sockets on Windows (CPython skips it there)",
    "test_start_unix_server_1": "No UNIX sockets on Windows (CPython skips it there)",
    "test_open_unix_connection": "No UNIX sockets on Windows (CPython skips it there)",
    "test_open_unix_connection_no_loop_ssl": "No UNIX sockets on Windows (CPython skips it there)",
    "test_open_unix_connection_error": "No UNIX sockets on Windows (CPython skips it there)",
    "test_start_unix_server": "No UNIX sockets on Windows (CPython skips it there)",
    "test_unix_sock_client_ops": "No UNIX sockets on Windows (CPython skips it there)",
    "test_create_connection_sock": "No UNIX sockets on Windows (CPython skips it there)",
    "test_sock_client_ops_with_unix": "No UNIX sockets on Windows (CPython skips it there)",
    # test_streams: skipIf(sys.platform == 'win32', "Don't have pipes")
    "test_read_all_from_pipe_reader": "Don't have pipes on Windows (CPython skips it there)",
    # test_sock_lowlevel: raises SkipTest on win32 for the Proactor.
    "test_sendto_blocking": "Not relevant to ProactorEventLoop (CPython's own skip on win32)",
    # test_sendfile: skipIf(sys.platform == 'win32', "UDP sockets are not supported")
    "test_sendfile_not_supported": "UDP sockets are not supported on Windows (CPython skips it)",
    # test_windows_events: named pipes and the selector loop are not this project's.
    "test_double_bind": "named pipes are not emulated (sockets only)",
    "test_pipe": "named pipes are not emulated (sockets only)",
    "test_connect_pipe_cancel": "named pipes are not emulated (sockets only)",
    "test_client_pipe_stat": "named pipes are not emulated (sockets only)",
    "test_selector_win_policy": "Windows' selector loop is not the Proactor",
}

#: Tests that run and are known to fail here, with the reason.
KNOWN_FAILURES: dict[str, str] = {
    "test_sendfile_close_peer_in_the_middle_of_receiving": (
        "asserts that file.tell() moved during the send; TransmitFile does not move the "
        "file pointer, as on Windows, where the test exempts the Proactor through a "
        "sys.platform check that cannot see this one (docs/proactor.md)"
    ),
}


def _test_package() -> types.ModuleType | None:
    try:
        return importlib.import_module("test.test_asyncio.utils")
    except ImportError:
        return None


def _tests(name: str) -> Any:
    return importlib.import_module(f"test.test_asyncio.{name}")


def _windows_events_tests() -> types.ModuleType:
    """``test_windows_events`` run over the emulated ``_overlapped`` (as the Proactor is)."""
    from .. import overlapped
    from .. import proactor as loader

    windows_events = loader.load()
    winapi = loader.winapi
    asyncio_view = types.ModuleType("asyncio")
    asyncio_view.__dict__.update(asyncio.__dict__)
    asyncio_view.ProactorEventLoop = windows_events.ProactorEventLoop  # type: ignore[attr-defined]
    asyncio_view.IocpProactor = windows_events.IocpProactor  # type: ignore[attr-defined]
    asyncio_view.WindowsProactorEventLoopPolicy = windows_events.WindowsProactorEventLoopPolicy  # type: ignore[attr-defined]
    asyncio_view.WindowsSelectorEventLoopPolicy = windows_events.WindowsSelectorEventLoopPolicy  # type: ignore[attr-defined]
    fakes: dict[str, Any] = {
        "sys": loader.win32_sys,
        "_overlapped": overlapped,
        "_winapi": winapi,
        "asyncio": asyncio_view,
    }
    real_import = builtins.__import__

    def importer(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:  # fmt: skip
        if level == 0 and name in fakes:
            if name == "asyncio" and fromlist and "windows_events" in fromlist:
                return types.SimpleNamespace(windows_events=windows_events)
            return fakes[name]
        return real_import(name, globals, locals, fromlist, level)

    return loader.run_source("test.test_asyncio.test_windows_events", importer)


def selected_classes() -> list[type[unittest.TestCase]]:
    """The test classes, each running CPython's tests on wsp_async's Proactor."""
    from .. import proactor

    test_events, test_sendfile, test_server = (
        _tests("test_events"),
        _tests("test_sendfile"),
        _tests("test_server"),
    )
    test_sock_lowlevel, test_streams, test_utils = (
        _tests("test_sock_lowlevel"),
        _tests("test_streams"),
        _tests("utils"),
    )

    def loop() -> asyncio.AbstractEventLoop:
        return proactor.ProactorEventLoop()  # type: ignore[no-any-return]

    classes: list[type[unittest.TestCase]] = [
        type(
            "ProactorEventLoopTests",
            (test_events.EventLoopTestsMixin, test_utils.TestCase),
            {"create_event_loop": lambda self: loop(), "__module__": "test_events"},
        ),
        type(
            "ProactorSockTests",
            (test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase),
            {"create_event_loop": lambda self: loop(), "__module__": "test_sock_lowlevel"},
        ),
        type(
            "ProactorSendfileTests",
            (test_sendfile.SendfileTestsBase, test_utils.TestCase),
            {"create_event_loop": lambda self: loop(), "__module__": "test_sendfile"},
        ),
        type(
            "ProactorStartServerTests",
            (test_server.BaseStartServer, unittest.TestCase),
            {"new_loop": lambda self: loop(), "__module__": "test_server"},
        ),
        type("StreamTests", (test_streams.StreamTests,), {"__module__": "test_streams"}),
    ]
    windows = _windows_events_tests()
    for name in ("ProactorLoopCtrlC", "ProactorMultithreading", "ProactorTests", "WinPolicyTests"):
        cls = getattr(windows, name)
        cls.__module__ = "test_windows_events"
        classes.append(cls)
    return classes


class _Result(unittest.TextTestResult):
    """Counts per class; known failures are told apart from unexpected ones."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_class: dict[str, dict[str, int]] = {}
        self.known: list[tuple[str, str]] = []
        self.unexpected: list[tuple[str, str]] = []

    def _count(self, test: unittest.TestCase, what: str) -> None:
        cls = type(test)
        key = f"{cls.__module__}.{cls.__name__}"
        row = self.per_class.setdefault(key, {"passed": 0, "failed": 0, "known": 0, "skipped": 0})
        row[what] += 1

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._count(test, "passed")

    def _failed(self, test: unittest.TestCase, err: Any) -> None:
        name = test.id().rsplit(".", 1)[-1]
        text = "".join(traceback.format_exception_only(err[0], err[1])).strip().splitlines()[-1]
        if name in KNOWN_FAILURES:
            self._count(test, "known")
            self.known.append((test.id(), KNOWN_FAILURES[name]))
        else:
            self._count(test, "failed")
            self.unexpected.append((test.id(), text))

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._failed(test, err)

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._failed(test, err)

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._count(test, "skipped")


def _skipping(suite: Iterable[Any]) -> unittest.TestSuite:
    """The suite with the tests CPython does not run on Windows replaced by skips."""
    out = unittest.TestSuite()
    test: Any
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            out.addTest(_skipping(test))
            continue
        name = test.id().rsplit(".", 1)[-1]
        reason = NOT_ON_WINDOWS.get(name)
        if reason is not None:
            setattr(test, name, unittest.skip(reason)(getattr(test, name)))
        out.addTest(test)
    return out


def run(pattern: str | None = None, verbose: bool = False) -> int:
    package = _test_package()
    if package is None:
        print("cpython-suite: skipped -- this interpreter ships without its 'test' package")
        return 0
    from .. import overlapped, proactor

    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in selected_classes():
        tests: Any = loader.loadTestsFromTestCase(cls)
        if pattern:
            tests = unittest.TestSuite(t for t in tests if pattern in t.id())
        suite.addTest(tests)
    suite = _skipping(suite)
    overlapped.provider()  # its I/O thread starts now, not inside the first test
    stream = sys.stdout if verbose else io.StringIO()
    runner = unittest.TextTestRunner(
        stream=stream, verbosity=2 if verbose else 0, resultclass=_Result
    )
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(proactor.ProactorEventLoopPolicy())
    started = time.monotonic()
    try:
        result = runner.run(suite)
    finally:
        asyncio.set_event_loop_policy(policy)
    assert isinstance(result, _Result)
    took = time.monotonic() - started
    print(f"CPython {sys.version.split()[0]} Proactor tests on wsp_async ({took:.0f} s)")
    print(f"{'class':<52}{'passed':>8}{'failed':>8}{'known':>7}{'skipped':>9}")
    totals = {"passed": 0, "failed": 0, "known": 0, "skipped": 0}
    for key, row in sorted(result.per_class.items()):
        print(f"{key:<52}{row['passed']:>8}{row['failed']:>8}{row['known']:>7}{row['skipped']:>9}")
        for what in totals:
            totals[what] += row[what]
    ran = totals["passed"] + totals["failed"] + totals["known"]
    rate = totals["passed"] / ran if ran else 0.0
    print(
        f"{'total':<52}{totals['passed']:>8}{totals['failed']:>8}{totals['known']:>7}"
        f"{totals['skipped']:>9}"
    )
    print(f"pass rate of the tests that ran: {100 * rate:.1f}% ({totals['passed']}/{ran})")
    if result.skipped:
        print("skipped:")
        for test, reason in result.skipped:
            print(f"  {test.id()}: {reason}")
    for test_id, reason in result.known:
        print(f"known failure: {test_id}: {reason}")
    for test_id, text in result.unexpected:
        print(f"FAILED: {test_id}: {text}")
    return 0 if rate >= 0.9 and not result.unexpected else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsp_async cpython-suite", description=__doc__)
    parser.add_argument("-k", dest="pattern", help="only tests whose id contains this")
    parser.add_argument("-v", dest="verbose", action="store_true", help="unittest's verbose output")
    parser.add_argument(
        "--hang-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="a run still going after this long prints every thread's stack and exits 1 "
        "(a hung test must fail, not stall its caller; default 600)",
    )
    args = parser.parse_args(argv)
    faulthandler.dump_traceback_later(args.hang_after, exit=True)
    try:
        return run(args.pattern, args.verbose)
    finally:
        faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    raise SystemExit(main())
