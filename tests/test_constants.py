"""Constants and error codes carry their real Windows values (SPEC S1, S9)."""

from __future__ import annotations

import errno
import pickle

import pytest

import wsp_async as w
from wsp_async import WSAErr, WSAError


# SPEC S1: the values the contract lists, checked one by one.
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SOCKET_ERROR", -1),
        ("WSA_IO_PENDING", 997),
        ("WSA_IO_INCOMPLETE", 996),
        ("WSA_OPERATION_ABORTED", 995),
        ("WSAEFAULT", 10014),
        ("WSAEINVAL", 10022),
        ("WSAEWOULDBLOCK", 10035),
        ("WSAEINPROGRESS", 10036),
        ("WSAENOTSOCK", 10038),
        ("WSAEMSGSIZE", 10040),
        ("WSAEOPNOTSUPP", 10045),
        ("WSAEACCES", 10013),
        ("WSAENETDOWN", 10050),
        ("WSAENETRESET", 10052),
        ("WSAECONNABORTED", 10053),
        ("WSAECONNRESET", 10054),
        ("WSAENOBUFS", 10055),
        ("WSAENOTCONN", 10057),
        ("WSAESHUTDOWN", 10058),
        ("MSG_OOB", 0x1),
        ("MSG_PEEK", 0x2),
        ("MSG_DONTROUTE", 0x4),
        ("MSG_PARTIAL", 0x8000),
        ("WSA_FLAG_OVERLAPPED", 0x01),
        ("SD_RECEIVE", 0),
        ("SD_SEND", 1),
        ("SD_BOTH", 2),
        ("SOL_SOCKET", 0xFFFF),
        ("SO_SNDBUF", 0x1001),
        ("SO_BROADCAST", 0x0020),
        ("SO_MAX_MSG_SIZE", 0x2003),
        ("SIO_FLUSH", 0x28000004),
        ("FIONBIO", 0x8004667E),
        ("FIONREAD", 0x4004667F),
        ("AF_INET", 2),
        ("AF_INET6", 23),
        ("SOCK_STREAM", 1),
        ("SOCK_DGRAM", 2),
        ("WAIT_IO_COMPLETION", 0xC0),
        ("WSA_WAIT_EVENT_0", 0),
        ("WSA_WAIT_TIMEOUT", 0x102),
        ("WSA_INFINITE", 0xFFFFFFFF),
        ("STATUS_PENDING", 0x103),
        ("IPPROTO_TCP", 6),
        ("IPPROTO_UDP", 17),
        ("TCP_NODELAY", 1),
        ("SO_TYPE", 0x1008),
        ("SO_ERROR", 0x1007),
    ],
)
def test_constant_has_windows_value(name: str, value: int) -> None:  # SPEC S1
    assert getattr(w, name) == value


def test_every_wsae_code_is_an_enum_member_with_a_message() -> None:  # SPEC S1
    codes = [m for m in WSAErr if m.name.startswith("WSAE")]
    assert len(codes) >= 50
    for member in WSAErr:
        assert isinstance(member.message, str) and member.message.endswith(".")
        assert getattr(w, member.name) == member.value


def test_wsae_family_is_contiguous_where_winsock_defines_it() -> None:  # SPEC S1
    # WSAEWOULDBLOCK..WSAEREMOTE are 10035..10071 with no gap in winsock2.h.
    values = {int(m) for m in WSAErr}
    assert set(range(10035, 10072)) <= values


def test_wsaerror_is_an_oserror_with_winerror_and_message() -> None:  # SPEC S0
    err = WSAError(w.WSAECONNRESET)
    assert isinstance(err, OSError)
    assert err.winerror == 10054
    assert err.code is WSAErr.WSAECONNRESET
    assert "reset" in str(err)
    assert pickle.loads(pickle.dumps(err)).winerror == 10054


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("ECONNRESET", w.WSAECONNRESET),
        ("EPIPE", w.WSAECONNRESET),
        ("ENOTCONN", w.WSAENOTCONN),
        ("EMSGSIZE", w.WSAEMSGSIZE),
        ("EACCES", w.WSAEACCES),
        ("ENETDOWN", w.WSAENETDOWN),
        ("ENETUNREACH", w.WSAENETDOWN),
        ("ENETRESET", w.WSAENETRESET),
        ("ENOBUFS", w.WSAENOBUFS),
        ("ECONNABORTED", w.WSAECONNABORTED),
        ("ETIMEDOUT", w.WSAECONNABORTED),
        ("EAGAIN", w.WSAEWOULDBLOCK),
        ("EINVAL", w.WSAEINVAL),
    ],
)
def test_errno_maps_through_the_one_table(name: str, code: int) -> None:  # SPEC S9
    number = getattr(errno, name)
    assert w.ERRNO_TO_WSA[number] == code
    assert w.wsa_code_of(OSError(number, "x")) == code


def test_exception_without_errno_is_a_local_abort() -> None:  # SPEC S9
    assert w.wsa_code_of(RuntimeError("boom")) == w.WSAECONNABORTED
    assert w.wsa_code_of(WSAError(w.WSAENETRESET)) == w.WSAENETRESET


def test_win32_codes_have_one_home_and_the_constants_agree() -> None:
    # SPEC S16.2, S13: every Win32 code the emulator reports is a member of Win32Err with
    # its Windows value; the S13 constants and the NTSTATUS table name the same numbers.
    from wsp_async import ntstatus

    assert w.Win32Err.ERROR_CONNECTION_REFUSED == 1225 == w.ERROR_CONNECTION_REFUSED
    assert w.Win32Err.ERROR_NETNAME_DELETED == 64 == w.ERROR_NETNAME_DELETED
    for name in ("ERROR_INVALID_HANDLE", "ERROR_INVALID_PARAMETER", "ERROR_ABANDONED_WAIT_0",
                 "ERROR_OPERATION_ABORTED", "ERROR_IO_PENDING", "ERROR_NOT_FOUND",
                 "ERROR_PORT_UNREACHABLE", "ERROR_CONNECTION_ABORTED", "ERROR_MORE_DATA"):  # fmt: skip
        assert getattr(w, name) == w.Win32Err[name], name
    values = set(ntstatus.WIN32_BY_NTSTATUS.values())
    assert values <= {int(code) for code in w.Win32Err}
    assert all(type(v) is int for v in values)  # plain ints on the completion path
    assert all(code.message for code in w.Win32Err)
