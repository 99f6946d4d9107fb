"""Fan-out probing: one record per target, bounded memory, whatever the length of the list.

Theory of operation
-------------------
``probe_many`` is a pipeline of three stages joined by bounded queues, so memory grows with ``concurrency``
and never with the number of targets:

1. A *feeder* walks the input lazily (lines, CIDR ranges, port lists) and turns it into numbered
   :class:`Job` s. A line that cannot be parsed becomes a job that already holds its ``invalid_target`` record.
2. ``concurrency`` *workers* take jobs, wait their turn under the global rate limit and the per-host cap, and
   probe: connect, one request with ``Connection: close``, the head and up to ``max_body`` bytes of the body.
   Transient failures are retried with jittered exponential back-off while the per-target deadline allows.
   A failure never escapes a worker: it becomes the record's ``error`` kind.
3. The caller iterates the results, in completion order or, with ``order="input"``, re-ordered through a
   window of at most ``reorder_window`` records (the feeder blocks when the window is full).

Job numbers (``seq``) depend only on the input, so they identify a target across runs: ``--resume`` and
sharding rely on that.
"""

from __future__ import annotations

import html
import ipaddress
import math
import random
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from contextlib import ExitStack, aclosing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .client import Client
from .config import Budget, Limits, Timeouts
from .errors import AiotcpError, InternalError, InvalidTarget, NoResponse
from .http11 import available_backends
from .models import Response
from .targets import Target, TargetSpec, expand_cidr, parse_spec

__all__ = [
    "TRANSIENT_KINDS",
    "as_async_iterator",
    "Job",
    "ProbeOptions",
    "ProbeResult",
    "iter_jobs",
    "probe_jobs",
    "probe_many",
]

#: Kinds worth another try: the network, not the target's answer, may be at fault.
TRANSIENT_KINDS = frozenset({"reset", "disconnected", "connect_timeout", "local"})
# Our own limits (EMFILE, no ephemeral port) are never the target's fault: retried, with back-off, even when
# retries=0, as long as the target's deadline allows.
_LOCAL_EXTRA_ATTEMPTS = 8
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TITLE_LIMIT = 512
_SPACES = re.compile(r"\s+")
_TLS_PORTS = frozenset({443, 8443, 9443, 4443})

Scheme = Literal["http", "https", "auto"]
_Item = TypeVar("_Item")
Order = Literal["completion", "input"]


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """What ``probe_many`` does with each target. See :func:`probe_many` for the meaning of each field."""

    method: str = "GET"
    concurrency: int = 100
    timeout: float = 10.0
    connect_timeout: float | None = None
    rate: float | None = None
    per_host: int | None = None
    retries: int = 0
    backoff: float = 0.25
    follow_redirects: bool = False
    max_redirects: int = 10
    headers: tuple[tuple[str, str], ...] = ()
    max_body: int = 64 * 1024
    order: Order = "completion"
    reorder_window: int | None = None
    scheme: Scheme = "auto"
    ports: tuple[int, ...] = ()
    verify: bool = False
    http: str = "auto"

    def __post_init__(self) -> None:
        if self.method.upper() not in ("GET", "HEAD"):
            raise ValueError(f"method must be GET or HEAD, got {self.method!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency!r}")
        for name in ("timeout", "connect_timeout", "rate", "backoff"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.per_host is not None and self.per_host < 1:
            raise ValueError(f"per_host must be at least 1, got {self.per_host!r}")
        if self.retries < 0 or self.max_body < 0:
            raise ValueError("retries and max_body must be >= 0")
        if self.order not in ("completion", "input"):
            raise ValueError(f"order must be 'completion' or 'input', got {self.order!r}")
        if self.scheme not in ("http", "https", "auto"):
            raise ValueError(f"scheme must be http, https or auto, got {self.scheme!r}")
        if self.reorder_window is not None and self.reorder_window < 1:
            raise ValueError(f"reorder_window must be at least 1, got {self.reorder_window!r}")

    @property
    def window(self) -> int:
        """Records that may wait for an earlier one in ``order="input"``."""
        return self.reorder_window or max(4 * self.concurrency, 256)

    @property
    def backend(self) -> str:
        return available_backends()[0] if self.http == "auto" else self.http


@dataclass(slots=True)
class ProbeResult:
    """One record: what one input target gave. Field order is the JSONL/CSV schema (see the README)."""

    input: str
    line: int | None
    url: str | None = None
    scheme: str | None = None
    host: str | None = None
    ip: str | None = None
    port: int | None = None
    ok: bool = False
    status_code: int | None = None
    reason: str | None = None
    http_version: str | None = None
    content_length: int | None = None
    content_type: str | None = None
    server: str | None = None
    title: str | None = None
    location: str | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    time_ms: float | None = None
    attempts: int = 0
    error: str | None = None
    error_message: str | None = None
    timestamp: str | None = None
    redirects: list[dict[str, Any]] | None = None
    seq: int = field(default=-1, repr=False)  # position in the expanded input; not part of the schema

    def as_dict(self) -> dict[str, Any]:
        """The record as a dict in schema order (``redirects`` only when redirects were followed)."""
        record = {name: getattr(self, name) for name in FIELD_NAMES}
        if self.redirects is not None:
            record["redirects"] = self.redirects
        return record


#: JSONL/CSV field names, in order.
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ProbeResult) if f.name not in ("redirects", "seq"))


