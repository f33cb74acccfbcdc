"""Winsock error codes, the :class:`WSAError` exception, and the errno table.

Rules of this module:

* Every Winsock error code has exactly one home: a member of :class:`WSAErr`,
  with its real Windows value and an English message.
* Every translation from a host ``errno`` to a Winsock code goes through
  :data:`ERRNO_TO_WSA` (SPEC S9: "OS errno values map to these codes in one
  table in the code, not in scattered branches").  Code that catches an
  ``OSError`` calls :func:`wsa_code_of`; nothing else looks at ``errno``.
"""

from __future__ import annotations

import enum
import errno as _errno
from typing import Final


class _Coded(enum.IntEnum):
    """An error code with its Windows value and English ``.message`` (members are
    written ``NAME = value, message``)."""

    message: str

    def __new__(cls, value: int, message: str) -> _Coded:
        member = int.__new__(cls, value)
        member._value_ = value
        member.message = message
        return member


class WSAErr(_Coded):
    """A Winsock error or overlapped status code; ``.message`` is its English text."""

    # Overlapped status codes shared with the Win32 error space.
    WSA_INVALID_HANDLE = 6, "The specified event object handle is invalid."
    WSA_NOT_ENOUGH_MEMORY = 8, "Insufficient memory available."
    WSA_INVALID_PARAMETER = 87, "One or more parameters are invalid."
    WSA_OPERATION_ABORTED = (
        995,
        "The overlapped operation was aborted (socket closed, SIO_FLUSH, or its thread exited).",
    )
    WSA_IO_INCOMPLETE = 996, "The overlapped I/O event object is not in a signaled state."
    WSA_IO_PENDING = 997, "Overlapped operations will complete later."

    # The WSAE* family.
    WSAEINTR = 10004, "A blocking operation was interrupted."
    WSAEBADF = 10009, "The file handle supplied is not valid."
    WSAEACCES = 10013, "Permission denied (for example, a broadcast address without SO_BROADCAST)."
    WSAEFAULT = 10014, "Bad address: a pointer argument is not valid."
    WSAEINVAL = 10022, "Invalid argument."
    WSAEMFILE = 10024, "Too many open sockets."
    WSAEWOULDBLOCK = 10035, "Resource temporarily unavailable; the operation would block."
    WSAEINPROGRESS = 10036, "A blocking operation is currently executing."
    WSAEALREADY = 10037, "An operation is already in progress on this non-blocking socket."
    WSAENOTSOCK = 10038, "Socket operation on something that is not a socket."
    WSAEDESTADDRREQ = 10039, "A required destination address was omitted."
    WSAEMSGSIZE = 10040, "The message is larger than the maximum the transport supports."
    WSAEPROTOTYPE = 10041, "Protocol wrong type for socket."
    WSAENOPROTOOPT = 10042, "Bad protocol option."
    WSAEPROTONOSUPPORT = 10043, "Protocol not supported."
    WSAESOCKTNOSUPPORT = 10044, "Socket type not supported."
    WSAEOPNOTSUPP = 10045, "Operation not supported on this socket."
    WSAEPFNOSUPPORT = 10046, "Protocol family not supported."
    WSAEAFNOSUPPORT = 10047, "Address family not supported by protocol family."
    WSAEADDRINUSE = 10048, "Address already in use."
    WSAEADDRNOTAVAIL = 10049, "Cannot assign requested address."
    WSAENETDOWN = 10050, "The network subsystem has failed."
    WSAENETUNREACH = 10051, "The network is unreachable."
    WSAENETRESET = 10052, "The connection was broken by a network reset."
    WSAECONNABORTED = 10053, "The connection was aborted locally (timeout or other failure)."
    WSAECONNRESET = 10054, "The connection was reset by the peer."
    WSAENOBUFS = 10055, "No buffer space is available."
    WSAEISCONN = 10056, "The socket is already connected."
    WSAENOTCONN = 10057, "The socket is not connected."
    WSAESHUTDOWN = 10058, "Cannot send after the socket has been shut down."
    WSAETOOMANYREFS = 10059, "Too many references."
    WSAETIMEDOUT = 10060, "The connection timed out."
    WSAECONNREFUSED = 10061, "The connection was refused."
    WSAELOOP = 10062, "Cannot translate name."
    WSAENAMETOOLONG = 10063, "Name too long."
    WSAEHOSTDOWN = 10064, "The host is down."
    WSAEHOSTUNREACH = 10065, "No route to host."
    WSAENOTEMPTY = 10066, "Directory not empty."
    WSAEPROCLIM = 10067, "Too many processes."
    WSAEUSERS = 10068, "User quota exceeded."
    WSAEDQUOT = 10069, "Disk quota exceeded."
    WSAESTALE = 10070, "Stale file handle reference."
    WSAEREMOTE = 10071, "Item is remote."
    WSASYSNOTREADY = 10091, "The network subsystem is unavailable."
    WSAVERNOTSUPPORTED = 10092, "Winsock version out of range."
    WSANOTINITIALISED = 10093, "Successful WSAStartup not yet performed."
    WSAEDISCON = 10101, "Graceful shutdown in progress."
    WSAENOMORE = 10102, "No more results."
    WSAECANCELLED = 10103, "The call has been canceled."
    WSAEINVALIDPROCTABLE = 10104, "The procedure call table is invalid."
    WSAEINVALIDPROVIDER = 10105, "The service provider is invalid."
    WSAEPROVIDERFAILEDINIT = 10106, "The service provider failed to initialize."
    WSASYSCALLFAILURE = 10107, "A system call that should never fail has failed."
    WSASERVICE_NOT_FOUND = 10108, "No such service is known."
    WSATYPE_NOT_FOUND = 10109, "The class type was not found."
    WSA_E_NO_MORE = 10110, "No more results."
    WSA_E_CANCELLED = 10111, "The call was canceled."
    WSAEREFUSED = 10112, "The database query was refused."
    WSAHOST_NOT_FOUND = 11001, "No such host is known."
    WSATRY_AGAIN = 11002, "Nonauthoritative host not found; try again."
    WSANO_RECOVERY = 11003, "A nonrecoverable error occurred during a database lookup."
    WSANO_DATA = 11004, "The requested name is valid, but no data of the requested type was found."
    WSA_QOS_RECEIVERS = 11005, "At least one QoS reserve has arrived."
    WSA_QOS_SENDERS = 11006, "At least one QoS send path has arrived."
    WSA_QOS_NO_SENDERS = 11007, "There are no QoS senders."
    WSA_QOS_NO_RECEIVERS = 11008, "There are no QoS receivers."
    WSA_QOS_REQUEST_CONFIRMED = 11009, "The QoS reserve request has been confirmed."
    WSA_QOS_ADMISSION_FAILURE = 11010, "A QoS error occurred due to lack of resources."
    WSA_QOS_POLICY_FAILURE = 11011, "The QoS request was rejected by policy."
    WSA_QOS_BAD_STYLE = 11012, "An unknown or conflicting QoS style was encountered."
    WSA_QOS_BAD_OBJECT = (
        11013,
        "A problem was found with a QoS filter spec or provider-specific buffer.",
    )
    WSA_QOS_TRAFFIC_CTRL_ERROR = 11014, "An error with the underlying QoS traffic control occurred."
    WSA_QOS_GENERIC_ERROR = 11015, "A general QoS error."
    WSA_QOS_ESERVICETYPE = 11016, "An invalid or unrecognized QoS service type was found."
    WSA_QOS_EFLOWSPEC = 11017, "An invalid or inconsistent QoS flowspec was found."
    WSA_QOS_EPROVSPECBUF = 11018, "An invalid QoS provider-specific buffer."
    WSA_QOS_EFILTERSTYLE = 11019, "An invalid QoS filter style was used."
    WSA_QOS_EFILTERTYPE = 11020, "An invalid QoS filter type was used."
    WSA_QOS_EFILTERCOUNT = 11021, "An incorrect number of QoS filter specs was specified."
    WSA_QOS_EOBJLENGTH = 11022, "An object with an invalid QoS ObjectLength field was specified."
    WSA_QOS_EFLOWCOUNT = 11023, "An incorrect number of QoS flow descriptors was specified."
    WSA_QOS_EUNKOWNPSOBJ = 11024, "An unrecognized QoS object was found."
    WSA_QOS_EPOLICYOBJ = 11025, "An invalid QoS policy object was found."
    WSA_QOS_EFLOWDESC = 11026, "An invalid QoS flow descriptor was found."
    WSA_QOS_EPSFLOWSPEC = 11027, "An invalid or inconsistent QoS provider-specific flowspec."
    WSA_QOS_EPSFILTERSPEC = 11028, "An invalid QoS provider-specific filter spec."
    WSA_QOS_ESDMODEOBJ = 11029, "An invalid QoS shape discard mode object."
    WSA_QOS_ESHAPERATEOBJ = 11030, "An invalid QoS shaping rate object."
    WSA_QOS_RESERVED_PETYPE = 11031, "A reserved policy QoS element type was found."


