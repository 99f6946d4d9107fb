"""Probing on a Dask distributed cluster: ``aiotcp probe --dask ADDRESS|local:W`` and :func:`probe_on_dask`.

Theory of operation
-------------------
The client numbers the input itself with :func:`~aiotcp.probe.iter_jobs` (parsing only, no I/O), so every
record has the ``seq`` and ``line`` a single-process run gives it, whichever worker probes it. It cuts the
numbered jobs into chunks of ``chunk_size`` and submits one task per chunk. The task, :func:`probe_chunk`,
runs :func:`~aiotcp.probe.probe_jobs` on its chunk on an event loop of its own (uvloop when available) and
returns the chunk's records, one per job; the client yields them as each chunk finishes, not at the end.

Memory. At most ``max_in_flight`` chunks (by default two per worker, recounted as workers come and go) are
submitted and not yet yielded, and the input is read only when one more may be submitted: the client holds
those chunks and a bitmap of the ``seq`` s it has yielded (one bit per target), never the list.

Limits per worker. A worker probes one chunk at a time (a lock per worker), so ``concurrency``, ``rate`` and
``per_host`` hold per worker whatever its thread count; a cluster of W workers runs up to W times them. The
second chunk a worker holds waits, so the worker starts it the moment the first ends. A chunk's tail (its
slowest targets) leaves the worker partly idle, which is why chunks default to ``10 * concurrency`` jobs.

Faults. When a worker dies, the scheduler reruns its tasks elsewhere (up to
``distributed.scheduler.allowed-failures`` times); a task that raises is retried ``retries`` times. A chunk's
future completes once whatever happened, and the bitmap drops any record whose ``seq`` was yielded before,
so every target is yielded exactly once. A chunk that fails for good raises :class:`DaskProbeError`; with
``--resume`` the journal holds every record written until then, and a rerun probes the rest.

Stalls. Every probe keeps its own deadline, so a chunk has a longest possible run (:func:`chunk_time_limit`:
its waves of ``concurrency`` probes, or of ``per_host`` probes if every target were one host, each wave one
``timeout``, plus the ``rate`` schedule), and so has its wait behind the chunk before it on its worker. A
chunk with no result ``STALL_FACTOR`` times that long after it was submitted is stuck (a worker hung, a
bug): :class:`DaskProbeError` instead of a run that never ends.

Dask is imported only inside the functions that need it: ``import aiotcp`` never pulls it in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import anyio

from ..accelerators import have_uvloop
from ..cluster import (
    DaskError,
    DaskTarget,
    DaskUnavailable,
    check_workers,
    connect,
    local_cluster_options,
    parse_dask_target,
)
from ..fdlimit import raise_fd_limit
from .engine import ProbeOptions, probe_jobs
from .jobs import Inputs, Job, as_async_iterator, iter_jobs
from .records import ProbeResult

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "CHUNKS_PER_WORKER",
    "STALL_FACTOR",
    "DaskError",
    "DaskProbeError",
    "DaskTarget",
    "DaskUnavailable",
    "check_workers",
    "chunk_time_limit",
    "connect",
    "default_chunk_size",
    "local_cluster_options",
    "parse_dask_target",
    "probe_chunk",
    "probe_jobs_on_dask",
    "probe_on_dask",
]

logger = logging.getLogger(__name__)

#: Chunks submitted per worker: one probing, one waiting its turn, so a worker never idles between two.
CHUNKS_PER_WORKER = 2
#: Retries of a chunk whose task raised (a worker that dies is the scheduler's ``allowed-failures``).
TASK_RETRIES = 2
_MIN_CHUNK = 100
_POLL_S = 0.5  # longest wait for a finished chunk before the loop looks at the cluster again
_RECOUNT_WORKERS_S = 1.0
#: A chunk is stuck when it has no result this many times :func:`chunk_time_limit` after its submission
#: (one chunk may wait for another on its worker, and a rerun after a worker died starts over).
STALL_FACTOR = 3
_STALL_SLACK_S = 120.0  # on top: scheduling, a worker's start, a loaded machine


class DaskProbeError(DaskError):
    """A chunk failed for good on the cluster (its task kept raising, or killed too many workers)."""


def chunk_time_limit(options: ProbeOptions, jobs: int) -> float:
    """Seconds a chunk of ``jobs`` probes can run at most when every probe keeps its deadline."""
    waves = math.ceil(jobs / options.concurrency)
    if options.per_host is not None:
        waves = max(waves, math.ceil(jobs / options.per_host))  # all on one host: per_host at a time
    # A job probes each of its paths in turn, each within its own deadline (the favicon within the same one).
    seconds = waves * options.timeout * max(1, len(options.paths))
    if options.rate is not None:
        seconds += jobs * max(1, len(options.paths)) / options.rate
    return seconds


def default_chunk_size(options: ProbeOptions) -> int:
    """Jobs per chunk when none is given: ``10 * concurrency``, at least 100, so a chunk's tail is short."""
    return max(_MIN_CHUNK, 10 * options.concurrency)


