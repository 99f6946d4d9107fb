"""``aiotcp bench URL`` and ``aiotcp bench compare A.json B.json``: the command line of the load generator.

:func:`register` adds the ``bench`` subcommand to the ``aiotcp`` parser (``bench compare`` has a parser of its
own, :func:`compare_main`: ``bench`` takes a URL where a subcommand would go). Exit codes follow ``aiotcp``: 0
the run produced responses (and met its thresholds), 1 no request succeeded (the commonest error is printed
as ``error: KIND: message``), 2 usage error (a bad flag, a malformed threshold, an input file that cannot
be read or a ``--report``/``--hdr-log`` file that cannot be written: all checked before any load), 3 a
threshold was breached (``compare``: B is worse than A by more than ``--fail-if-worse``), 130 interrupted
(the partial run is still reported).

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
    ArgumentParser,
    StatusLine,
    UsageError,
    add_header_option,
    add_proxy_option,
    add_resolver_option,
    describe_os_error,
    positive_float,
    positive_int,
    read_input,
    resolver_options,
    run_handler,
)

if TYPE_CHECKING:  # the bench package is imported when a bench runs: every aiotcp command starts faster
    from ..bench.config import BenchConfig
    from ..bench.mix import Endpoint
    from ..bench.results import Interval
    from ..bench.stages import Stage
    from ..bench.thresholds import Threshold
    from ..cluster import DaskTarget

__all__ = ["EXIT_BREACHED", "add_arguments", "compare_main", "config_from_args", "register", "run_command"]

#: A threshold was breached (``bench``), or B is worse than A (``bench compare --fail-if-worse``).
EXIT_BREACHED = 3
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

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


def _method(text: str) -> str:
    if not _METHOD.fullmatch(text) or text.upper() == "CONNECT":
        raise argparse.ArgumentTypeError(f"not an HTTP method: {text!r} (GET, HEAD, POST, PUT, DELETE, ...)")
    return text.upper()


def _rate_stages(text: str) -> tuple[Stage, ...]:
    from ..bench.stages import parse_stages

    try:
        return parse_stages(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connection_stages(text: str) -> tuple[Stage, ...]:
    from ..bench.stages import parse_stages

    try:
        return parse_stages(text, integer=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _threshold(text: str) -> Threshold:
    from ..bench.thresholds import parse_threshold

    try:
        return parse_threshold(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dask_target(text: str) -> DaskTarget:
    from ..cluster import parse_dask_target

    try:
        return parse_dask_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` flags (shared names and types with the rest of ``aiotcp``)."""
    parser.add_argument("url", nargs="?", help="http:// URL to load (with --urls: the base of relative paths)")
    load = parser.add_argument_group("load")
    load.add_argument(
        "-c", "--connections", type=positive_int, help="open connections (50; with --connection-stages: theirs)"
    )
    load.add_argument(
        "-d", "--duration", type=_positive_duration, help="measured run length: 10, 10s, 500ms, 2m (10s; with -n a cap)"
    )
    load.add_argument("-n", "--requests", type=positive_int, help="send exactly N requests, then stop")
    load.add_argument("--warmup", type=duration, default=0.0, help="load for this long first, uncounted (0)")
    load.add_argument(
        "-R", "--rate", type=positive_float, help="open loop: total requests/s on a fixed schedule (wrk2)"
    )
    load.add_argument(
        "--stages",
        type=_rate_stages,
        metavar="DUR:RATE,...",
        help="open loop, the rate ramping linearly from 0 through each stage's target: 10s:1000,30s:5000,10s:0",
    )
    load.add_argument(
        "--connection-stages",
        type=_connection_stages,
        metavar="DUR:CONNS,...",
        help="closed loop, the open connections ramping likewise: 10s:10,30s:200,10s:0",
    )
    load.add_argument("-w", "--workers", type=_workers, default=1, help="worker processes, or 'auto' (1)")
    load.add_argument(
        "--dask",
        type=_dask_target,
        metavar="ADDRESS|local:W",
        help="run on a Dask cluster, one share per worker: a scheduler address (tcp://HOST:8786) or local:W"
        " worker processes here (needs aiotcp[dask])",
    )
    load.add_argument("--engine", choices=("auto", "httptools", "h11"), default="auto", help="(auto: fastest)")
    request = parser.add_argument_group("requests")
    request.add_argument("-m", "--method", type=_method, help="GET (default), HEAD, POST (with a body), PUT, ...")
    request.add_argument(
        "--urls", metavar="FILE", help="a mix: one endpoint per line, [METHOD] URL [WEIGHT]; {seq}, {rand:1-1000}"
    )
    request.add_argument(
        "--order",
        choices=("weighted", "random", "sequential"),
        default="weighted",
        help="how --urls endpoints follow each other (weighted: at random, by weight)",
    )
    request.add_argument("--body", metavar="FILE", help="the body of every request (not GET or HEAD); -m POST if no -m")
    request.add_argument("--body-lines", metavar="FILE", help="one body per request, the file's lines in turn")
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
    request.add_argument("--seed", type=int, default=0, help="seed of the random orders and {rand:...} (0)")
    add_resolver_option(request)
    add_proxy_option(request)
    request.add_argument("--unix-socket", metavar="PATH", help="connect to this Unix domain socket instead")
    checks = parser.add_argument_group("checks (exit status 3 when one is breached)")
    checks.add_argument(
        "--threshold",
        dest="thresholds",
        action="append",
        type=_threshold,
        default=[],
        metavar="EXPR",
        help="a condition the run must meet, repeatable: p99<20ms, p99.9<50ms, max<1s, errors<0.1%%, rps>10000",
    )
    checks.add_argument(
        "--threshold-per-stage", action="store_true", help="check each threshold over every stage, not the run"
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON document instead of the text report")
    output.add_argument("--hdr-log", metavar="FILE", help="write an HdrHistogram interval log")
    output.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    output.add_argument("--interval", type=_positive_duration, default=1.0, help="length of a reporting interval (1s)")
    output.add_argument("--no-progress", dest="progress", action="store_false", help="no live progress on stderr")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``aiotcp`` subcommands; the handler is stored as ``handler`` (returns exit code)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="load generator: requests/s and latency percentiles (closed loop or fixed rate); bench compare",
        description="Load an http:// URL (or a mix of them) like wrk (closed loop) or wrk2 (-R, with "
        "coordinated-omission correction) and report requests/s, latency percentiles, status codes and errors "
        "by kind. `aiotcp bench compare A.json B.json` compares two runs (see its --help).",
        epilog="exit codes: 0 done, 1 no request succeeded, 2 usage error, 3 a threshold breached, 130 interrupted",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_command)
    return parser


