"""Load from many machines: ``aiotcp bench --dask ADDRESS|local:W`` and :func:`run_bench_on_dask`.

Theory of operation
-------------------
The client (where ``aiotcp bench`` runs) resolves the host name once and splits the run over the W Dask
workers it finds, as ``-w W`` splits it over processes (:meth:`BenchConfig.plans`: the connections, the
requests, the rate or the stages' share). It submits one task per worker, pinned to that worker
(``workers=[address]``, no other worker allowed, no retries: a share run twice would be counted twice).

Start. Each task, once running, puts ``ready`` on the run's Dask ``Queue`` and waits for the run's start
instant in a Dask ``Variable``. When all W are ready the client sets it to a moment :data:`START_LEAD_S`
ahead, and every worker starts its load then (its engine sleeps until that wall-clock instant once its
event loop is up). Workers on several machines therefore need synchronized clocks (NTP); on one machine
the instant is exact.

Streaming. A worker's engine hands every finished interval (counts, the interval's histograms, its
latencies by endpoint and status) to a forwarder thread, which puts it on the Queue; the client merges
intervals by index exactly as for worker processes (:class:`~aiotcp.bench.workers.Merger`) and feeds the
live progress. At the end each task puts its result (counters, self-check). Ctrl-C in the client sets the
run's Dask ``Event``, which the forwarders poll: every worker stops and reports what it measured.

Faults. A worker is lost when its address leaves the cluster (the process died), when its task ends
without a result, or when nothing came from it for :data:`SILENCE_S` beyond an interval. Its intervals so
far stay in the run (its counts up to its last interval) and the run says so (``lost``); what it had in
flight and anything after is not counted, and never silently: the text, the JSON and the report name it.

Dask is imported only inside the functions that need it: ``import aiotcp.bench`` never pulls it in.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import traceback
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..accelerators import have_uvloop
from ..cluster import DaskError, import_distributed
from .config import BenchConfig, WorkerPlan
from .engines import run_worker
from .results import Interval, WorkerResult
from .workers import BenchResult, IntervalSink, LostWorker, Merger, merge_results, resolved_plans

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["START_LEAD_S", "DaskBenchError", "bench_task", "run_bench_on_dask"]

#: How far ahead of "every worker is ready" the agreed start instant lies.
START_LEAD_S = 1.0
#: How long tasks get to start and report ready.
READY_TIMEOUT_S = 60.0
#: A worker that sent nothing for this long beyond its interval is lost.
SILENCE_S = 15.0
_FINISH_SLACK_S = 30.0
_POLL_S = 0.2
_CHECK_WORKERS_S = 1.0


class DaskBenchError(DaskError):
    """A bench on Dask could not start (too few workers, a task that failed before the load began)."""


def _take(messages: Any) -> list[tuple[str, int, Any]]:
    """The messages waiting in the run's Queue, at once; after a pause of :data:`_POLL_S` when there are none.

    Never ``get(timeout=)``: the scheduler logs every expiry of one as an error with a traceback, which
    ``--dask local:W`` (its scheduler in this process) printed on stderr several times a second.
    """
    batch: list[tuple[str, int, Any]] = messages.get(batch=True)
    if not batch:
        time.sleep(_POLL_S)
    return batch


# -- the worker side ---------------------------------------------------------------------------------------


def bench_task(plan: WorkerPlan, run: str) -> str:
    """The task of one Dask worker: wait for the start instant, run ``plan``, stream intervals back.

    Everything goes over the run's Queue (``ready``, ``interval``, ``result`` or ``error`` with a
    traceback); the return value only says the task ended.
    """
    distributed = import_distributed()
    messages = distributed.Queue(f"{run}-messages")
    where = str(distributed.get_worker().address)
    outbox: queue.SimpleQueue[Interval | None] = queue.SimpleQueue()
    stop = threading.Event()
    stop_event = distributed.Event(f"{run}-stop")

    def forward() -> None:
        # Intervals leave the engine's loop at once (a put in memory) and reach the client from here, so a
        # round trip to the scheduler never stalls the load; the run's stop event is polled here too.
        next_check = 0.0
        while True:
            try:
                interval = outbox.get(timeout=_POLL_S)
            except queue.Empty:
                interval = None
            else:
                if interval is None:
                    return
                messages.put(("interval", plan.index, interval))
            now = time.monotonic()
            if now >= next_check:
                next_check = now + _POLL_S
                with contextlib.suppress(Exception):
                    if stop_event.is_set():
                        stop.set()

    try:
        messages.put(("ready", plan.index, where))
        start = distributed.Variable(f"{run}-start")
        start_at = float(start.get(timeout=READY_TIMEOUT_S + START_LEAD_S + 10.0))
        forwarder = threading.Thread(target=forward, name=f"aiotcp-bench-forward-{plan.index}", daemon=True)
        forwarder.start()
        try:
            result = run_worker(plan, outbox.put, stop.is_set, use_uvloop=have_uvloop(), start_at=start_at)
        finally:
            outbox.put(None)
            forwarder.join()
        result.where = where
        messages.put(("result", plan.index, result))
    except BaseException:
        messages.put(("error", plan.index, traceback.format_exc()))
        raise
    return where


# -- the client side ---------------------------------------------------------------------------------------


def _workers(client: Any) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def run_bench_on_dask(
    config: BenchConfig,
    client: Client,
    *,
    on_interval: IntervalSink | None = None,
    stop: threading.Event | None = None,
) -> BenchResult:
    """Run ``config`` on the workers of ``client`` (a synchronous ``dask.distributed.Client``), one share per
    worker, and return the merged result. Blocks; bounded by the config's limits.

    ``config.workers`` is replaced by the number of Dask workers (fewer if the run has fewer connections).

    Raises:
        DNSError: if the host does not resolve.
        DaskBenchError: no worker, or a task failed before the load began.
        RuntimeError: a task failed during the run (a bug; its traceback is in the message).
    """
    distributed = import_distributed()
    stop = stop or threading.Event()
    addresses = _workers(client)
    if not addresses:
        raise DaskBenchError("the Dask cluster has no worker")
    addresses = addresses[: config.connections]
    config = replace(config, workers=len(addresses))
    plans, resolution = resolved_plans(config)
    run = f"aiotcp-bench-{uuid.uuid4().hex[:12]}"
    messages = distributed.Queue(f"{run}-messages", client=client)
    start = distributed.Variable(f"{run}-start", client=client)
    stop_event = distributed.Event(f"{run}-stop", client=client)
    merger = Merger(len(plans), on_interval)
    futures: list[Any] = [
        client.submit(
            bench_task,
            plan,
            run,
            key=f"{run}-{plan.index}",
            workers=[address],
            allow_other_workers=False,
            retries=0,
            pure=False,
        )
        for plan, address in zip(plans, addresses, strict=True)
    ]
    results: dict[int, WorkerResult] = {}
    lost: dict[int, LostWorker] = {}
    try:
        _wait_ready(messages, futures, addresses)
        started_at = time.time() + START_LEAD_S
        start.set(started_at)
        _collect(config, client, messages, futures, addresses, merger, results, lost, stop, stop_event)
    finally:
        with contextlib.suppress(Exception):
            stop_event.set()
        for future in futures:
            future.release()
    ordered = [results[index] for index in sorted(results)]
    lost_workers = [lost[index] for index in sorted(lost)]
    merged = merge_results(config, ordered, merger, started_at, stop.is_set(), lost_workers)
    merged.resolution = resolution
    merged.where = str(client.scheduler_info().get("address", "dask"))
    return merged


def _wait_ready(messages: Any, futures: list[Any], addresses: list[str]) -> None:
    ready: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(ready) < len(futures):
        if time.monotonic() > deadline:
            missing = ", ".join(addresses[index] for index in range(len(futures)) if index not in ready)
            raise DaskBenchError(f"Dask workers did not start their share within {READY_TIMEOUT_S:g} s: {missing}")
        batch = _take(messages)
        if not batch:
            for index, future in enumerate(futures):
                if future.status == "error" and index not in ready:
                    raise DaskBenchError(f"the task on {addresses[index]} failed: {future.exception()!r}")
            continue
        for tag, index, payload in batch:
            if tag == "ready":
                ready.add(index)
            elif tag == "error":
                raise DaskBenchError(f"the task on {addresses[index]} failed:\n{payload}")


def _collect(
    config: BenchConfig,
    client: Any,
    messages: Any,
    futures: list[Any],
    addresses: list[str],
    merger: Merger,
    results: dict[int, WorkerResult],
    lost: dict[int, LostWorker],
    stop: threading.Event,
    stop_event: Any,
) -> None:
    """Take messages until every worker has sent its result or is lost; bounded by the run's length."""
    budget = START_LEAD_S + config.warmup + config.time_limit + 2 * config.timeout + _FINISH_SLACK_S
    deadline = time.monotonic() + budget
    heard = dict.fromkeys(range(len(futures)), time.monotonic() + START_LEAD_S + config.warmup)
    silence = SILENCE_S + config.interval + config.timeout
    next_check = 0.0
    stopping = False

    def lose(index: int, reason: str) -> None:
        sums = merger.sums[index]
        lost[index] = LostWorker(index, addresses[index], reason, sums.intervals, sums.requests, sums.until_s)
        merger.lost(index)

    while len(results) + len(lost) < len(futures):
        now = time.monotonic()
        if stop.is_set() and not stopping:
            stopping = True
            stop_event.set()
        if now > deadline:
            for index in range(len(futures)):
                if index not in results and index not in lost:
                    lose(index, "no result within the run's time limit")
            break
        for tag, index, payload in _take(messages):
            heard[index] = time.monotonic()
            if index in lost:
                continue  # a worker given up for silent: what comes late is not counted twice
            if tag == "interval":
                merger.add(index, payload)
            elif tag == "result":
                results[index] = payload
            elif tag == "error":
                raise RuntimeError(f"bench task on {addresses[index]} failed:\n{payload}")
        now = time.monotonic()
        if now >= next_check:
            next_check = now + _CHECK_WORKERS_S
            present = set(_workers(client))
            for index, future in enumerate(futures):
                if index in results or index in lost:
                    continue
                if addresses[index] not in present:
                    lose(index, "its Dask worker left the cluster (the process died?)")
                elif future.status in ("error", "cancelled", "lost"):
                    lose(index, f"its task ended without a result ({future.status})")
                elif now - heard[index] > silence:
                    lose(index, f"nothing from it for {now - heard[index]:.0f} s")