# -- the worker side ---------------------------------------------------------------------------------------

_worker_locks: dict[str, threading.Lock] = {}
_worker_locks_guard = threading.Lock()


def _worker_lock() -> threading.Lock:
    """The lock of the Dask worker running this task (one per worker, even for workers sharing a process)."""
    try:
        from distributed import get_worker

        name = get_worker().address
    except (ImportError, ValueError):  # ValueError: not inside a task
        name = ""
    with _worker_locks_guard:
        return _worker_locks.setdefault(name, threading.Lock())


def _fit_fd_limit(options: ProbeOptions) -> ProbeOptions:
    concurrency, warning = raise_fd_limit(options.concurrency)
    if warning is None:
        return options
    logger.warning("aiotcp worker: %s", warning)
    return replace(options, concurrency=concurrency)


def probe_chunk(jobs: list[Job], options: ProbeOptions) -> list[ProbeResult]:
    """The task the client submits: probe one chunk on this worker, return one record per job.

    Runs :func:`~aiotcp.probe.probe_jobs` on an event loop of its own (uvloop when available), one chunk at a
    time per worker. The concurrency is lowered to fit this machine's open-file limit if need be. Never
    raises for a target: only for a bug or for the machine itself (out of memory, ...).
    """
    options = _fit_fd_limit(options)
    with _worker_lock():
        return anyio.run(_collect, jobs, options, backend_options={"use_uvloop": have_uvloop()})


async def _collect(jobs: list[Job], options: ProbeOptions) -> list[ProbeResult]:
    async with contextlib.aclosing(probe_jobs(jobs, options)) as results:
        return [result async for result in results]


# -- the client side ---------------------------------------------------------------------------------------


