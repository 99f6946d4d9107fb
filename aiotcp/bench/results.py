"""What an engine counts, what a worker sends back, and the merged result of a run.

Accounting, identical in both engines
-------------------------------------
Every *attempt* ends exactly one way:

- a complete response: ``requests`` += 1, ``status[code]`` += 1, one latency sample;
- an error: ``errors[kind]`` += 1, where ``kind`` comes from :mod:`aiotcp.errors` (``refused``, ``reset``,
  ``disconnected``, ``timeout``, ``connect_timeout``, ``protocol``, ``local``, ...). A failed connect is
  one failed attempt; a connection that fails with K pipelined requests in flight fails K attempts;
- still in flight when the run stopped: counted in ``in_flight``, never silently dropped.

So ``requests + sum(errors.values()) + in_flight == attempts``, and with ``-n N`` and enough time,
``attempts == N`` and ``in_flight == 0``. Interim (1xx) responses are not responses.

Connections: ``opened`` (connects that succeeded), ``failed`` (connects that did not), ``reset`` (open
connections that ended with an RST), ``closed_by_peer`` (open connections the server closed cleanly,
e.g. after ``Connection: close``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import histogram as hist

__all__ = ["Counters", "Interval", "WorkerResult"]


@dataclass(slots=True)
class Counters:
    """Event counts of one worker (or, merged, of the run)."""

    attempts: int = 0
    requests: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    #: The first message seen for each error kind, for the report.
    error_messages: dict[str, str] = field(default_factory=dict)
    opened: int = 0
    failed: int = 0
    reset: int = 0
    closed_by_peer: int = 0
    in_flight: int = 0

    def error(self, kind: str, message: str, count: int = 1) -> None:
        """Count ``count`` failed attempts of ``kind``."""
        self.errors[kind] = self.errors.get(kind, 0) + count
        self.error_messages.setdefault(kind, message)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def merge(self, other: Counters) -> None:
        """Add ``other`` into this one."""
        self.attempts += other.attempts
        self.requests += other.requests
        self.bytes_read += other.bytes_read
        self.bytes_written += other.bytes_written
        for code, count in other.status.items():
            self.status[code] = self.status.get(code, 0) + count
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        for kind, message in other.error_messages.items():
            self.error_messages.setdefault(kind, message)
        self.opened += other.opened
        self.failed += other.failed
        self.reset += other.reset
        self.closed_by_peer += other.closed_by_peer
        self.in_flight += other.in_flight


@dataclass(slots=True)
class Interval:
    """One reporting interval of one worker (or, merged, of the run): counts and histograms.

    Intervals are ``interval`` seconds long, cut short at a stage's end (``stage``: the stage it belongs to)
    and at the end of the run (``length_s``). ``keys`` holds the latencies by endpoint and status (key
    ``endpoint * 1000 + status``, see :class:`~aiotcp.bench.histogram.KeyedRecorder`); ``latency`` is all
    of them in one encoded histogram (HdrHistogram's compressed base64, as in an interval log). An interval
    holds everything a worker counted in it, so a worker that dies still leaves its intervals behind.
    """

    index: int
    start_s: float
    length_s: float
    requests: int
    errors: int
    bytes_read: int
    latency: str  # encoded histogram (corrected in rate mode)
    uncorrected: str | None = None  # rate mode only
    status: dict[int, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    keys: dict[int, hist.Sparse] = field(default_factory=dict)
    stage: int | None = None

    @staticmethod
    def merge(parts: list[Interval]) -> Interval:
        """The run's interval from every worker's interval of the same index."""
        first = parts[0]
        status: dict[int, int] = {}
        kinds: dict[str, int] = {}
        keys: dict[int, hist.Sparse] = {}
        for part in parts:
            for code, count in part.status.items():
                status[code] = status.get(code, 0) + count
            for kind, count in part.error_kinds.items():
                kinds[kind] = kinds.get(kind, 0) + count
            for key, sparse in part.keys.items():
                total = keys.get(key)
                if total is None:
                    total = keys[key] = hist.Sparse()
                total.add(sparse)
        return Interval(
            index=first.index,
            start_s=min(part.start_s for part in parts),
            length_s=max(part.length_s for part in parts),
            requests=sum(part.requests for part in parts),
            errors=sum(part.errors for part in parts),
            bytes_read=sum(part.bytes_read for part in parts),
            latency=hist.encode(hist.merge(part.latency for part in parts)),
            uncorrected=None
            if first.uncorrected is None
            else hist.encode(hist.merge(part.uncorrected or "" for part in parts)),
            status=status,
            error_kinds=kinds,
            keys=keys,
            stage=first.stage,
        )

    def histogram(self) -> Any:
        return hist.decode(self.latency)


@dataclass(slots=True)
class WorkerResult:
    """What a worker sends back when its run ends.

    The self-check: ``cpu_s`` is the CPU time (user and system) of the worker's thread over the measured
    run; ``loop_lag`` how late the worker's ticker ran, each time (encoded histogram, microseconds); in
    rate mode ``late_sends`` requests left more than :data:`~aiotcp.bench.engines.LATE_S` after their
    intended time, by ``late`` (encoded histogram, microseconds).
    """

    index: int
    counters: Counters
    latency: str  # encoded histogram of the whole measured run (corrected in rate mode)
    uncorrected: str | None
    duration_s: float  # the measured run, from its start to the moment sending stopped
    warmup_requests: int
    loop: str
    engine: str
    cpu_s: float = 0.0
    loop_lag: str = ""
    late_sends: int = 0
    late: str | None = None
    where: str = ""  # the process or Dask worker it ran in
