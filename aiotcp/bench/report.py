"""Rendering a :class:`~aiotcp.bench.workers.BenchResult`: text for people, JSON, an HdrHistogram interval
log, and a self-contained HTML page with SVG plots.

JSON schema (``aiotcp.bench/1``)
-------------------------------
One object::

    schema            "aiotcp.bench/1"
    tool, version     "aiotcp", the aiotcp version
    python            e.g. "3.11.9"
    loop              "uvloop" | "asyncio" | "trio"
    engine            "httptools" | "h11"
    arguments         {url, method, connections, duration_s, requests, warmup_s, rate, workers, keepalive,
                       pipeline, timeout_s, headers: [[name, value], ...]}   (null when not given)
    mode              "closed" | "rate"
    interrupted       true when the run was stopped early (Ctrl-C)
    requests          complete responses in the measured run
    attempts          requests + errors + in_flight
    duration_s        length of the measured run
    rps               requests / duration_s
    bytes             {read, written}            bytes on the wire, headers included
    read_bytes_per_s  bytes.read / duration_s
    latency_ms        {p50, p75, p90, p99, p99_9, max, min, mean}  (corrected in rate mode; null if empty)
    latency_uncorrected_ms   the same from the actual send times, rate mode only (else null)
    rate              {target, achieved, shortfall} in requests/s, rate mode only (else null)
    status            {"200": count, ...}
    errors            {kind: count, ...}         kinds as in aiotcp.errors
    error_messages    {kind: first message seen}
    connections       {opened, failed, reset, closed_by_peer}   (warmup included)
    in_flight         requests sent but not answered when the run stopped (not in requests or errors)
    warmup_requests   responses during the warmup (not counted anywhere else)
    intervals         [{start_s, length_s, requests, rps, errors, p50_ms, p99_ms, max_ms}, ...]
    dns               {name, address, a, aaaa, cname, resolver, dns_ms}: what the host name resolved to, once
                      for the run, and the address every connection went to (null for an IP address)

Latencies are in milliseconds with microsecond resolution (HdrHistogram, 3 significant digits).
"""

from __future__ import annotations

import html
import math
import platform
import time
from typing import Any, TextIO

from .._version import __version__
from ..text import escape_control
from . import histogram as hist
from .results import Interval
from .workers import BenchResult

__all__ = ["SCHEMA", "rate_warning", "to_json", "write_hdr_log", "write_html", "write_text"]

SCHEMA = "aiotcp.bench/1"
#: Achieved below this fraction of the target rate gets a warning.
RATE_TOLERANCE = 0.9


def _arguments(result: BenchResult) -> dict[str, Any]:
    config = result.config
    return {
        "url": config.url,
        "method": config.method,
        "connections": config.connections,
        "duration_s": config.duration,
        "requests": config.requests,
        "warmup_s": config.warmup,
        "rate": config.rate,
        "workers": config.workers,
        "keepalive": config.keepalive,
        "pipeline": config.pipeline,
        "timeout_s": config.timeout,
        "headers": [list(pair) for pair in config.headers],
    }


def _interval_record(interval: Interval) -> dict[str, Any]:
    histogram = interval.histogram()
    summary = hist.summary_ms(histogram)
    return {
        "start_s": interval.start_s,
        "length_s": interval.length_s,
        "requests": interval.requests,
        "rps": round(interval.requests / interval.length_s, 1) if interval.length_s > 0 else 0.0,
        "errors": interval.errors,
        "p50_ms": summary["p50"],
        "p99_ms": summary["p99"],
        "max_ms": summary["max"],
    }


def rate_warning(result: BenchResult) -> str | None:
    """A sentence when the achieved rate fell short of the target; None otherwise."""
    target = result.config.rate
    if target is None or result.duration_s <= 0:
        return None
    achieved = result.rps
    if achieved >= RATE_TOLERANCE * target:
        return None
    return (
        f"achieved {achieved:,.0f} requests/s, {achieved / target:.0%} of the target {target:,.0f}:"
        " the server (or this client) could not keep up; latency is measured from the intended send times"
    )


