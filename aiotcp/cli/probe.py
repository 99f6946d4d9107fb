"""``aiotcp probe [FILE|-]``: the command around :func:`aiotcp.probe.probe_jobs`.

Reads targets line by line (never the whole list), writes one record per target as it completes (JSONL,
CSV or text), journals finished records for ``--resume``, shows live progress on a terminal and a summary
at the end (also as JSON with ``--summary-json``) -- or at Ctrl-C, with the command that finishes the list.
The probes run in this process, in ``--workers`` processes (:mod:`aiotcp.probe.workers`) or on a Dask cluster
(:mod:`aiotcp.probe.dask`); the output, journal and summary are the same whichever.

Terminal discipline: the progress is a :class:`~aiotcp.cli.common.StatusLine` on stderr, drawn between
batches of records and erased before any record or warning is written, so a record never shares a line
with it, whether stdout is the same terminal or not. Exit codes: 0 done, 1 failed (a Dask chunk), 2 usage
(bad flags, an input file or journal that cannot be used), 130 interrupted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, aclosing
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ..accelerators import have_uvloop
from ..errors import InvalidTarget
from ..fdlimit import raise_fd_limit
from ..probe import FIELD_NAMES, LoadReport, ProbeOptions, ProbeResult, iter_jobs, probe_jobs, sharding
from ..probe.journal import Journal, JournalMismatch
from ..probe.matchers import Matchers
from ..probe.options import WINDOW_STALL_S
from ..probe.output import JSONLWriter, RecordWriter, make_writer
from ..targets import parse_ports
from ..text import escape_control
from ..tlsfacts import load_ca
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
    make_console,
    positive_float,
    positive_int,
    read_input,
    resolver_options,
)

if TYPE_CHECKING:  # --dask and --workers load their modules when asked for: every probe starts faster
    from ..probe import dask as distributed

__all__ = ["main_probe", "register"]

_FLUSH_EVERY = 0.25


def register(commands: Any) -> None:
    """Add ``probe`` to the ``aiotcp`` command's subparsers."""
    probe = commands.add_parser(
        "probe",
        help="probe a list of targets: one record per target (JSONL/CSV/text)",
        description="Probe every target of FILE (or stdin): host, host:port, URL, [v6]:port or CIDR range, "
        "one per line; blank lines and # comments are skipped. Exactly one record per target.",
    )
    probe.add_argument("file", nargs="?", default="-", help="target list (default: stdin)")
    probe.add_argument("-c", "--concurrency", type=positive_int, default=100, help="probes in flight (100)")
    probe.add_argument("-t", "--timeout", type=positive_float, default=10.0, help="deadline per target, s (10)")
    probe.add_argument("--connect-timeout", type=positive_float, help="TCP+TLS connect timeout, s")
    probe.add_argument("-m", "--method", choices=["GET", "HEAD"], default="GET", type=str.upper)
    probe.add_argument("--rate", type=positive_float, help="probes started per second (per worker with --dask)")
    probe.add_argument("--per-host", type=positive_int, help="probes in flight per host (per worker with --dask)")
    probe.add_argument(
        "--retries", type=int, default=0, help="retries for reset/disconnected/connect_timeout/dns SERVFAIL|TIMEOUT"
    )
    add_resolver_option(probe)
    add_proxy_option(probe)
    probe.add_argument("--all-ips", action="store_true", help="probe every address of a name: a record each")
    add_header_option(probe)
    probe.add_argument("-L", "--follow-redirects", action="store_true", help="follow redirects, record the chain")
    probe.add_argument("--max-body", type=int, default=64 * 1024, help="body bytes read per target (65536)")
    probe.add_argument("-p", "--ports", type=_ports, default=(), help="ports for lines without one: 80,443,8000-8010")
    probe.add_argument("--scheme", choices=["http", "https", "auto"], default="auto", help="for lines without one")
    probe.add_argument("--verify", action="store_true", help="verify TLS certificates (off: see the service)")
    probe.add_argument(
        "--ca",
        metavar="FILE",
        help="PEM CA bundle that cert_verify_error (and --verify) judge chains against (default: the system's)",
    )
    probe.add_argument(
        "--no-facts",
        action="store_true",
        help="skip certificate facts and body/header hashes, words and lines (those fields stay null)",
    )
    probe.add_argument(
        "--favicon", action="store_true", help="fetch the favicon: favicon_mmh3 (Shodan's hash) and favicon_url"
    )
    probe.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="/A,/B",
        help="probe each path on every target: one record each (repeatable)",
    )
    probe.add_argument("--path-file", metavar="FILE", help="paths to probe on every target, one per line")
    probe.add_argument(
        "--max-host-errors",
        type=positive_int,
        metavar="N",
        help="after N network errors on a target's paths, record the rest as skipped without probing them",
    )
    _add_matcher_arguments(probe)
    probe.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto", help="response parser")
    probe.add_argument(
        "--engine",
        choices=["auto", "lean", "reference"],
        default="auto",
        help="lean: callbacks on asyncio with llhttp; reference: the portable path through Client (auto: lean "
        "when it can run and makes attempts itself, i.e. without -L and -x)",
    )
    probe.add_argument(
        "-o", "--output", metavar="FILE", help="write records to FILE (default, or -: stdout; ./- for a file named -)"
    )
    probe.add_argument("--format", choices=["jsonl", "csv", "text"], help="default: jsonl, text on a terminal")
    probe.add_argument(
        "--order",
        choices=["completion", "input"],
        default="completion",
        help="input: records in input order, through a window (a slow target holds back those after it)",
    )
    probe.add_argument(
        "--window",
        type=positive_int,
        metavar="N",
        help="with --order input: records that may wait for an earlier one (default max(4 x -c, 256))",
    )
    probe.add_argument("--only-ok", action="store_true", help="write only records that got an HTTP response")
    probe.add_argument("--resume", metavar="JOURNAL", help="journal finished targets; rerun to complete the list")
    probe.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    probe.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON to FILE")
    _add_scale_out_arguments(probe)
    probe.set_defaults(handler=main_probe)


