"""The part of a worker's run both engines share: phases, budgets, schedules, intervals; and the dispatcher.

Theory of operation
-------------------
A worker runs one engine on its own event loop over its share of the connections (a
:class:`~aiotcp.bench.config.WorkerPlan`). The engine owns the sockets; :class:`RunState` owns everything
the two engines must agree on, so that they count alike:

=========  ====================================================  =========================================
phase      what happens                                          ends when
=========  ====================================================  =========================================
warmup     load as configured; nothing is kept                   ``warmup`` seconds have passed
drain      no new requests; in-flight ones finish or time out    nothing is in flight (bounded by timeout)
measure    load; every attempt is counted (see results.py)       the time limit, the request count, or stop
stopped    no new requests; what is in flight is ``in_flight``   --
=========  ====================================================  =========================================

Engines call :meth:`RunState.take` before every send (it says how many requests the budget allows, zero
unless sending), :meth:`RunState.fail` for failed attempts, and :meth:`RunState.tick` from their one
loop-level ticker, which also checks per-request deadlines. Per-request timers do not exist: a request's
deadline is checked by the ticker against its send time, so a request times out between ``timeout`` and
``timeout + TICK_S`` after it was sent.

Open loop (wrk2): connection slot ``s`` sends its k-th request at ``start + phase(s) + k * period``, where
``period = connections / rate`` and the phases spread the slots evenly over one period. A response's
corrected latency is measured from that intended time, its uncorrected latency from the moment it was
actually written; a slot that falls behind sends as soon as it can, so the backlog shows in the corrected
numbers instead of silently lowering the rate. With rate stages the intended times come from the ramp
(:class:`~aiotcp.bench.stages.RateRamp`): the slot's next turn among every slot of the run.

Stages and intervals: an interval ends every ``interval`` seconds and at every stage's end, so each
interval belongs to one stage (``Interval.stage``) and a stage's numbers are those of its intervals. On a
connection ramp the ticker recomputes how many of the worker's slots are open (``active``) and calls the
engine's :meth:`RunState.activate` when that changes.

Latencies are filed by key ``endpoint * 1000 + status`` in a :class:`~aiotcp.bench.histogram.KeyedRecorder`;
an interval hands over each key's samples (``Interval.keys``), its status counts (the sizes of those
samples) and the merged histogram. The self-check: the ticker records how late it ran (``loop_lag``), the
open-loop pacers report late sends (:meth:`RunState.late_send`), and the thread's CPU time is read when the
measured run begins and ends.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable
from typing import Literal

from .. import accelerators, errors
from ..proxy import parse_proxy
from ..tunnel import Receive, Send, open_tunnel
from .config import WorkerPlan
from .histogram import FOLD_AT, Appenders, KeyedRecorder, Recorder, encode, new_histogram
from .results import Counters, Interval, WorkerResult
from .stages import ConnectionRamp, RateRamp, stage_bounds

__all__ = [
    "LATE_S",
    "TICK_S",
    "RunState",
    "loop_name",
    "open_tunnel_on",
    "open_tunnel_socket",
    "run_worker",
    "seconds_until",
]

#: How often the ticker runs: deadline checks, buffer flushes, phase changes, intervals.
TICK_S = 0.05
#: A send in rate mode is late when it leaves more than this after its intended time (the self-check).
LATE_S = 0.001
#: Reconnect backoff after consecutive connect failures of one slot: first retry at once, then doubling.
BACKOFF_FIRST_S = 0.001
BACKOFF_MAX_S = 0.1

Phase = Literal["warmup", "drain", "measure", "stopped"]
Emit = Callable[[Interval], None]
ShouldStop = Callable[[], bool]

perf_counter: Callable[[], float] = time.perf_counter
thread_time: Callable[[], float] = time.thread_time


async def open_tunnel_on(plan: WorkerPlan, send: Send, receive: Receive) -> None:
    """The plan's SOCKS tunnel (``plan.tunnel``) over a connection just made to the proxy. Raises
    :class:`~aiotcp.errors.ProxyError` (kind ``proxy``) and what ``send``/``receive`` raise."""
    assert plan.tunnel is not None
    url, host, port = plan.tunnel
    await open_tunnel(parse_proxy(url), host, port, send, receive)


async def open_tunnel_socket(plan: WorkerPlan) -> socket.socket:
    """A non-blocking socket connected to the proxy with the plan's tunnel open, for
    ``loop.create_connection(..., sock=)``. Raises ``OSError`` for the connect, ProxyError for the tunnel."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in plan.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (plan.host, plan.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        async def send(data: bytes) -> None:
            await loop.sock_sendall(sock, data)

        async def receive() -> bytes:
            return await loop.sock_recv(sock, 65536)

        await open_tunnel_on(plan, send, receive)
    except BaseException:
        sock.close()
        raise
    return sock