def to_json(result: BenchResult) -> dict[str, Any]:
    """The JSON document of the module docstring."""
    counters = result.counters
    rate = None
    if result.config.rate is not None:
        rate = {
            "target": result.config.rate,
            "achieved": round(result.rps, 1),
            "shortfall": rate_warning(result) is not None,
        }
    return {
        "schema": SCHEMA,
        "tool": "aiotcp",
        "version": __version__,
        "python": platform.python_version(),
        "loop": result.loop,
        "engine": result.engine,
        "arguments": _arguments(result),
        "mode": result.config.mode,
        "interrupted": result.interrupted,
        "requests": counters.requests,
        "attempts": counters.attempts,
        "duration_s": round(result.duration_s, 6),
        "rps": round(result.rps, 1),
        "bytes": {"read": counters.bytes_read, "written": counters.bytes_written},
        "read_bytes_per_s": round(result.read_bps, 1),
        "latency_ms": hist.summary_ms(result.latency),
        "latency_uncorrected_ms": None if result.uncorrected is None else hist.summary_ms(result.uncorrected),
        "rate": rate,
        "status": {str(code): count for code, count in sorted(counters.status.items())},
        "errors": dict(sorted(counters.errors.items())),
        "error_messages": dict(sorted(counters.error_messages.items())),
        "connections": {
            "opened": counters.opened,
            "failed": counters.failed,
            "reset": counters.reset,
            "closed_by_peer": counters.closed_by_peer,
        },
        "in_flight": counters.in_flight,
        "warmup_requests": result.warmup_requests,
        "intervals": [_interval_record(interval) for interval in result.intervals],
        "dns": _dns_record(result),
    }


def _dns_record(result: BenchResult) -> dict[str, Any] | None:
    resolution = result.resolution
    if resolution is None:
        return None
    return {
        "name": resolution.name,
        "address": (resolution.a or resolution.aaaa)[0],
        "a": list(resolution.a),
        "aaaa": list(resolution.aaaa),
        "cname": list(resolution.cname),
        "resolver": resolution.resolver,
        "dns_ms": resolution.dns_ms,
    }


# -- text ------------------------------------------------------------------------------------------------


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1000
    return f"{count:.2f} GB"  # pragma: no cover - the loop returns


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _latency_row(label: str, histogram: Any) -> str:
    summary = hist.summary_ms(histogram)
    cells = "  ".join(f"{name.replace('_', '.')} {_ms(summary[name])}" for name in ("p50", "p75", "p90", "p99"))
    return (
        f"  {label:<13}{cells}  p99.9 {_ms(summary['p99_9'])}  max {_ms(summary['max'])}  mean {_ms(summary['mean'])}"
    )


def describe_run(result: BenchResult) -> str:
    config = result.config
    if config.requests is not None:
        what = f"{config.requests:,} requests"
        if config.duration is not None:
            what += f" (at most {config.duration:g} s)"
    else:
        what = f"{config.duration:g} s"
    mode = f"rate {config.rate:,.0f}/s" if config.rate is not None else "closed loop"
    keepalive = "keep-alive" if config.keepalive else "no keep-alive"
    pipeline = f", pipeline {config.pipeline}" if config.pipeline > 1 else ""
    workers = f"{result.workers} worker" + ("s" if result.workers != 1 else "")
    return (
        f"{config.method} {config.url}: {what}, {config.connections} connections, {mode}, {keepalive}{pipeline};"
        f" engine {result.engine} on {result.loop}, {workers}"
    )


def write_text(result: BenchResult, out: TextIO) -> None:
    """The wrk/oha-style summary for people."""
    counters = result.counters
    print(f"aiotcp bench {escape_control(describe_run(result))}", file=out)
    if result.interrupted:
        print("  (interrupted: partial run)", file=out)
    print(
        f"  requests     {counters.requests:,} in {result.duration_s:.2f} s  {result.rps:,.1f} requests/s",
        file=out,
    )
    print(
        f"  transfer     {_size(counters.bytes_read)} read, {_size(counters.bytes_written)} written"
        f"  {_size(result.read_bps)}/s",
        file=out,
    )
    print("  latency (ms)", file=out)
    if result.uncorrected is not None:
        print(_latency_row("corrected", result.latency), file=out)
        print(_latency_row("uncorrected", result.uncorrected), file=out)
    else:
        print(_latency_row("", result.latency), file=out)
    statuses = ", ".join(f"{code}: {count:,}" for code, count in sorted(counters.status.items())) or "none"
    print(f"  status       {statuses}", file=out)
    if counters.errors:
        print(f"  errors       {counters.error_count:,}", file=out)
        for kind, count in sorted(counters.errors.items(), key=lambda item: -item[1]):
            message = escape_control(counters.error_messages.get(kind, ""))
            print(f"    {kind:<15} {count:>10,}  {message}", file=out)
    else:
        print("  errors       none", file=out)
    print(
        f"  connections  opened {counters.opened:,}, failed {counters.failed:,}, reset {counters.reset:,},"
        f" closed by peer {counters.closed_by_peer:,}",
        file=out,
    )
    print(f"  in flight    {counters.in_flight:,} at the end (not counted as requests or errors)", file=out)
    dns = _dns_record(result)
    if dns is not None:
        chain = f" via {' -> '.join(dns['cname'])}" if dns["cname"] else ""
        others = len(dns["a"]) + len(dns["aaaa"]) - 1
        more = f" (of {others + 1} addresses)" if others else ""
        print(
            escape_control(
                f"  dns          {dns['name']}{chain} -> {dns['address']}{more}, resolved once"
                f" by {dns['resolver']} in {dns['dns_ms']} ms"
            ),
            file=out,
        )
    if result.warmup_requests:
        print(f"  warmup       {result.warmup_requests:,} responses, not counted", file=out)
    warning = rate_warning(result)
    if warning:
        print(f"warning: {warning}", file=out)


