"""Timeouts and limits: the knobs shared by the client, the prober and the load generator.

Both are frozen value objects that validate when built, and this module imports only the standard library.
A request turns its :class:`Timeouts` into a running clock, :class:`aiotcp.budget.Budget`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Limits", "Timeouts", "TimeoutsLike"]


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
    response can make us hold: a reply over any of them fails with kind ``too_large``.
    """

    max_connections: int = 100
    max_per_host: int | None = None
    keepalive_expiry: float | None = 5.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 256
    max_interim: int = 10
    max_body_bytes: int | None = 256 * 1024 * 1024

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


def _is_int(value: object) -> bool:
    # bool is an int to Python, but Limits(max_body_bytes=False) is a mistake, not a cap of 0.
    return isinstance(value, int) and not isinstance(value, bool)