_BY_VALUE: Final[dict[int, WSAErr]] = {int(member): member for member in WSAErr}

# Module-level names for every code, so that `from wsp_async import WSAEFAULT` type-checks.
# fmt: off
WSA_INVALID_HANDLE: Final = WSAErr.WSA_INVALID_HANDLE
WSA_NOT_ENOUGH_MEMORY: Final = WSAErr.WSA_NOT_ENOUGH_MEMORY
WSA_INVALID_PARAMETER: Final = WSAErr.WSA_INVALID_PARAMETER
WSA_OPERATION_ABORTED: Final = WSAErr.WSA_OPERATION_ABORTED
WSA_IO_INCOMPLETE: Final = WSAErr.WSA_IO_INCOMPLETE
WSA_IO_PENDING: Final = WSAErr.WSA_IO_PENDING
WSAEINTR: Final = WSAErr.WSAEINTR
WSAEBADF: Final = WSAErr.WSAEBADF
WSAEACCES: Final = WSAErr.WSAEACCES
WSAEFAULT: Final = WSAErr.WSAEFAULT
WSAEINVAL: Final = WSAErr.WSAEINVAL
WSAEMFILE: Final = WSAErr.WSAEMFILE
WSAEWOULDBLOCK: Final = WSAErr.WSAEWOULDBLOCK
WSAEINPROGRESS: Final = WSAErr.WSAEINPROGRESS
WSAEALREADY: Final = WSAErr.WSAEALREADY
WSAENOTSOCK: Final = WSAErr.WSAENOTSOCK
WSAEDESTADDRREQ: Final = WSAErr.WSAEDESTADDRREQ
WSAEMSGSIZE: Final = WSAErr.WSAEMSGSIZE
WSAEPROTOTYPE: Final = WSAErr.WSAEPROTOTYPE
WSAENOPROTOOPT: Final = WSAErr.WSAENOPROTOOPT
WSAEPROTONOSUPPORT: Final = WSAErr.WSAEPROTONOSUPPORT
WSAESOCKTNOSUPPORT: Final = WSAErr.WSAESOCKTNOSUPPORT
WSAEOPNOTSUPP: Final = WSAErr.WSAEOPNOTSUPP
WSAEPFNOSUPPORT: Final = WSAErr.WSAEPFNOSUPPORT
WSAEAFNOSUPPORT: Final = WSAErr.WSAEAFNOSUPPORT
WSAEADDRINUSE: Final = WSAErr.WSAEADDRINUSE
WSAEADDRNOTAVAIL: Final = WSAErr.WSAEADDRNOTAVAIL
WSAENETDOWN: Final = WSAErr.WSAENETDOWN
WSAENETUNREACH: Final = WSAErr.WSAENETUNREACH
WSAENETRESET: Final = WSAErr.WSAENETRESET
WSAECONNABORTED: Final = WSAErr.WSAECONNABORTED
WSAECONNRESET: Final = WSAErr.WSAECONNRESET
WSAENOBUFS: Final = WSAErr.WSAENOBUFS
WSAEISCONN: Final = WSAErr.WSAEISCONN
WSAENOTCONN: Final = WSAErr.WSAENOTCONN
WSAESHUTDOWN: Final = WSAErr.WSAESHUTDOWN
WSAETOOMANYREFS: Final = WSAErr.WSAETOOMANYREFS
WSAETIMEDOUT: Final = WSAErr.WSAETIMEDOUT
WSAECONNREFUSED: Final = WSAErr.WSAECONNREFUSED
WSAELOOP: Final = WSAErr.WSAELOOP
WSAENAMETOOLONG: Final = WSAErr.WSAENAMETOOLONG
WSAEHOSTDOWN: Final = WSAErr.WSAEHOSTDOWN
WSAEHOSTUNREACH: Final = WSAErr.WSAEHOSTUNREACH
WSAENOTEMPTY: Final = WSAErr.WSAENOTEMPTY
WSAEPROCLIM: Final = WSAErr.WSAEPROCLIM
WSAEUSERS: Final = WSAErr.WSAEUSERS
WSAEDQUOT: Final = WSAErr.WSAEDQUOT
WSAESTALE: Final = WSAErr.WSAESTALE
WSAEREMOTE: Final = WSAErr.WSAEREMOTE
WSASYSNOTREADY: Final = WSAErr.WSASYSNOTREADY
WSAVERNOTSUPPORTED: Final = WSAErr.WSAVERNOTSUPPORTED
WSANOTINITIALISED: Final = WSAErr.WSANOTINITIALISED
WSAEDISCON: Final = WSAErr.WSAEDISCON
WSAENOMORE: Final = WSAErr.WSAENOMORE
WSAECANCELLED: Final = WSAErr.WSAECANCELLED
WSAEINVALIDPROCTABLE: Final = WSAErr.WSAEINVALIDPROCTABLE
WSAEINVALIDPROVIDER: Final = WSAErr.WSAEINVALIDPROVIDER
WSAEPROVIDERFAILEDINIT: Final = WSAErr.WSAEPROVIDERFAILEDINIT
WSASYSCALLFAILURE: Final = WSAErr.WSASYSCALLFAILURE
WSASERVICE_NOT_FOUND: Final = WSAErr.WSASERVICE_NOT_FOUND
WSATYPE_NOT_FOUND: Final = WSAErr.WSATYPE_NOT_FOUND
WSA_E_NO_MORE: Final = WSAErr.WSA_E_NO_MORE
WSA_E_CANCELLED: Final = WSAErr.WSA_E_CANCELLED
WSAEREFUSED: Final = WSAErr.WSAEREFUSED
WSAHOST_NOT_FOUND: Final = WSAErr.WSAHOST_NOT_FOUND
WSATRY_AGAIN: Final = WSAErr.WSATRY_AGAIN
WSANO_RECOVERY: Final = WSAErr.WSANO_RECOVERY
WSANO_DATA: Final = WSAErr.WSANO_DATA
WSA_QOS_RECEIVERS: Final = WSAErr.WSA_QOS_RECEIVERS
WSA_QOS_SENDERS: Final = WSAErr.WSA_QOS_SENDERS
WSA_QOS_NO_SENDERS: Final = WSAErr.WSA_QOS_NO_SENDERS
WSA_QOS_NO_RECEIVERS: Final = WSAErr.WSA_QOS_NO_RECEIVERS
WSA_QOS_REQUEST_CONFIRMED: Final = WSAErr.WSA_QOS_REQUEST_CONFIRMED
WSA_QOS_ADMISSION_FAILURE: Final = WSAErr.WSA_QOS_ADMISSION_FAILURE
WSA_QOS_POLICY_FAILURE: Final = WSAErr.WSA_QOS_POLICY_FAILURE
WSA_QOS_BAD_STYLE: Final = WSAErr.WSA_QOS_BAD_STYLE
WSA_QOS_BAD_OBJECT: Final = WSAErr.WSA_QOS_BAD_OBJECT
WSA_QOS_TRAFFIC_CTRL_ERROR: Final = WSAErr.WSA_QOS_TRAFFIC_CTRL_ERROR
WSA_QOS_GENERIC_ERROR: Final = WSAErr.WSA_QOS_GENERIC_ERROR
WSA_QOS_ESERVICETYPE: Final = WSAErr.WSA_QOS_ESERVICETYPE
WSA_QOS_EFLOWSPEC: Final = WSAErr.WSA_QOS_EFLOWSPEC
WSA_QOS_EPROVSPECBUF: Final = WSAErr.WSA_QOS_EPROVSPECBUF
WSA_QOS_EFILTERSTYLE: Final = WSAErr.WSA_QOS_EFILTERSTYLE
WSA_QOS_EFILTERTYPE: Final = WSAErr.WSA_QOS_EFILTERTYPE
WSA_QOS_EFILTERCOUNT: Final = WSAErr.WSA_QOS_EFILTERCOUNT
WSA_QOS_EOBJLENGTH: Final = WSAErr.WSA_QOS_EOBJLENGTH
WSA_QOS_EFLOWCOUNT: Final = WSAErr.WSA_QOS_EFLOWCOUNT
WSA_QOS_EUNKOWNPSOBJ: Final = WSAErr.WSA_QOS_EUNKOWNPSOBJ
WSA_QOS_EPOLICYOBJ: Final = WSAErr.WSA_QOS_EPOLICYOBJ
WSA_QOS_EFLOWDESC: Final = WSAErr.WSA_QOS_EFLOWDESC
WSA_QOS_EPSFLOWSPEC: Final = WSAErr.WSA_QOS_EPSFLOWSPEC
WSA_QOS_EPSFILTERSPEC: Final = WSAErr.WSA_QOS_EPSFILTERSPEC
WSA_QOS_ESDMODEOBJ: Final = WSAErr.WSA_QOS_ESDMODEOBJ
WSA_QOS_ESHAPERATEOBJ: Final = WSAErr.WSA_QOS_ESHAPERATEOBJ
WSA_QOS_RESERVED_PETYPE: Final = WSAErr.WSA_QOS_RESERVED_PETYPE
# fmt: on


