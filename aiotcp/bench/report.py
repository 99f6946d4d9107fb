"""Rendering a :class:`~aiotcp.bench.workers.BenchResult`: text for people, JSON, an HdrHistogram interval
log, and a self-contained HTML page with SVG charts. What is computed beyond the totals (per endpoint,
per status class, per stage, thresholds, self-check, warnings) comes from :mod:`.analysis`.

Units: latencies in milliseconds (microsecond resolution: HdrHistogram, 3 significant digits); sizes in
bytes in the JSON, and in decimal units in the text and HTML (1 kB = 1,000 bytes, 1 MB = 1,000,000 bytes).

JSON schema (``aiotcp.bench/2``)
--------------------------------
One object::

    schema            "aiotcp.bench/2"
    tool, version     "aiotcp", the aiotcp version
    python            e.g. "3.11.9"
    loop              "uvloop" | "asyncio" | "trio"
    engine            "httptools" | "h11"
    where             "process", or the Dask scheduler's address (--dask)
    started_at        when the measured run began (seconds since the epoch)
    arguments         {url, method, connections, duration_s, requests, warmup_s, rate, workers, keepalive,
                       pipeline, timeout_s, interval_s, headers: [[name, value], ...],
                       endpoints: [{method, url, weight}] (a mix; else null), order, bodies (how many),
                       stages: {of: "rate" | "connections", stages: [{duration_s, target}]} (else null),
                       thresholds: ["p99<20ms", ...], threshold_per_stage}   (null when not given)
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
    histogram         the run's latency histogram, encoded as in an HdrHistogram interval log (base64 of
                      the compressed V2 encoding, microseconds); histogram_uncorrected likewise (rate mode)
    rate              {target, achieved, shortfall} in requests/s, rate mode only (else null; with rate
                      stages the target is their mean)
    status            {"200": count, ...}
    status_classes    {"2xx": {requests, latency_ms}, ...}
    endpoints         [{method, url, weight, requests, rps, status: {"200": count}, latency_ms}, ...]
    errors            {kind: count, ...}         kinds as in aiotcp.errors
    error_messages    {kind: first message seen}
    connections       {opened, failed, reset, closed_by_peer}   (warmup included)
    in_flight         requests sent but not answered when the run stopped (not in requests or errors)
    warmup_requests   responses during the warmup (not counted anywhere else)
    stages            [{index, of, start_s, end_s, target_from, target_to, requests, rps, errors, latency_ms,
                       latency_uncorrected_ms}, ...]   (null without stages)
    thresholds        [{threshold, metric, stage, value, limit, ok}, ...]  (stage: null over the run)
    thresholds_breached   how many outcomes were not met (exit status 3 when more than 0)
    self_check        {cpu_s, cpu_us_per_request, cpu_busy, loop_lag_ms: {p50, p90, p99, max},
                       late_sends: {count, sends, fraction, threshold_ms, lag_ms: {p50, p90, p99, max}}
                       (rate mode; else null), generator_limited, limited_by: [reason, ...]}
    workers           [{index, where, state: "finished" | "lost", reason, requests, errors, cpu_s, cpu_busy,
                       loop_lag_p99_ms}, ...]
    warnings          [sentence, ...]   (lost workers, a rate shortfall, a generator that limited the run)
    intervals         [{index, start_s, length_s, stage, requests, rps, errors, p50_ms, p99_ms, max_ms,
                       histogram, histogram_uncorrected}, ...]
    dns               {name, address, a, aaaa, cname, resolver, dns_ms}: what the host name resolved to, once
                      for the run, and the address every connection went to (null for an IP address)
"""

from __future__ import annotations

import html
import math
import os
import platform
import re
import time
from typing import Any, TextIO

from .._version import __version__
from ..text import escape_control
from . import analysis
from . import histogram as hist
from .analysis import LATE_MS, SelfCheck, rate_warning
from .compare import Comparison, Run
from .plots import COLORS, Axis, Series, chart, percentile_axis, percentile_x
from .results import Interval
from .stages import RateRamp, stage_bounds
from .workers import BenchResult

__all__ = [
    "SCHEMA",
    "compare_rows",
    "describe_run",
    "rate_warning",
    "size",
    "to_json",
    "write_compare_html",
    "write_compare_text",
    "write_hdr_log",
    "write_html",
    "write_text",
]

SCHEMA = "aiotcp.bench/2"
#: Text reports fit this many columns.
TEXT_WIDTH = 120