@dataclass(slots=True)
class Job:
    """One target to probe, numbered in input order. ``result`` is preset for lines that failed to parse."""

    seq: int
    line: int | None
    text: str
    spec: TargetSpec | None = None
    port: int | None = None
    result: ProbeResult | None = None


InputItem = str | Target
Inputs = Iterable[InputItem] | AsyncIterable[InputItem]


async def as_async_iterator(items: Iterable[_Item] | AsyncIterable[_Item]) -> AsyncGenerator[_Item, None]:
    """Iterate a sync or an async iterable the same way (inputs may be either)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _invalid(seq: int, line: int | None, text: str, exc: InvalidTarget) -> Job:
    result = ProbeResult(input=text, line=line, error=exc.kind, error_message=exc.message, seq=seq)
    return Job(seq, line, text, result=result)


def _jobs_for_line(seq: int, line: int | None, text: str, ports: tuple[int, ...]) -> Iterable[Job]:
    """The jobs of one (non-blank) line: one per address of a range and per port of ``ports``."""
    try:
        expanded = expand_cidr(text)
        texts: Iterable[str] = (text,) if expanded is None else expanded
        for host_text in texts:
            spec = parse_spec(host_text)
            if spec.port is None and spec.scheme is None and ports:
                for port in ports:
                    yield Job(seq, line, text, spec, port)
                    seq += 1
            else:
                yield Job(seq, line, text, spec, spec.port)
                seq += 1
    except InvalidTarget as exc:
        yield _invalid(seq, line, text, exc)


async def iter_jobs(items: Inputs, *, ports: tuple[int, ...] = ()) -> AsyncGenerator[Job, None]:
    """Number the targets of ``items`` lazily. Strings are lines: blank ones and ``#`` comments are skipped
    but counted, so ``line`` is the 1-based line number in the input."""
    seq = 0
    line = 0
    async with aclosing(as_async_iterator(items)) as lines:
        async for item in lines:
            line += 1
            if isinstance(item, Target):
                yield Job(seq, line, item.url, TargetSpec(item.scheme, item.host, item.port, item.path), item.port)
                seq += 1
                continue
            text = item.strip()
            if not text or text.startswith("#"):
                continue
            for job in _jobs_for_line(seq, line, text, ports):
                seq = job.seq + 1
                yield job


# -- limits ------------------------------------------------------------------------------------------------


class RateLimiter:
    """Starts at most ``rate`` probes per second on an absolute schedule (no burst after a stall)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = anyio.current_time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await anyio.sleep(slot - now)