def _read_text(path: str, flag: str) -> str:
    data = read_input(path, flag)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{flag}: {escape_control(path)} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


def _endpoints(args: argparse.Namespace, method: str) -> tuple[str, tuple[Endpoint, ...]]:
    """The URL of the run and the endpoints of ``--urls`` (none without it). Raises UsageError."""
    from ..bench.mix import parse_urls

    if args.urls is None:
        if args.url is None:
            raise UsageError("give a URL to load, or --urls FILE")
        return args.url, ()
    try:
        endpoints = parse_urls(
            _read_text(args.urls, "--urls"), base=args.url, method=method, source=f"--urls {args.urls}"
        )
    except ValueError as exc:
        raise UsageError(escape_control(str(exc))) from None
    url = args.url
    if url is None:
        first = endpoints[0].url
        scheme, _, rest = first.partition("://")
        url = f"{scheme}://{rest.split('/', 1)[0]}/"
    return url, endpoints


def _bodies(args: argparse.Namespace) -> tuple[bytes, ...]:
    if args.body is not None and args.body_lines is not None:
        raise UsageError("--body and --body-lines: give one of them")
    if args.body is not None:
        return (read_input(args.body, "--body"),)
    if args.body_lines is not None:
        lines = tuple(line for line in read_input(args.body_lines, "--body-lines").splitlines() if line)
        if not lines:
            raise UsageError(f"--body-lines: {escape_control(args.body_lines)} has no line")
        return lines
    return ()


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A validated :class:`BenchConfig` from parsed flags. Input files are read here.

    Raises:
        UsageError: for an input file that cannot be read or does not parse, and flags that do not go together.
        InvalidTarget: for a bad URL or header.
        ValueError: for values that do not go together, naming them.
    """
    from ..bench.config import BenchConfig, resolve_engine, resolve_workers

    bodies = _bodies(args)
    # A body on one URL makes it a POST (curl's -d); a --urls file says each line's method (GET by default).
    method = args.method or ("POST" if bodies and args.urls is None else "GET")
    url, endpoints = _endpoints(args, method)
    stages = args.stages or args.connection_stages
    duration_s = args.duration
    if args.stages and args.connection_stages:
        raise UsageError("--stages and --connection-stages: give one of them")
    if args.stages and args.rate is not None:
        raise UsageError("--stages sets the rate: drop -R (a stage 0s:RATE jumps to a rate)")
    if bodies and args.urls is None and method in ("GET", "HEAD"):
        raise UsageError(f"--body/--body-lines go with a method that carries a body, not {method}: -m POST, PUT, ...")
    if stages:
        for flag, value in (("-d", args.duration), ("-n", args.requests), ("--warmup", args.warmup or None)):
            if value is not None:
                raise UsageError(f"{flag} does not go with stages: the stages set the length of the run")
        if args.connection_stages and args.connections is not None:
            raise UsageError("-c does not go with --connection-stages: the stages set the connections")
        duration_s = sum(stage.duration for stage in stages)
    elif args.threshold_per_stage:
        raise UsageError("--threshold-per-stage needs --stages or --connection-stages")
    if duration_s is None and args.requests is None:
        duration_s = 10.0
    connections = args.connections or 50
    if args.connection_stages:
        connections = max(1, int(max(stage.target for stage in args.connection_stages)))
    workers = resolve_workers(args.workers, connections)
    if args.dask is not None and args.workers != 1:
        raise UsageError("--workers and --dask: one engine per Dask worker (start more Dask workers instead)")
    return BenchConfig(
        url=url,
        connections=connections,
        duration=duration_s,
        requests=args.requests,
        warmup=args.warmup,
        rate=args.rate,
        workers=workers,
        method=method,
        headers=tuple(args.headers),
        keepalive=args.keepalive,
        pipeline=args.pipeline,
        timeout=args.timeout,
        engine=resolve_engine(args.engine),
        proxy=args.proxy,
        unix_socket=args.unix_socket,
        interval=args.interval,
        endpoints=endpoints,
        order=args.order,
        bodies=bodies,
        rate_stages=args.stages or (),
        connection_stages=args.connection_stages or (),
        thresholds=tuple(args.thresholds),
        threshold_per_stage=args.threshold_per_stage,
        seed=args.seed,
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
        stage = "" if interval.stage is None else f"  stage {interval.stage + 1}/{len(self.config.stages)}"
        self.status.show(
            f"bench {self.elapsed:6.1f} s{stage}  {self.requests:>12,} requests  {rps:>12,.0f} requests/s"
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
    and UsageError for an input file that cannot be read or an output file that cannot be written."""
    import json

    from ..bench import analysis, report
    from ..bench.workers import run_bench

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = config_from_args(args)
    except InvalidInput:
        raise
    except ValueError as exc:
        print(f"error: usage: {escape_control(str(exc))}", file=err)
        return EXIT_USAGE
    with ExitStack() as files:
        hdr_log = _open_output(files, args.hdr_log, "--hdr-log")
        html = _open_output(files, args.report, "--report")
        stop = threading.Event()
        status = StatusLine(err) if args.progress and err is sys.stderr and sys.stderr.isatty() else None
        progress = _Progress(config, status) if status else None
        try:
            with _stop_on_sigint(stop):
                if args.dask is not None:
                    result = _run_on_dask(config, args.dask, progress, stop)
                else:
                    result = run_bench(config, on_interval=progress, stop=stop)
        finally:
            if status is not None:
                status.clear()
        if hdr_log is not None:
            report.write_hdr_log(result, hdr_log)
        if html is not None:
            report.write_html(result, html)
    if args.json:
        document = report.to_json(result)
        json.dump(document, out, indent=2)
        out.write("\n")
        for warning in document["warnings"]:
            print(f"warning: {escape_control(warning)}", file=err)
        for outcome in document["thresholds"]:
            if not outcome["ok"]:
                stage = "the run" if outcome["stage"] is None else f"stage {outcome['stage'] + 1}"
                print(f"error: threshold {outcome['threshold']} breached over {stage}: {outcome['value']}", file=err)
    else:
        report.write_text(result, out)  # the warnings and thresholds are part of the text report
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
    if any(not outcome.ok for outcome in analysis.threshold_outcomes(result)):
        return EXIT_BREACHED
    return EXIT_OK


