"""Timeouts and limits: the knobs shared by the client, the prober and the load generator.

Both are frozen value objects that validate when built, and this module imports only the standard library.
A request turns its :class:`Timeouts` into a running clock, :class:`aiotcp.budget.Budget`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .errors import AiotcpError, ConnectError, ConnectionReset, Disconnected, DNSError, TLSError

__all__ = ["IDEMPOTENT_METHODS", "Limits", "Retry", "RetryLike", "Timeouts", "TimeoutsLike", "parse_retry_after"]


def _check_seconds(owner: str, name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a positive number of seconds or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of a request, and for the whole of it. ``None`` means no limit.

    ``read`` is the longest silence between two received chunks; ``total`` is a deadline for the whole
    request (pool wait, connect, send, head and body), the one that stops a server trickling a byte at a time.
    """

    connect: float | None = 5.0
    read: float | None = 15.0
    write: float | None = 15.0
    pool: float | None = 15.0
    total: float | None = 120.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool", "total"):
            _check_seconds("Timeouts", name, getattr(self, name))

    @classmethod
    def from_value(cls, value: TimeoutsLike) -> Timeouts:
        """``Timeouts`` as given; a number caps every phase and the total at that many seconds."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(connect=None, read=None, write=None, pool=None, total=None)
        return cls(connect=value, read=value, write=value, pool=value, total=value)

    @classmethod
    def one_deadline(cls, total: float, connect: float | None = None) -> Timeouts:
        """One deadline for everything, as the command line and the prober give it: ``total`` seconds for the
        whole request and for every phase in it, and ``connect`` (capped at ``total``) for the connect."""
        return cls(connect=min(connect or total, total), read=total, write=total, pool=total, total=total)


TimeoutsLike = Timeouts | float | None


@dataclass(frozen=True, slots=True)
class Limits:
    """Pool sizes and response caps. ``None`` disables a cap.

    ``max_connections`` and ``max_per_host`` bound open connections (busy and idle);
    ``keepalive_expiry`` is how long an idle connection stays in the pool. The ``max_*`` caps bound what a
    response can make us hold: a reply over any of them fails with kind ``too_large``. ``max_body_bytes`` caps
    the body as received and, when it is decoded (``Content-Encoding``), as decoded; ``max_decompression_ratio``
    stops a decoded body that grows more than that many times its encoded size, once 64 KiB came out (a
    decompression bomb: :mod:`aiotcp.decoding`).
    """

    max_connections: int = 100
    max_per_host: int | None = None
    keepalive_expiry: float | None = 5.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 256
    max_interim: int = 10
    max_body_bytes: int | None = 256 * 1024 * 1024
    max_decompression_ratio: float | None = 100.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_header_bytes", "max_headers", "max_interim"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")
        if self.max_per_host is not None and (not _is_int(self.max_per_host) or self.max_per_host < 1):
            raise ValueError(f"Limits.max_per_host must be a positive integer or None, got {self.max_per_host!r}")
        if self.max_body_bytes is not None and (not _is_int(self.max_body_bytes) or self.max_body_bytes < 0):
            raise ValueError(f"Limits.max_body_bytes must be >= 0 or None, got {self.max_body_bytes!r}")
        if self.keepalive_expiry is not None:
            _check_seconds("Limits", "keepalive_expiry", self.keepalive_expiry)
        ratio = self.max_decompression_ratio
        if ratio is not None and (
            isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 1 <= ratio < math.inf
        ):
            raise ValueError(f"Limits.max_decompression_ratio must be a number >= 1 or None, got {ratio!r}")


def _is_int(value: object) -> bool:
    # bool is an int to Python, but Limits(max_body_bytes=False) is a mistake, not a cap of 0.
    return isinstance(value, int) and not isinstance(value, bool)


#: Methods that may be sent twice (RFC 9110 section 9.2.2): the ones :class:`Retry` retries after a request went out.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class Retry:
    """When a client tries a request again: ``Client(retries=Retry(...))``; ``Client(retries=3)`` is
    ``Retry(attempts=3)``. Every retry draws on the request's one total deadline.

    - A connect failure (``refused``, ``unreachable``, ``connect_timeout``, a proxy that cannot be reached,
      ``dns`` answered SERVFAIL or not at all): always, whatever the method -- nothing was sent.
    - ``reset`` or ``disconnected`` before any byte of the response: for ``methods`` only (the idempotent ones
      by default). Add ``"POST"`` to ask for POST too; a request that got part of a response is never retried.
    - A status in ``statuses`` (429 and 503) for ``methods``: after ``Retry-After`` (seconds or an HTTP date)
      when the server sends one and ``respect_retry_after``, else after the back-off; when the wait would pass
      the total deadline, the response is returned as it is.

    The back-off before retry *n* is ``backoff * 2 ** (n - 1)`` seconds, at most ``backoff_max``, times a
    jitter between 0.5 and 1.5. A retry that would start after the total deadline is not made: the last
    error is raised (or the last response returned).

    Raises:
        ValueError: for a negative ``attempts`` or back-off, naming the field.
    """

    attempts: int = 3
    statuses: AbstractSet[int] = field(default=frozenset({429, 503}))
    methods: AbstractSet[str] = IDEMPOTENT_METHODS
    backoff: float = 0.1
    backoff_max: float = 10.0
    respect_retry_after: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 0:
            raise ValueError(f"Retry.attempts must be an integer >= 0, got {self.attempts!r}")
        for name in ("backoff", "backoff_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"Retry.{name} must be a number of seconds >= 0, got {value!r}")
        object.__setattr__(self, "statuses", frozenset(self.statuses))
        object.__setattr__(self, "methods", frozenset(method.upper() for method in self.methods))

    @classmethod
    def from_value(cls, value: RetryLike) -> Retry | None:
        """A ``Retry`` from ``retries=``: a number of attempts, a ``Retry``, or None/0 for none."""
        if value is None:
            return None
        if isinstance(value, Retry):
            return value if value.attempts else None
        retry = cls(attempts=value)
        return retry if retry.attempts else None

    def pause(self, retry: int, jitter: float = 1.0) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        return float(min(self.backoff_max, self.backoff * 2.0 ** (retry - 1)) * jitter)

    def after_error(
        self, method: str, error: AiotcpError, *, retry: int, remaining: float, jitter: float = 1.0
    ) -> float | None:
        """Seconds to wait before retrying a request that failed with ``error`` (retry number ``retry``), or
        None to give up. ``error.response_started`` (set by the client) says whether a byte came back."""
        if retry > self.attempts or not _worth_retrying(method, error, self.methods):
            return None
        wait = self.pause(retry, jitter)
        return wait if wait < remaining else None

    def after_status(
        self, method: str, status: int, retry_after: str | None, *, retry: int, remaining: float, jitter: float = 1.0
    ) -> float | None:
        """Seconds to wait before asking again after a response with ``status``, or None to keep the response."""
        if retry > self.attempts or status not in self.statuses or method.upper() not in self.methods:
            return None
        asked = parse_retry_after(retry_after) if self.respect_retry_after and retry_after else None
        wait = self.pause(retry, jitter) if asked is None else asked
        return wait if wait < remaining else None


RetryLike = Retry | int | None


def _worth_retrying(method: str, error: AiotcpError, methods: AbstractSet[str]) -> bool:
    if isinstance(error, ConnectError) and not isinstance(error, TLSError):
        if isinstance(error, DNSError):
            return error.rcode in ("SERVFAIL", "TIMEOUT")  # NXDOMAIN and NODATA will say the same again
        return True  # nothing was sent
    if isinstance(error, (ConnectionReset, Disconnected)):
        return error.response_started is False and method.upper() in methods
    return False


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks for (delay-seconds or an HTTP date), or None when it is neither."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    for layout in _HTTP_DATES:
        try:
            when = datetime.strptime(value, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return None


# RFC 9110 section 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must accept. (Not
# email.utils: it imports socket, and this module holds values only.)
_HTTP_DATES = ("%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y")