class HostLimiter:
    """At most ``limit`` probes in flight per host. Holds state only for hosts with a probe in flight.

    A released slot is handed straight to the oldest waiter for that host, so a waiter cannot be overtaken
    and a wake-up cannot be lost (a waiter cancelled after the hand-off passes the slot on).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[str, int] = {}
        self._waiters: dict[str, deque[anyio.Event]] = {}

    def __repr__(self) -> str:
        return f"<HostLimiter limit={self.limit} busy_hosts={len(self._busy)} waiting_hosts={len(self._waiters)}>"

    async def acquire(self, host: str) -> None:
        busy = self._busy.get(host, 0)
        if busy < self.limit:
            self._busy[host] = busy + 1
            return
        event = anyio.Event()
        queue = self._waiters.setdefault(host, deque())
        queue.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release(host)
            else:
                queue.remove(event)
                if not queue and self._waiters.get(host) is queue:
                    del self._waiters[host]
            raise

    def release(self, host: str) -> None:
        queue = self._waiters.get(host)
        if queue:
            event = queue.popleft()
            if not queue:
                del self._waiters[host]
            event.set()  # the slot changes hands; the busy count stays
            return
        busy = self._busy[host] - 1
        if busy:
            self._busy[host] = busy
        else:
            del self._busy[host]


# -- one probe ---------------------------------------------------------------------------------------------


_second_stamp: tuple[int, str] = (0, "")


def _now_iso() -> str:
    """RFC 3339 UTC with milliseconds. The date-and-time part is formatted once per second, not per record."""
    global _second_stamp
    now = time.time()
    second = int(now)
    if _second_stamp[0] != second:
        _second_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_stamp[1]}.{int((now - second) * 1000):03d}Z"


def _title(body: bytes, charset: str | None) -> str | None:
    match = _TITLE.search(body)
    if match is None:
        return None
    raw = match.group(1)[: _TITLE_LIMIT * 4]
    text = _decode(raw, charset)
    text = _SPACES.sub(" ", html.unescape(text)).strip()
    return text[:_TITLE_LIMIT] or None


def _decode(raw: bytes, charset: str | None) -> str:
    """``raw`` in the server's charset, else UTF-8; undecodable bytes become U+FFFD.

    The charset comes from the server: Python knows names that are not text codecs (``rot13``, ``hex``) or
    that fail with ``errors="replace"`` (``idna``, ``punycode``), and none of them may cost us the record.
    """
    if charset is not None:
        try:
            return raw.decode(charset, errors="replace")
        except (LookupError, UnicodeError):
            pass
    return raw.decode("utf-8", errors="replace")


def _int_or_none(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _looks_like_tls_mismatch(exc: AiotcpError) -> bool:
    """An http request answered in TLS (an alert record), or an https handshake answered in plaintext."""
    text = exc.message
    return (exc.kind == "protocol" and "\\x15\\x03" in text) or (
        exc.kind == "tls" and ("WRONG_VERSION_NUMBER" in text or "wrong version number" in text)
    )


class Prober:
    """Runs the probes of one ``probe_many`` call: shared client, limiters and options."""

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        connect = options.connect_timeout or options.timeout
        self.timeouts = Timeouts(
            connect=min(connect, options.timeout),
            read=options.timeout,
            write=options.timeout,
            pool=options.timeout,
            total=options.timeout,
        )
        self.client = Client(
            timeout=self.timeouts,
            # Every probe has its own connection (Connection: close), so the pool only counts sockets.
            limits=Limits(max_connections=options.concurrency, keepalive_expiry=None, max_body_bytes=None),
            verify=options.verify,
            headers=[*options.headers, ("Connection", "close")],
            follow_redirects=options.follow_redirects,
            max_redirects=options.max_redirects,
            http=options.backend,
        )
        self.rate = RateLimiter(options.rate) if options.rate else None
        self.hosts = HostLimiter(options.per_host) if options.per_host else None

    def schemes_for(self, job: Job) -> tuple[str, ...]:
        assert job.spec is not None
        if job.spec.scheme is not None:
            return (job.spec.scheme,)
        if self.options.scheme != "auto":
            return (self.options.scheme,)
        # auto: guess from the port, and switch once if the answer says the guess was wrong.
        return ("https", "http") if job.port in _TLS_PORTS else ("http", "https")

    async def probe(self, job: Job) -> ProbeResult:
        if job.result is not None:
            job.result.timestamp = _now_iso()
            return job.result
        assert job.spec is not None
        options = self.options
        host = job.spec.host
        result = ProbeResult(input=job.text, line=job.line, host=host, port=job.port, seq=job.seq)
        schemes = self.schemes_for(job)
        scheme = schemes[0]
        retries = local_tries = 0
        if self.hosts is not None:
            await self.hosts.acquire(host)
        try:
            # The clock starts when the target's turn comes: waiting for our own limits (a per-host slot, a
            # rate slot) is not the target's time, or a long list would time out targets never contacted.
            if self.rate is not None:
                await self.rate.wait()
            started = time.perf_counter()
            # One budget for the target: every attempt and every wait draws on the same deadline.
            budget = self.timeouts.budget()
            # scheme=auto, http guessed and no answer at all: a TLS server closes so on a plaintext request.
            # https is tried once; if it fails too, the guess and its error stand (and may be retried).
            unanswered: tuple[AiotcpError, Target] | None = None
            tried_https_for_silence = False
            while True:
                result.attempts += 1
                target = job.spec.resolve(default_scheme=scheme, default_port=job.port)
                result.url, result.scheme, result.port = target.url, target.scheme, target.port
                try:
                    await self._exchange(target, result, budget)
                    result.error = result.error_message = None
                    break
                except Exception as exc:
                    if not isinstance(exc, AiotcpError):
                        # A bug met on one target must cost that target's record, not the run (and every
                        # record after it). The record names the exception; it is not retried.
                        internal = InternalError.wrap(exc, target.url)
                        result.error, result.error_message = internal.kind, internal.message
                        break
                    if unanswered is not None:  # https did not answer either: back to the guess, its error
                        exc, target = unanswered
                        unanswered, scheme = None, schemes[0]
                        result.url, result.scheme, result.port = target.url, target.scheme, target.port
                    result.error, result.error_message = exc.kind, exc.message
                    if len(schemes) > 1 and scheme == schemes[0] and _looks_like_tls_mismatch(exc):
                        scheme = schemes[1]  # the answer says which scheme was meant: switch, not a retry
                    elif (
                        schemes == ("http", "https")
                        and scheme == "http"
                        and isinstance(exc, NoResponse)
                        and not tried_https_for_silence
                    ):
                        unanswered, tried_https_for_silence, scheme = (exc, target), True, "https"
                    else:
                        if exc.kind == "local":
                            local_tries += 1
                            if local_tries > _LOCAL_EXTRA_ATTEMPTS:
                                break
                        elif exc.kind not in TRANSIENT_KINDS or retries >= options.retries:
                            break
                        else:
                            retries += 1
                        exponent = min(retries + local_tries - 1, 6)
                        pause = options.backoff * (2**exponent) * random.uniform(0.5, 1.5)
                        if pause >= budget.remaining():
                            break
                        await anyio.sleep(pause)
                if self.rate is not None:
                    await self.rate.wait()
        finally:
            if self.hosts is not None:
                self.hosts.release(host)
        result.ok = result.error is None
        result.time_ms = round((time.perf_counter() - started) * 1000.0, 3)
        result.timestamp = _now_iso()
        if result.ip is None and _is_ip(host):
            result.ip = host
        return result

    async def _exchange(self, target: Target, result: ProbeResult, budget: Budget) -> None:
        response = await self.client._send(self.options.method, target, None, b"", budget, None)
        try:
            body = bytearray()
            if self.options.max_body:
                async for chunk in response.stream():
                    body += chunk
                    if len(body) >= self.options.max_body:
                        break  # enough for a title; closing the response closes the connection
            _fill(result, response, bytes(body[: self.options.max_body]))
        finally:
            await response.aclose()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False  # a name, even one that starts with a digit (1password.com)
    return True


def _fill(result: ProbeResult, response: Response, body: bytes) -> None:
    headers = response.headers
    result.url = response.url
    result.ip = response.peer[0] if response.peer else None
    result.status_code = response.status_code
    result.reason = response.reason
    result.http_version = response.http_version
    result.content_length = _int_or_none(headers.get("content-length"))
    result.content_type = headers.get("content-type")
    result.server = headers.get("server")
    result.location = headers.get("location")
    timings = response.timings
    first = response.history[0].timings if response.history else timings
    result.connect_ms = first.connect_ms
    result.tls_ms = first.tls_ms
    result.ttfb_ms = first.ttfb_ms
    if "html" in (result.content_type or "text/html"):
        result.title = _title(body, response.charset)
    if response.history:
        result.redirects = [
            {"url": hop.url, "status_code": hop.status_code, "location": hop.headers.get("location")}
            for hop in response.history
        ]
        result.scheme = response.url.partition(":")[0]


# -- the pipeline ------------------------------------------------------------------------------------------


async def probe_many(
    targets: Inputs,
    options: ProbeOptions | None = None,
    *,
    skip: Callable[[int], bool] | None = None,
    **option_values: Any,
) -> AsyncGenerator[ProbeResult, None]:
    """Probe every target of ``targets``; yield one :class:`ProbeResult` per target, never raising for one.

    ``targets``: an iterable or async iterable of lines (``host``, ``host:port``, URL, ``[v6]:port``, CIDR
    range; blank lines and ``#`` comments skipped) or :class:`~aiotcp.Target` objects.

    Options, as a :class:`ProbeOptions` or as keywords: ``method`` GET|HEAD, ``concurrency`` probes in
    flight, ``timeout`` the total deadline per target (retries included; it starts when the target's turn
    comes, after any wait for a ``rate`` or ``per_host`` slot), ``connect_timeout``, ``rate`` probes
    started per second (global), ``per_host`` probes in flight per host, ``retries`` for the transient kinds
    (``reset``, ``disconnected``, ``connect_timeout``, ``local``) with jittered exponential ``backoff``,
    ``follow_redirects``, ``headers``, ``max_body`` bytes read for the title, ``order`` ``completion`` or
    ``input``, ``scheme`` http|https|auto, ``ports`` for lines that give no port, ``verify`` TLS
    certificates (off by default: a prober wants to see the service, not judge its certificate).

    ``skip(seq)``: jobs for which it returns True are not probed and yield nothing (``--resume`` uses it).

    Raises ``ValueError`` for bad options, before anything is probed. Cancelling the iteration, or leaving it
    early with ``aclose()``, stops every probe and closes every socket. Leave early only through ``aclose()``
    in the iterating task (``async with contextlib.aclosing(probe_many(...)) as results:``): a generator
    left to the garbage collector is closed from another task, where its task group cannot be exited.
    """
    if options is not None and option_values:
        raise ValueError("pass options as a ProbeOptions or as keywords, not both")
    opts = options or ProbeOptions(**option_values)
    # Both generators are closed here, in this task, when the caller leaves early: left to the garbage
    # collector, probe_jobs would be closed from another task and its task group could not exit.
    jobs = iter_jobs(targets, ports=opts.ports)
    async with aclosing(jobs), aclosing(probe_jobs(jobs, opts, skip=skip)) as results:
        async for result in results:
            yield result


async def probe_jobs(
    jobs: AsyncIterable[Job] | Iterable[Job],
    options: ProbeOptions,
    *,
    skip: Callable[[int], bool] | None = None,
) -> AsyncGenerator[ProbeResult, None]:
    """Probe already numbered jobs (see :func:`iter_jobs`): the engine under :func:`probe_many`, for callers
    that number the input themselves and probe parts of it elsewhere (sharding, Dask workers)."""
    opts = options
    prober = Prober(opts)
    # Jobs travel with their dispatch number: contiguous even when `skip` leaves holes in `seq`, so the
    # re-ordering stage knows exactly which record comes next.
    send_jobs, receive_jobs = anyio.create_memory_object_stream[tuple[int, Job]](opts.concurrency)
    send_results, receive_results = anyio.create_memory_object_stream[tuple[int, ProbeResult]](opts.concurrency)
    window = anyio.Semaphore(opts.window) if opts.order == "input" else None

    async def feed() -> None:
        with send_jobs:
            async with aclosing(as_async_iterator(jobs)) as numbered:
                index = 0
                async for job in numbered:
                    if skip is not None and skip(job.seq):
                        continue
                    if window is not None:
                        await window.acquire()
                    await _put(send_jobs, (index, job))
                    index += 1

    async def work(results: MemoryObjectSendStream[tuple[int, ProbeResult]]) -> None:
        with results:  # the last worker to finish ends the results stream
            while (item := await _take(receive_jobs)) is not None:
                index, job = item
                await _put(results, (index, await prober.probe(job)))

    with ExitStack() as streams:
        # Every stream is closed here too: a task cancelled before its first step never closes its own.
        for stream in (send_jobs, receive_jobs, send_results, receive_results):
            streams.enter_context(stream)
        clones = [streams.enter_context(send_results.clone()) for _ in range(opts.concurrency)]
        send_results.close()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(feed)
                for clone in clones:
                    group.start_soon(work, clone)
                try:
                    if window is None:
                        while (done := await _take(receive_results)) is not None:
                            yield done[1]
                    else:
                        async with aclosing(_in_order(receive_results, window)) as ordered:
                            async for result in ordered:
                                yield result
                except GeneratorExit:
                    # aclose(): leave the group normally once the workers have stopped. Left to propagate,
                    # GeneratorExit would reach the caller wrapped in an exception group.
                    return
                finally:
                    group.cancel_scope.cancel()
        finally:
            # After the group: every worker has closed its connection. Shielded: a cancelled caller still
            # gets its sockets closed.
            with anyio.CancelScope(shield=True):
                await prober.client.aclose()


# anyio's send() and receive() yield to the event loop on every call, even when the item could pass at once;
# at several hand-offs per target that is a large share of a probe's cost. These wait only when they must.


async def _put(stream: MemoryObjectSendStream[_Item], item: _Item) -> None:
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


async def _take(stream: MemoryObjectReceiveStream[_Item]) -> _Item | None:
    """The next item, or None once the stream has ended."""
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        try:
            return await stream.receive()
        except anyio.EndOfStream:
            return None
    except anyio.EndOfStream:
        return None


async def _in_order(
    results: MemoryObjectReceiveStream[tuple[int, ProbeResult]], window: anyio.Semaphore
) -> AsyncGenerator[ProbeResult, None]:
    """Yield records by dispatch number, holding early ones (at most the window's size) until their turn."""
    held: dict[int, ProbeResult] = {}
    next_index = 0
    while (item := await _take(results)) is not None:
        index, result = item
        held[index] = result
        while next_index in held:
            ready = held.pop(next_index)
            next_index += 1
            window.release()
            yield ready
