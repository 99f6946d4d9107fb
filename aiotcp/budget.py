"""The clock of one request: per-phase timeouts bounded by one absolute deadline.

``Budget.start(timeouts)`` starts it; every wait (pool, connect, write, read) then gets the smaller of its own
timeout and what is left of the total deadline, and when a wait runs out the budget says which of the two it
was, so the error ``kind`` is exact (``read_timeout`` for a quiet peer, ``timeout`` for a peer that trickles
bytes forever). The clock is the running event loop's, so deadlines and the loop's timers agree to the tick.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio

from .config import Timeouts
from .errors import (
    ConnectTimeout,
    DeadlineExceeded,
    PoolTimeout,
    ReadTimeout,
    TimedOut,
    WriteTimeout,
)

__all__ = ["Budget", "Phase"]

Phase = Literal["pool", "connect", "write", "read"]


def _event_loop_clock() -> Callable[[], float]:
    """The clock the running event loop's timers use, so that deadlines and timers agree to the tick.

    On asyncio that is ``loop.time`` (uvloop's ticks in milliseconds), looked up once per request instead
    of through anyio's backend detection at every wait; elsewhere (trio) anyio's ``current_time``.
    """
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


_PHASE_ERRORS: dict[Phase, type[TimedOut]] = {
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

    @classmethod
    def start(cls, timeouts: Timeouts) -> Budget:
        """Start the clock for one request (inside the event loop that runs it)."""
        clock = _event_loop_clock()
        return cls(timeouts, None if timeouts.total is None else clock() + timeouts.total, clock)

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

    def expired(self, phase: Phase, target: str | None = None) -> TimedOut:
        """The error for a wait in ``phase`` that ran out: the deadline's if it passed, else the phase's; its
        ``timeout_phase`` is ``phase``.

        A phase without a timeout of its own can only have run out of the deadline (even if the timer
        fired a hair early).
        """
        seconds = getattr(self.timeouts, phase)
        if self.deadline is not None and (seconds is None or self.clock() >= self.deadline - _SLACK):
            total = self.timeouts.total
            what = f"total deadline of {total:g}s" if total is not None else "total deadline"
            return DeadlineExceeded(f"{what} exceeded", target=target, timeout_phase=phase)
        what = {
            "pool": "no connection became free in the pool",
            "connect": "no answer to connect (SYN)",
            "write": "peer stopped reading the request",
            "read": "no data from peer",
        }[phase]
        within = "" if seconds is None else f" within {seconds:g}s"
        return _PHASE_ERRORS[phase](what + within, target=target, timeout_phase=phase)
