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

import multiprocessing
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

__all__ = ["BenchResult", "IntervalSink", "run_bench"]

#: How long spawned workers get to import and report ready.
_READY_TIMEOUT_S = 60.0
#: Slack beyond the planned run before the parent gives up on a worker.
_FINISH_SLACK_S = 30.0

IntervalSink = Callable[[Interval], None]


@dataclass(slots=True)
class BenchResult:
    """The merged outcome of a run; :mod:`aiotcp.bench.report` renders it."""

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


class _Merger:
    """Merges the workers' intervals by index; hands each complete one to the sink."""

    def __init__(self, workers: int, sink: IntervalSink | None) -> None:
        self.workers = workers
        self.sink = sink
        self.parts: dict[int, list[Interval]] = {}
        self.merged: dict[int, Interval] = {}

    def add(self, interval: Interval) -> None:
        parts = self.parts.setdefault(interval.index, [])
        parts.append(interval)
        if len(parts) == self.workers:
            self._finish(interval.index)

    def _finish(self, index: int) -> None:
        parts = self.parts.pop(index)
        merged = parts[0] if len(parts) == 1 else Interval.merge(parts)
        self.merged[index] = merged
        if self.sink is not None:
            self.sink(merged)

    def close(self) -> list[Interval]:
        """Merge what is left (the last intervals may be short a worker) and return all, in order."""
        for index in sorted(self.parts):
            self._finish(index)
        return [self.merged[index] for index in sorted(self.merged)]


def _merge_results(
    config: BenchConfig, results: list[WorkerResult], intervals: list[Interval], started_at: float, stopped: bool
) -> BenchResult:
    counters = Counters()
    for result in results:
        counters.merge(result.counters)
    latency = hist.merge(result.latency for result in results)
    uncorrected = None
    if config.rate is not None:
        uncorrected = hist.merge(result.uncorrected or "" for result in results if result.uncorrected)
    return BenchResult(
        config=config,
        counters=counters,
        latency=latency,
        uncorrected=uncorrected,
        duration_s=max((result.duration_s for result in results), default=0.0),
        intervals=intervals,
        loop=results[0].loop if results else "?",
        engine=config.engine,
        workers=config.workers,
        warmup_requests=sum(result.warmup_requests for result in results),
        started_at=started_at,
        interrupted=stopped,
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
    host, resolution = resolve_host(config)
    proxy = config.proxy_value
    tunnel_host = None
    if proxy is not None and not proxy.forwards(config.target) and not proxy.resolves_names:
        tunnel_host, _ = _resolve(config, config.target)  # socks5/socks4: the proxy is given an address
    plans = [plan.with_host(host, tunnel_host) for plan in config.plans()]
    merger = _Merger(len(plans), on_interval)
    if len(plans) == 1:
        started_at = time.time()
        result = run_worker(plans[0], merger.add, stop.is_set, use_uvloop=use_uvloop)
        merged = _merge_results(config, [result], merger.close(), started_at, stop.is_set())
    else:
        merged = _run_processes(config, plans, merger, stop, use_uvloop)
    merged.resolution = resolution
    return merged


def _run_processes(
    config: BenchConfig, plans: list[WorkerPlan], merger: _Merger, stop: threading.Event, use_uvloop: bool
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
                merger.add(payload)
            elif kind == "result":
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
    return _merge_results(config, ordered, merger.close(), started_at, stop.is_set())


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
