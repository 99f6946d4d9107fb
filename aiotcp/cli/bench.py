"""``aiotcp bench URL``: the command line of the load generator.

:func:`register` adds the ``bench`` subcommand to the ``aiotcp`` parser. Exit codes follow ``aiotcp``: 0 the
run produced responses, 1 no request succeeded (the commonest error is printed as ``error: KIND: message``),
2 usage error (a bad flag, or a ``--report``/``--hdr-log`` file that cannot be written: checked before the
run), 130 interrupted (the partial run is still reported).

Live progress is a :class:`~aiotcp.cli.common.StatusLine` on stderr (a terminal only), cut to its width and
erased before the report is printed.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import InvalidInput
from ..text import escape_control
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    StatusLine,
    UsageError,
    add_header_option,
    add_proxy_option,
    add_resolver_option,
    describe_os_error,
    positive_float,
    positive_int,
    resolver_options,
)

if TYPE_CHECKING:  # the bench package is imported when a bench runs: every aiotcp command starts faster
    from ..bench.config import BenchConfig
    from ..bench.results import Interval

__all__ = ["add_arguments", "config_from_args", "register", "run_command"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """``10``, ``10s``, ``500ms``, ``2m``, ``1h`` -> seconds (wrk's suffixes)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10, 10s, 500ms, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than zero, got {text!r}")
    return value


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    return positive_int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` flags (shared names and types with the rest of ``aiotcp``)."""
    parser.add_argument("url", help="http:// URL to load")
    load = parser.add_argument_group("load")
    load.add_argument("-c", "--connections", type=positive_int, default=50, help="open connections (50)")
    load.add_argument(
        "-d", "--duration", type=_positive_duration, help="measured run length: 10, 10s, 500ms, 2m (10s; with -n a cap)"
    )
    load.add_argument("-n", "--requests", type=positive_int, help="send exactly N requests, then stop")
    load.add_argument("--warmup", type=duration, default=0.0, help="load for this long first, uncounted (0)")
    load.add_argument(
        "-R", "--rate", type=positive_float, help="open loop: total requests/s on a fixed schedule (wrk2)"
    )
    load.add_argument("-w", "--workers", type=_workers, default=1, help="worker processes, or 'auto' (1)")
    load.add_argument("--engine", choices=("auto", "httptools", "h11"), default="auto", help="(auto: fastest)")
    request = parser.add_argument_group("requests")
    request.add_argument("-m", "--method", choices=("GET", "HEAD"), default="GET", type=str.upper)
    add_header_option(request)
    request.add_argument(
        "--no-keepalive", dest="keepalive", action="store_false", help="a new connection for every request"
    )
    request.add_argument(
        "--pipeline", type=positive_int, default=1, metavar="K", help="requests in flight per connection"
    )
    request.add_argument(
        "-t", "--timeout", type=positive_float, default=10.0, help="per request and per connect, seconds (10)"
    )
    add_resolver_option(request)
    add_proxy_option(request)
    request.add_argument("--unix-socket", metavar="PATH", help="connect to this Unix domain socket instead")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON document instead of the text report")
    output.add_argument("--hdr-log", metavar="FILE", help="write an HdrHistogram interval log")
    output.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    output.add_argument("--no-progress", dest="progress", action="store_false", help="no live progress on stderr")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``aiotcp`` subcommands; the handler is stored as ``handler`` (returns exit code)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="load generator: requests/s and latency percentiles (closed loop or fixed rate)",
        description="Load an http:// URL like wrk (closed loop) or wrk2 (-R, with coordinated-omission "
        "correction) and report requests/s, latency percentiles, status codes and errors by kind.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_command)
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A validated :class:`BenchConfig` from parsed flags.

    Raises:
        InvalidTarget: for a bad URL or header.
        ValueError: for flags that do not go together, naming them.
    """
    from ..bench.config import BenchConfig, resolve_engine, resolve_workers

    duration_s = args.duration
    if duration_s is None and args.requests is None:
        duration_s = 10.0
    return BenchConfig(
        url=args.url,
        connections=args.connections,
        duration=duration_s,
        requests=args.requests,
        warmup=args.warmup,
        rate=args.rate,
        workers=resolve_workers(args.workers, args.connections),
        method=args.method,
        headers=tuple(args.headers),
        keepalive=args.keepalive,
        pipeline=args.pipeline,
        timeout=args.timeout,
        engine=resolve_engine(args.engine),
        proxy=args.proxy,
        unix_socket=args.unix_socket,
        **resolver_options(args),
    )


class _Progress:
    """Live progress on a status line: requests so far, the last interval's requests/s and p99."""

    def __init__(self, config: BenchConfig, status: StatusLine) -> None:
        self.config = config
        self.status = status
        self.requests = 0
        self.errors = 0
        self.elapsed = 0.0
        status.show(f"bench {escape_control(config.url)}: connecting ...")

    def __call__(self, interval: Interval) -> None:
        from ..bench import histogram as hist

        self.requests += interval.requests
        self.errors += interval.errors
        self.elapsed = interval.start_s + interval.length_s
        rps = interval.requests / interval.length_s if interval.length_s > 0 else 0.0
        p99 = hist.summary_ms(interval.histogram())["p99"]
        p99_text = "-" if p99 is None else f"{p99:.3f} ms"
        self.status.show(
            f"bench {self.elapsed:6.1f} s  {self.requests:>12,} requests  {rps:>12,.0f} requests/s"
            f"  p99 {p99_text}  errors {self.errors:,}"
        )


@contextmanager
def _stop_on_sigint(stop: threading.Event) -> Any:
    """First Ctrl-C: stop the run and report what was measured. Second: the usual KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _open_output(stack: ExitStack, path: str | None, flag: str) -> TextIO | None:
    """Open an output file before the run, so that one that cannot be written costs no run.

    Raises:
        UsageError: naming the flag, the file and what the system said.
    """
    if path is None:
        return None
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write {escape_control(path)}: {describe_os_error(exc)}") from None


def run_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``aiotcp bench`` for parsed ``args``; returns the exit code. Raises AiotcpError (e.g. ``dns``),
    and UsageError for an output file that cannot be written."""
    import json

    from ..bench import report
    from ..bench.workers import run_bench

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = config_from_args(args)
    except InvalidInput:
        raise
    except ValueError as exc:
        print(f"error: usage: {exc}", file=err)
        return EXIT_USAGE
    with ExitStack() as files:
        hdr_log = _open_output(files, args.hdr_log, "--hdr-log")
        html = _open_output(files, args.report, "--report")
        stop = threading.Event()
        status = StatusLine(err) if args.progress and err is sys.stderr and sys.stderr.isatty() else None
        try:
            with _stop_on_sigint(stop):
                result = run_bench(config, on_interval=_Progress(config, status) if status else None, stop=stop)
        finally:
            if status is not None:
                status.clear()
        if hdr_log is not None:
            report.write_hdr_log(result, hdr_log)
        if html is not None:
            report.write_html(result, html)
    if args.json:
        json.dump(report.to_json(result), out, indent=2)
        out.write("\n")
        warning = report.rate_warning(result)
        if warning:
            print(f"warning: {warning}", file=err)
    else:
        report.write_text(result, out)  # the warning is part of the text report
    out.flush()
    if result.interrupted:
        return EXIT_INTERRUPTED
    counters = result.counters
    if counters.requests == 0:
        if counters.errors:
            kind = max(counters.errors, key=lambda name: counters.errors[name])
            message = escape_control(counters.error_messages.get(kind, ""))
            print(f"error: {kind}: {message}", file=err)
        else:
            print("error: no response within the run", file=err)
        return EXIT_FAILED
    return EXIT_OK
