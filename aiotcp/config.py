"""Timeouts and limits: the knobs shared by the client, the prober and the load generator.

Both are frozen value objects that validate when built. A request turns its :class:`Timeouts` into a
:class:`Budget`: every wait (pool, connect, write, read) gets the smaller of its own timeout and what is left
of the total deadline, and when it expires the budget says which of the two it was, so the error ``kind`` is
exact (``read_timeout`` for a quiet peer, ``timeout`` for a peer that trickles bytes forever).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio

from .errors import (
    ConnectTimeout,
    DeadlineExceeded,
    PoolTimeout,
    ReadTimeout,
    Timeout,
    WriteTimeout,
)

__all__ = ["Budget", "Limits", "Phase", "Timeouts", "TimeoutsLike"]

Phase = Literal["pool", "connect", "write", "read"]


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

    def budget(self) -> Budget:
        """Start the clock for one request."""
        clock = _event_loop_clock()
        deadline = None if self.total is None else clock() + self.total
        return Budget(self, deadline, clock)


def _event_loop_clock() -> Callable[[], float]:
    """The clock the running event loop's timers use, so that deadlines and timers agree to the tick.

    On asyncio that is ``loop.time`` (uvloop's ticks in milliseconds), looked up once per request instead
    of through anyio's backend detection at every wait; elsewhere (trio) anyio's ``current_time``.
    """
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


TimeoutsLike = Timeouts | float | None

_PHASE_ERRORS: dict[Phase, type[Timeout]] = {
    "pool": PoolTimeout,
    "connect": ConnectTimeout,
    "write": WriteTimeout,
    "read": ReadTimeout,
}


# A timer may fire a little before its deadline (the event loop's clock resolution): a wait that ends this
# close to the deadline ran out of the deadline.
_SLACK = 1e-3


@dataclass(slots=True)
class Budget:
    """The clock of one request: per-phase timeouts bounded by one absolute deadline."""

    timeouts: Timeouts
    deadline: float | None  # in clock() units
    clock: Callable[[], float] = field(default=anyio.current_time, repr=False)

    def remaining(self) -> float:
        """Seconds left before the deadline (``math.inf`` without one)."""
        return math.inf if self.deadline is None else max(0.0, self.deadline - self.clock())

    def limit(self, phase: Phase) -> float:
        """Seconds the next wait in ``phase`` may take (``math.inf`` for no limit)."""
        phase_limit = getattr(self.timeouts, phase)
        if self.deadline is None:
            return math.inf if phase_limit is None else phase_limit
        left = self.deadline - self.clock()  # (no min/max calls: this runs once per wait)
        if left < 0.0:
            left = 0.0
        return left if phase_limit is None or phase_limit > left else phase_limit

    def expired(self, phase: Phase, target: str | None = None) -> Timeout:
        """The error for a wait in ``phase`` that ran out: the deadline's if it passed, else the phase's.

        A phase without a timeout of its own can only have run out of the deadline (even if the timer
        fired a hair early).
        """
        seconds = getattr(self.timeouts, phase)
        if self.deadline is not None and (seconds is None or self.clock() >= self.deadline - _SLACK):
            total = self.timeouts.total
            what = f"total deadline of {total:g}s" if total is not None else "total deadline"
            return DeadlineExceeded(f"{what} exceeded", target=target)
        what = {
            "pool": "no connection became free in the pool",
            "connect": "no answer to connect (SYN)",
            "write": "peer stopped reading the request",
            "read": "no data from peer",
        }[phase]
        within = "" if seconds is None else f" within {seconds:g}s"
        return _PHASE_ERRORS[phase](what + within, target=target)


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
