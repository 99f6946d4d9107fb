"""The portable engine: anyio streams and h11, on asyncio (uvloop when installed) or trio.

Each slot is a task that connects, then runs the connection with two tasks: a sender that writes a request
whenever fewer than ``pipeline`` are in flight (at its intended time in rate mode) and the budget allows,
and a receiver that parses responses in order with h11 and times them. h11 is told about each request
(``send`` of the request events, output discarded: the bytes on the wire are the pre-encoded request) so it
frames the responses, HEAD included; pipelined responses wait in h11's buffer until the next cycle.

Accounting is :mod:`aiotcp.bench.results`' and goes through the same :class:`RunState` as the httptools
engine, with errors mapped by :mod:`aiotcp.errors` exactly as the library maps them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import h11

from .. import error_mapping, errors
from ..http11 import map_h11_error
from .config import WorkerPlan
from .engines import (
    LATE_S,
    TICK_S,
    Emit,
    RunState,
    ShouldStop,
    backoff,
    open_tunnel_on,
    perf_counter,
    seconds_until,
)
from .histogram import FLUSH_AT
from .results import WorkerResult

__all__ = ["run_h11"]

_READ_SIZE = 65536
_STREAM_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class _Failed(Exception):
    """The connection failed; ``error`` says how."""

    def __init__(self, error: errors.AiotcpError) -> None:
        super().__init__(str(error))
        self.error = error


class _Run(RunState):
    def __init__(self, plan: WorkerPlan, emit: Emit, should_stop: ShouldStop) -> None:
        super().__init__(plan, emit, should_stop)
        self.wake = anyio.Event()  # set when sending is allowed again (a phase began) or the run stopped
        self.stopped_event = anyio.Event()
        # Each endpoint's request as an h11 event, only to tell h11 what was sent: HEAD changes the response
        # framing, and nothing else in the request does (the bytes on the wire are the pre-encoded ones).
        self.request_events = [
            h11.Request(method=b"HEAD" if head else b"GET", target=b"/", headers=[(b"Host", b"bench")])
            for head in plan.heads
        ]
        self.conns: set[_Conn] = set()
        self.unflushed = 0  # responses recorded since the last flush

    def resume(self) -> None:
        self.wake.set()
        self.wake = anyio.Event()

    def flush(self) -> None:
        super().flush()
        self.unflushed = 0

    def activate(self) -> None:
        for conn in list(self.conns):
            if conn.slot >= self.active:
                conn.retire()
        self.resume()

    def halt(self) -> None:
        self.wake.set()
        self.stopped_event.set()

    async def wait_for_sending(self, slot: int | None = None) -> bool:
        """Wait until a slot may connect and send (and ``slot`` is open, on a connection ramp); False once
        the run stopped."""
        while not self.stopped:
            if self.may_connect() and (slot is None or slot < self.active):
                return True
            await self.wake.wait()
        return False

    async def ticker(self) -> None:
        timeout = self.plan.timeout
        while not self.stopped:
            due = perf_counter() + TICK_S
            await anyio.sleep(TICK_S)
            now = perf_counter()
            for conn in list(self.conns):
                if conn.pending and now - conn.pending[0][1] > timeout:
                    conn.fail(errors.DeadlineExceeded(f"no complete response within {timeout:g}s", target=self.target))
            self.tick(now, now - due)


class _Conn:
    """One connection: a sender and a receiver task over one stream and one h11 state machine."""

    def __init__(self, run: _Run, slot: int, stream: anyio.abc.ByteStream) -> None:
        self.run = run
        self.slot = slot
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        #: (intended, sent, endpoint) per request in flight (endpoint 0 for a run of one URL).
        self.pending: deque[tuple[float, float, int]] = deque()
        self.room = anyio.Semaphore(run.plan.pipeline)
        self.has_pending = anyio.Event()
        self.closing = False  # the server will close (or a ramp retired the slot): send nothing more
        self.retired = False  # a connection ramp went below this slot: end once nothing is in flight
        self.eof = False
        self.scope = anyio.CancelScope()
        self.error: errors.AiotcpError | None = None

    def __repr__(self) -> str:
        return f"<h11 _Conn slot={self.slot} in_flight={len(self.pending)} closing={self.closing}>"

    def fail(self, error: errors.AiotcpError) -> None:
        """End the connection with ``error`` (the first failure wins)."""
        if self.error is None:
            self.error = error
        self.scope.cancel()

    def retire(self) -> None:
        """A connection ramp went below this slot: send nothing more, end once nothing is in flight."""
        self.retired = self.closing = True
        self.room.release()  # wake a sender waiting for room, so that it sees ``closing``
        self.has_pending.set()  # wake an idle receiver, so that it ends the connection

    async def run_connection(self) -> errors.AiotcpError | None:
        """Send and receive until the connection ends; the error that ended it, or None for a clean end."""
        with self.scope:
            async with anyio.create_task_group() as group:
                group.start_soon(self._guard, self._sender)
                await self._guard(self._receiver)
                group.cancel_scope.cancel()
        return self.error

    async def _guard(self, part: Callable[[], Awaitable[None]]) -> None:
        try:
            await part()
        except _Failed as exc:
            self.fail(exc.error)

    async def _sender(self) -> None:
        run = self.run
        plan = run.plan
        picker = run.picker
        open_loop = plan.open_loop
        while True:
            await self.room.acquire()
            intended = 0.0
            while True:
                if self.closing or not await run.wait_for_sending() or self.closing:
                    return
                if open_loop:
                    intended = run.schedule[self.slot]
                    delay = intended - perf_counter()
                    if delay > 0:
                        await anyio.sleep(delay if delay < math.inf else TICK_S)  # inf: a ramp at rate 0
                        continue  # the phase may have changed while sleeping: look again
                break
            run.take(1)  # never 0 here: wait_for_sending said the budget has room, and nothing awaited since
            now = perf_counter()
            if open_loop:
                run.schedule[self.slot] = intended + run.period if run.rate_ramp is None else run.next_due(self.slot)
                if now - intended > LATE_S:
                    run.late_send(now - intended)
            else:
                intended = now
            if picker is None:
                endpoint, request = 0, plan.request
            else:
                endpoint, request = next(picker.iterator)
            self.pending.append((intended, now, endpoint))
            run.counters.attempts += 1
            self.has_pending.set()
            try:
                await self.stream.send(request)
            except _STREAM_ERRORS as exc:
                raise _Failed(error_mapping.map_stream_error(exc, run.target, phase="write")) from exc

    async def _receiver(self) -> None:
        run = self.run
        conn = self.h11
        counters = run.counters
        by_endpoint = run.by_endpoint
        uncorrected = run.uncorrected.add if run.uncorrected is not None else None
        while True:
            if not self.pending:
                if self.retired:
                    return  # ours to close: nothing in flight
                if self.closing:
                    await self._linger()
                    return
                self.has_pending = anyio.Event()
                await self.has_pending.wait()
                continue
            conn.send(run.request_events[self.pending[0][2]])
            conn.send(h11.EndOfMessage())
            status = await self._response()
            if run.stopped:
                return  # what is left is in_flight
            now = perf_counter()
            intended, sent, endpoint = self.pending.popleft()
            appenders = by_endpoint[endpoint]
            assert appenders is not None  # the run's are all made up front
            appenders[status](int((now - intended) * 1e6))
            if uncorrected is not None:
                uncorrected(int((now - sent) * 1e6))
            counters.requests += 1
            run.unflushed += 1
            if run.unflushed >= FLUSH_AT:
                run.flush()
            run.maybe_done()
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
            else:  # the server will close (or asked us to): no more requests on this connection
                self.closing = True
            self.room.release()

    async def _response(self) -> int:
        """Read one response to its end; its status code. Raises _Failed."""
        run = self.run
        conn = self.h11
        status = 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self.eof:
                    raise _Failed(self._cut_short()) from exc
                raise _Failed(map_h11_error(exc, run.target)) from exc
            if event is h11.NEED_DATA:
                if self.eof:
                    raise _Failed(self._cut_short())
                data = await self._receive()
                run.counters.bytes_read += len(data)
                conn.receive_data(data)  # b"" tells h11 the peer closed: an EOF-delimited body ends
                continue
            if isinstance(event, h11.InformationalResponse):
                # h11 has already classified the status (is_interim()'s job in the httptools engine) and
                # rejected a 101 nobody asked for: RemoteProtocolError above, like any other framing error.
                continue  # interim: the final response follows
            if isinstance(event, h11.Response):
                status = event.status_code
                continue
            if isinstance(event, h11.Data):
                continue
            if isinstance(event, h11.EndOfMessage):
                return status
            # ConnectionClosed (or PAUSED, which needs a finished cycle) before the end of the response.
            raise _Failed(self._cut_short())

    def _cut_short(self) -> errors.AiotcpError:
        return errors.Disconnected(
            "server closed the connection before the response was complete", target=self.run.target
        )

    async def _receive(self) -> bytes:
        try:
            data = await self.stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            data = b""
        except _STREAM_ERRORS as exc:
            raise _Failed(error_mapping.map_stream_error(exc, self.run.target, phase="read")) from exc
        if not data:
            self.eof = True
        return data

    async def _linger(self) -> None:
        # The server said it will close: let it close first (its side keeps TIME_WAIT, not ours), bounded.
        with anyio.move_on_after(self.run.plan.timeout):
            while not self.eof:
                await self._receive()


async def _slot(run: _Run, slot: int) -> None:
    plan = run.plan
    failures = 0
    while await run.wait_for_sending(slot):
        if failures > 1:
            await anyio.sleep(backoff(failures))
            if not run.may_connect():
                continue
        error: errors.AiotcpError | None = None
        stream: anyio.abc.SocketStream | None = None
        with anyio.move_on_after(plan.timeout) as scope:
            try:
                if plan.unix_socket is not None:
                    stream = await anyio.connect_unix(plan.unix_socket)
                else:
                    stream = await anyio.connect_tcp(plan.host, plan.port)
                    if plan.tunnel is not None:
                        try:
                            await open_tunnel_on(plan, stream.send, stream.receive)
                        except BaseException:
                            await anyio.aclose_forcefully(stream)
                            stream = None
                            raise
            except errors.AiotcpError as exc:  # the proxy's tunnel failed
                error = exc.for_target(run.target)
            except (OSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                error = error_mapping.map_connect_error(exc, run.target, phase="tcp")
        if scope.cancelled_caught:
            error = errors.ConnectTimeout(f"no answer to connect (SYN) within {plan.timeout:g}s", target=run.target)
        if stream is None:
            failures += 1
            run.connect_failed(error or errors.ConnectError("connect failed", target=run.target), slot)
            continue
        failures = 0
        run.counters.opened += 1
        conn = _Conn(run, slot, stream)
        run.conns.add(conn)
        try:
            async with stream:
                error = await conn.run_connection()
        finally:
            run.conns.discard(conn)
        if run.stopped:
            return
        _account_end(run, conn, error)


def _account_end(run: _Run, conn: _Conn, error: errors.AiotcpError | None) -> None:
    in_flight = len(conn.pending)
    conn.pending.clear()
    if error is None:
        if not conn.retired:
            run.counters.closed_by_peer += 1
        return
    if in_flight:
        run.fail(error, in_flight)
    if error.kind == "reset":
        run.counters.reset += 1
    elif error.kind == "disconnected":
        run.counters.closed_by_peer += 1


async def run_h11(
    plan: WorkerPlan, emit: Emit, should_stop: ShouldStop, loop: str = "asyncio", start_at: float | None = None
) -> WorkerResult:
    """Run ``plan`` with the h11 engine on the running anyio backend (``loop`` names it in the result), from
    ``start_at`` (seconds since the epoch)."""
    run = _Run(plan, emit, should_stop)
    delay = seconds_until(start_at)
    if delay:
        await anyio.sleep(delay)
    async with anyio.create_task_group() as group:
        run.begin(perf_counter())
        group.start_soon(run.ticker)
        for slot in range(plan.connections):
            group.start_soon(_slot, run, slot)
        await run.stopped_event.wait()
        group.cancel_scope.cancel()
    return run.result(loop)
