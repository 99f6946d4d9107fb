"""Our own load: how late the event loop runs, whether to start more probes, and what to tell the user.

A prober's first duty is a true verdict. A deadline that runs out while the probe waits for *our* CPU measures
the prober, not the target; so the loop's lag is measured all along and used three ways:

- **Admission.** :class:`LoopMonitor` ticks every :data:`TICK_S` and keeps a cap on the probes in flight
  (adaptive concurrency): a tick that comes more than ``lag_limit`` late (10 % of the per-target timeout,
  5-250 ms) means the loop is behind, and the cap drops by a quarter; every tick on time raises it by a
  sixteenth, up to ``-c``. No new probe starts while the cap is reached. So ``-c 10000`` on a machine that
  serves 2,000 runs at about 2,000: no faster, and not wrong. The cap never drops below :data:`MIN_CAP` (or
  ``-c``): when the lag is not ours (a hog elsewhere), holding everything back would stop the run and help no
  one. A lag under the limit is left alone: on a shared machine the loop runs a few milliseconds late all the
  time, and holding probes back for that would only make the run slower.
- **Stall credit.** The lateness beyond ``stall_tolerance`` (2 % of the timeout, 2-50 ms) adds up in
  :attr:`LoopMonitor.stalled` (seconds the loop was stalled: our own CPU, a hog, a garbage collection, a slow
  disk for the output). The lean engine extends a probe's deadlines by what accrued during its life (at most
  one more timeout), so a stall of ours is never charged to the target.
- **Report.** Every tick records the lag and the probes in flight in a :class:`LoadReport`: the summary and
  ``--summary-json`` give the lag's p50/p99/max, the concurrency the run actually had, how long admission held
  probes back, and whether the prober (not the network) was the bottleneck.

Ticks are a timer on asyncio (the lean engine) and a task elsewhere (:meth:`LoopMonitor.run`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["MIN_CAP", "TICK_S", "LoadReport", "LoopMonitor", "lag_limit_for", "stall_tolerance_for"]

#: Seconds between two ticks of the monitor.
TICK_S = 0.01
#: The cap on probes in flight never drops below this (nor ``-c``).
MIN_CAP = 64
#: The share of the ticks with admission held back above which the prober, not the network, set the pace.
PROBER_BOUND_SHARE = 0.05
_MIN_TICKS = 50  # half a second: a shorter run says nothing about its pace


def lag_limit_for(timeout: float) -> float:
    """The loop lag (seconds) above which no new probe starts: 10 % of the per-target timeout, 5-250 ms."""
    return min(0.25, max(0.005, timeout * 0.1))


def stall_tolerance_for(timeout: float) -> float:
    """The loop lag (seconds) beyond which the lateness is stall credit: 2 % of the timeout, 2-50 ms."""
    return min(0.05, max(0.002, timeout * 0.02))


def _bucket(lag_ms: float) -> float:
    """The histogram bucket of a lag: 0.1 ms steps below 10 ms, 1 ms below 1 s, then 10 ms."""
    if lag_ms < 10.0:
        return math.floor(lag_ms * 10.0) / 10.0
    if lag_ms < 1000.0:
        return float(math.floor(lag_ms))
    return float(math.floor(lag_ms / 10.0) * 10)


@dataclass(slots=True)
class LoadReport:
    """What a run's own load was: loop lag, concurrency, admission. Merged over ``--workers`` processes.

    ``lag_ms`` is a histogram (bucket -> ticks); ``in_flight_sum`` / ``ticks`` is the mean number of probes
    in flight; ``held_ticks`` the ticks during which the cap on probes in flight was below ``concurrency``.
    """

    engine: str = ""
    concurrency: int = 0  # asked for (-c), summed over processes
    lag_limit_ms: float = 0.0
    ticks: int = 0
    held_ticks: int = 0
    in_flight_sum: int = 0
    in_flight_max: int = 0
    stalled_s: float = 0.0
    lag_ms: dict[float, int] = field(default_factory=dict)
    processes: int = 1
    #: Times the lean engine's feeder had a job and no room for it (the cap reached), and times it had room
    #: but stopped for the loop after a batch of starts (it started probes as fast as the loop allowed).
    launch_waits: int = 0
    launch_yields: int = 0

    def record(self, lag: float, in_flight: int, held: bool) -> None:
        """One tick: the loop ran ``lag`` seconds late with ``in_flight`` probes, the cap below ``-c``
        (``held``) or not."""
        self.ticks += 1
        self.held_ticks += held
        self.in_flight_sum += in_flight
        if in_flight > self.in_flight_max:
            self.in_flight_max = in_flight
        bucket = _bucket(lag * 1000.0)
        self.lag_ms[bucket] = self.lag_ms.get(bucket, 0) + 1

    def merge(self, other: LoadReport) -> None:
        """Add ``other``, the report of another process of the same run (``--workers``)."""
        if other.engine != self.engine:
            self.engine = other.engine if not self.engine else "mixed"
        self.concurrency += other.concurrency
        self.lag_limit_ms = max(self.lag_limit_ms, other.lag_limit_ms)
        self.ticks += other.ticks
        self.held_ticks += other.held_ticks
        self.in_flight_sum += other.in_flight_sum
        self.in_flight_max += other.in_flight_max  # an upper bound: the processes' peaks may not coincide
        self.stalled_s = max(self.stalled_s, other.stalled_s)
        self.launch_waits += other.launch_waits
        self.launch_yields += other.launch_yields
        for bucket, count in other.lag_ms.items():
            self.lag_ms[bucket] = self.lag_ms.get(bucket, 0) + count
        self.processes += other.processes

    @property
    def mean_in_flight(self) -> float:
        """The mean number of probes in flight (the concurrency the run actually had), over all processes:
        they run side by side, so their means add up."""
        return self.in_flight_sum * self.processes / self.ticks if self.ticks else 0.0

    @property
    def held_share(self) -> float:
        """The share of the run during which the cap on probes in flight was below what was asked for."""
        return self.held_ticks / self.ticks if self.ticks else 0.0

    @property
    def prober_bound(self) -> bool:
        """Whether the prober itself set the pace: its loop lagged enough for the cap to hold probes back, or
        it started probes as fast as it could and never came near the concurrency asked for."""
        return self.held_share > PROBER_BOUND_SHARE or self.start_bound

    @property
    def start_bound(self) -> bool:
        """Whether starting probes was the limit: the feeder stopped after full batches more often than it
        waited for room, and the probes in flight stayed under half of ``concurrency``."""
        return (
            self.launch_yields > self.launch_waits
            and self.ticks >= _MIN_TICKS
            and self.mean_in_flight < self.concurrency / 2
        )

    def lag_percentile(self, percent: float) -> float:
        """The loop lag (ms) at ``percent`` (0-100) of the ticks, to the bucket; 0.0 without ticks."""
        total = sum(self.lag_ms.values())
        if not total:
            return 0.0
        wanted = percent / 100.0 * total
        seen = 0
        for bucket in sorted(self.lag_ms):
            seen += self.lag_ms[bucket]
            if seen >= wanted:
                return bucket
        return max(self.lag_ms)  # pragma: no cover - the loop returns first

    def as_dict(self) -> dict[str, Any]:
        """The report as the ``load`` object of ``--summary-json``."""
        return {
            "engine": self.engine,
            "concurrency_requested": self.concurrency,
            "concurrency_mean": round(self.mean_in_flight, 1),
            "concurrency_max": self.in_flight_max,
            "loop_lag_ms": {
                "p50": self.lag_percentile(50),
                "p99": self.lag_percentile(99),
                "max": max(self.lag_ms, default=0.0),
                "limit": self.lag_limit_ms,
            },
            "capped_share": round(self.held_share, 4),
            "start_bound": self.start_bound,
            "stalled_s": round(self.stalled_s, 3),
            "prober_bound": self.prober_bound,
        }


class LoopMonitor:
    """Measures the running loop's lag every :data:`TICK_S`; keeps the cap on probes in flight; accrues stall
    credit (see the module docstring).

    ``concurrency`` is what was asked for (the most the cap can be). ``in_flight`` is read at every tick (the
    engine's count of probes in flight). ``on_room`` is called when the cap grows, ``on_tick`` after every
    tick (the lean engine judges its probes' deadlines then).
    """

    def __init__(
        self,
        timeout: float,
        concurrency: int,
        report: LoadReport,
        in_flight: Callable[[], int],
        on_room: Callable[[], object] | None = None,
        *,
        on_tick: Callable[[], object] | None = None,
    ) -> None:
        self.lag_limit = lag_limit_for(timeout)
        self.stall_tolerance = stall_tolerance_for(timeout)
        self.concurrency = concurrency
        self.floor = min(concurrency, MIN_CAP)
        #: How many probes may be in flight now.
        self.cap = concurrency
        self.report = report
        report.lag_limit_ms = round(self.lag_limit * 1000.0, 3)
        self._in_flight = in_flight
        self._on_room = on_room
        self._on_tick = on_tick
        #: Seconds the loop spent late beyond ``stall_tolerance``, since the monitor started.
        self.stalled = 0.0
        self._due = 0.0  # time.perf_counter() of the next tick
        self._handle: asyncio.TimerHandle | None = None
        self._grown: anyio.Event | None = None  # for wait_room(), while the cap is reached

    def __repr__(self) -> str:
        return (
            f"<LoopMonitor cap={self.cap}/{self.concurrency} lag_limit={self.lag_limit * 1000:.1f}ms"
            f" stalled={self.stalled:.3f}s>"
        )

    def stalled_now(self) -> float:
        """:attr:`stalled`, plus the lateness of a tick that is due and has not run yet (a stall in progress)."""
        late = time.perf_counter() - self._due - self.stall_tolerance
        return self.stalled + late if late > 0.0 else self.stalled

    def _tick(self, now: float) -> None:
        lag = now - self._due
        if lag < 0.0:
            lag = 0.0
        if lag > self.stall_tolerance:
            self.stalled += lag - self.stall_tolerance
        cap = self.cap
        if lag > self.lag_limit:
            cap = max(self.floor, cap * 3 // 4)
        elif cap < self.concurrency:
            cap = min(self.concurrency, cap + max(1, cap // 16))
        grown = cap > self.cap
        self.cap = cap
        self.report.record(lag, self._in_flight(), cap < self.concurrency)
        if grown:
            if self._on_room is not None:
                self._on_room()
            if self._grown is not None:
                self._grown.set()
                self._grown = None
        self._due = now + TICK_S
        if self._on_tick is not None:
            self._on_tick()

    # -- on an asyncio loop: a timer ---------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start ticking on ``loop`` (a timer re-armed at every tick)."""
        self._due = time.perf_counter() + TICK_S
        self._handle = loop.call_later(TICK_S, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick(time.perf_counter())
        self._handle = loop.call_later(TICK_S, self._on_timer, loop)

    def stop(self) -> None:
        """Stop ticking (the report keeps what was measured)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.report.stalled_s += self.stalled

    # -- on any anyio backend: a task ------------------------------------------------------------------------

    async def wait_room(self) -> None:
        """Return once one more probe may start (at once if it may now). For tasks of the reference engine,
        which call :meth:`room_made` when a probe ends."""
        while self._in_flight() >= self.cap:
            if self._grown is None:
                self._grown = anyio.Event()
            await self._grown.wait()

    def room_made(self) -> None:
        """A probe ended: wake the tasks in :meth:`wait_room` (they look at the count again)."""
        if self._grown is not None:
            self._grown.set()
            self._grown = None

    async def run(self) -> None:
        """Tick until cancelled (the reference engine runs this in its task group)."""
        self._due = time.perf_counter() + TICK_S
        try:
            while True:
                await anyio.sleep(max(0.0, self._due - time.perf_counter()))
                self._tick(time.perf_counter())
        finally:
            self.report.stalled_s += self.stalled
