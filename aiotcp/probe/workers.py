"""``aiotcp probe --workers N``: N processes on this machine probe one list, and one output gets every record.

Theory of operation
-------------------
The parent reads the input (a file or stdin, line by line, never the whole list) in a thread and sends every
batch of lines to every worker: spawned processes, each with its own event loop and engine. Worker ``k``
numbers the lines exactly as a single run does (:func:`~aiotcp.probe.jobs.iter_jobs`), so ``seq`` and
``line`` are the same everywhere, and probes the jobs of its shard: shard ``k`` of ``N`` by the rule of
``--shard`` (:mod:`.sharding`); under ``--shard I/M`` as well, shard ``I + M*k`` of ``M*N``, which lies
inside shard ``I`` of ``M``. The shards are disjoint and cover the list, so every target is probed by
exactly one worker. ``concurrency`` is the total: split over the workers.

Each worker sends its records back in batches (each as :meth:`ProbeResult.values`, a tuple that pickles
fast; the records of one job -- its paths, its addresses -- always in the same batch, so that they reach the
journal in a row, as ``--resume`` needs them); the parent yields them to the caller, which writes them,
journals them and counts them as it does for a single process: one output, one journal, one summary. With
``order="input"`` each worker yields its own records in input order and the parent merges the N sorted streams
by ``seq``.

Exactly once and ``--resume``. The parent hands every worker the journal's bitmap of finished ``seq`` s
(:meth:`Journal.done_bitmap`): a worker skips them as a single run would. A worker's records are journaled by
the parent as they arrive; a worker that dies (killed, out of memory) loses only the records it had not sent.
The parent notices (its pipe ends without the worker's last message), lets the other workers finish and then
raises :class:`WorkerFailed`; a rerun with the same ``--resume`` journal probes exactly what is missing.

Every wait is bounded: workers report ready within :data:`START_TIMEOUT_S`; a worker that stops sending
anything (a hang, not a death) is noticed only by its sentinel, so the parent polls every :data:`POLL_S`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import fields, replace
from typing import Any

import anyio

from ..accelerators import have_uvloop
from ..fdlimit import raise_fd_limit
from .engine import probe_jobs
from .jobs import iter_jobs
from .options import ProbeOptions
from .pacing import LoadReport
from .records import ProbeResult
from .sharding import Shard

__all__ = ["POLL_S", "START_TIMEOUT_S", "WorkerFailed", "probe_in_processes", "worker_shard"]

#: Longest wait for a message before the parent looks at the workers' health again.
POLL_S = 0.5
#: How long a spawned worker gets to import and report ready.
START_TIMEOUT_S = 60.0
_LINES_PER_BATCH = 2048
_LINES_BATCH_S = 0.1  # a batch of lines waits at most this long for more (stdin that trickles)
_RECORDS_PER_BATCH = 512
_RECORDS_BATCH_S = 0.05
_END = None  # the last message of the lines pipe


class WorkerFailed(RuntimeError):
    """A worker process died or failed before sending all its records."""


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def worker_shard(index: int, count: int, shard: Shard | None) -> Shard:
    """The shard worker ``index`` of ``count`` probes, within the run's own ``shard`` if it has one."""
    if shard is None:
        return Shard(index, count)
    return Shard(shard.index + shard.count * index, shard.count * count)


# -- the worker side ---------------------------------------------------------------------------------------


