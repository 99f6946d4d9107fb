"""Error families, each with a stable ``kind`` string, and the one place foreign errors are mapped.

Every failure aiotcp reports is an :class:`AiotcpError`. Its ``kind`` is a short, stable string that the
command line, the JSONL/CSV records and the bench report use verbatim; the class tree lets library users
catch by family (``except aiotcp.Timeout``) instead of by kind.

Kinds and the wire event behind each one::

    invalid_target   the input (target, path or header) is malformed; nothing was sent
    dns              the name did not resolve
    refused          the peer answered our SYN with RST (nothing listening)
    unreachable      ICMP host/network unreachable: no route to the peer
    connect_timeout  no SYN-ACK before the connect deadline
    tls              the TLS handshake failed or was never answered (bad certificate, wrong name,
                     protocol mismatch, silent peer)
    reset            RST after the connection was established
    disconnected     FIN before the response was complete
    read_timeout     the peer went quiet for longer than the read timeout
    write_timeout    the peer stopped reading our request for longer than the write timeout
    timeout          the total deadline of the request passed
    pool_timeout     no pooled connection became free in time
    protocol         the peer's reply is not valid HTTP/1.x
    too_large        the reply exceeded one of our size caps
    local            our own limits failed us (EMFILE, EADDRNOTAVAIL, ...); says nothing about the peer
    too_many_redirects
                     more redirects than max_redirects (raised by aiotcp.client, which defines its class)
    internal         an unexpected exception (a bug in aiotcp) while handling one target; the prober
                     records it, with the exception's type and message, and goes on with the others
    error            none of the above: a connect or stream failure we do not classify (the family base
                     classes ConnectError, NetworkError); the message says what the system said

Foreign exceptions (``OSError``, ``ssl.SSLError``, anyio's stream errors, h11's protocol errors) are mapped
here and only here, by :func:`map_connect_error`, :func:`map_stream_error` and :func:`map_h11_error`. The
transport calls them once per operation, at the I/O boundary.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from typing import ClassVar, Literal

import anyio
import h11

__all__ = [
    "KINDS",
    "AiotcpError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "DNSError",
    "DeadlineExceeded",
    "Disconnected",
    "InternalError",
    "InvalidHeader",
    "InvalidTarget",
    "LocalError",
    "NetworkError",
    "NoResponse",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "TLSError",
    "Timeout",
    "TooLarge",
    "TooManyRedirects",
    "Unreachable",
    "WriteTimeout",
    "map_connect_error",
    "map_h11_error",
    "map_stream_error",
]


class AiotcpError(Exception):
    """Base of every error aiotcp raises. ``kind`` names what happened; ``target`` names where."""

    kind: ClassVar[str] = "error"

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target

    def __str__(self) -> str:
        return f"{self.target}: {self.message}" if self.target else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, target={self.target!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (bench workers, Dask); keep the keyword-only target.
        return (_rebuild, (type(self), self.message, self.target))

    def for_target(self, target: str) -> AiotcpError:
        """Fill in the target if the raiser did not know it; return self for ``raise ... from``."""
        if self.target is None:
            self.target = target
        return self


def _rebuild(cls: type[AiotcpError], message: str, target: str | None) -> AiotcpError:
    return cls(message, target=target)


class InvalidTarget(AiotcpError, ValueError):
    """The target, path or a header is malformed. Raised before anything is sent."""

    kind = "invalid_target"


class InvalidHeader(InvalidTarget):
    """A request header name or value is not allowed on the wire (CR, LF, NUL, bad token)."""


class LocalError(AiotcpError):
    """The client ran out of something of its own (file descriptors, ephemeral ports, memory)."""

    kind = "local"


class ConnectError(AiotcpError):
    """The connection could not be established (DNS, TCP or TLS)."""


class DNSError(ConnectError):
    kind = "dns"


class ConnectionRefused(ConnectError):
    kind = "refused"


class Unreachable(ConnectError):
    kind = "unreachable"


class TLSError(ConnectError):
    kind = "tls"


class NetworkError(AiotcpError):
    """An established connection failed."""


class ConnectionReset(NetworkError):
    kind = "reset"


class Disconnected(NetworkError):
    kind = "disconnected"


class NoResponse(Disconnected):
    """The server closed the connection without sending a byte of response (a TLS server does this to a
    plaintext request, as does a server that drops what it does not like)."""


class Timeout(AiotcpError):
    """Some deadline passed. The subclass says which one."""


class ConnectTimeout(Timeout, ConnectError):
    kind = "connect_timeout"


class ReadTimeout(Timeout):
    kind = "read_timeout"


class WriteTimeout(Timeout):
    kind = "write_timeout"


class PoolTimeout(Timeout):
    kind = "pool_timeout"


class DeadlineExceeded(Timeout):
    """The total deadline of the request passed, whatever phase it was in."""

    kind = "timeout"


class ProtocolError(AiotcpError):
    """The peer's bytes are not a valid HTTP/1.x response."""

    kind = "protocol"


class TooLarge(AiotcpError):
    """The response exceeded a configured cap (header bytes, header count, interim responses, body)."""

    kind = "too_large"


class TooManyRedirects(AiotcpError):
    """``follow_redirects`` hit ``max_redirects``."""

    kind = "too_many_redirects"


class InternalError(AiotcpError):
    """An unexpected exception while handling one target: a bug in aiotcp, not something on the wire.

    The prober turns one into a record instead of ending the run; :meth:`wrap` keeps the exception's type
    and message, and the exception as the cause.
    """

    kind = "internal"

    @classmethod
    def wrap(cls, exc: Exception, target: str | None = None) -> InternalError:
        error = cls(f"{type(exc).__name__}: {exc}", target=target)
        error.__cause__ = exc
        return error


def _all_kinds() -> tuple[str, ...]:
    seen: list[str] = []
    stack: list[type[AiotcpError]] = [AiotcpError]
    while stack:
        cls = stack.pop(0)
        if cls.kind != "error" and cls.kind not in seen:
            seen.append(cls.kind)
        stack.extend(cls.__subclasses__())
    # Last the family bases' kind: ConnectError and NetworkError are raised as they are for failures that
    # fit no narrower kind.
    return (*seen, "error")


#: Every kind string aiotcp can report, for schemas and summary tables.
KINDS: tuple[str, ...] = _all_kinds()


# --- mapping foreign exceptions ---------------------------------------------------------------------------

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


def _errno_of(exc: BaseException) -> int | None:
    # anyio wraps the OSError of each happy-eyeballs attempt in an "All connection attempts failed" OSError
    # with no errno; the errno we want is the first one anywhere in the chain.
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
    if phase == "dns" or any(isinstance(item, socket.gaierror) for item in _chain(exc)):
        return DNSError(f"name does not resolve: {_describe(exc)}", target=target)
    if phase == "tls":
        for item in _chain(exc):
            if isinstance(item, ssl.SSLCertVerificationError):
                return TLSError(f"certificate verify failed: {_ssl_reason(item, 'verify_message')}", target=target)
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


def map_h11_error(exc: h11.ProtocolError, target: str | None = None) -> AiotcpError:
    """Map h11's parse errors. h11 hints 431 when its receive buffer outgrew our header cap."""
    if exc.error_status_hint == 431:
        return TooLarge("response head, chunk header or trailers exceed max_header_bytes", target=target)
    return ProtocolError(f"malformed response: {exc}", target=target)
