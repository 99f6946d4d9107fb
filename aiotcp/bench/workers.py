"""Running a bench: in this process (one worker) or in spawned worker processes, and merging what they send.

One worker runs on this thread's new event loop. N workers are ``multiprocessing`` *spawn* processes, each
with its own loop and engine on its share of the connections, requests and rate
(:meth:`BenchConfig.plans`). They start together: each reports ``ready``, then waits for ``go``. While they
run they send every finished interval (counts and encoded interval histograms) over a queue, and at the
end their counters and whole-run histograms; the parent merges them exactly (histograms add
element-wise). Ctrl-C in the parent sets ``stop``: workers (which ignore SIGINT themselves) stop, and the
partial run is still reported. Every wait here is bounded.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..errors import DNSError
from ..resolution import Resolution
from ..resolver import make_resolver
from ..targets import Target
from . import histogram as hist
from .config import BenchConfig, WorkerPlan
from .engines import run_worker
from .results import Counters, Interval, WorkerResult

__all__ = [
    "BenchResult",
    "IntervalSink",
    "LostWorker",
    "Merger",
    "merge_results",
    "resolve_host",
    "resolved_plans",
    "run_bench",
]

#: How long spawned workers get to import and report ready.
_READY_TIMEOUT_S = 60.0
#: Slack beyond the planned run before the parent gives up on a worker.
_FINISH_SLACK_S = 30.0

IntervalSink = Callable[[Interval], None]


@dataclass(slots=True)
class LostWorker:
    """A worker that ended without its result (its process or Dask worker died, or it stopped answering).

    What it measured up to its last interval is in the run (``requests`` of it); what it had in flight
    then, and anything after, is lost. ``until_s`` is the end of its last interval (seconds into the run).
    """

    index: int
    where: str
    reason: str
    intervals: int
    requests: int
    until_s: float

    def describe(self) -> str:
        return (
            f"worker {self.index} ({self.where}) was lost after {self.until_s:.1f} s: {self.reason}; its"
            f" {self.requests:,} responses up to then are counted, what it sent after is not"
        )


@dataclass(slots=True)
class BenchResult:
    """The merged outcome of a run; :mod:`aiotcp.bench.report` renders it.

    ``keys`` holds the whole run's latencies by endpoint and status (key ``endpoint * 1000 + status``,
    see :class:`~aiotcp.bench.histogram.KeyedRecorder`), ``worker_results`` what each worker sent back at
    its end (``lost`` the workers that never did).
    """

    config: BenchConfig
    counters: Counters
    latency: Any  # HdrHistogram (corrected in rate mode)
    uncorrected: Any | None  # HdrHistogram, rate mode only
    duration_s: float
    intervals: list[Interval]
    loop: str
    engine: str
    workers: int
    warmup_requests: int
    started_at: float  # wall clock (epoch seconds) when the measured run began, for the interval log
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    #: What the host name resolved to, once for the run (None for an IP address).
    resolution: Resolution | None = None
    keys: dict[int, hist.Sparse] = field(default_factory=dict)
    worker_results: list[WorkerResult] = field(default_factory=list)
    lost: list[LostWorker] = field(default_factory=list)
    #: Where the workers ran: "process" (this one or spawned ones) or the Dask scheduler's address.
    where: str = "process"

    @property
    def rps(self) -> float:
        return self.counters.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def read_bps(self) -> float:
        return self.counters.bytes_read / self.duration_s if self.duration_s > 0 else 0.0

    def __repr__(self) -> str:
        return (
            f"<BenchResult {self.config.url} requests={self.counters.requests} errors={self.counters.error_count}"
            f" in_flight={self.counters.in_flight} rps={self.rps:.0f} duration_s={self.duration_s:.3f}>"
        )


def resolve_host(config: BenchConfig) -> tuple[str, Resolution | None]:
    """The address to connect to, resolved once for every worker and connection, and the DNS facts.

    Raises:
        DNSError: if the host name does not resolve (within the run's timeout).
    """
    return _resolve(config, config.connect_target)


def resolved_plans(config: BenchConfig) -> tuple[list[WorkerPlan], Resolution | None]:
    """Every worker's plan, with the addresses resolved once: the host's (or the proxy's), and for a
    ``socks5``/``socks4`` proxy, which is given an address, the target's too. Returns the plans and the DNS
    facts of what connections go to.

    Raises:
        DNSError: if a host name does not resolve (within the run's timeout).
    """
    host, resolution = resolve_host(config)
    proxy = config.proxy_value
    tunnel_host = None
    if proxy is not None and not proxy.forwards(config.target) and not proxy.resolves_names:
        tunnel_host, _ = _resolve(config, config.target)
    return [plan.with_host(host, tunnel_host) for plan in config.plans()], resolution


def _resolve(config: BenchConfig, target: Target) -> tuple[str, Resolution | None]:
    if config.unix_socket is not None:
        return "", None  # no address: every connection goes to the socket
    if target.is_ip:
        return target.host, None
    resolver = make_resolver(config.resolver, config.resolvers or None)

    async def lookup() -> Resolution:
        try:
            with anyio.fail_after(config.timeout):
                return await resolver.resolve(target.host)
        except TimeoutError:
            raise DNSError(f"no DNS answer within {config.timeout:g}s", target=target.url, rcode="TIMEOUT") from None
        except DNSError as exc:
            exc.for_target(target.url)
            raise
        finally:
            await resolver.aclose()

    resolution = anyio.run(lookup)
    # IPv4 first: a load generator wants the address the server most likely listens on, not a race.
    return (resolution.a or resolution.aaaa)[0], resolution


class _Sums:
    """What one worker's intervals add up to: its counts if it never sends its result."""

    __slots__ = ("bytes_read", "errors", "intervals", "requests", "status", "until_s")

    def __init__(self) -> None:
        self.intervals = 0
        self.requests = 0
        self.bytes_read = 0
        self.status: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.until_s = 0.0

    def add(self, interval: Interval) -> None:
        self.intervals += 1
        self.requests += interval.requests
        self.bytes_read += interval.bytes_read
        for code, count in interval.status.items():
            self.status[code] = self.status.get(code, 0) + count
        for kind, count in interval.error_kinds.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.until_s = max(self.until_s, interval.start_s + interval.length_s)

    def counters(self) -> Counters:
        errors = sum(self.errors.values())
        return Counters(
            attempts=self.requests + errors,
            requests=self.requests,
            bytes_read=self.bytes_read,
            status=dict(self.status),
            errors=dict(self.errors),
        )


class Merger:
    """Merges the workers' intervals by index; hands each complete one to the sink.

    An interval is complete when every worker still alive has sent it (:meth:`lost` takes a worker out).
    Each interval's latencies by endpoint and status are added to the run's (``keys``) and dropped from
    the interval, so a long run keeps one encoded histogram per interval, not one per endpoint.
    """

    def __init__(self, workers: int, sink: IntervalSink | None) -> None:
        self.workers = workers
        self.sink = sink
        self.alive = set(range(workers))
        self.parts: dict[int, dict[int, Interval]] = {}
        self.merged: dict[int, Interval] = {}
        self.keys: dict[int, hist.Sparse] = {}
        self.sums = {worker: _Sums() for worker in range(workers)}

    def __repr__(self) -> str:
        return f"<Merger workers={self.workers} alive={len(self.alive)} merged={len(self.merged)}>"

    def add(self, worker: int, interval: Interval) -> None:
        self.sums[worker].add(interval)
        parts = self.parts.setdefault(interval.index, {})
        parts[worker] = interval
        if self.alive <= parts.keys():
            self._finish(interval.index)

    def lost(self, worker: int) -> None:
        """``worker`` will send nothing more: complete the intervals that waited only for it."""
        self.alive.discard(worker)
        for index in sorted(self.parts):
            if self.alive <= self.parts[index].keys():
                self._finish(index)

    def _finish(self, index: int) -> None:
        parts = list(self.parts.pop(index).values())
        merged = parts[0] if len(parts) == 1 else Interval.merge(parts)
        for key, sparse in merged.keys.items():
            total = self.keys.get(key)
            if total is None:
                total = self.keys[key] = hist.Sparse()
            total.add(sparse)
        merged.keys = {}
        self.merged[index] = merged
        if self.sink is not None:
            self.sink(merged)

    def close(self) -> list[Interval]:
        """Merge what is left (the last intervals may be short a worker) and return all, in order."""
        for index in sorted(self.parts):
            self._finish(index)
        return [self.merged[index] for index in sorted(self.merged)]


def merge_results(
    config: BenchConfig,
    results: list[WorkerResult],
    merger: Merger,
    started_at: float,
    stopped: bool,
    lost: list[LostWorker] | None = None,
) -> BenchResult:
    """The run's result from the workers' results, their intervals (``merger``) and the workers lost.

    The run's histograms are the sum of its intervals' (each worker's whole-run histogram is the sum of its
    own intervals, so for the workers that finished this is the merge of theirs), which also counts the
    intervals of a worker that was lost.
    """
    lost = lost or []
    intervals = merger.close()
    counters = Counters()
    for result in results:
        counters.merge(result.counters)
    for worker in lost:
        counters.merge(merger.sums[worker.index].counters())
    latency = hist.merge(interval.latency for interval in intervals)
    uncorrected = None
    if config.mode == "rate":
        uncorrected = hist.merge(interval.uncorrected or "" for interval in intervals if interval.uncorrected)
    durations = [result.duration_s for result in results] + [worker.until_s for worker in lost]
    return BenchResult(
        config=config,
        counters=counters,
        latency=latency,
        uncorrected=uncorrected,
        duration_s=max(durations, default=0.0),
        intervals=intervals,
        loop=results[0].loop if results else "?",
        engine=config.engine,
        workers=config.workers,
        warmup_requests=sum(result.warmup_requests for result in results),
        started_at=started_at,
        interrupted=stopped,
        keys=merger.keys,
        worker_results=list(results),
        lost=lost,
    )


def run_bench(
    config: BenchConfig,
    *,
    on_interval: IntervalSink | None = None,
    stop: threading.Event | None = None,
    use_uvloop: bool = True,
) -> BenchResult:
    """Run ``config`` to the end and return the merged result. Blocks; bounded by the config's limits.

    ``on_interval`` gets every merged interval as it completes (for live progress). Setting ``stop`` ends
    the run early; what was measured so far is still returned (``interrupted``).

    Raises:
        DNSError: if the host does not resolve.
        RuntimeError: if a worker process fails or does not finish in time.
    """
    stop = stop or threading.Event()
    plans, resolution = resolved_plans(config)
    merger = Merger(len(plans), on_interval)
    if len(plans) == 1:
        started_at = time.time()
        result = run_worker(plans[0], functools.partial(merger.add, 0), stop.is_set, use_uvloop=use_uvloop)
        result.where = f"process {os.getpid()}"
        merged = merge_results(config, [result], merger, started_at, stop.is_set())
    else:
        merged = _run_processes(config, plans, merger, stop, use_uvloop)
    merged.resolution = resolution
    return merged


def _run_processes(
    config: BenchConfig, plans: list[WorkerPlan], merger: Merger, stop: threading.Event, use_uvloop: bool
) -> BenchResult:
    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    go = context.Event()
    stop_all = context.Event()
    processes = [
        context.Process(
            target=_worker_main,
            args=(plan, messages, go, stop_all, use_uvloop),
            name=f"aiotcp-bench-{plan.index}",
            daemon=True,
        )
        for plan in plans
    ]
    results: dict[int, WorkerResult] = {}
    try:
        for process in processes:
            process.start()
        ready = 0
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while ready < len(processes):
            kind, index, payload = _next_message(messages, deadline, processes)
            if kind == "ready":
                ready += 1
            elif kind == "error":
                raise RuntimeError(f"bench worker {index} failed:\n{payload}")
        started_at = time.time()
        go.set()
        budget = config.warmup + config.time_limit + 2 * config.timeout + _FINISH_SLACK_S
        deadline = time.monotonic() + budget
        while len(results) < len(processes):
            if stop.is_set():
                stop_all.set()
            kind, index, payload = _next_message(messages, deadline, processes)
            if kind == "interval":
                merger.add(index, payload)
            elif kind == "result":
                payload.where = f"process {processes[index].pid}"
                results[index] = payload
            elif kind == "error":
                raise RuntimeError(f"bench worker {index} failed:\n{payload}")
    finally:
        stop_all.set()
        for process in processes:
            if process.ident is None:  # never started
                continue
            process.join(5.0)
            if process.is_alive():  # pragma: no cover - a stuck worker
                process.terminate()
                process.join(5.0)
        messages.close()
        messages.join_thread()
    ordered = [results[index] for index in sorted(results)]
    return merge_results(config, ordered, merger, started_at, stop.is_set())


def _next_message(messages: Any, deadline: float, processes: list[Any]) -> tuple[str, int, Any]:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("bench workers did not report in time")
        try:
            message: tuple[str, int, Any] = messages.get(timeout=min(left, 0.1))
        except queue.Empty:
            for process in processes:
                if process.exitcode not in (None, 0):
                    raise RuntimeError(
                        f"bench worker {process.name} exited with code {process.exitcode}"
                        " (a script that runs a bench needs the `if __name__ == '__main__':` guard:"
                        " workers are spawned)"
                    ) from None
            continue
        return message


def _worker_main(plan: WorkerPlan, messages: Any, go: Any, stop: Any, use_uvloop: bool) -> None:
    """Entry point of a spawned worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sets ``stop``
    try:
        messages.put(("ready", plan.index, None))
        if not go.wait(_READY_TIMEOUT_S + 10.0):
            return

        def emit(interval: Interval) -> None:
            messages.put(("interval", plan.index, interval))

        result = run_worker(plan, emit, stop.is_set, use_uvloop=use_uvloop)
        messages.put(("result", plan.index, result))
    except BaseException:
        messages.put(("error", plan.index, traceback.format_exc()))
    finally:
        messages.close()
        messages.join_thread()
        sys.stdout.flush()
