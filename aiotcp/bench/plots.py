"""SVG line charts for the bench's HTML pages (the run report and the comparison of two runs): no script,
no external resource, one ``<svg>`` per chart that scales to the width of the page.

A chart has an x axis and a y axis, each linear or logarithmic (latency spans decades: on a log axis a
curve a hundred times lower than another still shows its shape), and series drawn as lines through points
or as steps: one horizontal segment per interval, from its start to its end, joined only to the segment
that starts where it ends -- so nothing is drawn where no interval was measured.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["COLORS", "Axis", "Series", "chart", "percentile_axis", "percentile_x"]

#: Line colours, distinguishable in colour and in grey.
COLORS = ("#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e", "#555555")

_WIDTH, _HEIGHT = 900, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 44, 52, 52


@dataclass(frozen=True, slots=True)
class Axis:
    """One axis: from ``low`` to ``high``, linear or logarithmic; ``labels`` overrides the ticks."""

    low: float
    high: float
    log: bool = False
    unit: str = ""
    labels: tuple[tuple[float, str], ...] = ()

    def fraction(self, value: float) -> float:
        """Where ``value`` lies, from 0 (low) to 1 (high), clamped."""
        if self.log:
            value = max(value, self.low)
            span = math.log10(self.high) - math.log10(self.low)
            where = (math.log10(value) - math.log10(self.low)) / span if span > 0 else 0.0
        else:
            span = self.high - self.low
            where = (value - self.low) / span if span > 0 else 0.0
        return min(1.0, max(0.0, where))

    def ticks(self) -> list[tuple[float, str]]:
        if self.labels:
            return list(self.labels)
        if self.log:
            for factors in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 7)):  # finer when the axis spans little
                ticks = []
                decade = 10 ** math.floor(math.log10(self.low))
                while decade <= self.high * 1.0001:
                    for factor in factors:
                        value = decade * factor
                        if self.low * 0.9999 <= value <= self.high * 1.0001:
                            ticks.append((value, _short(value)))
                    decade *= 10
                if len(ticks) >= 4:
                    break
            return ticks
        step = _nice_step((self.high - self.low) / 5)
        first = math.ceil(self.low / step) * step
        count = int((self.high - first) / step + 1e-9) + 1
        return [(first + i * step, _short(first + i * step)) for i in range(count)]

    @staticmethod
    def fit(values: Sequence[float], *, log: bool = False, unit: str = "", zero: bool = True) -> Axis:
        """An axis that holds ``values``: from 0 (``zero``) or their low end to a round number above them."""
        positive = [value for value in values if value > 0 and math.isfinite(value)]
        if log:
            if not positive:
                return Axis(0.01, 1.0, True, unit)
            # Bounds on the 1-2-5 steps around the values: a narrow range keeps the height of the chart.
            low = max(step for step in _steps(min(positive)) if step <= min(positive))
            high = min(step for step in _steps(max(positive)) if step >= max(positive))
            if high <= low:
                high = low * 2
            return Axis(low, high, True, unit)
        finite = [value for value in values if math.isfinite(value)]
        high = _nice_max(max(finite, default=1.0))
        low = 0.0 if zero else min(finite, default=0.0)
        return Axis(low, high if high > low else low + 1.0, False, unit)


def _steps(value: float) -> list[float]:
    """The 1-2-5 steps of the decades around ``value``."""
    decade = math.floor(math.log10(value))
    return [factor * 10.0**exponent for exponent in (decade - 1, decade, decade + 1) for factor in (1, 2, 5)]


def _nice_step(rough: float) -> float:
    if rough <= 0:
        return 1.0
    exponent = math.floor(math.log10(rough))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * 10**exponent
        if step >= rough:
            return float(step)
    return float(10 ** (exponent + 1))  # pragma: no cover


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        candidate = factor * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))  # pragma: no cover


def _short(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    if abs(value) >= 1:
        return f"{value:,.10g}"
    return f"{value:.4g}"


#: The x of the HdrHistogram percentile plot: log10(1 / (1 - p)), so 90 %, 99 %, 99.9 % ... are evenly spaced.
def percentile_x(percentile: float) -> float:
    return math.log10(1.0 / (1.0 - min(percentile, 99.9999) / 100.0))


def percentile_axis(nines: int = 6) -> Axis:
    """The x axis of a percentile plot, from 0 % to 99.9999 % (``nines`` nines)."""
    names = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"][: nines + 1]
    return Axis(0.0, float(nines), labels=tuple((float(i), name) for i, name in enumerate(names)))


@dataclass(frozen=True, slots=True)
class Series:
    """A named line: ``points`` (x, y) joined in order, or ``steps`` (x0, x1, y) drawn one segment each."""

    name: str
    color: str
    points: list[tuple[float, float]] = field(default_factory=list)
    steps: list[tuple[float, float, float]] = field(default_factory=list)
    dashed: bool = False
    width: float = 2.0


def chart(title: str, x: Axis, y: Axis, series: Sequence[Series], x_label: str, y_label: str) -> str:
    """One chart as an ``<svg>`` that fills the width of its container (its text scales with it)."""
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def px(value: float) -> float:
        return _LEFT + plot_w * x.fraction(value)

    def py(value: float) -> float:
        return _TOP + plot_h * (1.0 - y.fraction(value))

    body = [f'<rect x="0" y="0" width="{_WIDTH}" height="{_HEIGHT}" fill="#fff"/>']
    body.append(f'<text x="{_LEFT}" y="20" class="title">{html.escape(title)}</text>')
    for value, label in y.ticks():
        at = py(value)
        body.append(f'<line x1="{_LEFT}" y1="{at:.1f}" x2="{_LEFT + plot_w}" y2="{at:.1f}" class="grid"/>')
        body.append(
            f'<text x="{_LEFT - 6}" y="{at + 4:.1f}" text-anchor="end" class="tick">{html.escape(label)}</text>'
        )
    for value, label in x.ticks():
        at = px(value)
        body.append(f'<line x1="{at:.1f}" y1="{_TOP}" x2="{at:.1f}" y2="{_TOP + plot_h}" class="grid"/>')
        body.append(
            f'<text x="{at:.1f}" y="{_TOP + plot_h + 18}" text-anchor="middle" class="tick">{html.escape(label)}</text>'
        )
    body.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    legend_x = float(_LEFT)  # the legend: one row under the title, clear of every curve
    for line in series:
        dash = ' stroke-dasharray="7 5"' if line.dashed else ""
        style = f'fill="none" stroke="{line.color}" stroke-width="{line.width}"{dash}'
        if line.points:
            path = "M" + " L".join(f"{px(a):.1f},{py(b):.1f}" for a, b in line.points)
            body.append(f'<path d="{path}" {style}/>')
        if line.steps:
            body.append(f'<path d="{_step_path(line.steps, px, py)}" {style} stroke-linejoin="round"/>')
        body.append(
            f'<line x1="{legend_x:.0f}" y1="36" x2="{legend_x + 22:.0f}" y2="36" {style}/>'
            f'<text x="{legend_x + 28:.0f}" y="40" class="legend">{html.escape(line.name)}</text>'
        )
        legend_x += 48 + 7 * len(line.name)
    body.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_HEIGHT - 10}" text-anchor="middle" class="axis">'
        f"{html.escape(x_label)}</text>"
    )
    middle = _TOP + plot_h / 2
    body.append(
        f'<text x="16" y="{middle}" text-anchor="middle" class="axis" transform="rotate(-90 16 {middle})">'
        f"{html.escape(y_label)}</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%"'
        f' preserveAspectRatio="xMidYMid meet" role="img" aria-label="{html.escape(title)}">' + "".join(body) + "</svg>"
    )


def _step_path(
    steps: list[tuple[float, float, float]], px: Callable[[float], float], py: Callable[[float], float]
) -> str:
    """Horizontal segments, joined vertically only where one starts where the previous ended."""
    parts = []
    previous_end: float | None = None
    for start, end, value in steps:
        if previous_end is not None and abs(start - previous_end) < 1e-9:
            parts.append(f"L{px(start):.1f},{py(value):.1f}")
        else:
            parts.append(f"M{px(start):.1f},{py(value):.1f}")
        parts.append(f"L{px(end):.1f},{py(value):.1f}")
        previous_end = end
    return " ".join(parts)