class Win32Err(_Coded):
    """A Win32 error code, kernel32's view of a completion (S16.2): what
    ``GetLastError``, ``GetOverlappedResult`` and ``GetQueuedCompletionStatus`` report.
    ``.message`` is its English text.  The codes the emulator produces, and the ones
    ws2_32 and kernel32 map NTSTATUS values to (``ntstatus.WIN32_BY_NTSTATUS``)."""

    # fmt: off
    ERROR_SUCCESS = 0, "The operation completed successfully."
    ERROR_INVALID_FUNCTION = 1, "The function is not valid here."
    ERROR_FILE_NOT_FOUND = 2, "No such file."
    ERROR_PATH_NOT_FOUND = 3, "No such path."
    ERROR_TOO_MANY_OPEN_FILES = 4, "Too many files are open."
    ERROR_ACCESS_DENIED = 5, "Access is denied."
    ERROR_INVALID_HANDLE = 6, "The handle is invalid."
    ERROR_NOT_ENOUGH_MEMORY = 8, "Not enough memory."
    ERROR_NOT_READY = 21, "The device is not ready."
    ERROR_SHARING_VIOLATION = 32, "The file is in use by another process."
    ERROR_NOT_SUPPORTED = 50, "The request is not supported."
    ERROR_REM_NOT_LIST = 51, "The remote computer is not listening."
    ERROR_BAD_NETPATH = 53, "The network path was not found."
    ERROR_NETWORK_BUSY = 54, "The network is busy."
    ERROR_NETNAME_DELETED = 64, "The specified network name is no longer available."
    ERROR_INVALID_PARAMETER = 87, "A parameter is incorrect."
    ERROR_BROKEN_PIPE = 109, "The pipe has been ended."
    ERROR_SEM_TIMEOUT = 121, "The time-out period expired."
    ERROR_INSUFFICIENT_BUFFER = 122, "The data area passed is too small."
    ERROR_ALREADY_EXISTS = 183, "The object already exists."
    ERROR_PIPE_BUSY = 231, "All pipe instances are busy."
    ERROR_PIPE_NOT_CONNECTED = 233, "No process is on the other end of the pipe."
    ERROR_MORE_DATA = 234, "More data is available."
    WAIT_TIMEOUT = 258, "The wait timed out."
    ERROR_MR_MID_NOT_FOUND = 317, "No message text for this code (an unmapped NTSTATUS)."
    ERROR_CANT_WAIT = 554, "The operation could not wait."
    ERROR_ABANDONED_WAIT_0 = 735, "The completion port was closed under the wait."
    ERROR_OPERATION_ABORTED = 995, "The I/O operation has been aborted because of either a thread exit or an application request."
    ERROR_IO_INCOMPLETE = 996, "Overlapped I/O event is not in a signaled state."
    ERROR_IO_PENDING = 997, "Overlapped I/O operation is in progress."
    ERROR_NOACCESS = 998, "Invalid access to a memory location."
    ERROR_NOT_FOUND = 1168, "Element not found."
    ERROR_INVALID_NETNAME = 1214, "The network name is not valid."
    ERROR_CONNECTION_REFUSED = 1225, "The remote computer refused the network connection."
    ERROR_GRACEFUL_DISCONNECT = 1226, "The connection was closed gracefully."
    ERROR_ADDRESS_ALREADY_ASSOCIATED = 1227, "The endpoint already has an address."
    ERROR_CONNECTION_INVALID = 1229, "The connection has not been made."
    ERROR_CONNECTION_ACTIVE = 1230, "The connection is already made."
    ERROR_NETWORK_UNREACHABLE = 1231, "The remote network is not reachable."
    ERROR_HOST_UNREACHABLE = 1232, "The remote host is not reachable."
    ERROR_PROTOCOL_UNREACHABLE = 1233, "The remote system does not support the protocol."
    ERROR_PORT_UNREACHABLE = 1234, "No service is operating at the destination network endpoint on the remote system."
    ERROR_REQUEST_ABORTED = 1235, "The request was aborted."
    ERROR_CONNECTION_ABORTED = 1236, "The network connection was aborted by the local system."
    ERROR_HOST_DOWN = 1256, "The remote host is down."
    ERROR_NO_SYSTEM_RESOURCES = 1450, "Not enough system resources."
    ERROR_INVALID_ADDRESS = 4337, "The address is not valid."
    # fmt: on


