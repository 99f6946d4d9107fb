"""``aiotcp bench compare A.json B.json``: did B get better or worse than A, beyond the noise?

Theory of operation
-------------------
A run's JSON (schema ``aiotcp.bench/2``) keeps every interval's latency histogram, encoded as HdrHistogram
interval logs encode them. One run measured once says nothing about how much its percentiles move from one
stretch of time to the next; its intervals do. So each metric is compared by a bootstrap over intervals:
:data:`RESAMPLES` times, draw as many intervals as each run has, with replacement, merge their histograms
(exactly: the counts add), and take the metric of both merged samples; the middle 95 % of the relative
changes ``B / A - 1`` is the interval the change is likely in. A long run is resampled in at most
:data:`MAX_BLOCKS` blocks of consecutive intervals (a block bootstrap: it also keeps the slow drifts that
neighbouring intervals share).

A metric is *worse* when that whole interval lies on its worse side (higher latency, lower throughput, more
errors) by more than :data:`MIN_EFFECT`, *better* when it lies on the other side by as much, and otherwise
shows *no difference*. The verdict of the comparison is worse when any judged metric (p50, p90, p99, p99.9,
requests/s) is worse, better when some are better and none worse, else no difference. A run with fewer than
:data:`MIN_INTERVALS` intervals gives its noise no estimate; then only a change above :data:`NOISE_FLOOR`
counts, and the comparison says so.

Pure computation on two JSON documents: no I/O but reading the files (:func:`load_run`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import histogram as hist

__all__ = [
    "MIN_EFFECT",
    "MIN_INTERVALS",
    "NOISE_FLOOR",
    "RESAMPLES",
    "Comparison",
    "Delta",
    "Run",
    "compare_runs",
    "load_run",
]

#: Bootstrap resamples per comparison.
RESAMPLES = 400
#: A change smaller than this (relative) is no difference, however sure the bootstrap is of it.
MIN_EFFECT = 0.02
#: Fewer intervals than this in a run: no estimate of the noise.
MIN_INTERVALS = 3
#: A run of more intervals is resampled in this many blocks of consecutive intervals.
MAX_BLOCKS = 60
#: Without an estimate of the noise, a change must exceed this (relative) to count.
NOISE_FLOOR = 0.10
#: Percentiles compared, as (name, percentile).
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
#: The metrics that decide the verdict.
JUDGED = ("p50", "p90", "p99", "p99.9", "rps")
#: Arguments that make two runs measure different things when they differ (noted, not refused).
_COMPARED_ARGUMENTS = (
    "url",
    "method",
    "endpoints",
    "connections",
    "rate",
    "stages",
    "pipeline",
    "keepalive",
    "workers",
    "proxy",
    "unix_socket",
)

Verdict = Literal["better", "worse", "no difference"]


class CompareError(ValueError):
    """A file that is not a bench run this version can compare (named in the message)."""


@dataclass(frozen=True, slots=True)
class _Interval:
    seconds: float
    requests: int
    errors: int
    slots: dict[int, int]  # histogram counts-array index -> count


@dataclass(frozen=True, slots=True)
class Run:
    """One run, as read from its JSON: what ``compare`` needs of it."""

    name: str
    document: dict[str, Any]
    intervals: list[_Interval]

    @property
    def describe(self) -> str:
        arguments = self.document.get("arguments") or {}
        method = arguments.get("method", "GET")
        endpoints = arguments.get("endpoints")
        what = f"{len(endpoints)} endpoints" if endpoints else f"{method} {arguments.get('url', '?')}"
        mode = f"rate {arguments.get('rate')}/s" if arguments.get("rate") else self.document.get("mode", "?")
        return (
            f"{what}, {arguments.get('connections', '?')} connections, {mode},"
            f" {self.document.get('requests', 0):,} responses in {self.document.get('duration_s', 0):.1f} s"
        )


def load_run(path: str) -> Run:
    """A run from a ``aiotcp bench --json`` file.

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read.
        CompareError: it is not JSON, not a bench run, or a run without interval histograms (schema 1).
    """
    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CompareError(f"{path}: not JSON ({exc})") from None
    return run_from_document(document, path)


def run_from_document(document: Any, name: str) -> Run:
    """A :class:`Run` from a parsed JSON document. Raises :class:`CompareError` as :func:`load_run`."""
    if not isinstance(document, dict) or not str(document.get("schema", "")).startswith("aiotcp.bench/"):
        raise CompareError(f"{name}: not the JSON of aiotcp bench (no aiotcp.bench schema)")
    if document["schema"] == "aiotcp.bench/1":
        raise CompareError(
            f"{name}: schema aiotcp.bench/1 keeps no interval histograms; rerun with this version of aiotcp bench"
        )
    intervals = []
    try:
        for record in document["intervals"]:
            histogram = hist.decode(record["histogram"])
            slots = {index: count for index, count in enumerate(histogram.counts[: histogram.counts_len]) if count}
            intervals.append(
                _Interval(float(record["length_s"]), int(record["requests"]), int(record["errors"]), slots)
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise CompareError(f"{name}: an interval without its histogram ({type(exc).__name__}: {exc})") from None
    return Run(name, document, intervals)


@dataclass(frozen=True, slots=True)
class Delta:
    """One metric of both runs: the values, the relative change ``b / a - 1`` and its 95 % interval (None
    without an estimate of the noise), and the verdict. ``higher_is_worse`` for latencies and errors."""

    metric: str
    a: float | None
    b: float | None
    change: float | None
    low: float | None
    high: float | None
    higher_is_worse: bool
    verdict: Verdict
    judged: bool

    @property
    def worse_by(self) -> float:
        """How much worse B is, relative (0 when not worse)."""
        if self.change is None or self.verdict != "worse":
            return 0.0
        return self.change if self.higher_is_worse else -self.change

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "change_pct": None if self.change is None else round(100 * self.change, 3),
            "interval_pct": None
            if self.low is None or self.high is None
            else [round(100 * self.low, 3), round(100 * self.high, 3)],
            "verdict": self.verdict,
            "judged": self.judged,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two runs compared: a :class:`Delta` per metric, the verdict, and notes (runs that differ in their
    arguments, too few intervals)."""

    a: Run
    b: Run
    deltas: list[Delta]
    verdict: Verdict
    notes: list[str]

    def worse_by(self) -> float:
        """The largest relative worsening among the judged metrics (0 when none is worse)."""
        return max((delta.worse_by for delta in self.deltas if delta.judged), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "aiotcp.bench.compare/1",
            "a": {"file": self.a.name, "describe": self.a.describe},
            "b": {"file": self.b.name, "describe": self.b.describe},
            "metrics": [delta.as_dict() for delta in self.deltas],
            "verdict": self.verdict,
            "worse_by_pct": round(100 * self.worse_by(), 3),
            "notes": self.notes,
        }