def backoff(failures: int) -> float:
    """Seconds to wait before a slot's next connect, after ``failures`` failures in a row."""
    if failures <= 1:
        return 0.0
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** (failures - 2)))


def is_interim(status: int) -> bool:
    """Whether a response with ``status`` is interim (below 200): it is not counted, the final one follows.

    Raises:
        errors.ProtocolError: for 101 Switching Protocols, since the bench never asks to upgrade. The error
            names no target: the caller adds it.
    """
    if status >= 200:
        return False
    if status == 101:
        raise errors.ProtocolError("unexpected 101 Switching Protocols: no upgrade was requested")
    return True


class RunState:
    """Phases, budget, schedules and counters of one worker's run (see the module docstring)."""

    def __init__(self, plan: WorkerPlan, emit: Emit, should_stop: ShouldStop) -> None:
        self.plan = plan
        self._emit = emit
        self._should_stop = should_stop
        self.counters = Counters()
        #: Latencies by key ``endpoint * 1000 + status`` (corrected in rate mode).
        self.latency = KeyedRecorder()
        #: endpoint -> status -> the append of its latencies (run-wide; an open-loop connection has its own).
        self.by_endpoint: list[Appenders | None] = [
            Appenders(index * 1000, self.latency.appender) for index in range(len(plan.heads))
        ]
        self.uncorrected: Recorder | None = Recorder() if plan.open_loop else None
        self.total = new_histogram()  # the sum of the emitted intervals
        self.total_uncorrected = new_histogram() if plan.open_loop else None
        #: The request picker of a mix (None: every request is ``plan.request``).
        self.picker = plan.picker()
        self.phase: Phase = "warmup"
        self.sending = False
        self.stopped = False
        self.remaining: int | None = None  # sends left in count mode
        self.connect_attempts_failed = 0  # attempts that never got a connection (nothing written)
        self.period = plan.connections / plan.rate if plan.rate is not None else 0.0
        self.schedule = [0.0] * plan.connections  # next intended send time per slot (rate mode)
        # Stages (see stages.py): a rate ramp gives each slot's send times, a connection ramp the open slots.
        self.rate_ramp = RateRamp(plan.rate_stages) if plan.rate_stages else None
        self.connection_ramp = ConnectionRamp(plan.connection_stages) if plan.connection_stages else None
        self._turn = [0] * plan.connections  # rate ramp: the run-wide number of each slot's next request
        self.active = plan.connections  # slots that may hold a connection (fewer on a connection ramp)
        stages = plan.rate_stages or plan.connection_stages
        self._stage_ends = [end for _, end in stage_bounds(stages)]
        self.stage: int | None = 0 if stages else None
        self._stage_end = math.inf
        # The self-check: the ticker's lateness, late sends (rate mode), the thread's CPU time.
        self.loop_lag = Recorder()
        self.late = Recorder() if plan.open_loop else None
        self.late_sends = 0
        self.cpu_s = 0.0
        self._cpu_start = 0.0
        self.start = 0.0
        self.end = 0.0
        self.deadline = 0.0
        self.warmup_end = 0.0
        self.drain_deadline = 0.0
        self.warmup_requests = 0
        self._next_interval = 0.0
        self._interval_index = 0
        self._interval_start = 0.0
        self._last = (0, 0, 0)  # requests, errors, bytes at the start of the interval
        self._last_kinds: dict[str, int] = {}  # errors by kind at the start of the interval
        self._picks_before = 0  # requests picked before the measured run (a mix), and their bytes
        self._written_before = 0
        self.target = plan.target

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} worker={self.plan.index} phase={self.phase} in_flight={self.in_flight()}"
            f" requests={self.counters.requests} errors={self.counters.error_count}>"
        )

    # -- hooks the engines implement ----------------------------------------------------------------------

    def resume(self) -> None:
        """Sending is allowed again (a phase began): wake every connection."""

    def halt(self) -> None:
        """The run stopped: close every connection and cancel pending connects."""

    def activate(self) -> None:
        """``active`` changed (a connection ramp): connect the slots below it, close those above."""

    # -- phases -------------------------------------------------------------------------------------------

    def begin(self, now: float) -> None:
        """Start the run: warm up first if asked to, else measure at once."""
        if self.plan.warmup > 0:
            self.phase = "warmup"
            self.sending = True
            self.warmup_end = now + self.plan.warmup
            self._reset_schedule(now)
        else:
            self.begin_measure(now)

    def begin_measure(self, now: float) -> None:
        counters = self.counters
        self.warmup_requests = counters.requests
        # Normally nothing is in flight here (drained); if something is, it is an attempt of this phase.
        leftover = self.in_flight()
        # A mix counts the bytes it writes by its picks (one per attempt that had a connection).
        self._picks_before = counters.attempts - self.connect_attempts_failed - leftover
        if self.picker is not None:
            self._written_before = self.picker.written_until(self._picks_before)
        # Connection counts span the whole run, warmup included; attempts and their outcomes do not.
        counters.requests = counters.bytes_read = counters.bytes_written = 0
        counters.attempts = leftover
        self.connect_attempts_failed = 0
        counters.status.clear()
        counters.errors.clear()
        counters.error_messages.clear()
        self.latency.clear()
        for recorder in (self.uncorrected, self.loop_lag, self.late):
            if recorder is not None:
                recorder.take()
        self.late_sends = 0
        self._cpu_start = thread_time()
        self.phase = "measure"
        self.start = self._interval_start = now
        self.deadline = now + self.plan.time_limit
        self._next_interval = now + self.plan.interval
        if self._stage_ends:
            self.stage = 0
            self._stage_end = now + self._stage_ends[0]
        self._last = (0, 0, 0)
        self._last_kinds = {}
        self.remaining = self.plan.requests
        self.sending = True
        self._reset_schedule(now)
        if self.connection_ramp is not None:
            self._ramp_connections(now)
        self.resume()

    def _reset_schedule(self, now: float) -> None:
        plan = self.plan
        if self.rate_ramp is not None:
            for slot in range(plan.connections):
                self._turn[slot] = plan.first_connection + slot
                self.schedule[slot] = now + self.rate_ramp.due(self._turn[slot])
        elif plan.rate is not None:
            for slot in range(plan.connections):
                self.schedule[slot] = now + plan.phase(slot)

    def next_due(self, slot: int) -> float:
        """Rate stages: when ``slot``'s next request is due (``inf``: never), its turn taken."""
        turn = self._turn[slot] + self.plan.total_connections
        self._turn[slot] = turn
        assert self.rate_ramp is not None
        return self.start + self.rate_ramp.due(turn)

    def _ramp_connections(self, now: float) -> None:
        assert self.connection_ramp is not None
        plan = self.plan
        total = self.connection_ramp.count_at(now - self.start)
        active = ConnectionRamp.local_count(total, plan.index, plan.workers, plan.connections)
        if active != self.active:
            self.active = active
            self.activate()

    def stop(self, now: float) -> None:
        """End the run now: requests still in flight become ``in_flight``."""
        if self.stopped:
            return
        measured = self.phase == "measure"
        self.phase = "stopped"
        self.stopped = True
        self.sending = False
        if measured:
            self.end = now
            self.cpu_s = thread_time() - self._cpu_start
            self.counters.in_flight = self.in_flight()
            self._emit_interval(now)
        else:  # stopped before measuring began (interrupted during warmup): an empty run
            self.start = self.end = now
            self.counters.in_flight = 0
        self.halt()

    def tick(self, now: float, lag: float = 0.0) -> None:
        """The ticker's work, after the engine checked request deadlines; ``lag``: how late the ticker ran."""
        self.flush()
        if self._should_stop():
            self.stop(now)
            return
        if self.phase == "warmup" and now >= self.warmup_end:
            self.phase = "drain"
            self.sending = False
            self.drain_deadline = now + self.plan.timeout + 2 * TICK_S
        if self.phase == "drain" and (self.in_flight() == 0 or now >= self.drain_deadline):
            self.begin_measure(now)
        if self.phase == "measure":
            self.loop_lag.add(int(lag * 1e6) if lag > 0 else 0)
            while now < self.deadline:
                end = min(self._next_interval, self._stage_end)
                if now < end:
                    break
                if end > self._interval_start:  # a stage of no time (a jump) makes no interval
                    self._emit_interval(end)
                if end >= self._stage_end:  # a stage ended: intervals start afresh with the next one
                    assert self.stage is not None
                    self.stage += 1
                    ends = self._stage_ends
                    self._stage_end = self.start + ends[self.stage] if self.stage < len(ends) else math.inf
                    self._next_interval = end + self.plan.interval
                else:
                    self._next_interval += self.plan.interval
            if now >= self.deadline:
                self.stop(now)
            elif self.connection_ramp is not None:
                self._ramp_connections(now)

    def _emit_interval(self, end: float) -> None:
        counters = self.counters
        requests, error_count, read = counters.requests, counters.error_count, counters.bytes_read
        last_requests, last_errors, last_read = self._last
        self._last = (requests, error_count, read)
        kinds = {kind: count - self._last_kinds.get(kind, 0) for kind, count in counters.errors.items()}
        self._last_kinds = dict(counters.errors)
        keys = self.latency.take()
        latency = new_histogram()
        status: dict[int, int] = {}
        totals = counters.status
        for key, sparse in keys.items():
            sparse.add_to(latency)
            code = key % 1000
            status[code] = status.get(code, 0) + sparse.total
            totals[code] = totals.get(code, 0) + sparse.total
        uncorrected = self.uncorrected.take() if self.uncorrected is not None else None
        interval = Interval(
            index=self._interval_index,
            start_s=round(self._interval_start - self.start, 6),
            length_s=round(max(0.0, end - self._interval_start), 6),
            requests=requests - last_requests,
            errors=error_count - last_errors,
            bytes_read=read - last_read,
            latency=encode(latency),
            uncorrected=None if uncorrected is None else encode(uncorrected),
            status=status,
            error_kinds={kind: count for kind, count in kinds.items() if count},
            keys=keys,
            stage=self.stage,
        )
        # The totals are the sum of the intervals: recorded once, added once a second.
        self.total.add(latency)
        if uncorrected is not None and self.total_uncorrected is not None:
            self.total_uncorrected.add(uncorrected)
        self._interval_index += 1
        self._interval_start = end
        self._emit(interval)

    def flush(self) -> None:
        """Fold the sample buffers that have grown (the ticker's; an interval's end folds them all)."""
        self.latency.flush(FOLD_AT)
        if self.uncorrected is not None:
            self.uncorrected.flush()

    # -- budget and accounting ----------------------------------------------------------------------------

    def in_flight(self) -> int:
        """Attempts sent and not yet answered or failed. Derived, so the hot paths keep no counter."""
        counters = self.counters
        return counters.attempts - counters.requests - counters.error_count

    def take(self, wanted: int) -> int:
        """How many of ``wanted`` requests may be sent now (0 unless sending), taken from the budget."""
        if not self.sending:
            return 0
        remaining = self.remaining
        if remaining is None:
            return wanted
        if wanted > remaining:
            wanted = remaining
        self.remaining = remaining - wanted
        return wanted

    def may_connect(self) -> bool:
        """Whether a slot without a connection should (re)connect now."""
        return self.sending and (self.remaining is None or self.remaining > 0)

    def late_send(self, lag: float) -> None:
        """A request left ``lag`` seconds after its intended time (more than :data:`LATE_S`)."""
        if self.phase == "measure" and self.late is not None:
            self.late_sends += 1
            self.late.add(int(lag * 1e6))

    def fail(self, error: errors.AiotcpError, count: int) -> None:
        """``count`` in-flight attempts failed with ``error``."""
        if count <= 0 or self.stopped:
            return
        self.counters.error(error.kind, str(error), count)
        self.maybe_done()

    def connect_failed(self, error: errors.AiotcpError, slot: int) -> None:
        """A connect failed: a failed connection, and one failed attempt if the budget had one."""
        if self.stopped:
            return
        counters = self.counters
        counters.failed += 1
        if self.take(1):
            counters.attempts += 1
            self.connect_attempts_failed += 1
            counters.error(error.kind, str(error))
            if self.rate_ramp is not None:
                self.schedule[slot] = self.next_due(slot)
            elif self.plan.rate is not None:
                self.schedule[slot] += self.period
            self.maybe_done()

    def maybe_done(self) -> None:
        """Stop once a count-mode budget is spent and nothing is in flight."""
        if self.remaining == 0 and self.phase == "measure" and self.in_flight() == 0:
            self.stop(perf_counter())

    # -- result -------------------------------------------------------------------------------------------

    def result(self, loop: str) -> WorkerResult:
        counters = self.counters
        # What was written follows from the attempts that had a connection: each wrote one request (a mix's
        # picker knows their bytes; it is cheaper than counting them as they go).
        picks = counters.attempts - self.connect_attempts_failed
        if self.picker is None:
            counters.bytes_written = picks * len(self.plan.request)
        else:
            counters.bytes_written = self.picker.written_until(self._picks_before + picks) - self._written_before
        self.loop_lag.flush()
        if self.late is not None:
            self.late.flush()
        return WorkerResult(
            index=self.plan.index,
            counters=self.counters,
            latency=encode(self.total),
            uncorrected=None if self.total_uncorrected is None else encode(self.total_uncorrected),
            duration_s=max(0.0, self.end - self.start),
            warmup_requests=self.warmup_requests,
            loop=loop,
            engine=self.plan.engine,
            cpu_s=max(0.0, self.cpu_s),
            loop_lag=encode(self.loop_lag.histogram),
            late_sends=self.late_sends,
            late=None if self.late is None else encode(self.late.histogram),
        )


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio`` for the running (or given) loop."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run_worker(
    plan: WorkerPlan,
    emit: Emit,
    should_stop: ShouldStop,
    *,
    use_uvloop: bool = True,
    backend: Literal["asyncio", "trio"] = "asyncio",
    start_at: float | None = None,
) -> WorkerResult:
    """Run one worker's share to the end on a new event loop in this thread; blocks until done.

    ``emit`` is called on the loop with every finished interval; ``should_stop`` is polled by the ticker.
    The httptools engine runs on uvloop when ``use_uvloop`` and it is installed; the h11 engine runs on
    ``backend`` (asyncio, with uvloop likewise, or trio). ``start_at`` (seconds since the epoch): the load
    starts at that instant, once the loop is up (workers on several machines agree on it).
    """
    uvloop = accelerators.uvloop() if use_uvloop else None
    use_uvloop = uvloop is not None
    if plan.engine == "httptools":
        from .engine_httptools import run_httptools

        factory: Callable[[], asyncio.AbstractEventLoop] = (
            uvloop.new_event_loop if uvloop is not None else asyncio.SelectorEventLoop
        )
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run_httptools(plan, emit, should_stop, start_at))
    import anyio

    from .engine_h11 import run_h11

    if backend == "trio":
        return anyio.run(run_h11, plan, emit, should_stop, "trio", start_at, backend="trio")
    loop = "uvloop" if use_uvloop else "asyncio"
    return anyio.run(
        run_h11, plan, emit, should_stop, loop, start_at, backend="asyncio", backend_options={"use_uvloop": use_uvloop}
    )


def seconds_until(start_at: float | None) -> float:
    """How long to wait for ``start_at`` (seconds since the epoch; None: no wait)."""
    return 0.0 if start_at is None else max(0.0, start_at - time.time())