def _arguments(result: BenchResult) -> dict[str, Any]:
    config = result.config
    stages = None
    if config.stages:
        stages = {
            "of": "rate" if config.rate_stages else "connections",
            "stages": [{"duration_s": stage.duration, "target": stage.target} for stage in config.stages],
        }
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
        "interval_s": config.interval,
        "headers": [list(pair) for pair in config.headers],
        "endpoints": [
            {"method": endpoint.method, "url": endpoint.url, "weight": endpoint.weight} for endpoint in config.endpoints
        ]
        or None,
        "order": config.order,
        "bodies": len(config.bodies),
        "stages": stages,
        "thresholds": [threshold.text for threshold in config.thresholds],
        "threshold_per_stage": config.threshold_per_stage,
        "proxy": None if config.proxy_value is None else config.proxy_value.url,  # never the credentials
        "unix_socket": config.unix_socket,
    }


def _interval_record(interval: Interval) -> dict[str, Any]:
    histogram = interval.histogram()
    summary = hist.summary_ms(histogram)
    return {
        "index": interval.index,
        "start_s": interval.start_s,
        "length_s": interval.length_s,
        "stage": interval.stage,
        "requests": interval.requests,
        "rps": round(interval.requests / interval.length_s, 1) if interval.length_s > 0 else 0.0,
        "errors": interval.errors,
        "p50_ms": summary["p50"],
        "p99_ms": summary["p99"],
        "max_ms": summary["max"],
        "histogram": interval.latency,
        "histogram_uncorrected": interval.uncorrected,
    }


def _self_check_record(check: SelfCheck) -> dict[str, Any]:
    late = None
    if check.late_sends is not None:
        sends = check.sends or 0
        late = {
            "count": check.late_sends,
            "sends": sends,
            "fraction": round(check.late_sends / sends, 6) if sends else 0.0,
            "threshold_ms": LATE_MS,
            "lag_ms": check.late_ms(),
        }
    return {
        "cpu_s": round(check.cpu_s, 6),
        "cpu_us_per_request": None if check.cpu_us_per_request is None else round(check.cpu_us_per_request, 3),
        "cpu_busy": round(check.busy, 4),
        "loop_lag_ms": check.lag_ms(),
        "late_sends": late,
        "generator_limited": check.generator_limited,
        "limited_by": check.limited_by,
    }