class _Values:
    """Counts-array index -> latency in ms, as HdrHistogram reports a percentile (the highest value
    equivalent to the slot's), computed once per index."""

    def __init__(self) -> None:
        self._histogram = hist.new_histogram()
        self._cache: dict[int, float] = {}

    def __call__(self, index: int) -> float:
        value = self._cache.get(index)
        if value is None:
            h = self._histogram
            value = self._cache[index] = h.get_highest_equivalent_value(h.get_value_from_index(index)) / 1000.0
        return value


def _percentiles(slots: dict[int, int], values: _Values) -> dict[str, float | None]:
    total = sum(slots.values())
    if not total:
        return {name: None for name, _ in PERCENTILES}
    result: dict[str, float | None] = {}
    targets = [(name, max(1, int(percentile * total / 100 + 0.5))) for name, percentile in PERCENTILES]
    seen = 0
    position = 0
    ordered = sorted(slots.items())
    for index, count in ordered:
        seen += count
        while position < len(targets) and seen >= targets[position][1]:
            result[targets[position][0]] = values(index)
            position += 1
        if position == len(targets):
            break
    return result


def _merge(intervals: Sequence[_Interval]) -> dict[int, int]:
    merged: dict[int, int] = {}
    get = merged.get
    for interval in intervals:
        for index, count in interval.slots.items():
            merged[index] = get(index, 0) + count
    return merged


def _metrics(intervals: Sequence[_Interval], values: _Values) -> dict[str, float | None]:
    metrics = _percentiles(_merge(intervals), values)
    seconds = sum(interval.seconds for interval in intervals)
    requests = sum(interval.requests for interval in intervals)
    errors = sum(interval.errors for interval in intervals)
    metrics["rps"] = requests / seconds if seconds > 0 else None
    metrics["errors %"] = 100.0 * errors / (requests + errors) if requests + errors else 0.0
    return metrics