def _worker_main(
    index: int,
    shard: Shard,
    options: ProbeOptions,
    done: bytes,
    lines: multiprocessing.connection.Connection,
    records: multiprocessing.connection.Connection,
) -> None:
    """A worker process: probe the jobs of ``shard`` among the lines that come in, send the records back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (it terminates us)
    concurrency, warning = raise_fd_limit(options.concurrency)
    if warning is not None:
        options = replace(options, concurrency=concurrency)
    try:
        records.send(("ready", index, warning))
        anyio.run(_work, shard, options, done, lines, records, backend_options={"use_uvloop": have_uvloop()})
    except BaseException as exc:  # a bug, or the machine: the parent reports it and the run exits 1
        with contextlib.suppress(OSError):
            records.send(("failed", index, f"{type(exc).__name__}: {exc}"))
        raise


async def _work(
    shard: Shard,
    options: ProbeOptions,
    done: bytes,
    lines: multiprocessing.connection.Connection,
    records: multiprocessing.connection.Connection,
) -> None:
    def skip(seq: int) -> bool:
        byte, bit = divmod(seq, 8)
        return byte < len(done) and bool(done[byte] & (1 << bit))

    async def incoming() -> AsyncGenerator[str, None]:
        while (batch := await anyio.to_thread.run_sync(lines.recv)) is not _END:
            for line in batch:
                yield line

    report = LoadReport()
    batch: list[tuple[Any, ...]] = []
    part = 0  # records of the job under way so far, when it has several
    sent_at = time.monotonic()
    numbered = iter_jobs(incoming(), ports=options.ports)
    mine = (job async for job in numbered if shard.includes(job))
    async with (
        contextlib.aclosing(numbered),
        contextlib.aclosing(probe_jobs(mine, options, skip=skip if done else None, report=report)) as results,
    ):
        async for result in results:
            batch.append(result.values())
            if result.parts > 1:  # a job's records go in one batch: the journal needs them in a row
                part += 1
                if part < result.parts:
                    continue
                part = 0
            now = time.monotonic()
            if len(batch) >= _RECORDS_PER_BATCH or now - sent_at >= _RECORDS_BATCH_S:
                # In a thread: a full pipe (a parent busy writing) must not stall the probes in flight.
                await anyio.to_thread.run_sync(records.send, ("records", batch))
                batch, sent_at = [], now
    if batch:
        await anyio.to_thread.run_sync(records.send, ("records", batch))
    await anyio.to_thread.run_sync(records.send, ("done", _report_values(report)))


def _report_values(report: LoadReport) -> dict[str, Any]:
    return {f.name: getattr(report, f.name) for f in fields(report)}


# -- the parent side ---------------------------------------------------------------------------------------


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, index: int, process: Any, lines: Any, records: Any) -> None:
        self.index = index
        self.process = process
        self.lines = lines  # parent end: lines go out
        self.records = records  # parent end: records come in
        self.ready = False
        self.finished = False  # "done" received
        self.failure: str | None = None  # why it ended without "done"
        self.held: deque[ProbeResult] = deque()  # input order: records waiting for the merge

    def __repr__(self) -> str:
        state = "done" if self.finished else "failed" if self.failure else "ready" if self.ready else "starting"
        return f"<probe worker {self.index} pid={self.process.pid} {state} held={len(self.held)}>"

    @property
    def ended(self) -> bool:
        return self.finished or self.failure is not None


def _feed_lines(lines: Iterator[str], workers: list[_Worker], stop: threading.Event) -> None:
    """The parent's reader thread: every batch of lines to every worker, then the end mark."""
    batch: list[str] = []
    started = time.monotonic()
    try:
        for line in lines:
            if not batch:
                started = time.monotonic()
            batch.append(line)
            if len(batch) >= _LINES_PER_BATCH or time.monotonic() - started >= _LINES_BATCH_S:
                _broadcast(workers, batch, stop)
                batch = []
            if stop.is_set():
                return
        if batch:
            _broadcast(workers, batch, stop)
    finally:
        _broadcast(workers, _END, stop)


def _broadcast(workers: list[_Worker], message: Any, stop: threading.Event) -> None:
    for worker in workers:
        if stop.is_set() and message is not _END:
            return
        if worker.failure is None:
            with contextlib.suppress(OSError, ValueError):  # a worker that died: its pipe is broken
                worker.lines.send(message)