def _run_on_dask(config: BenchConfig, target: DaskTarget, progress: Any, stop: threading.Event) -> Any:
    """The run on a Dask cluster. Raises UsageError when Dask is missing, DaskError when it fails."""
    from ..bench.dask import run_bench_on_dask
    from ..cluster import DaskUnavailable, connect

    try:
        with connect(target) as client:
            return run_bench_on_dask(config, client, on_interval=progress, stop=stop)
    except DaskUnavailable as exc:
        raise UsageError(f"--dask: {exc}") from None


# -- aiotcp bench compare ------------------------------------------------------------------------------------


def _percent(text: str) -> float:
    value = text.strip().removesuffix("%")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r} (e.g. 5 or 5%)") from None
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return number


def compare_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="aiotcp bench compare",
        description="Compare two runs of `aiotcp bench --json`: per percentile and throughput, B against A, with "
        "a 95%% interval from resampling each run's intervals, and a verdict: better, worse or no difference.",
        epilog="exit codes: 0 compared (whatever the verdict, unless --fail-if-worse), 2 usage error (a file that "
        "cannot be read or is not a bench run), 3 B is worse than A by more than --fail-if-worse",
    )
    parser.add_argument("a", metavar="A.json", help="the reference run")
    parser.add_argument("b", metavar="B.json", help="the run compared with it")
    parser.add_argument(
        "--fail-if-worse",
        type=_percent,
        metavar="PCT",
        help="exit 3 when B is worse beyond the noise and by more than PCT %% in a judged metric",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--report", metavar="FILE.html", help="write an HTML page with both runs' curves")
    parser.set_defaults(handler=compare_command)
    return parser


def compare_main(argv: list[str]) -> int:
    """``aiotcp bench compare ARGS``."""
    args = compare_parser().parse_args(argv)
    return run_handler(args.handler, args)


def compare_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``aiotcp bench compare``; returns the exit code. Raises UsageError for a file that cannot be read,
    is not a bench run, or an output file that cannot be written."""
    import json

    from ..bench import report
    from ..bench.compare import CompareError, compare_runs, load_run

    out = out or sys.stdout
    runs = []
    for path in (args.a, args.b):
        try:
            runs.append(load_run(path))
        except OSError as exc:
            raise UsageError(f"cannot read {escape_control(path)}: {describe_os_error(exc)}") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"{escape_control(path)} is not UTF-8 text ({exc.reason})") from None
        except CompareError as exc:
            raise UsageError(escape_control(str(exc))) from None
    with ExitStack() as files:
        html = _open_output(files, args.report, "--report")
        comparison = compare_runs(runs[0], runs[1])
        if html is not None:
            report.write_compare_html(comparison, html)
    if args.json:
        json.dump(comparison.as_dict(), out, indent=2)
        out.write("\n")
    else:
        report.write_compare_text(comparison, out)
    out.flush()
    worse = comparison.verdict == "worse" and 100 * comparison.worse_by() > (args.fail_if_worse or 0.0)
    if args.fail_if_worse is not None and worse:
        return EXIT_BREACHED
    return EXIT_OK
