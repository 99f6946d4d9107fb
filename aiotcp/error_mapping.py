"""The one place foreign exceptions become :class:`~aiotcp.errors.AiotcpError`: ``OSError`` (errno), ``ssl``
errors and anyio's stream errors, for a connect (:func:`map_connect_error`) and for an established stream
(:func:`map_stream_error`).

The transports (and the bench engines, which open their own sockets) call these once per operation, at the
I/O boundary. Timeouts are not mapped here: the caller knows which deadline it set and raises that one itself.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from typing import Literal

import anyio

from .errors import (
    AiotcpError,
    CertificateError,
    ConnectError,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    Disconnected,
    DNSError,
    LocalError,
    NetworkError,
    TLSError,
    Unreachable,
)

__all__ = ["map_connect_error", "map_stream_error"]

# errno -> error class. Looked up by exact errno, so order does not matter here; the order that matters is
# in _errno_of (which exception in a chain we believe), and in the isinstance checks below, which test the
# most specific classes first because TimeoutError and ssl.SSLError are both OSError.
_LOCAL_ERRNOS = {
    errno.EMFILE,  # per-process descriptor limit
    errno.ENFILE,  # system-wide descriptor limit
    errno.ENOBUFS,
    errno.ENOMEM,
    errno.EADDRNOTAVAIL,  # no free ephemeral port (TIME_WAIT exhaustion)
    errno.EADDRINUSE,
}
_CONNECT_ERRNOS: dict[int, type[AiotcpError]] = {
    errno.ECONNREFUSED: ConnectionRefused,
    errno.EHOSTUNREACH: Unreachable,
    errno.ENETUNREACH: Unreachable,
    errno.EHOSTDOWN: Unreachable,
    errno.ENETDOWN: Unreachable,
    errno.ETIMEDOUT: ConnectTimeout,  # the kernel gave up retrying SYN
    errno.ECONNRESET: ConnectionRefused,  # RST during the handshake
}
_STREAM_ERRNOS: dict[int, type[AiotcpError]] = {
    errno.ECONNRESET: ConnectionReset,
    errno.EPIPE: ConnectionReset,  # writing after the peer's RST
    errno.ECONNABORTED: ConnectionReset,
    errno.ETIMEDOUT: ConnectionReset,  # keepalive probes unanswered: the peer is gone
    errno.EHOSTUNREACH: ConnectionReset,
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of exception groups, depth first."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        if current.__context__ is not None:
            stack.append(current.__context__)
        if current.__cause__ is not None:
            stack.append(current.__cause__)


def _alone(exc: BaseException) -> bool:
    """Whether ``exc`` has no cause, context or members: its chain is itself (the commonest case, cheaply)."""
    return exc.__context__ is None and exc.__cause__ is None and not isinstance(exc, BaseExceptionGroup)


def _errno_of(exc: BaseException) -> int | None:
    # anyio wraps the OSError of each happy-eyeballs attempt in an "All connection attempts failed" OSError
    # with no errno; the errno we want is the first one anywhere in the chain.
    if _alone(exc):
        return exc.errno or None if isinstance(exc, OSError) else None
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno:
            return item.errno
    return None


def _describe(exc: BaseException) -> str:
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno:
            return item.strerror or errno.errorcode.get(item.errno, str(item.errno))
    text = str(exc)
    return text or type(exc).__name__


def _ssl_reason(exc: ssl.SSLError, attribute: str = "reason") -> str:
    # The ssl module sets reason/verify_message on the errors it raises; an SSLError built elsewhere (by a
    # library, or a test) has neither, and reading them would raise AttributeError.
    return str(getattr(exc, attribute, None) or exc.strerror or exc)


def map_connect_error(exc: BaseException, target: str, *, phase: Literal["dns", "tcp", "tls"]) -> AiotcpError:
    """Map an exception raised while resolving, connecting or handshaking to an :class:`AiotcpError`.

    Timeouts are not mapped here: the caller knows which deadline it set and raises that one itself.
    """
    if isinstance(exc, AiotcpError):
        return exc
    code = _errno_of(exc)
    if code in _LOCAL_ERRNOS:
        return LocalError(f"{_describe(exc)} (client-side limit, not the target)", target=target)
    # A connect that resolves the name itself (anyio.connect_tcp, loop.create_connection) fails with
    # gaierror in the "tcp" phase: it is a DNS failure wherever it shows up.
    gaierror = (
        isinstance(exc, socket.gaierror) if _alone(exc) else any(isinstance(i, socket.gaierror) for i in _chain(exc))
    )
    if phase == "dns" or gaierror:
        return DNSError(f"name does not resolve: {_describe(exc)}", target=target)
    if phase == "tls":
        for item in _chain(exc):
            if isinstance(item, ssl.SSLCertVerificationError):
                return CertificateError(
                    f"certificate verify failed: {_ssl_reason(item, 'verify_message')}", target=target
                )
            if isinstance(item, ssl.SSLError):
                return TLSError(f"TLS handshake failed: {_ssl_reason(item)}", target=target)
        if isinstance(exc, (anyio.EndOfStream, anyio.BrokenResourceError)) or code in _STREAM_ERRNOS:
            return TLSError("peer closed the connection during the TLS handshake", target=target)
        return TLSError(f"TLS handshake failed: {_describe(exc)}", target=target)
    cls = _CONNECT_ERRNOS.get(code) if code is not None else None
    if cls is ConnectionRefused:
        return ConnectionRefused("connection refused (RST in answer to SYN)", target=target)
    if cls is not None:
        return cls(_describe(exc), target=target)
    return ConnectError(f"connect failed: {_describe(exc)}", target=target)


def map_stream_error(exc: BaseException, target: str, *, phase: Literal["read", "write"]) -> AiotcpError:
    """Map an exception raised by ``send``/``receive`` on an established stream.

    ``anyio.EndOfStream`` is not an error at this level (the HTTP layer decides whether EOF was early),
    so callers handle it before calling this.
    """
    if isinstance(exc, AiotcpError):
        return exc
    code = _errno_of(exc)
    if code in _LOCAL_ERRNOS:
        return LocalError(f"{_describe(exc)} (client-side limit, not the target)", target=target)
    cls = _STREAM_ERRNOS.get(code) if code is not None else None
    if cls is not None:
        return cls(f"connection reset by peer during {phase}", target=target)
    for item in _chain(exc):
        if isinstance(item, ssl.SSLError):
            return TLSError(f"TLS error during {phase}: {_ssl_reason(item)}", target=target)
    if isinstance(exc, anyio.BrokenResourceError):
        # A broken stream with no errno: the peer went away abruptly (trio reports RST this way).
        return ConnectionReset(f"connection broken during {phase}", target=target)
    if isinstance(exc, anyio.ClosedResourceError):
        return Disconnected(f"connection was closed during {phase}", target=target)
    return NetworkError(f"{phase} failed: {_describe(exc)}", target=target)
