"""Error families, each with a stable ``kind`` string, and the one place foreign errors are mapped.

Every failure aiotcp reports is an :class:`AiotcpError`. Its ``kind`` is a short, stable string that the
command line, the JSONL/CSV records and the bench report use verbatim; the class tree lets library users
catch by family (``except aiotcp.TimedOut``) instead of by kind.

Kinds and the wire event behind each one::

    invalid_target   the input (target, path or header) is malformed; nothing was sent
    dns              the name did not resolve
    refused          the peer answered our SYN with RST (nothing listening)
    unreachable      ICMP host/network unreachable: no route to the peer
    connect_timeout  no SYN-ACK before the connect deadline
    tls              the TLS handshake failed or was never answered (bad certificate, wrong name,
                     protocol mismatch, silent peer)
    proxy            the proxy hop failed: the proxy's name did not resolve, it refused or reset the
                     connection, answered CONNECT with a refusal (407, 403, 502...), failed the SOCKS
                     handshake or sent something that is not a proxy's answer; the message names the proxy
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
    skipped          not probed: the prober gave up on the host after --max-host-errors network errors
                     (the message says how many); nothing was sent
    error            none of the above: a connect or stream failure we do not classify (the family base
                     classes ConnectError, NetworkError); the message says what the system said

This module holds values only and imports nothing but the standard library, so every layer can use it. Foreign
exceptions (``OSError``, ``ssl.SSLError``, anyio's stream errors) are mapped to these classes in one place,
:mod:`aiotcp.error_mapping`, which the transports call once per operation at the I/O boundary; h11's parse
errors are mapped where h11 parses, in :mod:`aiotcp.http11`.
"""

from __future__ import annotations

from typing import ClassVar

#: The phases a deadline can run out in (``AiotcpError.timeout_phase``, the probe records' ``timeout_phase``):
#: resolving the name, the TCP connect, the TLS handshake, writing the request, reading the response (its
#: head or its body), and waiting for a pooled connection (the library's pool; never in a probe record).
TIMEOUT_PHASES: tuple[str, ...] = ("dns", "connect", "tls", "write", "read", "pool")

__all__ = [
    "KINDS",
    "TIMEOUT_PHASES",
    "AiotcpError",
    "CertificateError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "DNSError",
    "DeadlineExceeded",
    "Disconnected",
    "InternalError",
    "InvalidHeader",
    "InvalidInput",
    "InvalidTarget",
    "LocalError",
    "NetworkError",
    "NoResponse",
    "PoolTimeout",
    "ProtocolError",
    "ProxyConnectError",
    "ProxyError",
    "ProxyResolveError",
    "ProxyTunnelRefused",
    "ReadTimeout",
    "Skipped",
    "TLSError",
    "TimedOut",
    "TooLarge",
    "TooManyRedirects",
    "Unreachable",
    "WriteTimeout",
]


