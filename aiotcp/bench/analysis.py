"""What a finished run says beyond its totals: latency per endpoint and per status class, per stage, the
thresholds, the load generator's self-check, and the warnings. Pure computations over a
:class:`~aiotcp.bench.workers.BenchResult`; :mod:`.report` renders them.

The self-check
--------------
A load generator that is itself the bottleneck measures itself, not the server. Three signs, each worker's:
its CPU (``cpu_s`` of its thread over the measured run: at :data:`BUSY` of a core or more it had no time
to spare), its event loop's lag (how late its 50 ms ticker ran: a loop that runs late sends late and reads
late), and in rate mode its late sends (requests that left more than 1 ms after their intended time; those
are also the server's doing when every connection waits for a response, so they are reported, not judged).
When CPU or lag crosses its line over a measured run of a second or more, the run carries a warning that the
generator rather than the server may have limited it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import histogram as hist
from .engines import LATE_S
from .mix import Endpoint
from .stages import RateRamp, Stage, stage_bounds
from .thresholds import Outcome, evaluate
from .workers import BenchResult

__all__ = [
    "BUSY",
    "JUDGED_AFTER_S",
    "LAG_LIMIT_MS",
    "LATE_MS",
    "RATE_TOLERANCE",
    "EndpointStats",
    "SelfCheck",
    "StageStats",
    "WorkerStats",
    "class_stats",
    "endpoint_stats",
    "rate_warning",
    "self_check",
    "stage_stats",
    "threshold_outcomes",
    "warnings",
]

#: A worker busy this fraction of one CPU core (or more) over the measured run had no time to spare.
BUSY = 0.9
#: A worker whose ticker ran this many milliseconds late (p99) or more could not keep time.
LAG_LIMIT_MS = 10.0
#: A worker is judged only over a measured run at least this long (20 ticks): a shorter one is mostly its
#: start, whatever it measured.
JUDGED_AFTER_S = 1.0
#: Achieved below this fraction of the target rate gets a warning.
RATE_TOLERANCE = 0.9
#: An open-loop send this many milliseconds behind its intended time is late.
LATE_MS = LATE_S * 1000.0


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """One endpoint's responses: by status, and their latencies (corrected in rate mode)."""

    index: int
    endpoint: Endpoint
    requests: int
    status: dict[int, int]
    latency: hist.Sparse

    @property
    def histogram(self) -> Any:
        """The latencies as an HdrHistogram (made on each call)."""
        return self.latency.histogram()


