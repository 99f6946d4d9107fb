"""Thresholds: pass/fail conditions on a run, for CI (``--threshold 'p99<20ms'``; k6's thresholds).

Grammar: ``METRIC OP VALUE``, with ``OP`` one of ``<``, ``<=``, ``>``, ``>=``:

===============  =======================================================  ==============================
metric           what                                                      value
===============  =======================================================  ==============================
``pN``           latency percentile N (``p50``, ``p99``, ``p99.9``)        ``20ms``, ``1.5s``, ``800us``
``max``, ``mean``  latency (corrected in rate mode)                          (no unit: milliseconds)
``errors``       failed attempts                                           ``0.1%`` of the attempts that
                                                                           ended, or a count (``10``)
``rps``          responses per second over the run (or the stage)         ``10000``
===============  =======================================================  ==============================

A threshold is checked over the whole run, or over each stage on its own (``--threshold-per-stage``). A
latency threshold over a run or stage without a single response is breached: nothing shows it was met.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Outcome", "Threshold", "evaluate", "parse_threshold"]

Op = Literal["<", "<=", ">", ">="]
_EXPRESSION = re.compile(
    r"\s*(?P<metric>p\d+(?:[._]\d+)?|max|mean|errors|rps)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|us|µs|%|/s)?\s*"
)
_LATENCY_UNITS = {"ms": 1.0, "s": 1000.0, "us": 0.001, "µs": 0.001, None: 1.0}


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold. ``limit`` is in milliseconds for latency metrics, a percentage for ``errors``
    given with ``%`` (``percent``), else a count or requests/s. Raises ``ValueError`` when built wrong."""

    text: str
    metric: str  # "p99.9", "max", "mean", "errors", "rps"
    op: Op
    limit: float
    percent: bool = False

    def __post_init__(self) -> None:
        if self.op not in ("<", "<=", ">", ">="):
            raise ValueError(f"{self.text!r}: unknown comparison {self.op!r}")
        if not (math.isfinite(self.limit) and self.limit >= 0):
            raise ValueError(f"{self.text!r}: the limit must be zero or more")

    def __str__(self) -> str:
        return self.text

    @property
    def percentile(self) -> float | None:
        """The percentile of a ``pN`` threshold, else None."""
        return float(self.metric[1:]) if self.metric.startswith("p") else None

    @property
    def unit(self) -> str:
        if self.metric == "errors":
            return "%" if self.percent else ""
        if self.metric == "rps":
            return "/s"
        return " ms"

    def met_by(self, value: float) -> bool:
        op, limit = self.op, self.limit
        if op == "<":
            return value < limit
        if op == "<=":
            return value <= limit
        if op == ">":
            return value > limit
        return value >= limit


def parse_threshold(text: str) -> Threshold:
    """A :class:`Threshold` from ``p99<20ms``, ``errors<0.1%``, ``rps>10000`` ...

    Raises ``ValueError`` quoting ``text`` and saying what is wrong with it.
    """
    match = _EXPRESSION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not a threshold: {text!r} (write METRIC<VALUE or METRIC>VALUE: p99<20ms, p99.9<50ms, max<1s,"
            " errors<0.1%, errors<10, rps>10000)"
        )
    metric, op, unit = match.group("metric"), match.group("op"), match.group("unit")
    value = float(match.group("value"))
    if metric.startswith("p"):
        metric = metric.replace("_", ".")
        percentile = float(metric[1:])
        if not 0 < percentile <= 100:
            raise ValueError(f"{text!r}: a percentile is above 0 and at most 100, got {metric}")
        metric = f"p{percentile:g}"
    if metric == "errors":
        if unit not in (None, "%"):
            raise ValueError(f"{text!r}: errors takes a count (errors<10) or a percentage (errors<0.1%)")
        if unit == "%" and value > 100:
            raise ValueError(f"{text!r}: a percentage is at most 100")
        return Threshold(text.strip(), metric, op, value, percent=unit == "%")  # type: ignore[arg-type]
    if metric == "rps":
        if unit not in (None, "/s"):
            raise ValueError(f"{text!r}: rps takes requests per second (rps>10000)")
        return Threshold(text.strip(), metric, op, value)  # type: ignore[arg-type]
    if unit in ("%", "/s"):
        raise ValueError(f"{text!r}: a latency takes a time (20ms, 1.5s, 800us)")
    return Threshold(text.strip(), metric, op, value * _LATENCY_UNITS[unit], percent=False)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A threshold checked over one scope (``stage`` None: the whole run): the measured ``value`` in the
    threshold's unit (None when there was nothing to measure) and whether it was met."""

    threshold: Threshold
    stage: int | None
    value: float | None
    ok: bool

    def describe(self, *, verdict: bool = True) -> str:
        """``p99<20ms over the run: 12.3 ms, met`` (without ``, met`` unless ``verdict``)."""
        scope = "the run" if self.stage is None else f"stage {self.stage + 1}"
        measured = "no responses" if self.value is None else f"{_number(self.value)}{self.threshold.unit}"
        said = (", met" if self.ok else ", BREACHED") if verdict else ""
        return f"{self.threshold.text} over {scope}: {measured}{said}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold.text,
            "metric": self.threshold.metric,
            "stage": self.stage,
            "value": None if self.value is None else round(self.value, 6),
            "limit": self.threshold.limit,
            "ok": self.ok,
        }


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"


def evaluate(
    threshold: Threshold,
    *,
    histogram: Any,
    requests: int,
    errors: int,
    duration_s: float,
    stage: int | None = None,
) -> Outcome:
    """Check ``threshold`` against one scope's latency ``histogram`` (HdrHistogram, microseconds), its
    responses, failed attempts and length."""
    metric = threshold.metric
    value: float | None
    if metric == "errors":
        ended = requests + errors
        value = (100.0 * errors / ended if ended else 0.0) if threshold.percent else float(errors)
    elif metric == "rps":
        value = requests / duration_s if duration_s > 0 else 0.0
    elif histogram.get_total_count() == 0:
        value = None
    elif metric == "max":
        value = histogram.get_max_value() / 1000.0
    elif metric == "mean":
        value = histogram.get_mean_value() / 1000.0
    else:
        value = histogram.get_value_at_percentile(threshold.percentile) / 1000.0
    return Outcome(threshold, stage, value, value is not None and threshold.met_by(value))