class AiotcpError(Exception):
    """Base of every error aiotcp raises. ``kind`` names what happened; ``target`` names where.

    ``timeout_phase`` is set on an error that a deadline caused (whatever its kind: ``timeout``,
    ``connect_timeout``, ``read_timeout``, ``write_timeout``, ``pool_timeout``, and the ``tls`` or ``dns`` of a
    handshake or a lookup left unanswered): the phase that was waiting when it ran out, one of
    :data:`TIMEOUT_PHASES`. None for every other error.
    """

    kind: ClassVar[str] = "error"

    def __init__(self, message: str, *, target: str | None = None, timeout_phase: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.timeout_phase = timeout_phase

    def __str__(self) -> str:
        return f"{self.target}: {self.message}" if self.target else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, target={self.target!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (bench workers, Dask); keep the keyword-only target.
        return (_rebuild, (type(self), self.message, self.target, self.timeout_phase))

    def for_target(self, target: str) -> AiotcpError:
        """Fill in the target if the raiser did not know it; return self for ``raise ... from``."""
        if self.target is None:
            self.target = target
        return self


def _rebuild(cls: type[AiotcpError], message: str, target: str | None, timeout_phase: str | None = None) -> AiotcpError:
    return cls(message, target=target, timeout_phase=timeout_phase)


class InvalidInput(AiotcpError, ValueError):
    """Something the caller gave is malformed (a target, a path, a header). Raised before anything is sent.

    The family of :class:`InvalidTarget` and :class:`InvalidHeader`; both report kind ``invalid_target``
    (the record of an input that was never sent anywhere).
    """

    kind = "invalid_target"


class InvalidTarget(InvalidInput):
    """The target, its port or its path is malformed."""


class InvalidHeader(InvalidInput):
    """A request header name or value is not allowed on the wire (CR, LF, NUL, bad token)."""


class LocalError(AiotcpError):
    """The client ran out of something of its own (file descriptors, ephemeral ports, memory)."""

    kind = "local"


class ConnectError(AiotcpError):
    """The connection could not be established (DNS, TCP or TLS). ``resolution``: the DNS facts of the name
    (an :class:`aiotcp.resolution.Resolution`) when the async resolver made them, else None."""

    resolution: object = None


class DNSError(ConnectError):
    """The name did not resolve. ``rcode`` says how: ``NXDOMAIN``, ``NODATA``, ``SERVFAIL``, ``REFUSED`` or
    ``TIMEOUT`` (None when the system resolver gave no reason); ``resolution`` holds the DNS facts, an
    :class:`aiotcp.resolution.Resolution`, when the async resolver made them. A lookup left unanswered
    (``TIMEOUT``) has ``timeout_phase`` ``dns``."""

    kind = "dns"

    def __init__(
        self,
        message: str,
        *,
        target: str | None = None,
        rcode: str | None = None,
        resolution: object = None,
        timeout_phase: str | None = None,
    ) -> None:
        if timeout_phase is None and rcode == "TIMEOUT":
            timeout_phase = "dns"
        super().__init__(message, target=target, timeout_phase=timeout_phase)
        self.rcode = rcode
        self.resolution = resolution

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_dns, (self.message, self.target, self.rcode, self.resolution, self.timeout_phase))


def _rebuild_dns(
    message: str, target: str | None, rcode: str | None, resolution: object, timeout_phase: str | None = None
) -> DNSError:
    return DNSError(message, target=target, rcode=rcode, resolution=resolution, timeout_phase=timeout_phase)


class ConnectionRefused(ConnectError):
    kind = "refused"


class Unreachable(ConnectError):
    kind = "unreachable"


class TLSError(ConnectError):
    kind = "tls"


class CertificateError(TLSError):
    """The peer's certificate failed verification (untrusted issuer, expired, another name). Kind ``tls``, as
    every TLS failure; a class of its own so callers can tell it apart (the command line exits 60 for it, as
    curl does, and 35 for other handshake failures)."""


class ProxyError(ConnectError):
    """The proxy hop failed (kind ``proxy``): the connection to the proxy, its handshake, or its answer.

    ``proxy`` is the proxy's URL without credentials (the message names it too); ``status_code`` is an HTTP
    proxy's answer to CONNECT when it refused the tunnel (407, 403, 502...), else None. A deadline that passes
    while the proxy is silent is a timeout (``connect_timeout`` or ``timeout``), like any other silence, and
    says so in its message. Subclasses tell the hop apart for the command line's exit codes (curl's).
    """

    kind = "proxy"

    def __init__(
        self, message: str, *, target: str | None = None, proxy: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, target=target)
        self.proxy = proxy
        self.status_code = status_code

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_proxy, (type(self), self.message, self.target, self.proxy, self.status_code))


def _rebuild_proxy(
    cls: type[ProxyError], message: str, target: str | None, proxy: str | None, status_code: int | None
) -> ProxyError:
    return cls(message, target=target, proxy=proxy, status_code=status_code)


class ProxyResolveError(ProxyError):
    """The proxy's host name did not resolve (curl: couldn't resolve proxy)."""


class ProxyConnectError(ProxyError):
    """The proxy could not be reached: it refused the connection, or no route to it (curl: couldn't connect)."""


class ProxyTunnelRefused(ProxyError):
    """An HTTP proxy answered CONNECT with a status other than 2xx (``status_code``): 407 it wants
    credentials, 403 it forbids the target, 502/504 it could not reach it."""


class NetworkError(AiotcpError):
    """An established connection failed. ``response_started``: whether any byte of the response had come when
    it did (set by the client; None when not known) -- a request that got no byte back may be retried."""

    response_started: bool | None = None


class ConnectionReset(NetworkError):
    kind = "reset"


class Disconnected(NetworkError):
    kind = "disconnected"


class NoResponse(Disconnected):
    """The server closed the connection without sending a byte of response (a TLS server does this to a
    plaintext request, as does a server that drops what it does not like)."""


class TimedOut(AiotcpError):
    """Some deadline passed. The subclass says which one (named apart from :class:`~aiotcp.config.Timeouts`,
    the settings)."""


class ConnectTimeout(TimedOut, ConnectError):
    kind = "connect_timeout"


class ReadTimeout(TimedOut):
    kind = "read_timeout"


class WriteTimeout(TimedOut):
    kind = "write_timeout"


class PoolTimeout(TimedOut):
    kind = "pool_timeout"


class DeadlineExceeded(TimedOut):
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


class Skipped(AiotcpError):
    """A target the prober did not probe because its host had failed too often (``--max-host-errors``)."""

    kind = "skipped"


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
