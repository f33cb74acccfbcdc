"""Winsock 2 constants with their real Windows values (SPEC S1).

Everything here is a plain ``int`` so that code ported from C reads the same
(``if rc == SOCKET_ERROR``).  Error codes live in :mod:`wsp_async.errors`, where
they are also members of the :class:`~wsp_async.errors.WSAErr` enum; they are
re-exported from the package root together with these names.

The values come from ``winsock2.h``, ``ws2def.h``, ``ws2ipdef.h``, ``mswsock.h``
and ``winbase.h``.  Windows values, not the host's: ``AF_INET6`` is 23 here
even though Linux calls it 10, because ported code compares against the Windows
number.  The provider translates to the host's own values where it talks to the
OS (see ``wsp_async._addr``).
"""

from __future__ import annotations

from typing import Final

# --- return values -----------------------------------------------------------
SOCKET_ERROR: Final = -1
# ``(SOCKET)(~0)``: SOCKET is a UINT_PTR, 64 bits wide on the platforms we mimic.
INVALID_SOCKET: Final = (1 << 64) - 1
STATUS_PENDING: Final = 0x00000103

# --- WSPSocket flags -----------------------------------------------------------
WSA_FLAG_OVERLAPPED: Final = 0x01
WSA_FLAG_MULTIPOINT_C_ROOT: Final = 0x02
WSA_FLAG_MULTIPOINT_C_LEAF: Final = 0x04
WSA_FLAG_MULTIPOINT_D_ROOT: Final = 0x08
WSA_FLAG_MULTIPOINT_D_LEAF: Final = 0x10
WSA_FLAG_ACCESS_SYSTEM_SECURITY: Final = 0x40
WSA_FLAG_NO_HANDLE_INHERIT: Final = 0x80

# --- address families, socket types, protocols --------------------------------
AF_UNSPEC: Final = 0
AF_UNIX: Final = 1
AF_INET: Final = 2
AF_INET6: Final = 23

SOCK_STREAM: Final = 1
SOCK_DGRAM: Final = 2
SOCK_RAW: Final = 3
SOCK_RDM: Final = 4
SOCK_SEQPACKET: Final = 5

IPPROTO_IP: Final = 0
IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_IPV6: Final = 41
IPPROTO_RAW: Final = 255

# --- send/recv flags -----------------------------------------------------------
MSG_OOB: Final = 0x1
MSG_PEEK: Final = 0x2
MSG_DONTROUTE: Final = 0x4
MSG_WAITALL: Final = 0x8
MSG_INTERRUPT: Final = 0x10
MSG_PUSH_IMMEDIATE: Final = 0x20
MSG_TRUNC: Final = 0x0100
MSG_CTRUNC: Final = 0x0200
MSG_BCAST: Final = 0x0400
MSG_MCAST: Final = 0x0800
MSG_PARTIAL: Final = 0x8000

# --- shutdown --------------------------------------------------------------------
SD_RECEIVE: Final = 0
SD_SEND: Final = 1
SD_BOTH: Final = 2

# --- socket options ----------------------------------------------------------------
SOL_SOCKET: Final = 0xFFFF
SO_DEBUG: Final = 0x0001
SO_ACCEPTCONN: Final = 0x0002
SO_REUSEADDR: Final = 0x0004
SO_KEEPALIVE: Final = 0x0008
SO_DONTROUTE: Final = 0x0010
SO_BROADCAST: Final = 0x0020
SO_USELOOPBACK: Final = 0x0040
SO_LINGER: Final = 0x0080
SO_OOBINLINE: Final = 0x0100
SO_DONTLINGER: Final = ~SO_LINGER & 0xFFFFFFFF
SO_EXCLUSIVEADDRUSE: Final = ~SO_REUSEADDR & 0xFFFFFFFF
SO_SNDBUF: Final = 0x1001
SO_RCVBUF: Final = 0x1002
SO_SNDLOWAT: Final = 0x1003
SO_RCVLOWAT: Final = 0x1004
SO_SNDTIMEO: Final = 0x1005
SO_RCVTIMEO: Final = 0x1006
SO_ERROR: Final = 0x1007
SO_TYPE: Final = 0x1008
SO_GROUP_ID: Final = 0x2001
SO_GROUP_PRIORITY: Final = 0x2002
SO_MAX_MSG_SIZE: Final = 0x2003
SO_PROTOCOL_INFOA: Final = 0x2004
SO_PROTOCOL_INFOW: Final = 0x2005
PVD_CONFIG: Final = 0x3001
SO_CONDITIONAL_ACCEPT: Final = 0x3002

TCP_NODELAY: Final = 0x0001

SOMAXCONN: Final = 0x7FFFFFFF

# --- ioctls ------------------------------------------------------------------------
FIONREAD: Final = 0x4004667F
FIONBIO: Final = 0x8004667E
FIOASYNC: Final = 0x8004667D
SIOCATMARK: Final = 0x40047307
SIO_FLUSH: Final = 0x28000004

# --- waits -------------------------------------------------------------------------
INFINITE: Final = 0xFFFFFFFF
WAIT_OBJECT_0: Final = 0x00000000
WAIT_ABANDONED: Final = 0x00000080
WAIT_IO_COMPLETION: Final = 0x000000C0
WAIT_TIMEOUT: Final = 0x00000102
WAIT_FAILED: Final = 0xFFFFFFFF

WSA_WAIT_EVENT_0: Final = WAIT_OBJECT_0
WSA_WAIT_IO_COMPLETION: Final = WAIT_IO_COMPLETION
WSA_WAIT_TIMEOUT: Final = WAIT_TIMEOUT
WSA_WAIT_FAILED: Final = WAIT_FAILED
WSA_INFINITE: Final = INFINITE
WSA_MAXIMUM_WAIT_EVENTS: Final = 64
WSA_INVALID_EVENT: Final = None

# --- limits the provider reports ----------------------------------------------------
#: SO_MAX_MSG_SIZE for UDP: 65535 minus the IPv4 (20) and UDP (8) headers.
UDP_MAX_MSG_SIZE_V4: Final = 65507
#: IPv6 has no header checksum field inside the 65535 payload limit: 65535 - 8.
UDP_MAX_MSG_SIZE_V6: Final = 65527

# --- completion ports and Win32 codes (SPEC S13, S16.2) --------------------------------
INVALID_HANDLE_VALUE: Final = -1
FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: Final = 0x1
FILE_SKIP_SET_EVENT_ON_HANDLE: Final = 0x2
ERROR_INVALID_HANDLE: Final = 6
ERROR_NETNAME_DELETED: Final = 64
ERROR_INVALID_PARAMETER: Final = 87
ERROR_ABANDONED_WAIT_0: Final = 735
ERROR_OPERATION_ABORTED: Final = 995
ERROR_IO_PENDING: Final = 997
ERROR_NOT_FOUND: Final = 1168
ERROR_CONNECTION_REFUSED: Final = 1225
ERROR_PORT_UNREACHABLE: Final = 1234
ERROR_CONNECTION_ABORTED: Final = 1236
ERROR_MORE_DATA: Final = 234

# --- TransmitFile / DisconnectEx flags (mswsock.h, SPEC S14.4, S14.5) ------------------
TF_DISCONNECT: Final = 0x01
TF_REUSE_SOCKET: Final = 0x02
TF_WRITE_BEHIND: Final = 0x04
TF_USE_DEFAULT_WORKER: Final = 0x00
TF_USE_SYSTEM_THREAD: Final = 0x10
TF_USE_KERNEL_APC: Final = 0x20