def to_json(result: BenchResult) -> dict[str, Any]:
    """The JSON document of the module docstring."""
    counters = result.counters
    config = result.config
    check = analysis.self_check(result)
    outcomes = analysis.threshold_outcomes(result)
    rate = None
    if config.mode == "rate":
        if config.rate is not None:
            target = config.rate
        else:
            ramp = RateRamp(config.rate_stages)
            target = round(ramp.total / ramp.duration, 3) if ramp.duration > 0 else 0.0
        rate = {"target": target, "achieved": round(result.rps, 1), "shortfall": rate_warning(result) is not None}
    stages = None
    if config.stages:
        stages = [
            {
                "index": stage.index,
                "of": stage.of,
                "start_s": round(stage.start_s, 6),
                "end_s": round(stage.end_s, 6),
                "target_from": stage.start_target,
                "target_to": stage.stage.target,
                "requests": stage.requests,
                "rps": round(stage.rps, 1),
                "errors": stage.errors,
                "latency_ms": hist.summary_ms(stage.histogram),
                "latency_uncorrected_ms": None if stage.uncorrected is None else hist.summary_ms(stage.uncorrected),
            }
            for stage in analysis.stage_stats(result)
        ]
    return {
        "schema": SCHEMA,
        "tool": "aiotcp",
        "version": __version__,
        "python": platform.python_version(),
        "loop": result.loop,
        "engine": result.engine,
        "where": result.where,
        "started_at": round(result.started_at, 3),
        "arguments": _arguments(result),
        "mode": config.mode,
        "interrupted": result.interrupted,
        "requests": counters.requests,
        "attempts": counters.attempts,
        "duration_s": round(result.duration_s, 6),
        "rps": round(result.rps, 1),
        "bytes": {"read": counters.bytes_read, "written": counters.bytes_written},
        "read_bytes_per_s": round(result.read_bps, 1),
        "latency_ms": hist.summary_ms(result.latency),
        "latency_uncorrected_ms": None if result.uncorrected is None else hist.summary_ms(result.uncorrected),
        "histogram": hist.encode(result.latency),
        "histogram_uncorrected": None if result.uncorrected is None else hist.encode(result.uncorrected),
        "rate": rate,
        "status": {str(code): count for code, count in sorted(counters.status.items())},
        "status_classes": {
            name: {"requests": latency.total, "latency_ms": latency.summary_ms()}
            for name, latency in analysis.class_stats(result).items()
        },
        "endpoints": [
            {
                "method": stats.endpoint.method,
                "url": stats.endpoint.url,
                "weight": stats.endpoint.weight,
                "requests": stats.requests,
                "rps": round(stats.requests / result.duration_s, 1) if result.duration_s > 0 else 0.0,
                "status": {str(code): count for code, count in stats.status.items()},
                "latency_ms": stats.latency.summary_ms(),
            }
            for stats in analysis.endpoint_stats(result)
        ],
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
        "stages": stages,
        "thresholds": [outcome.as_dict() for outcome in outcomes],
        "thresholds_breached": sum(not outcome.ok for outcome in outcomes),
        "self_check": _self_check_record(check),
        "workers": [
            {
                "index": worker.index,
                "where": worker.where,
                "state": worker.state,
                "reason": worker.reason or None,
                "requests": worker.requests,
                "errors": worker.errors,
                "cpu_s": round(worker.cpu_s, 6),
                "cpu_busy": round(worker.busy, 4),
                "loop_lag_p99_ms": hist.summary_ms(worker.loop_lag)["p99"],
            }
            for worker in check.workers
        ],
        "warnings": analysis.warnings(result, check),
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


def size(count: float) -> str:
    """A byte count in decimal units: ``999 B``, ``1.50 kB``, ``12.34 MB``, ``1.20 GB``."""
    for unit in ("B", "kB", "MB", "GB"):
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


def _what(result: BenchResult) -> str:
    """The requests of a run, in a few words."""
    config = result.config
    if config.endpoints and (len(config.endpoints) > 1 or config.is_mix):
        count = len(config.endpoints)
        order = "in turn" if config.order == "sequential" else f"{config.order} order"
        origin = f"{config.target.scheme}://{config.target.authority}"
        return f"{count} endpoint{'s' if count != 1 else ''} on {origin} ({order})"
    endpoint = config.mix[0]
    return f"{endpoint.method} {endpoint.url}"


def _how(result: BenchResult) -> str:
    config = result.config
    if config.stages:
        of = "rate" if config.rate_stages else "connections"
        what = f"stages {','.join(str(stage) for stage in config.stages)} ({of})"
    elif config.requests is not None:
        what = f"{config.requests:,} requests"
        if config.duration is not None:
            what += f" (at most {config.duration:g} s)"
    else:
        what = f"{config.duration:g} s"
    if config.rate_stages:
        mode = "open loop"
    elif config.rate is not None:
        mode = f"rate {config.rate:,.0f}/s"
    else:
        mode = "closed loop"
    keepalive = "keep-alive" if config.keepalive else "no keep-alive"
    pipeline = f", pipeline {config.pipeline}" if config.pipeline > 1 else ""
    bodies = f", {len(config.bodies)} bodies in turn" if len(config.bodies) > 1 else ""
    workers = f"{result.workers} worker" + ("s" if result.workers != 1 else "")
    where = " on Dask" if result.where != "process" else ""
    via = ""  # the latency includes the proxy's hop: say so where the numbers are
    if config.proxy is not None:
        via = f", through {config.proxy_value}"  # the proxy's URL without its credentials
    elif config.unix_socket is not None:
        via = f", over the Unix socket {config.unix_socket}"
    return (
        f"{what}, {config.connections} connections, {mode}, {keepalive}{pipeline}{bodies}{via};"
        f" engine {result.engine} on {result.loop}, {workers}{where}"
    )


def describe_run(result: BenchResult) -> str:
    """The run in one line (the interval log's and the HTML page's header)."""
    return f"{_what(result)}: {_how(result)}"


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken after a comma or semicolon (a longer
    piece, a URL, stays whole)."""
    lines: list[str] = []
    line = ""
    for piece in re.split(r"(?<=[,;]) ", text):
        if line and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    lines.append(line)
    return lines


def _fit(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def write_text(result: BenchResult, out: TextIO) -> None:
    """The wrk/oha-style summary for people, in at most :data:`TEXT_WIDTH` columns (URLs aside)."""
    counters = result.counters
    check = analysis.self_check(result)
    print(f"aiotcp bench {escape_control(_what(result))}", file=out)
    for line in _wrap(escape_control(_how(result)), TEXT_WIDTH - 2):
        print(f"  {line}", file=out)
    if result.interrupted:
        print("  (interrupted: partial run)", file=out)
    print(
        f"  requests     {counters.requests:,} in {result.duration_s:.2f} s  {result.rps:,.1f} requests/s",
        file=out,
    )
    print(
        f"  transfer     {size(counters.bytes_read)} read, {size(counters.bytes_written)} written"
        f"  {size(result.read_bps)}/s read",
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
    classes = analysis.class_stats(result)
    if len(classes) > 1:
        for name, latency in classes.items():
            summary = latency.summary_ms()
            print(
                f"    {name} {latency.total:>12,}  p50 {_ms(summary['p50'])}  p90 {_ms(summary['p90'])}"
                f"  p99 {_ms(summary['p99'])}  max {_ms(summary['max'])} ms",
                file=out,
            )
    if result.config.is_mix or len(result.config.mix) > 1:
        _write_endpoints(result, out)
    if counters.errors:
        print(f"  errors       {counters.error_count:,}", file=out)
        for kind, count in sorted(counters.errors.items(), key=lambda item: -item[1]):
            message = _fit(escape_control(counters.error_messages.get(kind, "")), TEXT_WIDTH - 34)
            print(f"    {kind:<15} {count:>10,}  {message}", file=out)
    else:
        print("  errors       none", file=out)
    print(
        f"  connections  opened {counters.opened:,}, failed {counters.failed:,}, reset {counters.reset:,},"
        f" closed by peer {counters.closed_by_peer:,}",
        file=out,
    )
    print(f"  in flight    {counters.in_flight:,} at the end (not counted as requests or errors)", file=out)
    _write_stages(result, out)
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
    _write_self_check(check, out)
    outcomes = analysis.threshold_outcomes(result)
    for index, outcome in enumerate(outcomes):
        label = "thresholds" if index == 0 else ""
        print(f"  {label:<13}{escape_control(outcome.describe())}", file=out)
    for warning in analysis.warnings(result, check):
        print(f"warning: {escape_control(warning)}", file=out)


def _origin(result: BenchResult) -> str:
    return f"{result.config.target.scheme}://{result.config.target.authority}"


def _write_endpoints(result: BenchResult, out: TextIO) -> None:
    stats = analysis.endpoint_stats(result)
    origin = _origin(result)
    labels = [escape_control(stat.endpoint.short_label(origin)) for stat in stats]
    width = min(48, max(len(label) for label in labels))
    header = f"{'requests':>10}  {'p50':>8}  {'p90':>8}  {'p99':>8}  {'max':>8} ms"
    print(f"  endpoints    {'':<{width}}  {header}", file=out)
    for stat, label in zip(stats, labels, strict=True):
        summary = stat.latency.summary_ms()
        others = [code for code in stat.status if code // 100 != 2]
        status = "" if not others else "  " + ", ".join(f"{code}: {stat.status[code]:,}" for code in others)
        print(
            f"    {_fit(label, width):<{width + 11}}  {stat.requests:>10,}  {_ms(summary['p50']):>8}"
            f"  {_ms(summary['p90']):>8}  {_ms(summary['p99']):>8}  {_ms(summary['max']):>8}{status}",
            file=out,
        )


def _write_stages(result: BenchResult, out: TextIO) -> None:
    for stage in analysis.stage_stats(result):
        label = "stages" if stage.index == 0 else ""
        unit = "/s" if stage.of == "rate" else " connections"
        target = f"{stage.start_target:,.0f} -> {stage.stage.target:,.0f}{unit}"
        p99 = hist.summary_ms(stage.histogram)["p99"]
        print(
            f"  {label:<13}{stage.index + 1}  {stage.start_s:6.1f}-{stage.end_s:6.1f} s  {target:<26}"
            f"  {stage.rps:>10,.1f} requests/s  p99 {_ms(p99)} ms  errors {stage.errors:,}",
            file=out,
        )


def _write_self_check(check: SelfCheck, out: TextIO) -> None:
    lag = check.lag_ms()
    cpu = "-" if check.cpu_us_per_request is None else f"{check.cpu_us_per_request:.1f} µs"
    print(
        f"  self-check   CPU {cpu} per response, busiest worker {check.busy:.0%} of a core;"
        f" loop lag p50 {_ms(lag['p50'])}  p99 {_ms(lag['p99'])}  max {_ms(lag['max'])} ms",
        file=out,
    )
    if check.late_sends is not None:
        late = check.late_ms() or {}
        sends = check.sends or 0
        share = f" ({check.late_sends / sends:.1%})" if sends else ""
        detail = ""
        if check.late_sends:
            detail = f": by p50 {_ms(late.get('p50'))}  p99 {_ms(late.get('p99'))}  max {_ms(late.get('max'))} ms"
        print(
            f"  {'':<13}late sends {check.late_sends:,} of {sends:,}{share} more than {LATE_MS:g} ms behind"
            f" schedule{detail}",
            file=out,
        )


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
# -- HTML --------------------------------------------------------------------------------------------------


def _percentile_points(histogram: Any) -> list[tuple[float, float]]:
    """(x, latency ms) of the HdrHistogram percentile plot (see :func:`~aiotcp.bench.plots.percentile_x`)."""
    points: list[tuple[float, float]] = []
    if histogram.get_total_count() == 0:
        return points
    for step in histogram.get_percentile_iterator(5):
        percentile = min(step.percentile_level_iterated_to, 99.9999)
        points.append((percentile_x(percentile), max(step.value_iterated_to / 1000.0, 0.001)))
        if percentile >= 99.9999:
            break
    return points


def percentile_chart(title: str, curves: list[tuple[str, Any]]) -> str:
    """Latency by percentile of each ``(name, histogram)``, on one log-latency axis."""
    series = []
    values: list[float] = []
    # The x axis goes as far as the samples can tell: N samples show percentiles up to about 1 - 1/N.
    largest = max((histogram.get_total_count() for _, histogram in curves), default=0)
    nines = min(6, max(2, math.ceil(math.log10(largest)) if largest > 1 else 2))
    for index, (name, histogram) in enumerate(curves):
        points = [(x, y) for x, y in _percentile_points(histogram) if x <= nines]
        values.extend(y for _, y in points)
        series.append(Series(name, COLORS[index % len(COLORS)], points=points))
    y = Axis.fit(values, log=True)
    return chart(title, percentile_axis(nines), y, series, "percentile", "latency (ms, log)")


def _throughput_chart(result: BenchResult) -> str:
    intervals = [interval for interval in result.intervals if interval.length_s > 0]
    steps = [
        (interval.start_s, interval.start_s + interval.length_s, interval.requests / interval.length_s)
        for interval in intervals
    ]
    series = [Series("requests/s", COLORS[2], steps=steps)]
    values = [value for _, _, value in steps]
    config = result.config
    end = max([result.duration_s] + [b for _, b, _ in steps])
    if config.rate is not None:
        series.append(Series(f"target {config.rate:,.0f}/s", COLORS[5], steps=[(0.0, end, config.rate)], dashed=True))
        values.append(config.rate)
    elif config.rate_stages:
        points: list[tuple[float, float]] = [(0.0, 0.0)]
        for stage, (_, stage_end) in zip(config.rate_stages, stage_bounds(config.rate_stages), strict=True):
            points.append((stage_end, stage.target))
            values.append(stage.target)
        series.append(Series("target rate", COLORS[5], points=points, dashed=True))
        end = max(end, points[-1][0])
    x = Axis.fit([end], unit="s")
    return chart("Throughput, per interval", x, Axis.fit(values), series, "seconds into the run", "requests/s")


def _latency_over_time_chart(result: BenchResult) -> str:
    series: dict[str, list[tuple[float, float, float]]] = {"p50": [], "p99": [], "max": []}
    uncorrected: list[tuple[float, float, float]] = []
    values: list[float] = []
    for interval in result.intervals:
        if interval.length_s <= 0:
            continue
        start, end = interval.start_s, interval.start_s + interval.length_s
        summary = hist.summary_ms(interval.histogram())
        for name in series:
            value = summary[name]
            if value is not None:
                series[name].append((start, end, max(value, 0.001)))
                values.append(max(value, 0.001))
        if interval.uncorrected is not None:
            value = hist.summary_ms(hist.decode(interval.uncorrected))["p99"]
            if value is not None:
                uncorrected.append((start, end, max(value, 0.001)))
                values.append(max(value, 0.001))
    corrected = " (corrected)" if result.uncorrected is not None else ""
    lines = [
        Series(f"{name}{corrected}", COLORS[index], steps=steps) for index, (name, steps) in enumerate(series.items())
    ]
    if result.uncorrected is not None:
        lines.append(Series("p99 uncorrected", COLORS[3], steps=uncorrected, dashed=True))
    end = max([result.duration_s] + [interval.start_s + interval.length_s for interval in result.intervals])
    return chart(
        "Latency, per interval",
        Axis.fit([end]),
        Axis.fit(values, log=True),
        lines,
        "seconds into the run",
        "latency (ms, log)",
    )


def _connections_chart(result: BenchResult) -> str:
    stages = result.config.connection_stages
    points: list[tuple[float, float]] = [(0.0, 0.0)]
    for stage, (_, end) in zip(stages, stage_bounds(stages), strict=True):
        points.append((end, stage.target))
    series = [Series("target connections", COLORS[5], points=points, dashed=True)]
    return chart(
        "Open connections (target of the stages)",
        Axis.fit([points[-1][0]]),
        Axis.fit([target for _, target in points]),
        series,
        "seconds into the run",
        "connections",
    )


def _table(head: list[str], rows: list[list[str]], *, numeric_from: int = 1, numeric_to: int = 99) -> str:
    """A table whose columns ``numeric_from`` to ``numeric_to`` (not included) hold numbers (right-aligned)."""
    cells = "".join(f"<th>{html.escape(name)}</th>" for name in head)
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="{"num" if numeric_from <= index < numeric_to else ""}">{html.escape(cell)}</td>'
            for index, cell in enumerate(row)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _summary_rows(result: BenchResult) -> list[list[str]]:
    counters = result.counters
    return [
        ["requests", f"{counters.requests:,} in {result.duration_s:.2f} s"],
        ["requests/s", f"{result.rps:,.1f}"],
        [
            "transfer",
            f"{size(counters.bytes_read)} read ({size(result.read_bps)}/s), {size(counters.bytes_written)} written",
        ],
        ["status", ", ".join(f"{code}: {count:,}" for code, count in sorted(counters.status.items())) or "none"],
        ["errors", ", ".join(f"{kind}: {count:,}" for kind, count in sorted(counters.errors.items())) or "none"],
        [
            "connections",
            f"opened {counters.opened:,}, failed {counters.failed:,}, reset {counters.reset:,},"
            f" closed by peer {counters.closed_by_peer:,}",
        ],
        ["in flight at the end", f"{counters.in_flight:,}"],
    ]


def _percentile_rows(columns: list[tuple[str, Any]]) -> tuple[list[str], list[list[str]]]:
    summaries = [(label, hist.summary_ms(histogram)) for label, histogram in columns]
    rows = [
        [key.replace("_", ".")] + [_ms(summary[key]) for _, summary in summaries]
        for key in ("p50", "p75", "p90", "p99", "p99_9", "max", "mean")
    ]
    return [""] + [label for label, _ in summaries], rows


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 20px 28px; color: #222; }
h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 16px; margin: 26px 0 8px; }
code { background: #f3f3f3; padding: 1px 4px; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { text-align: left; padding: 3px 14px 3px 0; border-bottom: 1px solid #eee; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 14px 24px; }
.warning { background: #fdf2e9; border-left: 4px solid #ca6f1e; padding: 6px 10px; margin: 6px 0; }
.breached { color: #b03a2e; font-weight: 600; } .met { color: #1e8449; }
.note { color: #666; font-size: 12px; }
svg { display: block; max-width: 100%; height: auto; }
svg .grid { stroke: #e8e8e8; stroke-width: 1; } svg .frame { fill: none; stroke: #bbb; stroke-width: 1; }
svg .tick { font-size: 12px; fill: #555; } svg .axis { font-size: 13px; fill: #333; }
svg .legend { font-size: 12px; fill: #222; } svg .title { font-size: 14px; font-weight: 600; fill: #222; }
"""


def page(title: str, body: str) -> str:
    """A self-contained HTML page (no script, no external resource)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def write_html(result: BenchResult, out: TextIO) -> None:
    """A self-contained page: summary, warnings, thresholds, latency (by percentile and over time), throughput
    over time, per endpoint, per status class, per stage, and the self-check."""
    config = result.config
    check = analysis.self_check(result)
    parts = [
        "<h1>aiotcp bench</h1>",
        f"<p><code>{html.escape(describe_run(result))}</code></p>",
        f'<p class="note">aiotcp {html.escape(__version__)}, Python {html.escape(platform.python_version())},'
        f" {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(result.started_at))}; latencies in ms,"
        " sizes in decimal units (1 kB = 1,000 bytes, 1 MB = 1,000,000 bytes)</p>",
    ]
    parts.extend(f'<p class="warning">{html.escape(warning)}</p>' for warning in analysis.warnings(result, check))
    parts.append(_table(["", ""], _summary_rows(result), numeric_from=9))
    outcomes = analysis.threshold_outcomes(result)
    if outcomes:
        lines = []
        for outcome in outcomes:
            verdict = "met" if outcome.ok else "BREACHED"
            lines.append(
                f'<tr><td>{html.escape(outcome.describe())}</td><td class="{verdict.lower()}">{verdict}</td></tr>'
            )
        parts.append(f"<h2>Thresholds</h2><table>{''.join(lines)}</table>")
    columns = [("latency" if result.uncorrected is None else "corrected", result.latency)]
    if result.uncorrected is not None:
        columns.append(("uncorrected", result.uncorrected))
    head, rows = _percentile_rows(columns)
    parts.append("<h2>Latency (ms)</h2>" + _table(head, rows))
    charts = [
        percentile_chart("Latency by percentile", columns),
        _latency_over_time_chart(result),
        _throughput_chart(result),
    ]
    if config.connection_stages:
        charts.append(_connections_chart(result))
    parts.append('<div class="grid2">' + "".join(f"<div>{svg}</div>" for svg in charts) + "</div>")
    endpoints = analysis.endpoint_stats(result)
    if len(endpoints) > 1 or config.is_mix:
        rows = []
        for stat in endpoints:
            summary = stat.latency.summary_ms()
            status = ", ".join(f"{code}: {count:,}" for code, count in stat.status.items()) or "none"
            rows.append(
                [stat.endpoint.short_label(_origin(result)), f"{stat.requests:,}"]
                + [_ms(summary[name]) for name in ("p50", "p90", "p99", "max")]
                + [status]
            )
        head = ["endpoint", "requests", "p50", "p90", "p99", "max (ms)", "status"]
        parts.append("<h2>Per endpoint</h2>" + _table(head, rows, numeric_to=6))
    classes = analysis.class_stats(result)
    if classes:
        rows = []
        for name, latency in classes.items():
            summary = latency.summary_ms()
            rows.append([name, f"{latency.total:,}"] + [_ms(summary[key]) for key in ("p50", "p90", "p99", "max")])
        parts.append(
            "<h2>Per status class</h2>" + _table(["class", "responses", "p50", "p90", "p99", "max (ms)"], rows)
        )
    stages = analysis.stage_stats(result)
    if stages:
        rows = []
        for stage in stages:
            summary = hist.summary_ms(stage.histogram)
            unit = "/s" if stage.of == "rate" else " connections"
            rows.append(
                [
                    str(stage.index + 1),
                    f"{stage.start_s:.1f}-{stage.end_s:.1f} s",
                    f"{stage.start_target:,.0f} -> {stage.stage.target:,.0f}{unit}",
                    f"{stage.requests:,}",
                    f"{stage.rps:,.1f}",
                    _ms(summary["p50"]),
                    _ms(summary["p99"]),
                    f"{stage.errors:,}",
                ]
            )
        parts.append(
            "<h2>Stages</h2>"
            + _table(["stage", "time", "target", "requests", "requests/s", "p50 (ms)", "p99 (ms)", "errors"], rows)
        )
    lag = check.lag_ms()
    rows = [
        ["CPU per response", "-" if check.cpu_us_per_request is None else f"{check.cpu_us_per_request:.1f} µs"],
        ["busiest worker", f"{check.busy:.0%} of a CPU core"],
        [
            "event loop lag (ms)",
            f"p50 {_ms(lag['p50'])}, p90 {_ms(lag['p90'])}, p99 {_ms(lag['p99'])}, max {_ms(lag['max'])}",
        ],
    ]
    if check.late_sends is not None:
        late = check.late_ms() or {}
        rows.append(
            [
                f"sends more than {LATE_MS:g} ms late",
                f"{check.late_sends:,} of {check.sends or 0:,}; by p50 {_ms(late.get('p50'))},"
                f" p99 {_ms(late.get('p99'))}, max {_ms(late.get('max'))} ms",
            ]
        )
    parts.append("<h2>Self-check of the load generator</h2>" + _table(["", ""], rows, numeric_from=9))
    if len(check.workers) > 1 or result.lost:
        rows = [
            [
                str(worker.index),
                worker.where,
                worker.state + (f": {worker.reason}" if worker.reason else ""),
                f"{worker.requests:,}",
                f"{worker.busy:.0%}",
                _ms(hist.summary_ms(worker.loop_lag)["p99"]),
            ]
            for worker in check.workers
        ]
        parts.append(
            "<h2>Workers</h2>"
            + _table(["worker", "where", "state", "responses", "CPU", "loop lag p99 (ms)"], rows, numeric_from=3)
        )
    out.write(page(f"aiotcp bench {config.url}", "".join(parts)))


# -- comparison of two runs ----------------------------------------------------------------------------------


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "rps":
        return f"{value:,.1f}/s"
    if metric == "errors %":
        return f"{value:.3f} %"
    return f"{_ms(value)} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def compare_rows(comparison: Comparison) -> list[list[str]]:
    """One row per metric: name, A, B, change, 95 % interval, verdict."""
    rows = []
    for delta in comparison.deltas:
        interval = "-" if delta.low is None else f"[{_pct(delta.low)}, {_pct(delta.high)}]"
        verdict = delta.verdict if delta.judged else f"({delta.verdict})"
        rows.append(
            [
                delta.metric,
                _value(delta.metric, delta.a),
                _value(delta.metric, delta.b),
                _pct(delta.change),
                interval,
                verdict,
            ]
        )
    return rows


def write_compare_text(comparison: Comparison, out: TextIO) -> None:
    """The comparison for people: both runs, a row per metric, the notes and the verdict."""
    print(f"aiotcp bench compare {escape_control(comparison.a.name)} {escape_control(comparison.b.name)}", file=out)
    print(f"  A  {escape_control(_fit(comparison.a.describe, TEXT_WIDTH - 5))}", file=out)
    print(f"  B  {escape_control(_fit(comparison.b.describe, TEXT_WIDTH - 5))}", file=out)
    head = ["metric", "A", "B", "change", "95% interval", "verdict"]
    rows = [head, *compare_rows(comparison)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(head))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i + 1]) for i, cell in enumerate(row[1:5])] + [row[5]]
        print("  " + "  ".join(cells), file=out)
    for note in comparison.notes:
        print(f"  note: {escape_control(note)}", file=out)
    why = [d for d in comparison.deltas if d.judged and d.verdict == comparison.verdict != "no difference"]
    detail = ", ".join(f"{delta.metric} {_pct(delta.change)}" for delta in why)
    print(f"verdict: {comparison.verdict}" + (f" ({detail})" if detail else ""), file=out)


def _spread(values: list[float]) -> float:
    """How many times the largest of ``values`` is the smallest (above zero): over 20, a linear axis would
    squash the small ones flat."""
    positive = [value for value in values if value > 0]
    return max(positive) / min(positive) if positive else 1.0


def _run_curve(run: Run) -> Any:
    document = run.document
    return hist.decode(document["histogram"]) if document.get("histogram") else hist.new_histogram()


def write_compare_html(comparison: Comparison, out: TextIO) -> None:
    """A page with both runs' latency-by-percentile curves on one plot, their throughput and p99 over time,
    and the table of changes."""
    a, b = comparison.a, comparison.b
    curves = [(f"A: {os.path.basename(a.name)}", _run_curve(a)), (f"B: {os.path.basename(b.name)}", _run_curve(b))]
    throughput = []
    p99 = []
    values_rps: list[float] = []
    values_p99: list[float] = []
    end = 0.0
    for index, run in enumerate((a, b)):
        steps = []
        latency = []
        for record in run.document.get("intervals", []):
            start, length = float(record["start_s"]), float(record["length_s"])
            if length <= 0:
                continue
            end = max(end, start + length)
            steps.append((start, start + length, record["requests"] / length))
            if record.get("p99_ms") is not None:
                latency.append((start, start + length, max(float(record["p99_ms"]), 0.001)))
        values_rps.extend(value for _, _, value in steps)
        values_p99.extend(value for _, _, value in latency)
        label = "A" if index == 0 else "B"
        throughput.append(Series(label, COLORS[index], steps=steps))
        p99.append(Series(f"{label} p99", COLORS[index], steps=latency))
    charts = [
        percentile_chart("Latency by percentile, both runs", curves),
        chart(
            "Throughput, per interval",
            Axis.fit([end]),
            Axis.fit(values_rps, log=_spread(values_rps) > 20),
            throughput,
            "seconds into the run",
            "requests/s" + (" (log)" if _spread(values_rps) > 20 else ""),
        ),
        chart(
            "p99 latency, per interval",
            Axis.fit([end]),
            Axis.fit(values_p99, log=True),
            p99,
            "seconds into the run",
            "latency (ms, log)",
        ),
    ]
    verdict_class = {"worse": "breached", "better": "met"}.get(comparison.verdict, "")
    parts = [
        "<h1>aiotcp bench compare</h1>",
        f"<p>A: <code>{html.escape(a.name)}</code> {html.escape(a.describe)}<br>"
        f"B: <code>{html.escape(b.name)}</code> {html.escape(b.describe)}</p>",
        f'<p>Verdict: <span class="{verdict_class}">{html.escape(comparison.verdict)}</span></p>',
    ]
    parts.extend(f'<p class="warning">{html.escape(note)}</p>' for note in comparison.notes)
    parts.append(
        _table(["metric", "A", "B", "change", "95% interval", "verdict"], compare_rows(comparison), numeric_to=5)
    )
    parts.append(
        '<p class="note">change: B / A - 1; the interval comes from resampling each run\'s intervals (their full'
        " histograms); a metric in parentheses is shown, not judged.</p>"
    )
    parts.append('<div class="grid2">' + "".join(f"<div>{svg}</div>" for svg in charts) + "</div>")
    out.write(page(f"aiotcp bench compare {a.name} {b.name}", "".join(parts)))