# -- HdrHistogram interval log -------------------------------------------------------------------------------


def write_hdr_log(result: BenchResult, out: TextIO) -> None:
    """HdrHistogram's interval log (format 1.2): one line per interval, values in microseconds.

    ``Interval_Max`` is in milliseconds (max_value_unit_ratio 1000). In rate mode the uncorrected interval
    histograms follow, tagged ``Tag=uncorrected``. HistogramLogProcessor and the HdrHistogram plotters read
    this; so does ``hdrh.log.HistogramLogReader``.
    """
    start = result.started_at
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start))
    out.write(f"#[Logged with aiotcp {__version__} bench: {escape_control(describe_run(result))}]\n")
    out.write("#[Histogram log format version 1.2]\n")
    out.write(f"#[StartTime: {start:.3f} (seconds since epoch), {stamp}]\n")
    out.write("#[Values in microseconds; Interval_Max in milliseconds]\n")
    out.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
    for interval in result.intervals:
        histogram = interval.histogram()
        max_ms = histogram.get_max_value() / 1000.0
        out.write(f"{interval.start_s:.3f},{interval.length_s:.3f},{max_ms:.3f},{interval.latency}\n")
    for interval in result.intervals:
        if interval.uncorrected is not None:
            max_ms = hist.decode(interval.uncorrected).get_max_value() / 1000.0
            out.write(
                f"Tag=uncorrected,{interval.start_s:.3f},{interval.length_s:.3f},{max_ms:.3f},{interval.uncorrected}\n"
            )


# -- HTML --------------------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 760, 320
_MARGIN = {"left": 70, "right": 40, "top": 20, "bottom": 50}
_COLORS = {"corrected": "#c0392b", "uncorrected": "#2471a3", "latency": "#2471a3", "rps": "#1e8449"}


def _percentile_curve(histogram: Any) -> list[tuple[float, float]]:
    """(x, latency_ms) points, x = log10(1 / (1 - percentile/100)): the HdrHistogram percentile plot."""
    points: list[tuple[float, float]] = []
    if histogram.get_total_count() == 0:
        return points
    for step in histogram.get_percentile_iterator(5):
        percentile = min(step.percentile_level_iterated_to, 99.9999)
        x = math.log10(1.0 / (1.0 - percentile / 100.0))
        points.append((x, step.value_iterated_to / 1000.0))
        if percentile >= 99.9999:
            break
    return points


def _svg_frame(title: str, x_label: str, y_label: str, body: list[str]) -> str:
    left, top = _MARGIN["left"], _MARGIN["top"]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}"'
        f' viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{html.escape(title)}">'
        f'<rect x="0" y="0" width="{_WIDTH}" height="{_HEIGHT}" fill="#fff"/>'
        + "".join(body)
        + f'<text x="{left + (_WIDTH - left - _MARGIN["right"]) / 2}" y="{_HEIGHT - 8}" text-anchor="middle"'
        f' class="axis">{html.escape(x_label)}</text>'
        f'<text x="16" y="{top + (_HEIGHT - top - _MARGIN["bottom"]) / 2}" text-anchor="middle" class="axis"'
        f' transform="rotate(-90 16 {top + (_HEIGHT - top - _MARGIN["bottom"]) / 2})">{html.escape(y_label)}</text>'
        "</svg>"
    )


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        candidate = factor * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))  # pragma: no cover


def _plot_area() -> tuple[float, float, float, float]:
    left, top = _MARGIN["left"], _MARGIN["top"]
    return left, top, _WIDTH - left - _MARGIN["right"], _HEIGHT - top - _MARGIN["bottom"]


def _y_grid(y_max: float, fmt: str) -> list[str]:
    left, top, width, height = _plot_area()
    body = []
    for i in range(6):
        value = y_max * i / 5
        y = top + height - height * i / 5
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" class="grid"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt.format(value)}</text>')
    return body