class WSAError(OSError):
    """An ``OSError`` carrying a Winsock code in ``.winerror`` (the asyncio face raises it).

    ``errno`` is left ``None``: the code is a Winsock one, not the host's, and
    ``except ConnectionResetError`` style matching on the host's errno would be a lie.
    """

    winerror: int

    def __init__(self, code: int, detail: str | None = None) -> None:
        message = describe(code)
        if detail:
            message = f"{message} ({detail})"
        super().__init__(None, message)
        self.winerror = int(code)
        self.strerror = message

    @property
    def code(self) -> WSAErr | int:
        """The code as a :class:`WSAErr` member when it is one."""
        return _BY_VALUE.get(self.winerror, self.winerror)

    def __str__(self) -> str:
        return f"[WinError {self.winerror}] {self.strerror}"

    def __reduce__(self) -> tuple[type[WSAError], tuple[int]]:
        return (type(self), (self.winerror,))


def is_code(code: int) -> bool:
    """True when ``code`` is a Winsock error or overlapped status this library knows."""
    return code in _BY_VALUE


def describe(code: int) -> str:
    """The English message of a Winsock code (or a generic one for unknown codes)."""
    member = _BY_VALUE.get(code)
    return member.message if member is not None else f"Unknown Winsock error {code}."


def _errno_table() -> dict[int, WSAErr]:
    # Written as names so that an errno the host lacks is simply skipped.
    by_name: dict[str, WSAErr] = {
        "EINTR": WSAErr.WSAEINTR,
        "EBADF": WSAErr.WSAENOTSOCK,
        "ENOTSOCK": WSAErr.WSAENOTSOCK,
        "EACCES": WSAErr.WSAEACCES,
        # Linux says EPERM where a firewall or a broadcast policy refuses a send.
        "EPERM": WSAErr.WSAEACCES,
        "EFAULT": WSAErr.WSAEFAULT,
        "EINVAL": WSAErr.WSAEINVAL,
        "EMFILE": WSAErr.WSAEMFILE,
        "ENFILE": WSAErr.WSAEMFILE,
        "EAGAIN": WSAErr.WSAEWOULDBLOCK,
        "EWOULDBLOCK": WSAErr.WSAEWOULDBLOCK,
        # A non-blocking connect is "in progress" on POSIX but WSAEWOULDBLOCK on Windows.
        "EINPROGRESS": WSAErr.WSAEWOULDBLOCK,
        "EALREADY": WSAErr.WSAEALREADY,
        "EDESTADDRREQ": WSAErr.WSAEDESTADDRREQ,
        "EMSGSIZE": WSAErr.WSAEMSGSIZE,
        "EPROTOTYPE": WSAErr.WSAEPROTOTYPE,
        "ENOPROTOOPT": WSAErr.WSAENOPROTOOPT,
        "EPROTONOSUPPORT": WSAErr.WSAEPROTONOSUPPORT,
        "ESOCKTNOSUPPORT": WSAErr.WSAESOCKTNOSUPPORT,
        "EOPNOTSUPP": WSAErr.WSAEOPNOTSUPP,
        "ENOTSUP": WSAErr.WSAEOPNOTSUPP,
        "EPFNOSUPPORT": WSAErr.WSAEPFNOSUPPORT,
        "EAFNOSUPPORT": WSAErr.WSAEAFNOSUPPORT,
        "EADDRINUSE": WSAErr.WSAEADDRINUSE,
        "EADDRNOTAVAIL": WSAErr.WSAEADDRNOTAVAIL,
        "ENETDOWN": WSAErr.WSAENETDOWN,
        # WSPSend documents no WSAENETUNREACH; SPEC S9 folds it into WSAENETDOWN.
        "ENETUNREACH": WSAErr.WSAENETDOWN,
        "ENETRESET": WSAErr.WSAENETRESET,
        "ECONNABORTED": WSAErr.WSAECONNABORTED,
        # SPEC S9: a connection lost locally through a timeout is WSAECONNABORTED.
        "ETIMEDOUT": WSAErr.WSAECONNABORTED,
        "ECONNRESET": WSAErr.WSAECONNRESET,
        # Writing to a connection the peer has reset: Winsock reports the reset.
        "EPIPE": WSAErr.WSAECONNRESET,
        "ENOBUFS": WSAErr.WSAENOBUFS,
        "ENOMEM": WSAErr.WSAENOBUFS,
        "EISCONN": WSAErr.WSAEISCONN,
        "ENOTCONN": WSAErr.WSAENOTCONN,
        "ESHUTDOWN": WSAErr.WSAESHUTDOWN,
        "ETOOMANYREFS": WSAErr.WSAETOOMANYREFS,
        "ECONNREFUSED": WSAErr.WSAECONNREFUSED,
        "ELOOP": WSAErr.WSAELOOP,
        "ENAMETOOLONG": WSAErr.WSAENAMETOOLONG,
        "EHOSTDOWN": WSAErr.WSAEHOSTDOWN,
        "EHOSTUNREACH": WSAErr.WSAEHOSTUNREACH,
        "ENOTEMPTY": WSAErr.WSAENOTEMPTY,
        "EUSERS": WSAErr.WSAEUSERS,
        "EDQUOT": WSAErr.WSAEDQUOT,
        "ESTALE": WSAErr.WSAESTALE,
        "EREMOTE": WSAErr.WSAEREMOTE,
    }
    table: dict[int, WSAErr] = {}
    for name, code in by_name.items():
        number = getattr(_errno, name, None)
        if number is not None:
            table.setdefault(number, code)
    return table


#: The one table from host ``errno`` to Winsock code (SPEC S9).
ERRNO_TO_WSA: Final[dict[int, WSAErr]] = _errno_table()


def wsa_code_of(exc: BaseException | None, default: int = WSAErr.WSAECONNABORTED) -> int:
    """The Winsock code for an exception raised by the OS or a transport.

    ``WSAError`` keeps its code; an ``OSError`` goes through :data:`ERRNO_TO_WSA`;
    anything else (a transport failing without an errno) gets ``default``, which
    for a connection is "lost locally" (SPEC S9, ``WSAECONNABORTED``).
    """
    if isinstance(exc, WSAError):
        return exc.winerror
    if isinstance(exc, OSError) and exc.errno is not None:
        return int(ERRNO_TO_WSA.get(exc.errno, default))
    return int(default)
