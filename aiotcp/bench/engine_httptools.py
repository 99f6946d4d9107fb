"""The fast engine: one lean :class:`asyncio.Protocol` per connection, llhttp (httptools) parsing, uvloop.

Theory of operation
-------------------
A connection (:class:`_Conn`) owns the transport, the send time of each request in flight and its end
(``closing``, ``ended``, the accounting at ``connection_lost``). It delegates to two parts, chosen once
per run from the plan:

======  ==========================================================================================
part    variants
======  ==========================================================================================
pacer   :class:`_ClosedLoop` (wrk): up to ``pipeline`` requests in flight, refilled after every read.
        :class:`_OpenLoop` (wrk2): every request leaves at its intended time, from a timer if need be.
reader  :class:`_BodyReader`: one llhttp parser for the connection; a response counts when its
        message is complete. :class:`_HeadReader`: HEAD (see below). :class:`_MixedReader`: a mix of
        HEAD and other methods, one request in flight at a time, each response to the reader of its
        request's method.
======  ==========================================================================================

The pacer also says what a response's latency is measured from and where it goes: ``starts`` holds the
send times in closed loop and the intended times in open loop; ``appenders[status]`` is the list append
of the latencies of that status (:class:`~aiotcp.bench.histogram.Appenders`: the key
``endpoint * 1000 + status`` of the run's :class:`~aiotcp.bench.histogram.KeyedRecorder`, made when a
status is first seen), or in open loop a closure that also records the uncorrected latency (from the send
time). The reader counts a response against the oldest start and need not know which loop it is in.

A mix (``--urls``, templates, bodies in turn): the pacer writes ``next(picks)`` instead of the one
pre-encoded request (a C iterator over the encoded requests, see :class:`~aiotcp.bench.mix.Picker`) and
queues the request's endpoint beside its start time (``endpoints``); the reader takes the endpoint's
appends from ``by_endpoint``. A run of one URL has no queue (``endpoints`` is None) and pays one
``is None`` per response for the possibility.

Per request the hot path (closed loop, GET, one URL) is: one ``transport.write`` of pre-encoded bytes,
llhttp's C parser with two small Python callbacks (``on_headers_complete``, ``on_message_complete``), a
subscript and a list append for the latency (the status is counted by the length of its list when it is
folded). No task, future, timer or cancel scope is created per request. The parts cost the hot path no
call: a read goes straight to llhttp (the reader's ``input`` is the parser itself), llhttp calls the
reader's callbacks, and one call to the pacer's ``refill`` writes the next requests. One clock read per
``data_received``: the responses of one read all arrived at that moment. In closed-loop mode the next
request is written right after the parser returns, one write for every response the read completed. When
the request budget runs out inside a read, the callback that stopped the run raises :class:`_StopParsing`,
the only way httptools offers to stop the parser; the rest of the read is in flight, not counted.

Deadlines: the run's ticker (every :data:`~aiotcp.bench.engines.TICK_S`) fails a connection whose oldest
in-flight request is older than the timeout. Connects get ``asyncio.timeout`` (one per connect, not per
request).

HEAD: llhttp does not know the request method, so after a HEAD response's headers it would wait for the
body its Content-Length announces. The HEAD reader splits the input at each head's blank line and feeds
every head to a fresh parser, which counts the response at ``on_headers_complete``. For the same reason a
mix of HEAD and other methods is sent one request at a time (``pipeline`` 1, checked by the config): the
bytes of a read then belong to the oldest request's response alone.

Stages: a connection ramp retires the connections of the slots above it (``retire``: nothing more is
sent, the connection closes once its requests in flight are answered, without counting as closed by the
peer) and connects the slots below it; a rate ramp only changes the schedule (``RunState.next_due``).
The self-check: the ticker's lateness is the loop's lag; an open-loop send more than
:data:`~aiotcp.bench.engines.LATE_S` behind its intended time is counted as late.

A body delimited by the connection closing (no Content-Length, not chunked) ends at EOF; httptools has
no "finish" call, so at EOF a response whose head is complete and whose parser expects EOF
(``should_keep_alive()`` is false) is counted as complete. A Content-Length response cut short after
``Connection: close`` is counted the same way: the one place this engine is more lenient than h11.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools

from .. import error_mapping, errors
from .config import WorkerPlan
from .engines import (
    LATE_S,
    TICK_S,
    Emit,
    RunState,
    ShouldStop,
    backoff,
    is_interim,
    loop_name,
    open_tunnel_socket,
    perf_counter,
    seconds_until,
)
from .histogram import Appenders
from .results import WorkerResult

__all__ = ["run_httptools"]

# A HEAD response head longer than this (with no blank line yet) is not a response we can use.
_MAX_HEAD = 64 * 1024
# How long halt() waits for closed connections to report connection_lost.
_CLOSE_WAIT_S = 2.0


class _StopParsing(Exception):
    """Raised by an llhttp callback to stop the parser (httptools has no other way): the run stopped."""


class _Run(RunState):
    """A worker's run on one asyncio loop: the slots, their connections and the ticker."""

    def __init__(self, plan: WorkerPlan, emit: Emit, should_stop: ShouldStop) -> None:
        super().__init__(plan, emit, should_stop)
        self.loop = asyncio.get_running_loop()
        self.request = plan.request
        self.conns: set[_Conn] = set()
        self.connecting: dict[int, asyncio.Task[None]] = {}
        self.slot_busy = [False] * plan.connections  # a connection or a connect exists for the slot
        self.failures = [0] * plan.connections
        self.done = self.loop.create_future()
        self.all_closed = asyncio.Event()
        self._ticker: asyncio.TimerHandle | None = None
        self._tick_due = 0.0  # when the ticker should run next (its lateness is the loop lag)

    async def main(self, start_at: float | None = None) -> WorkerResult:
        delay = seconds_until(start_at)
        if delay:
            await asyncio.sleep(delay)
        self.begin(perf_counter())
        for slot in range(self.plan.connections):
            self.start_connect(slot)
        self._schedule_tick()
        try:
            await self.done
        finally:
            if self._ticker is not None:
                self._ticker.cancel()
            if not self.stopped:  # cancelled from outside: still close everything
                self.stop(perf_counter())
            await self._closed()
        return self.result(loop_name(self.loop))

    # -- slots and connects -------------------------------------------------------------------------------

    def start_connect(self, slot: int) -> None:
        if self.slot_busy[slot] or slot >= self.active or not self.may_connect():
            return
        self.slot_busy[slot] = True
        self.connecting[slot] = self.loop.create_task(self._connect(slot, backoff(self.failures[slot])))

    async def _connect(self, slot: int, delay: float) -> None:
        plan = self.plan
        conn = _Conn(self, slot)
        error: errors.AiotcpError | None = None
        try:
            if delay:
                await asyncio.sleep(delay)
            async with asyncio.timeout(plan.timeout):
                if plan.unix_socket is not None:
                    await self.loop.create_unix_connection(lambda: conn, plan.unix_socket)
                elif plan.tunnel is not None:
                    await self.loop.create_connection(lambda: conn, sock=await open_tunnel_socket(plan))
                else:
                    await self.loop.create_connection(lambda: conn, plan.host, plan.port)
        except TimeoutError:
            error = errors.ConnectTimeout(f"no answer to connect (SYN) within {plan.timeout:g}s", target=self.target)
        except errors.AiotcpError as exc:  # the proxy's tunnel failed
            error = exc.for_target(self.target)
        except OSError as exc:
            error = error_mapping.map_connect_error(exc, self.target, phase="tcp")
        finally:
            self.connecting.pop(slot, None)
        if error is None:
            self.failures[slot] = 0
            return
        self.slot_busy[slot] = False
        self.failures[slot] += 1
        self.connect_failed(error, slot)
        self.start_connect(slot)
        self._check_closed()

    def connection_ended(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        self.slot_busy[conn.slot] = False
        if self.stopped:
            self._check_closed()
        else:
            self.start_connect(conn.slot)

    # -- phases -------------------------------------------------------------------------------------------

    def resume(self) -> None:
        for conn in list(self.conns):
            conn.pacer.pump()
        for slot in range(self.plan.connections):
            self.start_connect(slot)

    def activate(self) -> None:
        for conn in list(self.conns):
            if conn.slot >= self.active:
                conn.retire()
        for slot in range(self.active):
            self.start_connect(slot)

    def halt(self) -> None:
        for task in self.connecting.values():
            task.cancel()
        for conn in list(self.conns):
            conn.close()
        if not self.done.done():
            self.done.set_result(None)
        self._check_closed()

    def _check_closed(self) -> None:
        if not self.stopped:
            return
        # A connect task cancelled before it ever ran never reaches its ``finally``: prune by state.
        for slot, task in list(self.connecting.items()):
            if task.done():
                del self.connecting[slot]
        if not self.conns and not self.connecting:
            self.all_closed.set()

    async def _closed(self) -> None:
        tasks = list(self.connecting.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._check_closed()
        try:
            async with asyncio.timeout(_CLOSE_WAIT_S):
                await self.all_closed.wait()
        except TimeoutError:  # pragma: no cover - a transport that never reports connection_lost
            for conn in list(self.conns):
                if conn.transport is not None:
                    conn.transport.abort()
            await asyncio.sleep(0)

    def _schedule_tick(self) -> None:
        self._ticker = self.loop.call_later(TICK_S, self._tick)
        self._tick_due = perf_counter() + TICK_S

    def _tick(self) -> None:
        now = perf_counter()
        lag = now - self._tick_due
        timeout = self.plan.timeout
        for conn in list(self.conns):
            sent = conn.sent
            if sent and now - sent[0] > timeout:
                conn.fail(errors.DeadlineExceeded(f"no complete response within {timeout:g}s", target=self.target))
            elif conn.closing and not sent and now - conn.closing_since > timeout:
                conn.close()  # the server said it would close, and did not
        self.tick(now, lag)
        if not self.stopped:
            self._schedule_tick()


class _Conn(asyncio.Protocol):
    """One connection: the transport, the requests in flight and the connection's end; a pacer and a reader.

    The pacer (:class:`_ClosedLoop` or :class:`_OpenLoop`) writes the requests; the reader
    (:class:`_BodyReader` or :class:`_HeadReader`) turns the bytes read into counted responses.
    """

    __slots__ = (
        "closing",
        "closing_since",
        "counters",
        "ended",
        "endpoints",
        "input",
        "pacer",
        "reader",
        "retired",
        "run",
        "sent",
        "slot",
        "transport",
    )

    def __init__(self, run: _Run, slot: int) -> None:
        self.run = run
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.sent: deque[float] = deque()  # send time of each request in flight, oldest first
        #: In a mix, the endpoint of each request in flight, oldest first; else None.
        self.endpoints: deque[int] | None = deque() if run.picker is not None else None
        self.closing = False  # the server asked to close (or a ramp retired the slot): send nothing more
        self.closing_since = 0.0
        self.retired = False  # a connection ramp went below this slot: close once nothing is in flight
        self.ended = False  # this connection's end has been counted; nothing more is counted for it
        self.counters = run.counters
        plan = run.plan
        # The pacer first: the reader takes its latency starts and recorders.
        self.pacer: _ClosedLoop | _OpenLoop = _OpenLoop(self) if plan.open_loop else _ClosedLoop(self)
        self.reader: _BodyReader | _HeadReader | _MixedReader
        if plan.head:
            self.reader = _HeadReader(self)
        elif any(plan.heads):
            self.reader = _MixedReader(self, {index for index, head in enumerate(plan.heads) if head})
        else:
            self.reader = _BodyReader(self)
        self.input = self.reader.input

    def __repr__(self) -> str:
        state = "ended" if self.ended else "closing" if self.closing else "open" if self.transport else "connecting"
        parts = f"{type(self.pacer).__name__} {type(self.reader).__name__}"
        return f"<{type(self).__name__} slot={self.slot} {state} in_flight={len(self.sent)} {parts}>"

    # -- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.pacer.transport = self.transport
        run = self.run
        run.conns.add(self)
        run.counters.opened += 1
        if run.stopped:
            self.close()
            return
        self.pacer.pump()

    def data_received(self, data: bytes) -> None:
        self.reader.now = perf_counter()
        self.counters.bytes_read += len(data)
        if self.ended:
            return
        try:
            self.input.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        except errors.AiotcpError as error:  # the reader's own checks (HEAD)
            self.fail(error)
            return
        if self.closing:
            if not self.sent:
                if self.retired:
                    self._retire_now()
                else:
                    self.closing_since = self.reader.now
            return
        self.pacer.refill()

    def _parse_failed(self, exc: Exception) -> None:
        if self.ended:
            return  # a callback stopped the parser because the run stopped (_StopParsing)
        context = exc.__context__
        if isinstance(context, errors.AiotcpError):
            error = context.for_target(self.run.target)
        elif isinstance(exc, httptools.HttpParserUpgrade):
            error = errors.ProtocolError("unexpected 101 Switching Protocols", target=self.run.target)
        else:
            error = errors.ProtocolError(f"malformed response: {exc}", target=self.run.target)
        self.fail(error)

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost() does the accounting

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        run = self.run
        if not self.ended and not run.stopped:
            self.ended = True
            in_flight = len(self.sent)
            if in_flight:
                if exc is None and self.reader.complete_at_eof():  # a body delimited by EOF
                    in_flight -= 1
                error: errors.AiotcpError
                if exc is None:
                    error = errors.Disconnected(
                        "server closed the connection before the response was complete", target=run.target
                    )
                else:
                    error = error_mapping.map_stream_error(exc, run.target, phase="read")
                self._forget()
                run.fail(error, in_flight)
                if error.kind == "reset":
                    run.counters.reset += 1
                elif error.kind == "disconnected":
                    run.counters.closed_by_peer += 1
            elif exc is not None:
                error = error_mapping.map_stream_error(exc, run.target, phase="read")
                if error.kind == "reset":
                    run.counters.reset += 1
            else:
                run.counters.closed_by_peer += 1
        self._forget()
        run.connection_ended(self)

    # -- ending -------------------------------------------------------------------------------------------

    def fail(self, error: errors.AiotcpError) -> None:
        """Fail every request in flight with ``error`` and drop the connection."""
        if self.ended:
            return
        self.ended = True
        in_flight = len(self.sent)
        self._forget()
        self.run.fail(error, in_flight)
        if self.transport is not None:
            self.transport.abort()

    def _forget(self) -> None:
        """The requests in flight are gone (counted as failed, or the run stopped)."""
        self.sent.clear()
        if self.endpoints is not None:
            self.endpoints.clear()
        self.pacer.cancel()

    def retire(self) -> None:
        """A connection ramp went below this slot: send nothing more, and close once nothing is in flight."""
        if self.ended or self.retired:
            return
        self.retired = self.closing = True  # the pacer sends nothing more (an open-loop timer finds it so)
        if not self.sent:
            self._retire_now()

    def _retire_now(self) -> None:
        self.ended = True  # closed by us, on purpose: nothing to count at connection_lost
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """Close without counting anything more (the run stopped, or an idle connection is done)."""
        if self.transport is not None:
            if self.run.stopped:
                self.ended = True
                self.transport.abort()  # unread responses would make close() send RST anyway
            else:
                self.transport.close()


# -- pacers: when requests are written ------------------------------------------------------------------


class _Pacer:
    """The part of a connection that writes its requests (``pump``, ``refill``); what both loops share.

    It also says where a response's latency goes: ``by_endpoint[endpoint][status]`` is the append that
    records it (``appenders`` is endpoint 0's, all of a run of one URL), made on first use.
    """

    __slots__ = (
        "appenders",
        "by_endpoint",
        "conn",
        "counters",
        "endpoints",
        "picks",
        "pipeline",
        "request",
        "run",
        "sent",
        "starts",
        "transport",
    )

    transport: asyncio.Transport  # the connection's, set when it is made (the connection says if it still is)

    def __init__(self, conn: _Conn) -> None:
        run = conn.run
        self.conn = conn
        self.run = run
        self.sent = conn.sent
        self.endpoints = conn.endpoints
        self.counters = run.counters
        self.request = run.request
        #: A mix's requests, ``(endpoint, bytes)`` each (None: every request is ``request``).
        self.picks = None if run.picker is None else run.picker.iterator
        self.pipeline = run.plan.pipeline
        #: What a response's latency is measured from: one time per request in flight, oldest first.
        self.starts = conn.sent
        #: endpoint -> status -> the append of a response's latency, in integer microseconds (run-wide here).
        self.by_endpoint: list[Appenders | None] = run.by_endpoint
        self.appenders: Appenders = self.appenders_of(0)

    def cancel(self) -> None:
        """The requests in flight are gone (the connection failed or closed): forget what only the pacer holds."""

    def appenders_of(self, endpoint: int) -> Appenders:
        """``status -> append`` of ``endpoint`` (made when first asked for: an open loop makes its own)."""
        appenders = self.by_endpoint[endpoint]
        assert appenders is not None  # the run's are all made up front
        return appenders

    def picked(self, count: int) -> bytes:
        """A mix: the next ``count`` requests' bytes; their endpoints join ``endpoints``."""
        assert self.picks is not None
        assert self.endpoints is not None
        picks = self.picks
        endpoints = self.endpoints
        if count == 1:
            endpoint, data = next(picks)
            endpoints.append(endpoint)
            return data
        parts = []
        for _ in range(count):
            endpoint, part = next(picks)
            endpoints.append(endpoint)
            parts.append(part)
        return b"".join(parts)


class _ClosedLoop(_Pacer):
    """Closed loop (wrk): up to ``pipeline`` requests in flight, refilled after every read."""

    __slots__ = ()

    def pump(self) -> None:
        """Send as many requests as the pipeline depth and the budget allow."""
        conn = self.conn
        if conn.closing or conn.ended or conn.transport is None:
            return
        wanted = self.pipeline - len(self.sent)
        if wanted <= 0:
            return
        count = self.run.take(wanted)
        if not count:
            return
        self.counters.attempts += count
        self.sent.extend([perf_counter()] * count)
        self.transport.write(self.request * count if self.picks is None else self.picked(count))

    def refill(self) -> None:
        """After a read that left the connection open: one write for every response the read completed.

        pump() and RunState.take(), inlined: this runs once per read and is most of the engine's own time.
        """
        run = self.run
        wanted = self.pipeline - len(self.sent)
        if wanted <= 0 or not run.sending:
            return
        remaining = run.remaining
        if remaining is not None:
            if wanted > remaining:
                wanted = remaining
                if not wanted:
                    return
            run.remaining = remaining - wanted
        self.counters.attempts += wanted
        now = perf_counter()
        if wanted == 1:
            self.sent.append(now)
            picks = self.picks
            if picks is None:
                self.transport.write(self.request)
            else:  # picked(1), inlined
                endpoint, data = next(picks)
                self.endpoints.append(endpoint)  # type: ignore[union-attr]
                self.transport.write(data)
        else:
            self.sent.extend([now] * wanted)
            self.transport.write(self.request * wanted if self.picks is None else self.picked(wanted))


class _OpenLoop(_Pacer):
    """Open loop (wrk2): requests leave at their intended times; both latencies are recorded.

    A send that leaves more than :data:`~aiotcp.bench.engines.LATE_S` after its intended time is counted
    as late (the self-check): its connection was busy (the server's doing) or the loop was (ours).
    """

    __slots__ = ("intended", "record_uncorrected", "timer")

    def __init__(self, conn: _Conn) -> None:
        super().__init__(conn)
        uncorrected = self.run.uncorrected
        assert uncorrected is not None
        self.intended: deque[float] = deque()  # intended send time of each request in flight, oldest first
        self.timer: asyncio.TimerHandle | None = None
        self.record_uncorrected = uncorrected.add
        self.starts = self.intended  # the corrected latency runs from the intended time
        # This connection's appends: each also records the uncorrected latency. Made when first needed.
        self.by_endpoint = [None] * len(self.run.by_endpoint)
        self.appenders = self.appenders_of(0)

    def pump(self) -> None:
        """Send every request that is due, as the pipeline depth and the budget allow; else wake when one is."""
        conn = self.conn
        if conn.closing or conn.ended or conn.transport is None:
            return
        run = self.run
        schedule = run.schedule
        slot = conn.slot
        pipeline = self.pipeline
        sent = self.sent
        now = perf_counter()
        while len(sent) < pipeline:
            due = schedule[slot]
            if due > now:
                if self.timer is None and due < math.inf:
                    self.timer = run.loop.call_later(due - now, self._due)
                return
            if not run.take(1):
                return
            schedule[slot] = due + run.period if run.rate_ramp is None else run.next_due(slot)
            if now - due > LATE_S:
                run.late_send(now - due)
            self.counters.attempts += 1
            sent.append(now)
            self.intended.append(due)
            self.transport.write(self.request if self.picks is None else self.picked(1))

    refill = pump  # after a read as at any other time: whatever is due

    def _due(self) -> None:
        self.timer = None
        self.pump()

    def appenders_of(self, endpoint: int) -> Appenders:
        appenders = self.by_endpoint[endpoint]
        if appenders is None:
            appenders = self.by_endpoint[endpoint] = Appenders(endpoint * 1000, self._appender)
        return appenders

    def _appender(self, key: int) -> Callable[[int], None]:
        """The append of ``key`` on this connection: the corrected latency to the run's recorder, and the
        uncorrected one, from the oldest send time."""
        corrected = self.run.latency.appender(key)
        uncorrected = self.record_uncorrected
        sent = self.sent
        conn = self.conn

        def record(latency: int) -> None:
            corrected(latency)
            uncorrected(int((conn.reader.now - sent.popleft()) * 1e6))

        return record

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.intended.clear()


# -- readers: how bytes become counted responses ---------------------------------------------------------


class _Reader:
    """The part of a connection that counts its responses; what the readers share.

    A reader's ``input`` is what the connection feeds every read to (``feed_data``, raising
    :class:`httptools.HttpParserError` or :class:`~aiotcp.errors.AiotcpError`). A response is filed under
    the key ``status`` (one URL), or ``endpoint * 1000 + status`` (a mix: the endpoints of the requests in
    flight are queued beside their start times).
    """

    __slots__ = ("appenders", "appenders_of", "by_endpoint", "conn", "counters", "endpoints", "now", "run", "starts")

    def __init__(self, conn: _Conn) -> None:
        run = conn.run
        self.conn = conn
        self.run = run
        self.counters = run.counters
        self.starts = conn.pacer.starts
        self.appenders = conn.pacer.appenders
        self.by_endpoint = conn.pacer.by_endpoint
        self.appenders_of = conn.pacer.appenders_of
        self.endpoints = conn.endpoints
        self.now = 0.0  # when the read being parsed arrived (the connection sets it per read)

    def complete(self, status: int) -> None:
        """Count one complete response to the oldest request in flight."""
        endpoints = self.endpoints
        if endpoints is None:
            appenders = self.appenders
        else:
            endpoint = endpoints.popleft()
            appenders = self.by_endpoint[endpoint] or self.appenders_of(endpoint)
        appenders[status](int((self.now - self.starts.popleft()) * 1e6))
        self.counters.requests += 1
        if self.run.remaining == 0:
            self.run.maybe_done()

    def complete_at_eof(self) -> bool:
        """At EOF: count the response being read if EOF ends its body; whether it did."""
        return False


class _BodyReader(_Reader):
    """One llhttp parser for the whole connection; a response counts when its message is complete."""

    __slots__ = ("head_done", "input", "parser")

    def __init__(self, conn: _Conn) -> None:
        super().__init__(conn)
        self.parser = httptools.HttpResponseParser(self)
        self.input = self.parser  # reads go to llhttp itself: no Python frame between a read and the callbacks
        self.head_done = False  # the current response's head is complete, its body is not

    def complete_at_eof(self) -> bool:
        if self.head_done and not self.parser.should_keep_alive():
            self.complete(self.parser.get_status_code())
            return True
        return False

    # -- llhttp callbacks ---------------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.head_done = False
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and is_interim(status):  # a final response pays one comparison, not a call
            return  # the final response follows
        starts = self.starts
        if not starts:
            raise errors.ProtocolError("a response nobody asked for")
        # complete(), inlined (the hot path).
        endpoints = self.endpoints
        if endpoints is None:
            self.appenders[status](int((self.now - starts.popleft()) * 1e6))
        else:
            endpoint = endpoints.popleft()
            (self.by_endpoint[endpoint] or self.appenders_of(endpoint))[status](
                int((self.now - starts.popleft()) * 1e6)
            )
        self.counters.requests += 1
        if not parser.should_keep_alive():
            self.conn.closing = True
        run = self.run
        if run.remaining == 0:
            run.maybe_done()
            if run.stopped:  # it ended the connection: the rest of this read is in_flight, not ours to count
                raise _StopParsing  # how an llhttp callback stops the parser (see _Conn._parse_failed)


class _HeadReader(_Reader):
    """HEAD: split the input at each head's end and feed each head to a fresh parser.

    The response is counted at ``on_headers_complete``; keep-alive is decided from the version and the
    Connection header as h11 decides it (llhttp's own answer would assume a body follows).
    """

    __slots__ = ("buffer", "input", "parser", "tokens")

    def __init__(self, conn: _Conn) -> None:
        super().__init__(conn)
        self.input = self  # reads come here (feed_data) to be cut into heads
        self.buffer = b""  # the start of a head whose blank line has not arrived yet
        self.tokens: set[bytes] = set()  # the Connection header's tokens, of the head being parsed
        self.parser = httptools.HttpResponseParser(self)  # replaced by a fresh one for every head

    def feed_data(self, data: bytes) -> None:
        """Count the heads one read completes. Raises :class:`httptools.HttpParserError` or ``AiotcpError``."""
        conn = self.conn
        buffer = self.buffer + data if self.buffer else data
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            head = buffer[start : end + 4]
            start = end + 4
            if conn.closing or not conn.sent:
                raise errors.ProtocolError("unexpected bytes after the response", target=self.run.target)
            self.tokens = set()
            self.parser = parser = httptools.HttpResponseParser(self)
            parser.feed_data(head)
            if conn.ended:
                return
        self.buffer = buffer[start:]
        if len(self.buffer) > _MAX_HEAD:
            raise errors.TooLarge(f"response head larger than {_MAX_HEAD} bytes", target=self.run.target)

    def _keep_alive(self, version: str) -> bool:
        if b"close" in self.tokens:
            return False
        return version == "1.1" or b"keep-alive" in self.tokens

    # -- llhttp callbacks ---------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection":
            self.tokens.update(token.strip().lower() for token in value.split(b","))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and is_interim(status):  # as in _BodyReader: a final response pays no call
            return  # the final response follows
        if self.conn.ended:
            return
        self.complete(status)
        if not self._keep_alive(parser.get_http_version()):
            self.conn.closing = True


class _MixedReader:
    """A mix of HEAD and other methods (one request in flight at a time): each response goes to the reader
    for its request's method, so a HEAD response is cut at its head and any other read to its end."""

    __slots__ = ("body", "endpoints", "head", "heads", "input")

    def __init__(self, conn: _Conn, heads: set[int]) -> None:
        self.body = _BodyReader(conn)
        self.head = _HeadReader(conn)
        self.heads = heads  # the HEAD endpoints
        assert conn.endpoints is not None  # a mix
        self.endpoints = conn.endpoints
        self.input = self

    @property
    def now(self) -> float:
        return self.body.now

    @now.setter
    def now(self, value: float) -> None:
        self.body.now = self.head.now = value

    def _for_head(self) -> bool:
        endpoints = self.endpoints
        return bool(endpoints) and endpoints[0] in self.heads

    def feed_data(self, data: bytes) -> None:
        if self._for_head():
            self.head.feed_data(data)
        else:
            self.body.parser.feed_data(data)

    def complete_at_eof(self) -> bool:
        return False if self._for_head() else self.body.complete_at_eof()


async def run_httptools(
    plan: WorkerPlan, emit: Emit, should_stop: ShouldStop, start_at: float | None = None
) -> WorkerResult:
    """Run ``plan`` with the httptools engine on the running asyncio loop (from ``start_at``, epoch seconds)."""
    run = _Run(plan, emit, should_stop)
    with contextlib.suppress(asyncio.CancelledError):
        return await run.main(start_at)
    return run.result(loop_name())  # pragma: no cover - cancelled from outside
