"""The fast engine: one lean :class:`asyncio.Protocol` per connection, llhttp (httptools) parsing, uvloop.

Per request the hot path is: one ``transport.write`` of pre-encoded bytes, llhttp's C parser with one
Python callback (``on_message_complete``), a list append for the latency, a dict increment for the status.
No task, future, timer or cancel scope is created per request. One clock read per ``data_received``: the
responses of one read all arrived at that moment. In closed-loop mode the next request is written from
``data_received`` right after the parser returns, one write for every response the read completed.

Deadlines: the run's ticker (every :data:`~aiotcp.bench.engines.TICK_S`) fails a connection whose oldest
in-flight request is older than the timeout. Connects get ``asyncio.timeout`` (one per connect, not per
request).

HEAD: llhttp does not know the request method, so after a HEAD response's headers it would wait for the
body its Content-Length announces. In HEAD mode the connection splits the input at each head's blank
line and feeds every head to a fresh parser, which counts the response at ``on_headers_complete``.

A body delimited by the connection closing (no Content-Length, not chunked) ends at EOF; httptools has
no "finish" call, so at EOF a response whose head is complete and whose parser expects EOF
(``should_keep_alive()`` is false) is counted as complete. A Content-Length response cut short after
``Connection: close`` is counted the same way: the one place this engine is more lenient than h11.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, cast

import httptools

from .. import error_mapping, errors
from .config import WorkerPlan
from .engines import TICK_S, Emit, RunState, ShouldStop, backoff, loop_name, perf_counter
from .results import WorkerResult

__all__ = ["run_httptools"]

# A HEAD response head longer than this (with no blank line yet) is not a response we can use.
_MAX_HEAD = 64 * 1024
# How long halt() waits for closed connections to report connection_lost.
_CLOSE_WAIT_S = 2.0


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
        if plan.head:
            self.conn_class: type[_Conn] = _RateHeadConn if plan.rate is not None else _HeadConn
        else:
            self.conn_class = _RateConn if plan.rate is not None else _Conn
        self._ticker: asyncio.TimerHandle | None = None

    async def main(self) -> WorkerResult:
        self.begin(perf_counter())
        for slot in range(self.plan.connections):
            self.start_connect(slot)
        self._ticker = self.loop.call_later(TICK_S, self._tick)
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
        if self.slot_busy[slot] or not self.may_connect():
            return
        self.slot_busy[slot] = True
        self.connecting[slot] = self.loop.create_task(self._connect(slot, backoff(self.failures[slot])))

    async def _connect(self, slot: int, delay: float) -> None:
        plan = self.plan
        conn = self.conn_class(self, slot)
        error: errors.AiotcpError | None = None
        try:
            if delay:
                await asyncio.sleep(delay)
            async with asyncio.timeout(plan.timeout):
                await self.loop.create_connection(lambda: conn, plan.host, plan.port)
        except TimeoutError:
            error = errors.ConnectTimeout(f"no answer to connect (SYN) within {plan.timeout:g}s", target=self.target)
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
            conn.pump()
        for slot in range(self.plan.connections):
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

    def _tick(self) -> None:
        now = perf_counter()
        timeout = self.plan.timeout
        for conn in list(self.conns):
            sent = conn.sent
            if sent and now - sent[0] > timeout:
                conn.fail(errors.DeadlineExceeded(f"no complete response within {timeout:g}s", target=self.target))
            elif conn.closing and not sent and now - conn.closing_since > timeout:
                conn.close()  # the server said it would close, and did not
        self.tick(now)
        if not self.stopped:
            self._ticker = self.loop.call_later(TICK_S, self._tick)


class _Conn(asyncio.Protocol):
    """One connection in closed-loop mode: up to ``pipeline`` requests in flight, refilled per read."""

    __slots__ = (
        "closing",
        "closing_since",
        "counters",
        "ended",
        "head_done",
        "now",
        "parser",
        "pipeline",
        "record",
        "request",
        "run",
        "sent",
        "slot",
        "status",
        "transport",
    )

    def __init__(self, run: _Run, slot: int) -> None:
        self.run = run
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sent: deque[float] = deque()  # send time of each request in flight, oldest first
        self.now = 0.0
        self.closing = False  # the server asked to close: send nothing more
        self.closing_since = 0.0
        self.ended = False  # this connection's end has been counted; nothing more is counted for it
        self.head_done = False  # the current response's head is complete, its body is not
        self.counters = run.counters
        self.status = run.counters.status
        self.record = run.latency.add
        self.request = run.request
        self.pipeline = run.plan.pipeline

    def __repr__(self) -> str:
        state = "ended" if self.ended else "closing" if self.closing else "open" if self.transport else "connecting"
        return f"<{type(self).__name__} slot={self.slot} {state} in_flight={len(self.sent)}>"

    # -- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        run = self.run
        run.conns.add(self)
        run.counters.opened += 1
        if run.stopped:
            self.close()
            return
        self.pump()

    def _parse_read(self, data: bytes) -> bool:
        """Count and parse one read; whether the connection may send more (not ended, not closing)."""
        self.now = perf_counter()
        self.counters.bytes_read += len(data)
        if self.ended:
            return False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return False
        if self.closing:
            if not self.sent:
                self.closing_since = self.now
            return False
        return True

    def data_received(self, data: bytes) -> None:
        if not self._parse_read(data):
            return
        # Closed loop: refill the pipeline, one write for every response this read completed. (pump(),
        # inlined: this runs once per read and is most of the engine's own time.)
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
            self.transport.write(self.request)  # type: ignore[union-attr]
        else:
            self.sent.extend([now] * wanted)
            self.transport.write(self.request * wanted)  # type: ignore[union-attr]

    def _parse_failed(self, exc: Exception) -> None:
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
                if exc is None and self.head_done and not self.parser.should_keep_alive():
                    self.complete(self.parser.get_status_code())  # a body delimited by EOF
                    in_flight -= 1
                error: errors.AiotcpError
                if exc is None:
                    error = errors.Disconnected(
                        "server closed the connection before the response was complete", target=run.target
                    )
                else:
                    error = error_mapping.map_stream_error(exc, run.target, phase="read")
                self.sent.clear()
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
        run.connection_ended(self)

    # -- requests -----------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Send as many requests as the pipeline depth and the budget allow."""
        if self.closing or self.ended or self.transport is None:
            return
        run = self.run
        wanted = self.pipeline - len(self.sent)
        if wanted <= 0:
            return
        count = run.take(wanted)
        if not count:
            return
        self.counters.attempts += count
        self.sent.extend([perf_counter()] * count)
        self.transport.write(self.request * count)

    def complete(self, status: int) -> None:
        """Count one complete response to the oldest request in flight."""
        self.record(int((self.now - self.sent.popleft()) * 1e6))
        counts = self.status
        counts[status] = counts.get(status, 0) + 1
        self.counters.requests += 1
        if self.run.remaining == 0:
            self.run.maybe_done()

    # -- llhttp callbacks ---------------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.head_done = False
        if self.ended:
            return  # the run stopped inside this read: what follows is in_flight
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise errors.ProtocolError("unexpected 101 Switching Protocols: no upgrade was requested")
            return  # an interim response: the final one follows
        sent = self.sent
        if not sent:
            raise errors.ProtocolError("a response nobody asked for")
        # complete(), inlined (the hot path).
        self.record(int((self.now - sent.popleft()) * 1e6))
        counts = self.status
        counts[status] = counts.get(status, 0) + 1
        self.counters.requests += 1
        if self.run.remaining == 0:
            self.run.maybe_done()
        if not parser.should_keep_alive():
            self.closing = True

    # -- ending -------------------------------------------------------------------------------------------

    def fail(self, error: errors.AiotcpError) -> None:
        """Fail every request in flight with ``error`` and drop the connection."""
        if self.ended:
            return
        self.ended = True
        in_flight = len(self.sent)
        self.sent.clear()
        self.run.fail(error, in_flight)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close without counting anything more (the run stopped, or an idle connection is done)."""
        if self.transport is not None:
            if self.run.stopped:
                self.ended = True
                self.transport.abort()  # unread responses would make close() send RST anyway
            else:
                self.transport.close()


class _RateConn(_Conn):
    """Open-loop mode: requests leave at their intended times (wrk2); both latencies are recorded."""

    __slots__ = ("intended", "record_uncorrected", "timer")

    def __init__(self, run: _Run, slot: int) -> None:
        super().__init__(run, slot)
        self.intended: deque[float] = deque()
        self.timer: asyncio.TimerHandle | None = None
        assert run.uncorrected is not None
        self.record_uncorrected = run.uncorrected.add

    def pump(self) -> None:
        if self.closing or self.ended or self.transport is None:
            return
        run = self.run
        schedule = run.schedule
        slot = self.slot
        pipeline = run.plan.pipeline
        now = perf_counter()
        while len(self.sent) < pipeline:
            due = schedule[slot]
            if due > now:
                if self.timer is None:
                    self.timer = run.loop.call_later(due - now, self._due)
                return
            if not run.take(1):
                return
            schedule[slot] = due + run.period
            self.counters.attempts += 1
            self.sent.append(now)
            self.intended.append(due)
            self.transport.write(self.request)

    def _due(self) -> None:
        self.timer = None
        self.pump()

    def complete(self, status: int) -> None:
        now = self.now
        self.record(int((now - self.intended.popleft()) * 1e6))
        self.record_uncorrected(int((now - self.sent.popleft()) * 1e6))
        counts = self.status
        counts[status] = counts.get(status, 0) + 1
        self.counters.requests += 1
        if self.run.remaining == 0:
            self.run.maybe_done()

    def data_received(self, data: bytes) -> None:
        if self._parse_read(data):
            self.pump()

    def on_message_complete(self) -> None:
        self.head_done = False
        if self.ended:
            return
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise errors.ProtocolError("unexpected 101 Switching Protocols: no upgrade was requested")
            return
        if not self.sent:
            raise errors.ProtocolError("a response nobody asked for")
        self.complete(status)
        if not parser.should_keep_alive():
            self.closing = True

    def fail(self, error: errors.AiotcpError) -> None:
        self.intended.clear()
        super().fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        super().connection_lost(exc)
        self.intended.clear()


class _HeadMixin:
    """HEAD mode: split the input at each head's end and feed each head to a fresh parser.

    The response is counted at ``on_headers_complete``; keep-alive is decided from the version and the
    Connection header as h11 decides it (llhttp's own answer would assume a body follows).
    """

    __slots__ = ()

    buffer: bytes
    tokens: set[bytes]  # the Connection header's tokens (a slot of the concrete classes)

    def _new_head_parser(self) -> Any:
        self.tokens = set()  # type: ignore[misc]
        return httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection":
            self.tokens.update(token.strip().lower() for token in value.split(b","))

    def _keep_alive(self, version: str) -> bool:
        if b"close" in self.tokens:
            return False
        return version == "1.1" or b"keep-alive" in self.tokens


def _head_data_received(self: Any, data: bytes) -> None:
    self.now = perf_counter()
    self.counters.bytes_read += len(data)
    if self.ended:
        return
    buffer = self.buffer + data if self.buffer else data
    start = 0
    while True:
        end = buffer.find(b"\r\n\r\n", start)
        if end < 0:
            break
        head = buffer[start : end + 4]
        start = end + 4
        if self.closing or not self.sent:
            self.fail(errors.ProtocolError("unexpected bytes after the response", target=self.run.target))
            return
        self.parser = self._new_head_parser()
        try:
            self.parser.feed_data(head)
        except httptools.HttpParserError as exc:
            context = exc.__context__
            error = context if isinstance(context, errors.AiotcpError) else None
            self.fail(error or errors.ProtocolError(f"malformed response: {exc}", target=self.run.target))
            return
        if self.ended:
            return
    self.buffer = buffer[start:]
    if len(self.buffer) > _MAX_HEAD:
        self.fail(errors.TooLarge(f"response head larger than {_MAX_HEAD} bytes", target=self.run.target))
        return
    if self.closing:
        if not self.sent:
            self.closing_since = self.now
        return
    self.pump()


def _head_on_headers_complete(self: Any) -> None:
    parser = self.parser
    status = parser.get_status_code()
    if status < 200:
        if status == 101:
            raise errors.ProtocolError("unexpected 101 Switching Protocols: no upgrade was requested")
        return  # an interim response: the final one follows
    if self.ended:
        return
    self.complete(status)
    if not self._keep_alive(parser.get_http_version()):
        self.closing = True


def _head_on_message_complete(self: Any) -> None:
    pass  # the head alone is the response


class _HeadConn(_HeadMixin, _Conn):
    __slots__ = ("buffer", "tokens")

    def __init__(self, run: _Run, slot: int) -> None:
        super().__init__(run, slot)
        self.buffer = b""
        self.tokens = set()

    data_received = _head_data_received
    on_headers_complete = _head_on_headers_complete
    on_message_complete = _head_on_message_complete


class _RateHeadConn(_HeadMixin, _RateConn):
    __slots__ = ("buffer", "tokens")

    def __init__(self, run: _Run, slot: int) -> None:
        super().__init__(run, slot)
        self.buffer = b""
        self.tokens = set()

    data_received = _head_data_received
    on_headers_complete = _head_on_headers_complete
    on_message_complete = _head_on_message_complete


async def run_httptools(plan: WorkerPlan, emit: Emit, should_stop: ShouldStop) -> WorkerResult:
    """Run ``plan`` with the httptools engine on the running asyncio loop."""
    run = _Run(plan, emit, should_stop)
    with contextlib.suppress(asyncio.CancelledError):
        return await run.main()
    return run.result(loop_name())  # pragma: no cover - cancelled from outside