class _SeqSet:
    """A set of ``seq`` numbers as a bitmap: one bit per target, whatever the length of the list."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self.size = 0

    def __repr__(self) -> str:
        return f"<_SeqSet size={self.size}>"

    def add(self, seq: int) -> bool:
        """Add ``seq``; True if it was not there yet."""
        index, bit = divmod(seq, 8)
        if index >= len(self._bits):
            self._bits.extend(bytes(index + 1 - len(self._bits) + len(self._bits) // 2))
        if self._bits[index] & (1 << bit):
            return False
        self._bits[index] |= 1 << bit
        self.size += 1
        return True


@dataclass(slots=True)
class _Chunk:
    index: int
    future: Any  # a distributed.Future, whose methods are untyped
    jobs: list[Job]
    stuck_at: float  # time.monotonic() after which a chunk with no result is stuck

    def __repr__(self) -> str:
        return f"<chunk {self.index} {self.future.key} {self.future.status} {self.describe()}>"

    def describe(self) -> str:
        lines = [job.line for job in self.jobs if job.line is not None]
        where = f"input lines {min(lines)}-{max(lines)}" if lines else "no line numbers"
        return f"{len(self.jobs)} targets, {where}"

    def result(self, stop: threading.Event) -> list[ProbeResult] | None:
        """The chunk's records, waiting for them (blocking; None once ``stop`` is set). Raises
        DaskProbeError if the chunk failed."""
        try:
            # Usually at hand (the future is done), but a worker that dies holding them makes the scheduler
            # compute them again: wait in slices, so a caller that gave up does not leave a thread behind.
            while True:
                try:
                    records: list[ProbeResult] = self.future.result(timeout=_POLL_S)
                    break
                except TimeoutError:
                    if self.future.status == "error":
                        raise  # the task's own TimeoutError, not our wait's
                    if stop.is_set():
                        return None
        except Exception as exc:  # whatever the task raised, KilledWorker, or the future was cancelled
            raise DaskProbeError(
                f"chunk {self.index} ({self.describe()}) failed on the Dask cluster: {_explain(exc)}"
            ) from exc
        wanted = sorted(job.seq for job in self.jobs)
        if sorted(record.seq for record in records) != wanted:
            raise DaskProbeError(f"chunk {self.index} ({self.describe()}) came back with {len(records)} records")
        return records


def _check_stuck(pending: dict[int, _Chunk], held: dict[int, list[ProbeResult]]) -> None:
    """Raise DaskProbeError for a chunk still without a result past its time (see the module docstring)."""
    now = time.monotonic()
    for index, chunk in pending.items():
        if index not in held and now > chunk.stuck_at and not chunk.future.done():
            raise DaskProbeError(
                f"chunk {index} ({chunk.describe()}) is stuck: still {chunk.future.status} on the cluster long"
                " after every probe of it should have ended (a hung worker?); with --resume a rerun probes the"
                " targets left"
            )


def _explain(exc: BaseException) -> str:
    """``Type: message``, with a task group's exceptions spelled out (the group's own message says little)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_explain(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Capacity:
    """How many chunks may be submitted and not yet yielded: fixed, or CHUNKS_PER_WORKER per worker now."""

    def __init__(self, client: Client, fixed: int | None) -> None:
        self.client = client
        self.fixed = fixed
        self._limit = CHUNKS_PER_WORKER
        self._recount_at = 0.0

    async def limit(self) -> int:
        if self.fixed is not None:
            return self.fixed
        now = time.monotonic()
        if now >= self._recount_at:
            workers = await anyio.to_thread.run_sync(_count_workers, self.client, abandon_on_cancel=True)
            self._limit = CHUNKS_PER_WORKER * max(1, workers)
            self._recount_at = now + _RECOUNT_WORKERS_S
        return self._limit


def _count_workers(client: Any) -> int:
    return len(client.nthreads())


async def _chunks(
    jobs: AsyncIterable[Job] | Iterable[Job], size: int, skip: Callable[[int], bool] | None
) -> AsyncGenerator[list[Job], None]:
    chunk: list[Job] = []
    async with contextlib.aclosing(as_async_iterator(jobs)) as numbered:
        async for job in numbered:
            if skip is not None and skip(job.seq):
                continue
            chunk.append(job)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


async def _next_finished(finished: queue.SimpleQueue[int]) -> int | None:
    """The index of a chunk whose future completed, or None after _POLL_S without one."""
    try:
        return await anyio.to_thread.run_sync(finished.get, True, _POLL_S, abandon_on_cancel=True)
    except queue.Empty:
        return None


def _check_client(client: Any) -> None:
    if getattr(client, "asynchronous", False):
        raise ValueError("probe_on_dask needs a synchronous dask.distributed.Client (not asynchronous=True)")


async def probe_jobs_on_dask(
    client: Client,
    jobs: AsyncIterable[Job] | Iterable[Job],
    options: ProbeOptions,
    *,
    chunk_size: int | None = None,
    max_in_flight: int | None = None,
    skip: Callable[[int], bool] | None = None,
    retries: int = TASK_RETRIES,
    stall_timeout: float | None = None,
) -> AsyncGenerator[ProbeResult, None]:
    """Probe numbered jobs (see :func:`~aiotcp.probe.iter_jobs`) on the workers of ``client``: one record per
    job, yielded as chunks finish, or in ``seq`` order with ``options.order == "input"``.

    ``chunk_size`` jobs per task (default :func:`default_chunk_size`); ``max_in_flight`` chunks submitted and
    not yet yielded (default ``CHUNKS_PER_WORKER`` per worker); ``skip(seq)`` True leaves a job out, before it
    is sent anywhere (``--resume``); ``stall_timeout`` seconds from its submission without a result makes a
    chunk stuck (default: ``STALL_FACTOR`` times :func:`chunk_time_limit`, plus a slack). See the module
    docstring for limits and faults.

    Raises ``ValueError`` for bad arguments, before anything is submitted, and :class:`DaskProbeError` when a
    chunk fails for good. Leaving the iteration early releases every chunk still on the cluster.
    """
    _check_client(client)
    size = default_chunk_size(options) if chunk_size is None else chunk_size
    if size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size!r}")
    if max_in_flight is not None and max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    if stall_timeout is not None and not stall_timeout > 0:
        raise ValueError(f"stall_timeout must be > 0, got {stall_timeout!r}")
    in_order = options.order == "input"
    task_options = replace(options, order="completion")  # the client orders whole chunks
    run = f"aiotcp-probe-{uuid.uuid4().hex[:12]}"
    capacity = _Capacity(client, max_in_flight)
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()  # fed by Dask's callback thread
    pending: dict[int, _Chunk] = {}  # submitted and not yet yielded
    held: dict[int, list[ProbeResult]] = {}  # order="input": finished, waiting for an earlier chunk
    yielded = _SeqSet()
    submitted = next_out = 0
    chunks = _chunks(jobs, size, skip)
    exhausted = False
    stop = threading.Event()  # tells a thread still fetching records that nobody waits for them any more
    try:
        while True:
            limit = await capacity.limit()
            while not exhausted and len(pending) < limit:
                chunk_jobs: list[Job] | None = await anext(chunks, None)
                if chunk_jobs is None:
                    exhausted = True
                    break
                index = submitted
                future: Any = client.submit(
                    probe_chunk, chunk_jobs, task_options, key=f"{run}-{index}", retries=retries, pure=False
                )
                if stall_timeout is None:
                    patience = STALL_FACTOR * chunk_time_limit(options, len(chunk_jobs)) + _STALL_SLACK_S
                else:
                    patience = stall_timeout
                pending[index] = _Chunk(index, future, chunk_jobs, time.monotonic() + patience)
                future.add_done_callback(lambda _, index=index: finished.put(index))
                submitted += 1
            if not pending:
                return
            index_done = await _next_finished(finished)
            _check_stuck(pending, held)  # every turn: other chunks may keep finishing while one is stuck
            if index_done is None or index_done not in pending or index_done in held:
                continue
            chunk = pending[index_done]
            records = await anyio.to_thread.run_sync(chunk.result, stop, abandon_on_cancel=True)
            assert records is not None  # only None after stop.set(), below
            chunk.future.release()
            if in_order:
                held[index_done] = sorted(records, key=lambda record: record.seq)
                ready = []
                while next_out in held:
                    ready.append(next_out)
                    next_out += 1
            else:
                held[index_done] = records
                ready = [index_done]
            for index in ready:
                del pending[index]
                for record in held.pop(index):
                    if yielded.add(record.seq):
                        yield record
                    else:
                        logger.warning("dropped a second record for seq %d (line %s)", record.seq, record.line)
    finally:
        stop.set()
        for chunk in pending.values():
            chunk.future.release()
        await chunks.aclose()