_MATCHERS = (
    ("code", "CODES", "status codes and ranges: 200,301-308"),
    ("length", "N", "lengths and ranges (Content-Length, else the body bytes read): 0,1000-2000"),
    ("string", "TEXT", "text in the body read"),
    ("regex", "REGEX", "a Python regular expression found in the body read"),
)


def _add_matcher_arguments(parser: argparse.ArgumentParser) -> None:
    """``--match-*`` / ``--filter-*`` (:mod:`aiotcp.probe.matchers`): which records are written."""
    for name, metavar, what in _MATCHERS:
        parser.add_argument(
            f"--match-{name}", action="append", default=[], metavar=metavar, help=f"write only records with {what}"
        )
        parser.add_argument(
            f"--filter-{name}", action="append", default=[], metavar=metavar, help=f"do not write records with {what}"
        )


def _matchers(args: argparse.Namespace) -> Matchers:
    """Raises UsageError naming the flag, for a value that is not a code, length or regular expression."""
    try:
        return Matchers.build(
            **{
                f"{verb}_{name}": getattr(args, f"{verb}_{name}")
                for verb in ("match", "filter")
                for name, _, _ in _MATCHERS
            }
        )
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None


def _paths(args: argparse.Namespace) -> tuple[str, ...]:
    """The paths of ``--path`` and ``--path-file``, in order, without repeats. Raises UsageError naming the flag
    for an unreadable file (a path that is not one is caught by ProbeOptions, also before any probe)."""
    paths = [piece.strip() for value in args.path for piece in value.split(",") if piece.strip()]
    if args.path_file is not None:
        text = read_input(args.path_file, "--path-file").decode("utf-8", errors="surrogateescape")
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                if not line.startswith("/"):
                    raise UsageError(f"--path-file: line {number}: {escape_control(line)!s} does not start with '/'")
                paths.append(line)
        if not paths:
            raise UsageError(f"--path-file: {escape_control(args.path_file)} holds no path")
    return tuple(dict.fromkeys(paths))