def _blocks(intervals: list[_Interval]) -> list[_Interval]:
    """The intervals, in at most :data:`MAX_BLOCKS` blocks of consecutive ones."""
    if len(intervals) <= MAX_BLOCKS:
        return intervals
    blocks = []
    for number in range(MAX_BLOCKS):
        part = intervals[number * len(intervals) // MAX_BLOCKS : (number + 1) * len(intervals) // MAX_BLOCKS]
        blocks.append(
            _Interval(
                sum(i.seconds for i in part), sum(i.requests for i in part), sum(i.errors for i in part), _merge(part)
            )
        )
    return blocks


def _change(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if a == 0:
        return 0.0 if b == 0 else None
    return b / a - 1.0


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def compare_runs(a: Run, b: Run, *, resamples: int = RESAMPLES, seed: int = 0) -> Comparison:
    """Compare run ``b`` with run ``a`` (see the module docstring)."""
    values = _Values()
    blocks_a, blocks_b = _blocks(a.intervals), _blocks(b.intervals)
    whole_a, whole_b = _metrics(blocks_a, values), _metrics(blocks_b, values)
    names = [name for name, _ in PERCENTILES] + ["rps", "errors %"]
    notes = _differences(a, b)
    noisy = len(a.intervals) >= MIN_INTERVALS and len(b.intervals) >= MIN_INTERVALS
    samples: dict[str, list[float]] = {name: [] for name in names}
    if noisy:
        rng = random.Random(seed)
        for _ in range(resamples):
            draw_a = _metrics(rng.choices(blocks_a, k=len(blocks_a)), values)
            draw_b = _metrics(rng.choices(blocks_b, k=len(blocks_b)), values)
            for name in names:
                change = _change(draw_a[name], draw_b[name])
                if change is not None:
                    samples[name].append(change)
    else:
        fewest = min(len(a.intervals), len(b.intervals))
        notes.append(
            f"{fewest} interval{'s' if fewest != 1 else ''} in a run: too few to estimate the noise; only changes"
            f" above {NOISE_FLOOR:.0%} count (run longer, or with a shorter --interval)"
        )
    deltas = []
    for name in names:
        higher_is_worse = name != "rps"
        change = _change(whole_a[name], whole_b[name])
        low = high = None
        if noisy and len(samples[name]) >= resamples // 2:
            ordered = sorted(samples[name])
            low, high = _quantile(ordered, 0.025), _quantile(ordered, 0.975)
        verdict = _verdict(change, low, high, higher_is_worse, noisy)
        deltas.append(
            Delta(name, whole_a[name], whole_b[name], change, low, high, higher_is_worse, verdict, name in JUDGED)
        )
    judged = [delta for delta in deltas if delta.judged]
    if any(delta.verdict == "worse" for delta in judged):
        overall: Verdict = "worse"
    elif any(delta.verdict == "better" for delta in judged):
        overall = "better"
    else:
        overall = "no difference"
    return Comparison(a, b, deltas, overall, notes)


def _verdict(
    change: float | None, low: float | None, high: float | None, higher_is_worse: bool, noisy: bool
) -> Verdict:
    if change is None:
        return "no difference"
    if low is None or high is None:
        if noisy or abs(change) <= NOISE_FLOOR:
            return "no difference"
        up = change > 0
    elif low > MIN_EFFECT:
        up = True
    elif high < -MIN_EFFECT:
        up = False
    else:
        return "no difference"
    return "worse" if up == higher_is_worse else "better"


def _differences(a: Run, b: Run) -> list[str]:
    """Notes on arguments that differ between the runs (the comparison still runs)."""
    first = a.document.get("arguments") or {}
    second = b.document.get("arguments") or {}
    notes = []
    for key in _COMPARED_ARGUMENTS:
        if first.get(key) != second.get(key):
            notes.append(f"the runs differ in {key}: {first.get(key)!r} and {second.get(key)!r}")
    if a.document.get("mode") != b.document.get("mode"):
        notes.append(f"the runs differ in mode: {a.document.get('mode')} and {b.document.get('mode')}")
    return notes
