"""Stages: a rate or a number of connections that ramps linearly over time (k6's stages).

``--stages 10s:1000,30s:5000,10s:0`` is three stages: from 0 to 1,000 requests/s over 10 s, to 5,000 over
the next 30 s, back to 0 over the last 10 s. Each stage ramps linearly from the previous stage's target (the
first from 0), so ``0s:500,30s:500`` holds 500 for 30 s. The same for ``--connection-stages``, where the
target is a number of open connections.

A rate ramp is turned into send times exactly: with ``r(t)`` the total rate, ``N(t) = integral of r`` is how
many requests are due by ``t``, and the k-th request of the run (counted over every connection of every
worker) is due at ``N^-1(k)``. Connection slot ``s`` of ``C`` (numbered over the whole run) sends the
requests ``k = s, s + C, s + 2C, ...``, so the slots take turns as in wrk2 -- at a constant rate ``R`` this
is wrk2's schedule, ``k / R``. Pure arithmetic, no I/O: the engines call :meth:`RateRamp.due`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["ConnectionRamp", "RateRamp", "Stage", "parse_stages", "stage_bounds"]

_STAGE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?\s*:\s*(\d+(?:\.\d*)?|\.\d+)\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
#: A stage run is bounded like any run: at most this many seconds in all.
MAX_TOTAL_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Stage:
    """``duration`` seconds ramping linearly to ``target`` (requests/s, or connections)."""

    duration: float
    target: float

    def __post_init__(self) -> None:
        if not (isinstance(self.duration, (int, float)) and 0 <= self.duration < math.inf):
            raise ValueError(f"a stage's duration must be zero or more seconds, got {self.duration!r}")
        if not (isinstance(self.target, (int, float)) and 0 <= self.target < math.inf):
            raise ValueError(f"a stage's target must be zero or more, got {self.target!r}")

    def __str__(self) -> str:
        return f"{self.duration:g}s:{self.target:g}"


def parse_stages(text: str, *, integer: bool = False) -> tuple[Stage, ...]:
    """``10s:1000,30s:5000,10s:0`` -> stages. ``integer`` requires whole targets (connections).

    Raises ``ValueError`` quoting the stage that does not parse, or when the stages last no time at all.
    """
    stages = []
    for part in text.split(","):
        match = _STAGE.fullmatch(part)
        if match is None:
            raise ValueError(f"not a stage: {part.strip()!r} (write DURATION:TARGET, e.g. 10s:1000)")
        duration = float(match.group(1)) * _UNITS[match.group(2)]
        target = float(match.group(3))
        if integer and not target.is_integer():
            raise ValueError(f"a stage's target must be a whole number of connections, got {part.strip()!r}")
        stages.append(Stage(duration, target))
    total = sum(stage.duration for stage in stages)
    if total <= 0:
        raise ValueError(f"the stages {text!r} last no time: give at least one a duration")
    if total > MAX_TOTAL_S:
        raise ValueError(f"the stages {text!r} last {total:g} s: at most {MAX_TOTAL_S:g} s")
    return tuple(stages)


def stage_bounds(stages: tuple[Stage, ...]) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of each stage into the run."""
    bounds = []
    start = 0.0
    for stage in stages:
        bounds.append((start, start + stage.duration))
        start += stage.duration
    return bounds


class _Ramp:
    """A piecewise linear value over the stages, 0 at the start."""

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        self.stages = stages
        self.bounds = stage_bounds(stages)
        self.duration = self.bounds[-1][1] if self.bounds else 0.0

    def value_at(self, t: float) -> float:
        """The ramp's value ``t`` seconds into the run (the last target after the end)."""
        previous = 0.0
        for stage, (start, end) in zip(self.stages, self.bounds, strict=True):
            if t < end:
                if end <= start:
                    return stage.target
                return previous + (stage.target - previous) * (max(t, start) - start) / (end - start)
            previous = stage.target
        return previous

    def stage_at(self, t: float) -> int:
        """The index of the stage ``t`` seconds into the run is in (the last one after the end)."""
        for index, (_, end) in enumerate(self.bounds):
            if t < end:
                return index
        return len(self.bounds) - 1


class RateRamp(_Ramp):
    """Send times for a ramping total rate (see the module docstring)."""

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        super().__init__(stages)
        # Requests due at each stage's start: the integral of the rate so far.
        self._due_before: list[float] = []
        due = previous = 0.0
        for stage in stages:
            self._due_before.append(due)
            due += (previous + stage.target) / 2.0 * stage.duration
            previous = stage.target
        self.total = due  # requests due over the whole ramp

    def due(self, k: float) -> float:
        """Seconds into the run at which the k-th request (from 0) is due; ``inf`` if never."""
        if k >= self.total:
            return math.inf
        previous = 0.0
        for stage, (start, end), before in zip(self.stages, self.bounds, self._due_before, strict=True):
            after = before + (previous + stage.target) / 2.0 * stage.duration
            if k < after and end > start:
                # Solve before + previous*x + slope/2*x^2 = k for x in [0, duration]; written so that it is
                # exact for a flat stage (slope 0) and stable for a falling one.
                slope = (stage.target - previous) / (end - start)
                left = k - before
                root = math.sqrt(max(0.0, previous * previous + 2.0 * slope * left))
                denominator = previous + root
                x = 2.0 * left / denominator if denominator > 0 else 0.0
                return start + min(max(x, 0.0), end - start)
            previous = stage.target
        return math.inf  # pragma: no cover - k < total always lands in a stage

    def mean_rate(self, index: int) -> float:
        """The target's mean over stage ``index``, requests/s."""
        stage = self.stages[index]
        previous = self.stages[index - 1].target if index else 0.0
        return (previous + stage.target) / 2.0


class ConnectionRamp(_Ramp):
    """How many connections are open ``t`` seconds into the run: the ramp, rounded to a whole number."""

    def count_at(self, t: float) -> int:
        return math.floor(self.value_at(t) + 0.5)

    @staticmethod
    def local_count(total_active: int, worker: int, workers: int, connections: int) -> int:
        """A worker's share of ``total_active`` connections: the run's slots are dealt out to the workers
        in turn (slot ``g`` to worker ``g % workers``), so a ramp grows every worker alike."""
        if total_active <= worker:
            return 0
        return min(connections, (total_active - worker + workers - 1) // workers)