async def probe_on_dask(
    client: Client,
    targets: Inputs,
    options: ProbeOptions | None = None,
    *,
    chunk_size: int | None = None,
    max_in_flight: int | None = None,
    skip: Callable[[int], bool] | None = None,
    stall_timeout: float | None = None,
    **option_values: Any,
) -> AsyncGenerator[ProbeResult, None]:
    """:func:`~aiotcp.probe.probe_many` on a Dask cluster: the same records, probed by the workers of
    ``client`` (a synchronous ``dask.distributed.Client``). An async iterator, on asyncio or trio.

    ``targets`` and the options are those of ``probe_many``; ``concurrency``, ``rate`` and ``per_host`` apply
    per worker. ``chunk_size``, ``max_in_flight``, ``skip`` and ``stall_timeout``: see
    :func:`probe_jobs_on_dask`.

    Raises ``ValueError`` for bad options and :class:`DaskProbeError` when a chunk fails for good. Workers
    need aiotcp installed (``pip install 'aiotcp[dask]'``), at the client's version.
    """
    if options is not None and option_values:
        raise ValueError("pass options as a ProbeOptions or as keywords, not both")
    opts = options or ProbeOptions(**option_values)
    jobs = iter_jobs(targets, ports=opts.ports)
    results = probe_jobs_on_dask(
        client, jobs, opts, chunk_size=chunk_size, max_in_flight=max_in_flight, skip=skip, stall_timeout=stall_timeout
    )
    # Both generators are closed here, in this task, when the caller leaves early (as probe_many does).
    async with contextlib.aclosing(jobs), contextlib.aclosing(results):
        async for result in results:
            yield result