def _check_ca(path: str | None) -> None:
    if path is None:
        return
    try:
        load_ca(path)
    except OSError as exc:
        raise UsageError(f"--ca: cannot read {escape_control(path)}: {describe_os_error(exc)}") from None
    except ValueError:
        raise UsageError(f"--ca: {escape_control(path)} holds no PEM certificate") from None


def _add_scale_out_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` (:mod:`aiotcp.probe.workers`), ``--shard I/N`` (:mod:`aiotcp.probe.sharding`), ``--dask``
    and ``--chunk-size`` (:mod:`aiotcp.probe.dask`)."""
    parser.add_argument(
        "-w",
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="probe in N processes on this machine (auto: one per CPU), one output; -c is split over them (1)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="probe only part I of N (0 <= I < N) of the list, split by a stable hash of each target; "
        "N runs with 0/N .. N-1/N probe disjoint parts whose union is the list",
    )
    parser.add_argument(
        "--dask",
        type=_dask_target,
        metavar="ADDRESS|local:W",
        help="probe on a Dask cluster: a scheduler address (tcp://HOST:8786) or local:W worker processes on "
        "this machine; -c, --rate and --per-host then apply per worker (needs aiotcp[dask])",
    )
    parser.add_argument(
        "--chunk-size",
        type=_chunk_size,
        metavar="N",
        help="with --dask: targets per task (default 10 x --concurrency, at least 100)",
    )


def _workers(text: str) -> int:
    """``-w N|auto``: auto is one worker per CPU."""
    return max(1, os.cpu_count() or 1) if text == "auto" else positive_int(text)


def _shard(text: str) -> sharding.Shard:
    try:
        return sharding.parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dask_target(text: str) -> distributed.DaskTarget:
    from ..probe import dask as distributed

    try:
        return distributed.parse_dask_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _chunk_size(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--chunk-size must be a whole number >= 1, got {text!r}")
    return int(text)


def _ports(text: str) -> tuple[int, ...]:
    try:
        return tuple(parse_ports(text))
    except InvalidTarget as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _open_input(path: str) -> io.BufferedReader | None:
    """The input list, opened now so that a missing file, a directory or no permission is a usage error
    before anything starts (``None`` for stdin).

    Raises:
        UsageError: naming the file and what the system said.
    """
    if path == "-":
        return None
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by the caller's ExitStack
    except OSError as exc:
        raise UsageError(f"cannot read the target list {path}: {describe_os_error(exc)}") from None
    try:
        file.peek(1)  # a directory opens on some systems and fails here
    except OSError as exc:
        file.close()
        raise UsageError(f"cannot read the target list {path}: {describe_os_error(exc)}") from None
    return file


def _lines(file: io.BufferedReader | None) -> Iterator[str]:
    """Lines as text; bytes that are not UTF-8 are kept (surrogateescape) and become invalid_target records."""
    stream = io.TextIOWrapper(
        file if file is not None else sys.stdin.buffer, encoding="utf-8", errors="surrogateescape"
    )
    try:
        yield from stream
    finally:
        # The caller closes the file (and stdin is not ours to close); it may be closed already when an
        # interrupted run lets this generator go late.
        with contextlib.suppress(ValueError):
            stream.detach()


def _checked(lines: Iterator[str], journal: Journal, mismatch: list[JournalMismatch]) -> Iterator[str]:
    """The lines of stdin, each checked against the journal's record of it (see Journal.check_line). At the
    first line that differs the input ends there (the probes of the lines before it finish and are journaled:
    those lines are the journal's own) and the error goes into ``mismatch``."""
    for number, line in enumerate(lines, 1):
        try:
            journal.check_line(number, line)
        except JournalMismatch as exc:
            mismatch.append(exc)
            return
        yield line


def _journal_key(path: str, ports: tuple[int, ...], shard: sharding.Shard | None = None) -> dict[str, Any]:
    """What decides how the input is numbered, so a journal is reused only by the run it was written for.

    A regular file is named by its path and its content (size and SHA-256): an edited list under the same
    name is another input, whose line numbers mean other targets. Stdin can only be named ``-``. Raises
    ``OSError`` if the file cannot be read.
    """
    key: dict[str, Any] = {"input": os.path.abspath(path) if path != "-" else "-", "ports": list(ports)}
    if shard is not None:
        key["shard"] = str(shard)  # another shard's journal holds other targets
    if path == "-":
        return key
    if os.path.isfile(path):  # not a FIFO or a device: reading it here would consume it
        with open(path, "rb") as file:
            key["size"] = os.fstat(file.fileno()).st_size
            key["sha256"] = hashlib.file_digest(file, "sha256").hexdigest()
    return key


def _count_lines(path: str) -> int | None:
    """Lines in a regular file (for the progress total), counted in blocks without decoding."""
    if path == "-" or not os.path.isfile(path):
        return None
    count = 0
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            count += block.count(b"\n")
    return count


class Stats:
    """Counts for the progress line and the summary table."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.replayed = 0  # records written from the --resume journal, not probed
        self.records = 0
        self.ok = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.timeout_phases: collections.Counter[tuple[str, str]] = collections.Counter()  # (kind, phase)
        self.last_line = 0
        self.matched = 0  # records written because they passed the matchers and filters
        self.filtered = 0  # records not written because of them

    def add(self, result: ProbeResult) -> None:
        self.records += 1
        if result.line is not None:
            self.last_line = max(self.last_line, result.line)
        if result.error is None:
            self.ok += 1
            if result.status_code is not None:
                self.statuses[result.status_code] += 1
        else:
            self.errors[result.error] += 1
            if result.timeout_phase is not None:
                self.timeout_phases[result.error, result.timeout_phase] += 1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.records / self.elapsed if self.elapsed > 0 else 0.0


def _phases(stats: Stats, kind: str) -> str:
    phases = [f"{phase} {count}" for (of, phase), count in stats.timeout_phases.most_common() if of == kind]
    return f" (in {', '.join(phases)})" if phases else ""


def _summary(stats: Stats, load: LoadReport | None = None, workers: int = 1, title: str = "aiotcp probe") -> Any:
    from rich.table import Table

    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("outcome")
    table.add_column("records", justify="right")
    for status, count in sorted(stats.statuses.items()):
        table.add_row(f"HTTP {status}", str(count))
    for kind, count in stats.errors.most_common():
        table.add_row(f"error: {kind}{_phases(stats, kind)}", str(count))
    table.add_section()
    if stats.matched or stats.filtered:
        table.add_row("matched (written)", str(stats.matched))
        table.add_row("filtered (not written)", str(stats.filtered))
    table.add_row("total probed", str(stats.records))
    if stats.replayed:
        table.add_row("from the journal", str(stats.replayed))
    table.add_row("wall time", f"{stats.elapsed:.2f} s")
    table.add_row("probes/s", f"{stats.rate:,.0f}")
    if load is not None and load.ticks:
        table.add_section()
        where = f", {workers} processes" if workers > 1 else ""
        table.add_row("engine", f"{load.engine}{where}")
        table.add_row(
            "concurrency: mean / max / asked",
            f"{load.mean_in_flight:,.0f} / {load.in_flight_max:,} / {load.concurrency:,}",
        )
        table.add_row("loop lag p50 / p99", f"{load.lag_percentile(50):g} / {load.lag_percentile(99):g} ms")
        table.add_row("concurrency capped (loop lag)", f"{load.held_share:.0%} of the time")
    if load is not None and load.prober_bound:
        if load.held_share > 0.05:
            why = (
                f"its event loop lagged (p99 {load.lag_percentile(99):g} ms, limit {load.lag_limit_ms:g} ms), so it "
                f"capped its concurrency {load.held_share:.0%} of the time"
            )
        else:
            why = "it started probes as fast as its CPU allowed, and they ended about as fast"
        table.caption = (
            f"The prober was the bottleneck: {why}. It ran at {load.mean_in_flight:,.0f} probes in flight on "
            f"average, not {load.concurrency:,}: a lower -c would be as fast (--workers faster, if cores are free). "
            "Deadlines were measured without its stalls."
        )
    return table


def _summary_json(stats: Stats, load: LoadReport, workers: int, *, interrupted: bool = False) -> dict[str, Any]:
    return {
        "schema": "aiotcp.probe-summary/1",
        "interrupted": interrupted,  # Ctrl-C: the figures of the records written before it
        "records": stats.records,
        "ok": stats.ok,
        "from_journal": stats.replayed,
        "statuses": {str(status): count for status, count in sorted(stats.statuses.items())},
        "errors": dict(stats.errors.most_common()),
        "timeout_phases": {
            kind: {phase: count for (of, phase), count in stats.timeout_phases.items() if of == kind}
            for kind in sorted({kind for kind, _ in stats.timeout_phases})
        },
        "matched": stats.matched,
        "filtered": stats.filtered,
        "wall_s": round(stats.elapsed, 3),
        "probes_per_s": round(stats.rate, 1),
        "workers": workers,
        "load": load.as_dict(),
    }


def main_probe(args: argparse.Namespace) -> int:
    if args.window is not None and args.order != "input":
        raise UsageError("--window sets the window of --order input; add --order input, or drop --window")
    if args.dask and args.workers > 1:
        raise UsageError("--workers and --dask do not combine: Dask has its own workers")
    matchers = _matchers(args)
    paths = _paths(args)
    _check_ca(args.ca)
    # With --dask or --workers the probes run in other processes, which fit -c to their own open-file limit.
    far = args.dask or args.workers > 1
    concurrency, warning = (args.concurrency, None) if far else raise_fd_limit(args.concurrency)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        options = ProbeOptions(
            method=args.method,
            concurrency=concurrency,
            timeout=args.timeout,
            connect_timeout=args.connect_timeout,
            rate=args.rate,
            per_host=args.per_host,
            retries=args.retries,
            follow_redirects=args.follow_redirects,
            headers=tuple(args.headers),
            max_body=args.max_body,
            order=args.order,
            reorder_window=args.window,
            scheme=args.scheme,
            ports=args.ports,
            verify=args.verify,
            http=args.http,
            all_ips=args.all_ips,
            proxy=args.proxy,
            paths=paths,
            max_host_errors=args.max_host_errors,
            favicon=args.favicon,
            facts=not args.no_facts,
            ca=args.ca,
            keep_body=matchers.needs_body,
            engine=args.engine,
            **resolver_options(args),
        )
    except ValueError as exc:
        print(f"error: usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    output = None if args.output == "-" else args.output  # as curl's -o -: stdout
    fmt = args.format or ("text" if output is None and sys.stdout.isatty() else "jsonl")
    stats = Stats()
    with ExitStack() as stack:
        source = _open_input(args.file)
        if source is not None:
            stack.callback(source.close)
        journal = None
        if args.resume:
            try:
                journal = Journal(args.resume, _journal_key(args.file, args.ports, args.shard))
            except JournalMismatch as exc:
                raise UsageError(f"--resume: {exc}") from None
            except OSError as exc:
                raise UsageError(f"--resume: cannot use {args.resume}: {describe_os_error(exc)}") from None
            stack.callback(journal.close)
        try:
            out: TextIO = stack.enter_context(open(output, "w", encoding="utf-8", newline="")) if output else sys.stdout
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {describe_os_error(exc)}") from None
        summary_file: TextIO | None = None
        if args.summary_json:
            try:
                summary_file = stack.enter_context(open(args.summary_json, "w", encoding="utf-8"))
            except OSError as exc:
                raise UsageError(
                    f"--summary-json: cannot write {escape_control(args.summary_json)}: {describe_os_error(exc)}"
                ) from None
        show = not args.quiet
        status = StatusLine(sys.stderr) if show and sys.stderr.isatty() else None
        writer = make_writer(fmt, out, FIELD_NAMES)
        if status is not None and out.isatty():
            writer = _AroundStatus(writer, status)
        dask_unavailable: tuple[type[Exception], ...] = ()
        dask_failed: tuple[type[Exception], ...] = ()
        workers_failed: tuple[type[Exception], ...] = ()
        if args.dask:
            from ..probe import dask as distributed

            dask_unavailable, dask_failed = (distributed.DaskUnavailable,), (distributed.DaskError,)
        if args.workers > 1:
            from ..probe.workers import WorkerFailed

            workers_failed = (WorkerFailed,)
        load = LoadReport()  # made here, so that Ctrl-C can still write it to --summary-json
        try:
            client = stack.enter_context(distributed.connect(args.dask)) if args.dask else None
            return anyio.run(
                _run,
                args,
                options,
                source,
                writer,
                journal,
                stats,
                load,
                status,
                client,
                matchers,
                summary_file,
                backend_options={"use_uvloop": have_uvloop()},
            )
        except dask_unavailable as exc:
            print(f"error: usage: --dask: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except dask_failed as exc:
            print(f"error: dask: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except workers_failed as exc:
            resume = "rerun the same command to probe the rest" if args.resume else "use --resume to finish lists"
            print(f"error: workers: {exc}; {resume}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            return _interrupted(args, stats, load, show, summary_file)


def _interrupted(
    args: argparse.Namespace, stats: Stats, load: LoadReport, show: bool, summary_file: TextIO | None
) -> int:
    """Ctrl-C: the summary so far, and how to finish the list (the records written so far are kept)."""
    if show:
        make_console(sys.stderr).print(_summary(stats, title="aiotcp probe (interrupted)"))
    if summary_file is not None:
        summary = _summary_json(stats, load, args.workers, interrupted=True)
        summary_file.write(json.dumps(summary, indent=2) + "\n")
    if args.resume:
        command = shlex.join(["aiotcp", *getattr(args, "argv", ["probe", args.file, "--resume", args.resume])])
        stdin = " < (the same input)" if args.file == "-" else ""
        print(f"interrupted: to finish the list, run the same command again: {command}{stdin}", file=sys.stderr)
    else:
        print(
            f"interrupted after {stats.records:,} records: with --resume JOURNAL, a run that is stopped can be"
            " finished by running it again",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED


class _AroundStatus:
    """A record writer whose records go to the terminal that shows the status line: the line is erased before
    each record, and drawn again below the records at the next progress update."""

    def __init__(self, writer: RecordWriter, status: StatusLine) -> None:
        self.writer = writer
        self._status = status

    def write(self, record: dict[str, Any]) -> None:
        self._status.clear()
        self.writer.write(record)

    def write_result(self, result: ProbeResult, encoded: str | None = None) -> None:
        self._status.clear()
        self.writer.write_result(result, encoded)

    def flush(self) -> None:
        self.writer.flush()


async def _run(
    args: argparse.Namespace,
    options: ProbeOptions,
    source: io.BufferedReader | None,
    writer: RecordWriter,
    journal: Journal | None,
    stats: Stats,
    load: LoadReport,
    status: StatusLine | None,
    client: Any = None,
    matchers: Matchers | None = None,
    summary_file: TextIO | None = None,
) -> int:
    matchers = matchers or Matchers()
    if journal is not None:
        for record in journal.replay():
            written = record.pop(_NOT_WRITTEN, True)
            if written and (not args.only_ok or record.get("ok")):
                writer.write(record)
            stats.replayed += 1
    progress = _Progress(stats, _count_lines(args.file), status) if status is not None else None
    last_flush = time.monotonic()
    skip = journal.is_done if journal is not None else None
    lines = _lines(source)
    mismatch: list[JournalMismatch] = []
    if journal is not None and args.file == "-":
        lines = _checked(lines, journal, mismatch)
    numbered = iter_jobs(lines, ports=options.ports)
    jobs = numbered if args.shard is None else sharding.select(numbered, args.shard)
    if client is not None:
        from ..probe import dask as distributed

        results = distributed.probe_jobs_on_dask(client, jobs, options, skip=skip, chunk_size=args.chunk_size)
    elif args.workers > 1:
        from ..probe.workers import probe_in_processes

        def warn(text: str) -> None:
            if status is not None:
                status.clear()
            print(f"warning: {text}", file=sys.stderr)

        results = probe_in_processes(
            lines,
            options,
            workers=args.workers,
            shard=args.shard,
            done=journal.done_bitmap() if journal is not None else b"",
            report=load,
            on_warning=warn,
        )
    else:
        results = probe_jobs(jobs, options, skip=skip, report=load, on_window_stall=_StallWarning(options, status))
    # JSONL and the journal take each record as to_json() writes it, once (no dict per record).
    encode = journal is not None or isinstance(_inner(writer), JSONLWriter)
    filtering = matchers.active  # asked once: a property that looks at eight fields
    # aclosing: whatever ends the loop (an error writing, Ctrl-C), the probes stop and their sockets close
    # here, in this task.
    try:
        async with aclosing(numbered), aclosing(jobs), aclosing(results):
            async for result in results:
                keep = not filtering or matchers.keep(result)
                result.body = None
                encoded = result.to_json() if encode else None
                if journal is not None:
                    assert encoded is not None
                    # Every record is journaled (--resume accounts for every target); a filtered one is marked, so
                    # that a resumed run leaves it out too.
                    journal.append_json(result.seq, encoded, result.parts, marks=None if keep else _NOT_WRITTEN_MARK)
                if filtering:
                    if keep:
                        stats.matched += 1
                    else:
                        stats.filtered += 1
                if keep and (not args.only_ok or result.ok):
                    writer.write_result(result, encoded)
                stats.add(result)
                now = time.monotonic()
                if now - last_flush >= _FLUSH_EVERY:
                    writer.flush()
                    last_flush = now
                    if progress is not None:
                        progress.update()
    finally:
        writer.flush()
        if status is not None:
            status.clear()
    if mismatch:
        print(f"error: usage: --resume: {mismatch[0]}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        make_console(sys.stderr).print(_summary(stats, load, args.workers))
    if summary_file is not None:
        summary_file.write(json.dumps(_summary_json(stats, load, args.workers), indent=2) + "\n")
    return EXIT_OK


def _inner(writer: RecordWriter) -> RecordWriter:
    return writer.writer if isinstance(writer, _AroundStatus) else writer


_NOT_WRITTEN = "written"  # a journal line's mark for a record the matchers kept out of the output
_NOT_WRITTEN_MARK = {_NOT_WRITTEN: False}


class _StallWarning:
    """``--order input``: says once that the window is full and waiting on a slow target (the run goes on)."""

    def __init__(self, options: ProbeOptions, status: StatusLine | None) -> None:
        self.window = options.window
        self.status = status
        self.warned = False

    def __call__(self) -> None:
        if self.warned:
            return
        self.warned = True
        if self.status is not None:
            self.status.clear()
        print(
            f"warning: --order input: all {self.window:,} places of the window hold records waiting for one slow"
            f" target, so no new probe starts for {WINDOW_STALL_S:g} s and more; --order completion never waits,"
            " --window N holds more",
            file=sys.stderr,
        )


class _Progress:
    """The status line's text: records, lines read of the total, probes/s, ok and errors."""

    def __init__(self, stats: Stats, total_lines: int | None, status: StatusLine) -> None:
        self.stats = stats
        self.total_lines = total_lines
        self.status = status

    def update(self) -> None:
        s = self.stats
        lines = f"line {s.last_line:,}" + (f"/{self.total_lines:,}" if self.total_lines else "")
        errors = sum(s.errors.values())
        self.status.show(f"{s.records:,} records  {lines}  {s.rate:,.0f} probes/s  ok {s.ok:,}  errors {errors:,}")