async def probe_in_processes(
    lines: Iterator[str],
    options: ProbeOptions,
    *,
    workers: int,
    shard: Shard | None = None,
    done: bytes = b"",
    report: LoadReport | None = None,
    on_warning: Callable[[str], object] | None = None,
) -> AsyncGenerator[ProbeResult, None]:
    """Probe the lines of ``lines`` in ``workers`` processes (see the module docstring); yield every record.

    ``done``: a bitmap of ``seq`` s not to probe (the journal's). ``report`` receives the merged load figures
    once every worker has finished. ``on_warning`` gets the workers' own warnings (an open-file limit that
    lowered their concurrency).

    Raises :class:`WorkerFailed` once the others have finished if a worker died or failed (the records it
    sent were yielded), and ``ValueError`` for ``workers < 1``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    context = multiprocessing.get_context("spawn")
    team: list[_Worker] = []
    stop = threading.Event()
    feeder: threading.Thread | None = None
    try:
        for index in range(workers):
            share = replace(options, concurrency=max(1, _share(options.concurrency, workers, index)))
            lines_out, lines_in = context.Pipe(duplex=False)
            records_in, records_out = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main,
                args=(index, worker_shard(index, workers, shard), share, done, lines_out, records_out),
                name=f"aiotcp-probe-worker-{index}",
                daemon=True,
            )
            process.start()
            lines_out.close()  # the worker's ends: ours closed, so its death shows as EOF
            records_out.close()
            team.append(_Worker(index, process, lines_in, records_in))
        feeder = threading.Thread(target=_feed_lines, args=(lines, team, stop), name="aiotcp-probe-lines", daemon=True)
        feeder.start()
        merged = report if report is not None else LoadReport()
        merged.processes = 0
        async for result in _collect(team, options, merged, on_warning):
            yield result
        failed = [worker for worker in team if worker.failure is not None]
        if failed:
            raise WorkerFailed("; ".join(f"worker {w.index} of {workers}: {w.failure}" for w in failed))
    finally:
        stop.set()
        for worker in team:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in team:
            worker.process.join(5.0)
            if worker.process.is_alive():  # pragma: no cover - a worker that ignores SIGTERM
                worker.process.kill()
                worker.process.join(5.0)
            worker.records.close()
            worker.lines.close()
        if feeder is not None:
            feeder.join(5.0)


async def _collect(
    team: list[_Worker],
    options: ProbeOptions,
    report: LoadReport,
    on_warning: Callable[[str], object] | None,
) -> AsyncGenerator[ProbeResult, None]:
    in_order = options.order == "input"
    window = options.window
    started = time.monotonic()
    while not all(worker.ended for worker in team):
        # Input order: a worker whose records wait for another's is not read (its pipe fills, it pauses).
        listening = [w for w in team if not w.ended and not (in_order and len(w.held) >= window)]
        for worker, message in await anyio.to_thread.run_sync(_receive, listening, abandon_on_cancel=True):
            kind = message[0]
            if kind == "records":
                records = [ProbeResult(*values) for values in message[1]]
                if in_order:
                    worker.held.extend(records)
                else:
                    for record in records:
                        yield record
            elif kind == "ready":
                worker.ready = True
                if message[2] and on_warning is not None:
                    on_warning(f"worker {worker.index}: {message[2]}")
            elif kind == "done":
                worker.finished = True
                report.merge(LoadReport(**message[1]))
            elif kind == "failed":
                worker.failure = message[2]
            elif kind == "eof" and not worker.ended:
                code = worker.process.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                worker.failure = f"ended without sending all its records ({why})"
        late = time.monotonic() - started > START_TIMEOUT_S
        for worker in team:
            if late and not worker.ready and not worker.ended:
                worker.failure = f"did not start within {START_TIMEOUT_S:g}s"
        if in_order:
            for record in _merge(team):
                yield record


def _merge(team: list[_Worker]) -> Iterator[ProbeResult]:
    """Records in ``seq`` order from the workers' sorted streams, as far as every live worker allows."""
    while True:
        best: _Worker | None = None
        for worker in team:
            if worker.held:
                if best is None or worker.held[0].seq < best.held[0].seq:
                    best = worker
            elif not worker.ended:
                return  # its next record may come first
        if best is None:
            return
        yield best.held.popleft()


def _receive(workers: list[_Worker]) -> list[tuple[_Worker, tuple[Any, ...]]]:
    """The messages waiting on the workers' pipes (an ``eof`` message for a pipe that ended), waiting at most
    :data:`POLL_S` for the first."""
    by_connection: dict[Any, _Worker] = {worker.records: worker for worker in workers}
    got: list[tuple[_Worker, tuple[Any, ...]]] = []
    for connection in multiprocessing.connection.wait(list(by_connection), timeout=POLL_S):
        worker = by_connection[connection]
        pipe: multiprocessing.connection.Connection = worker.records
        try:
            while True:
                got.append((worker, pipe.recv()))
                if not pipe.poll():
                    break
        except (EOFError, OSError):
            worker.process.join(1.0)  # (in a thread) so that its exit code is known
            got.append((worker, ("eof",)))
    return got