def endpoint_stats(result: BenchResult) -> list[EndpointStats]:
    """Every endpoint of the run, in the order given (one for a run of one URL)."""
    by_endpoint: dict[int, list[tuple[int, hist.Sparse]]] = {}
    for key, sparse in result.keys.items():
        by_endpoint.setdefault(key // 1000, []).append((key % 1000, sparse))
    stats = []
    for index, endpoint in enumerate(result.config.mix):
        parts = by_endpoint.get(index, [])
        status: dict[int, int] = {}
        for code, sparse in parts:
            status[code] = status.get(code, 0) + sparse.total
        latency = hist.Sparse.merged(sparse for _, sparse in parts)
        stats.append(EndpointStats(index, endpoint, sum(status.values()), dict(sorted(status.items())), latency))
    return stats


def class_stats(result: BenchResult) -> dict[str, hist.Sparse]:
    """``{"2xx": latencies, ...}`` for the status classes that occurred, in order."""
    by_class: dict[str, list[hist.Sparse]] = {}
    for key, sparse in sorted(result.keys.items(), key=lambda item: item[0] % 1000):
        by_class.setdefault(f"{key % 1000 // 100}xx", []).append(sparse)
    return {name: hist.Sparse.merged(parts) for name, parts in by_class.items()}


@dataclass(frozen=True, slots=True)
class StageStats:
    """One stage as run: its target (requests/s or connections, from ``start_target`` to ``stage.target``)
    and what its intervals measured."""

    index: int
    stage: Stage
    of: str  # "rate" or "connections"
    start_s: float
    end_s: float
    start_target: float
    requests: int
    errors: int
    histogram: Any
    uncorrected: Any | None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def mean_target(self) -> float:
        return (self.start_target + self.stage.target) / 2.0


def stage_stats(result: BenchResult) -> list[StageStats]:
    """Each stage of a staged run (empty otherwise), from the intervals, which end at every stage's end."""
    config = result.config
    stages = config.stages
    if not stages:
        return []
    of = "rate" if config.rate_stages else "connections"
    stats = []
    previous = 0.0
    for index, (stage, (start, end)) in enumerate(zip(stages, stage_bounds(stages), strict=True)):
        intervals = [interval for interval in result.intervals if interval.stage == index]
        # The run may have stopped early (Ctrl-C): a stage ends where its last interval does.
        measured_end = min(end, max((i.start_s + i.length_s for i in intervals), default=start))
        uncorrected = None
        if config.mode == "rate":
            uncorrected = hist.merge(interval.uncorrected or "" for interval in intervals if interval.uncorrected)
        stats.append(
            StageStats(
                index=index,
                stage=stage,
                of=of,
                start_s=start,
                end_s=measured_end if intervals else start,
                start_target=previous,
                requests=sum(interval.requests for interval in intervals),
                errors=sum(interval.errors for interval in intervals),
                histogram=hist.merge(interval.latency for interval in intervals),
                uncorrected=uncorrected,
            )
        )
        previous = stage.target
    return stats


def threshold_outcomes(result: BenchResult) -> list[Outcome]:
    """Every threshold checked over the run, or over each stage with ``threshold_per_stage``."""
    config = result.config
    counters = result.counters
    outcomes = []
    for threshold in config.thresholds:
        if config.threshold_per_stage and config.stages:
            for stage in stage_stats(result):
                outcomes.append(
                    evaluate(
                        threshold,
                        histogram=stage.histogram,
                        requests=stage.requests,
                        errors=stage.errors,
                        duration_s=stage.duration_s,
                        stage=stage.index,
                    )
                )
        else:
            outcomes.append(
                evaluate(
                    threshold,
                    histogram=result.latency,
                    requests=counters.requests,
                    errors=counters.error_count,
                    duration_s=result.duration_s,
                )
            )
    return outcomes


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker's self-check: ``busy`` is its CPU time over the measured run's length (1.0: a whole core)."""

    index: int
    where: str
    requests: int
    errors: int
    cpu_s: float
    busy: float
    loop_lag: Any  # HdrHistogram, microseconds
    state: str  # "finished" or "lost"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SelfCheck:
    """The load generator's own figures (see the module docstring)."""

    cpu_s: float
    cpu_us_per_request: float | None
    busy: float  # the busiest worker's
    loop_lag: Any  # HdrHistogram of every worker's ticker lateness, microseconds
    sends: int | None  # rate mode: requests sent (attempts that had a connection)
    late_sends: int | None
    late: Any | None  # HdrHistogram of the late sends' lateness, microseconds
    workers: list[WorkerStats]
    limited_by: list[str]  # why the generator may have limited the run; empty when nothing says so

    @property
    def generator_limited(self) -> bool:
        return bool(self.limited_by)

    def lag_ms(self) -> dict[str, float | None]:
        return _summary(self.loop_lag)

    def late_ms(self) -> dict[str, float | None] | None:
        return None if self.late is None else _summary(self.late)


def _summary(histogram: Any) -> dict[str, float | None]:
    summary = hist.summary_ms(histogram)
    return {name: summary[name] for name in ("p50", "p90", "p99", "max")}


def self_check(result: BenchResult) -> SelfCheck:
    """The self-check of a run, from what each worker sent back (a lost worker sent none)."""
    workers = []
    lag = hist.new_histogram()
    late = hist.new_histogram() if result.config.mode == "rate" else None
    late_sends = 0
    cpu = 0.0
    for worker in result.worker_results:
        counters = worker.counters
        busy = worker.cpu_s / worker.duration_s if worker.duration_s > 0 else 0.0
        worker_lag = hist.decode(worker.loop_lag) if worker.loop_lag else hist.new_histogram()
        lag.add(worker_lag)
        if late is not None and worker.late:
            late.add(hist.decode(worker.late))
        late_sends += worker.late_sends
        cpu += worker.cpu_s
        workers.append(
            WorkerStats(
                worker.index,
                worker.where,
                counters.requests,
                counters.error_count,
                worker.cpu_s,
                busy,
                worker_lag,
                "finished",
            )
        )
    for lost in result.lost:
        workers.append(
            WorkerStats(lost.index, lost.where, lost.requests, 0, 0.0, 0.0, hist.new_histogram(), "lost", lost.reason)
        )
    workers.sort(key=lambda worker: worker.index)
    finished_requests = sum(stats.requests for stats in workers if stats.state == "finished")
    limited_by = []
    durations = {worker.index: worker.duration_s for worker in result.worker_results}
    for stats in workers:
        if stats.state != "finished" or durations[stats.index] < JUDGED_AFTER_S:
            continue
        lag_p99 = hist.summary_ms(stats.loop_lag)["p99"]
        if stats.busy >= BUSY:
            limited_by.append(f"worker {stats.index} used {stats.busy:.0%} of a CPU core")
        if lag_p99 is not None and lag_p99 >= LAG_LIMIT_MS:
            limited_by.append(f"worker {stats.index}'s event loop ran {lag_p99:.1f} ms late (p99)")
    sends = None
    if late is not None:
        sends = sum(w.counters.attempts - w.counters.failed for w in result.worker_results)
    return SelfCheck(
        cpu_s=cpu,
        cpu_us_per_request=cpu / finished_requests * 1e6 if finished_requests else None,
        busy=max((stats.busy for stats in workers), default=0.0),
        loop_lag=lag,
        sends=sends,
        late_sends=late_sends if late is not None else None,
        late=late,
        workers=workers,
        limited_by=limited_by,
    )


def rate_warning(result: BenchResult) -> str | None:
    """A sentence when the achieved rate fell short of the target; None otherwise."""
    config = result.config
    if config.mode != "rate" or result.duration_s <= 0:
        return None
    if config.rate is not None:
        target = config.rate
    else:
        ramp = RateRamp(config.rate_stages)
        target = ramp.total / ramp.duration if ramp.duration > 0 else 0.0
    achieved = result.rps
    if target <= 0 or achieved >= RATE_TOLERANCE * target:
        return None
    what = "the target" if config.rate is not None else "the stages' mean target"
    return (
        f"achieved {achieved:,.0f} requests/s, {achieved / target:.0%} of {what} {target:,.0f}:"
        " the server (or this client) could not keep up; latency is measured from the intended send times"
    )


def warnings(result: BenchResult, check: SelfCheck | None = None) -> list[str]:
    """Every warning of the run: lost workers, a rate shortfall, a generator that limited the run."""
    found = [lost.describe() for lost in result.lost]
    shortfall = rate_warning(result)
    if shortfall:
        found.append(shortfall)
    check = check or self_check(result)
    if check.generator_limited:
        found.append(
            "the load generator, not the server, may have limited this run: "
            + "; ".join(check.limited_by)
            + " (add workers with -w, machines with --dask, or lower the load)"
        )
    return found
