"""``aiotcp probe [FILE|-]``: the command around :func:`aiotcp.probe.probe_jobs`.

Reads targets line by line (never the whole list), writes one record per target as it completes (JSONL,
CSV or text), journals finished records for ``--resume``, shows live progress on a terminal and a summary
at the end (also as JSON with ``--summary-json``). The probes run in this process, in ``--workers``
processes (:mod:`aiotcp.probe.workers`) or on a Dask cluster (:mod:`aiotcp.probe.dask`); the output,
journal and summary are the same whichever.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
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
from ..probe.output import JSONLWriter, RecordWriter, make_writer

if TYPE_CHECKING:  # --dask and --workers load their modules when asked for: every probe starts faster
    from ..probe import dask as distributed
from ..targets import parse_ports
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_header_option, positive_float, positive_int

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
    probe.add_argument("--retries", type=int, default=0, help="retries for reset/disconnected/connect_timeout")
    add_header_option(probe)
    probe.add_argument("-L", "--follow-redirects", action="store_true", help="follow redirects, record the chain")
    probe.add_argument("--max-body", type=int, default=64 * 1024, help="body bytes read per target (65536)")
    probe.add_argument("-p", "--ports", type=_ports, default=(), help="ports for lines without one: 80,443,8000-8010")
    probe.add_argument("--scheme", choices=["http", "https", "auto"], default="auto", help="for lines without one")
    probe.add_argument("--verify", action="store_true", help="verify TLS certificates (off: see the service)")
    probe.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto", help="response parser")
    probe.add_argument(
        "--engine",
        choices=["auto", "lean", "reference"],
        default="auto",
        help="lean: callbacks on asyncio with llhttp; reference: the portable path through Client (auto: lean "
        "when it can run)",
    )
    probe.add_argument("-o", "--output", metavar="FILE", help="write records to FILE (default: stdout)")
    probe.add_argument("--format", choices=["jsonl", "csv", "text"], help="default: jsonl, text on a terminal")
    probe.add_argument("--order", choices=["completion", "input"], default="completion")
    probe.add_argument("--only-ok", action="store_true", help="write only records that got an HTTP response")
    probe.add_argument("--resume", metavar="JOURNAL", help="journal finished targets; rerun to complete the list")
    probe.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    probe.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON to FILE")
    _add_scale_out_arguments(probe)
    probe.set_defaults(handler=main_probe)


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


def _lines(path: str) -> Iterator[str]:
    if path == "-":
        stream: TextIO = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        yield from stream
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        yield from file


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
        self.records = 0
        self.ok = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.timeout_phases: collections.Counter[tuple[str, str]] = collections.Counter()  # (kind, phase)
        self.last_line = 0

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


def _summary(stats: Stats, replayed: int, load: LoadReport, workers: int) -> Any:
    from rich.table import Table

    table = Table(title="aiotcp probe", show_header=True, title_justify="left")
    table.add_column("outcome")
    table.add_column("records", justify="right")
    for status, count in sorted(stats.statuses.items()):
        table.add_row(f"HTTP {status}", str(count))
    for kind, count in stats.errors.most_common():
        table.add_row(f"error: {kind}{_phases(stats, kind)}", str(count))
    table.add_section()
    table.add_row("total probed", str(stats.records))
    if replayed:
        table.add_row("from the journal", str(replayed))
    table.add_row("wall time", f"{stats.elapsed:.2f} s")
    table.add_row("probes/s", f"{stats.rate:,.0f}")
    if load.ticks:
        table.add_section()
        where = f", {workers} processes" if workers > 1 else ""
        table.add_row("engine", f"{load.engine}{where}")
        table.add_row(
            "concurrency: mean / max / asked",
            f"{load.mean_in_flight:,.0f} / {load.in_flight_max:,} / {load.concurrency:,}",
        )
        table.add_row("loop lag p50 / p99", f"{load.lag_percentile(50):g} / {load.lag_percentile(99):g} ms")
        table.add_row("concurrency capped (loop lag)", f"{load.held_share:.0%} of the time")
    if load.prober_bound:
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


def _summary_json(stats: Stats, replayed: int, load: LoadReport, workers: int) -> dict[str, Any]:
    return {
        "schema": "aiotcp.probe-summary/1",
        "records": stats.records,
        "ok": stats.ok,
        "from_journal": replayed,
        "statuses": {str(status): count for status, count in sorted(stats.statuses.items())},
        "errors": dict(stats.errors.most_common()),
        "timeout_phases": {
            kind: {phase: count for (of, phase), count in stats.timeout_phases.items() if of == kind}
            for kind in sorted({kind for kind, _ in stats.timeout_phases})
        },
        "wall_s": round(stats.elapsed, 3),
        "probes_per_s": round(stats.rate, 1),
        "workers": workers,
        "load": load.as_dict(),
    }


def main_probe(args: argparse.Namespace) -> int:
    if args.dask and args.workers > 1:
        print("error: usage: --workers and --dask do not combine: Dask has its own workers", file=sys.stderr)
        return EXIT_USAGE
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
            scheme=args.scheme,
            ports=args.ports,
            verify=args.verify,
            http=args.http,
            engine=args.engine,
        )
    except ValueError as exc:
        print(f"error: usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    fmt = args.format or ("text" if args.output is None and sys.stdout.isatty() else "jsonl")
    with ExitStack() as stack:
        journal = None
        if args.resume:
            try:
                journal = Journal(args.resume, _journal_key(args.file, args.ports, args.shard))
            except (JournalMismatch, OSError) as exc:
                print(f"error: usage: --resume: {exc}", file=sys.stderr)
                return EXIT_USAGE
            stack.callback(journal.close)
        try:
            out: TextIO = (
                stack.enter_context(open(args.output, "w", encoding="utf-8", newline="")) if args.output else sys.stdout
            )
        except OSError as exc:
            print(f"error: usage: cannot write {args.output}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        writer = make_writer(fmt, out, FIELD_NAMES)
        show = not args.quiet
        dask_unavailable: tuple[type[Exception], ...] = ()
        dask_failed: tuple[type[Exception], ...] = ()
        workers_failed: tuple[type[Exception], ...] = ()
        if args.dask:
            from ..probe import dask as distributed

            dask_unavailable, dask_failed = (distributed.DaskUnavailable,), (distributed.DaskError,)
        if args.workers > 1:
            from ..probe.workers import WorkerFailed

            workers_failed = (WorkerFailed,)
        try:
            client = stack.enter_context(distributed.connect(args.dask)) if args.dask else None
            return anyio.run(
                _run,
                args,
                options,
                writer,
                journal,
                show,
                client,
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


async def _run(
    args: argparse.Namespace,
    options: ProbeOptions,
    writer: RecordWriter,
    journal: Journal | None,
    show: bool,
    client: Any = None,
) -> int:
    stats = Stats()
    replayed = 0
    if journal is not None:
        for record in journal.replay():
            if not args.only_ok or record.get("ok"):
                writer.write(record)
            replayed += 1
    total_lines = _count_lines(args.file) if show and sys.stderr.isatty() else None
    progress = _Progress(stats, total_lines) if show and sys.stderr.isatty() else None
    last_flush = time.monotonic()
    skip = journal.is_done if journal is not None else None
    lines = _lines(args.file)
    mismatch: list[JournalMismatch] = []
    if journal is not None and args.file == "-":
        lines = _checked(lines, journal, mismatch)
    numbered = iter_jobs(lines, ports=options.ports)
    jobs = numbered if args.shard is None else sharding.select(numbered, args.shard)
    load = LoadReport()
    if client is not None:
        from ..probe import dask as distributed

        results = distributed.probe_jobs_on_dask(client, jobs, options, skip=skip, chunk_size=args.chunk_size)
    elif args.workers > 1:
        from ..probe.workers import probe_in_processes

        results = probe_in_processes(
            lines,
            options,
            workers=args.workers,
            shard=args.shard,
            done=journal.done_bitmap() if journal is not None else b"",
            report=load,
            on_warning=lambda text: print(f"warning: {text}", file=sys.stderr),
        )
    else:
        results = probe_jobs(jobs, options, skip=skip, report=load)
    encode = journal is not None or isinstance(writer, JSONLWriter)
    # aclosing: whatever ends the loop (an error writing, Ctrl-C), the probes stop and their sockets close
    # here, in this task.
    try:
        async with aclosing(numbered), aclosing(jobs), aclosing(results):
            async for result in results:
                encoded = result.to_json() if encode else None
                if journal is not None:
                    assert encoded is not None
                    journal.append_json(result.seq, encoded)
                if not args.only_ok or result.ok:
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
        if progress is not None:
            progress.stop()
    if mismatch:
        print(f"error: usage: --resume: {mismatch[0]}", file=sys.stderr)
        return EXIT_USAGE
    if show:
        from rich.console import Console

        Console(stderr=True).print(_summary(stats, replayed, load, args.workers))
    if args.summary_json:
        text = json.dumps(_summary_json(stats, replayed, load, args.workers), indent=2) + "\n"
        await anyio.Path(args.summary_json).write_text(text, encoding="utf-8")
    return EXIT_OK


class _Progress:
    """A one-line live status on stderr: records, lines read of the total, probes/s, ok and errors."""

    def __init__(self, stats: Stats, total_lines: int | None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.stats = stats
        self.total_lines = total_lines
        self.live = Live("", console=Console(stderr=True), refresh_per_second=4, transient=True)
        self.live.start()

    def update(self) -> None:
        s = self.stats
        lines = f"line {s.last_line:,}" + (f"/{self.total_lines:,}" if self.total_lines else "")
        errors = sum(s.errors.values())
        self.live.update(f"{s.records:,} records  {lines}  {s.rate:,.0f} probes/s  ok {s.ok:,}  errors {errors:,}")

    def stop(self) -> None:
        self.live.stop()