def _latency_svg(result: BenchResult) -> str:
    curves = []
    if result.uncorrected is not None:
        curves.append(("corrected", _percentile_curve(result.latency)))
        curves.append(("uncorrected", _percentile_curve(result.uncorrected)))
    else:
        curves.append(("latency", _percentile_curve(result.latency)))
    left, top, width, height = _plot_area()
    x_max = 6.0  # 99.9999%
    y_max = _nice_max(max((y for _, points in curves for _, y in points), default=1.0))
    body = _y_grid(y_max, "{:g}")
    for decimals, label in enumerate(("0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%")):
        x = left + width * decimals / x_max
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" class="grid"/>')
        body.append(f'<text x="{x:.1f}" y="{top + height + 18}" text-anchor="middle" class="tick">{label}</text>')
    for index, (name, points) in enumerate(curves):
        if not points:
            continue
        coords = [(left + width * min(x, x_max) / x_max, top + height - height * y / y_max) for x, y in points]
        path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        color = _COLORS[name]
        body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        body.append(f'<rect x="{left + 12}" y="{top + 10 + 18 * index}" width="14" height="4" fill="{color}"/>')
        body.append(f'<text x="{left + 32}" y="{top + 16 + 18 * index}" class="legend">{name}</text>')
    return _svg_frame("latency by percentile", "percentile", "latency (ms)", body)


def _throughput_svg(result: BenchResult) -> str:
    left, top, width, height = _plot_area()
    points = [
        (interval.start_s + interval.length_s, interval.requests / interval.length_s)
        for interval in result.intervals
        if interval.length_s > 0
    ]
    x_max = max((x for x, _ in points), default=1.0) or 1.0
    y_max = _nice_max(max((y for _, y in points), default=1.0))
    body = _y_grid(y_max, "{:,.0f}")
    for i in range(6):
        value = x_max * i / 5
        x = left + width * i / 5
        body.append(f'<text x="{x:.1f}" y="{top + height + 18}" text-anchor="middle" class="tick">{value:.1f}</text>')
    if points:
        coords = [(left + width * x / x_max, top + height - height * y / y_max) for x, y in points]
        path = f"M{left},{coords[0][1]:.1f} " + " ".join(f"L{x:.1f},{y:.1f}" for x, y in coords)
        body.append(f'<path d="{path}" fill="none" stroke="{_COLORS["rps"]}" stroke-width="2"/>')
        body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_COLORS["rps"]}"/>' for x, y in coords)
    return _svg_frame("throughput over time", "seconds into the run", "requests/s", body)


def _summary_rows(result: BenchResult) -> list[tuple[str, str]]:
    counters = result.counters
    rows = [
        ("requests", f"{counters.requests:,} in {result.duration_s:.2f} s"),
        ("requests/s", f"{result.rps:,.1f}"),
        ("transfer", f"{_size(counters.bytes_read)} read ({_size(result.read_bps)}/s)"),
        ("status", ", ".join(f"{code}: {count:,}" for code, count in sorted(counters.status.items())) or "none"),
        (
            "errors",
            ", ".join(f"{kind}: {count:,}" for kind, count in sorted(counters.errors.items())) or "none",
        ),
        (
            "connections",
            f"opened {counters.opened:,}, failed {counters.failed:,}, reset {counters.reset:,},"
            f" closed by peer {counters.closed_by_peer:,}",
        ),
        ("in flight at the end", f"{counters.in_flight:,}"),
    ]
    warning = rate_warning(result)
    if warning:
        rows.append(("warning", warning))
    return rows


def _percentile_table(result: BenchResult) -> str:
    columns = [("latency (ms)" if result.uncorrected is None else "corrected (ms)", result.latency)]
    if result.uncorrected is not None:
        columns.append(("uncorrected (ms)", result.uncorrected))
    summaries = [(label, hist.summary_ms(histogram)) for label, histogram in columns]
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in summaries)
    rows = []
    for key in ("p50", "p75", "p90", "p99", "p99_9", "max", "mean"):
        cells = "".join(f"<td>{_ms(summary[key])}</td>" for _, summary in summaries)
        rows.append(f"<tr><th>{key.replace('_', '.')}</th>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 800px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
code { background: #f3f3f3; padding: 1px 4px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }
svg .grid { stroke: #e5e5e5; stroke-width: 1; } svg .tick { font-size: 11px; fill: #555; }
svg .axis { font-size: 12px; fill: #333; } svg .legend { font-size: 12px; fill: #222; }
"""


def write_html(result: BenchResult, out: TextIO) -> None:
    """A self-contained page: summary, percentile table, latency-by-percentile and throughput plots."""
    summary = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in _summary_rows(result)
    )
    out.write(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>aiotcp bench {html.escape(result.config.url)}</title><style>{_CSS}</style></head><body>"
        f"<h1>aiotcp bench</h1><p><code>{html.escape(describe_run(result))}</code></p>"
        f"<p>aiotcp {html.escape(__version__)}, Python {html.escape(platform.python_version())},"
        f" {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(result.started_at))}</p>"
        f"<table>{summary}</table>"
        f"<h2>Latency</h2>{_percentile_table(result)}{_latency_svg(result)}"
        f"<h2>Throughput over time</h2>{_throughput_svg(result)}"
        "</body></html>\n"
    )
