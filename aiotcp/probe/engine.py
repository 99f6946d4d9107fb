"""Fan-out probing: one record per target, bounded memory, whatever the length of the list.

Theory of operation
-------------------
``probe_many`` is a pipeline of three stages joined by bounded queues, so memory grows with ``concurrency``
and never with the number of targets:

1. A *feeder* walks the input lazily (lines, CIDR ranges, port lists) and turns it into numbered
   :class:`Job` s. A line that cannot be parsed becomes a job that already holds its ``invalid_target`` record.
2. ``concurrency`` *workers* take jobs, wait their turn under the global rate limit and the per-host cap, and
   probe: connect, one request with ``Connection: close``, the head and up to ``max_body`` bytes of the body.
   Transient failures are retried with jittered exponential back-off while the per-target deadline allows,
   and a guessed scheme is switched when the answer shows the other was meant (:mod:`.retry` decides).
   A failure never escapes a worker: it becomes the record's ``error`` kind.
3. The caller iterates the results, in completion order or, with ``order="input"``, re-ordered through a
   window of at most ``reorder_window`` records (the feeder blocks when the window is full).

Job numbers (``seq``, :mod:`.jobs`) depend only on the input, so they identify a target across runs:
``--resume`` and sharding rely on that.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from contextlib import ExitStack, aclosing, suppress
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urljoin

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..budget import Budget
from ..client import Client
from ..config import Limits, Timeouts
from ..errors import AiotcpError, ConnectError, DNSError, InternalError, InvalidTarget, Skipped
from ..http11 import available_backends
from ..proxy import parse_proxy
from ..resolution import Nameserver, Resolution, ResolverConfig, parse_nameservers
from ..response import Response
from ..targets import Target, parse_target
from ..tlsfacts import verify_error_from_message
from .jobs import Inputs, Job, as_async_iterator, iter_jobs
from .limits import HostLimiter, RateLimiter
from .records import (
    ProbeResult,
    favicon_hash,
    favicon_link,
    fill_dns,
    fill_dns_error,
    fill_fingerprints,
    fill_from_response,
    fill_tls,
    is_ip,
    now_iso,
)
from .retry import Attempts, Stop, Switch, decide, decide_answer

__all__ = ["WINDOW_STALL_S", "ProbeOptions", "Prober", "probe_jobs", "probe_many"]

_TLS_PORTS = frozenset({443, 8443, 9443, 4443})
#: The error kinds that count towards ``max_host_errors``: the host did not answer as a server does.
NETWORK_KINDS = frozenset(
    {
        "dns",
        "refused",
        "unreachable",
        "connect_timeout",
        "tls",
        "reset",
        "disconnected",
        "read_timeout",
        "write_timeout",
        "timeout",
        "error",
    }
)
#: Bytes of a favicon read at most (a larger one gets no hash: it would not be the one Shodan saw).
FAVICON_MAX = 1024 * 1024
#: With ``order="input"``: how long the next target may wait for room in the re-ordering window before
#: ``on_window_stall`` is told.
WINDOW_STALL_S = 1.0

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
    resolver: ResolverConfig | str = "auto"
    resolvers: tuple[Nameserver, ...] = ()
    all_ips: bool = False
    proxy: str | None = None
    paths: tuple[str, ...] = ()
    max_host_errors: int | None = None
    favicon: bool = False
    facts: bool = True
    ca: str | None = None
    keep_body: bool = False

    def __post_init__(self) -> None:
        if self.paths:
            try:
                object.__setattr__(self, "paths", tuple(_DUMMY.with_path(path).path for path in self.paths))
            except InvalidTarget as exc:
                raise ValueError(exc.message) from None
        if self.max_host_errors is not None and self.max_host_errors < 1:
            raise ValueError(f"max_host_errors must be at least 1, got {self.max_host_errors!r}")
        if self.resolvers:
            object.__setattr__(self, "resolvers", parse_nameservers(self.resolvers))
        if not isinstance(self.resolver, ResolverConfig) and self.resolver not in ("auto", "system"):
            raise ValueError(f'resolver must be "auto", "system" or a ResolverConfig, got {self.resolver!r}')
        if self.resolver == "system" and self.resolvers:
            raise ValueError('resolvers need the async resolver, not resolver="system"')
        if self.proxy is not None:
            parse_proxy(self.proxy)  # InvalidTarget (a ValueError) names what is wrong
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


def _identity_unless_given(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """A prober asks for bodies as they are (``identity``) unless ``-H`` says otherwise; it decodes what a server
    compresses anyway."""
    if any(name.lower() == "accept-encoding" for name, _ in headers):
        return []
    return [("Accept-Encoding", "identity")]


_DUMMY = Target("http", "127.0.0.1", 80)


# -- one probe ---------------------------------------------------------------------------------------------


class Prober:
    """Runs the probes of one ``probe_many`` call: shared client, limiters and options."""

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        self.timeouts = Timeouts.one_deadline(options.timeout, options.connect_timeout)
        self.client = Client(
            timeout=self.timeouts,
            # Every probe has its own connection (Connection: close), so the pool only counts sockets. A body is
            # read up to max_body (decoded, when a server compresses though asked not to): no cap of the
            # client's, the bomb guard's included, is needed to bound it.
            limits=Limits(
                max_connections=options.concurrency,
                keepalive_expiry=None,
                max_body_bytes=None,
                max_decompression_ratio=None,
            ),
            verify=(options.ca or True) if options.verify else False,
            headers=[*_identity_unless_given(options.headers), *options.headers, ("Connection", "close")],
            follow_redirects=options.follow_redirects,
            max_redirects=options.max_redirects,
            http=options.backend,
            resolver=options.resolver,
            resolvers=options.resolvers or None,
            proxy=options.proxy,
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

    async def probe_records(self, job: Job) -> list[ProbeResult]:
        """The records of one job (see :meth:`_records`); when there are several, each knows their number, so
        that ``--resume`` counts the job done only once all of them are journaled."""
        records = await self._records(job)
        if len(records) > 1:
            for record in records:
                record.parts = len(records)
        return records

    async def _records(self, job: Job) -> list[ProbeResult]:
        """The records of one job: one per path (``paths``, else the target's own), and with ``all_ips`` one
        per address of a name and path (in happy-eyeballs order, each probed on its own with the name's facts);
        a name that does not resolve gets one per path. After ``max_host_errors`` network errors among them,
        the rest are ``skipped`` records."""
        if job.result is not None:  # a line that is no target: one record, whatever the paths
            return [await self.probe(job)]
        paths: tuple[str | None, ...] = self.options.paths or (None,)
        if not self.options.all_ips or job.spec is None or is_ip(job.spec.host):
            if len(paths) == 1:
                return [await self.probe(job, path=paths[0])]
            errors = [0]
            return [await self.probe(job, path=path, errors=errors) for path in paths]
        timeouts = self.timeouts
        started = time.perf_counter()
        resolution: Resolution | None = None
        with anyio.move_on_after(timeouts.connect or timeouts.total or math.inf):
            with suppress(DNSError):
                resolution = await self.client.resolver.resolve(job.spec.host)
        if resolution is None:
            # The usual probe reports the failure (a negative answer comes from the cache; a transient one is
            # asked again, with the retries it is entitled to).
            return [await self.probe(job)]
        resolution = replace(resolution, dns_ms=round((time.perf_counter() - started) * 1000.0, 3))
        errors = [0]
        return [
            await self.probe(job, address=address, resolution=resolution, path=path, errors=errors)
            for address in resolution.addresses()
            for path in paths
        ]

    async def probe(
        self,
        job: Job,
        *,
        address: str | None = None,
        resolution: Resolution | None = None,
        path: str | None = None,
        errors: list[int] | None = None,
    ) -> ProbeResult:
        """One record for ``job``; ``address`` connects there instead of resolving (``resolution`` holds the
        name's facts for the record); ``path`` asks for that path instead of the target's. ``errors`` counts the
        network errors of the job's records so far: once it reaches ``max_host_errors`` the record is
        ``skipped``, without a probe."""
        if job.result is not None:
            job.result.timestamp = now_iso()
            return job.result
        assert job.spec is not None
        options = self.options
        host = job.spec.host
        result = ProbeResult(input=job.text, line=job.line, host=host, port=job.port, seq=job.seq)
        limit = options.max_host_errors
        if errors is not None and limit is not None and errors[0] >= limit:
            skipped = Skipped(f"not probed: {host} gave {errors[0]} network errors (max_host_errors {limit})")
            target = job.spec.resolve(default_scheme=self.schemes_for(job)[0], default_port=job.port)
            target = target.with_path(path) if path is not None else target
            result.url, result.scheme, result.port, result.path = target.url, target.scheme, target.port, target.path
            result.error, result.error_message = skipped.kind, skipped.message
            result.timestamp = now_iso()
            result.ip = address or (host if is_ip(host) else None)
            return result
        schemes = self.schemes_for(job)
        attempts = Attempts(schemes, schemes[0])
        if self.hosts is not None:
            await self.hosts.acquire(host)
        try:
            # The clock starts when the target's turn comes: waiting for our own limits (a per-host slot, a
            # rate slot) is not the target's time, or a long list would time out targets never contacted.
            if self.rate is not None:
                await self.rate.wait()
            started = time.perf_counter()
            # One budget for the target: every attempt and every wait draws on the same deadline.
            budget = Budget.start(self.timeouts)
            # The http guess that got no byte back, while https is tried for it (see retry.decide).
            silent_guess: tuple[AiotcpError, Target] | None = None
            while True:
                result.attempts += 1
                target = job.spec.resolve(default_scheme=attempts.scheme, default_port=job.port)
                if path is not None:
                    target = target.with_path(path)
                result.url, result.scheme, result.port, result.path = (
                    target.url,
                    target.scheme,
                    target.port,
                    target.path,
                )
                try:
                    switch = await self._exchange(target, result, budget, attempts, address)
                    if switch is None:
                        result.error = result.error_message = None
                        result.dns_rcode = None
                        break
                    attempts = switch.attempts  # the answer says a plaintext request reached a TLS port
                except Exception as exc:
                    if not isinstance(exc, AiotcpError):
                        # A bug met on one target must cost that target's record, not the run (and every
                        # record after it). The record names the exception; it is not retried.
                        internal = InternalError.wrap(exc, target.url)
                        result.error, result.error_message = internal.kind, internal.message
                        break
                    # `error` outlives this block: deleted below, or it and its traceback (which holds this
                    # frame) would make a reference cycle per failed attempt, left to the garbage collector.
                    error: AiotcpError = exc
                    try:
                        if silent_guess is not None:  # https did not answer either: back to the guess, its error
                            (error, target), silent_guess = silent_guess, None
                            attempts = replace(attempts, scheme=schemes[0])
                            result.url, result.scheme, result.port = target.url, target.scheme, target.port
                        result.error, result.error_message = error.kind, error.message
                        if isinstance(error, ConnectError):
                            fill_dns_error(result, error)
                            if error.kind == "tls":  # with verify on, a refused certificate says why
                                result.cert_verify_error = verify_error_from_message(error.message)
                        decision = decide(
                            error,
                            attempts,
                            retries=options.retries,
                            backoff=options.backoff,
                            remaining=budget.remaining(),
                            jitter=random.uniform(0.5, 1.5),
                        )
                        if isinstance(decision, Stop):
                            break
                        attempts = decision.attempts
                        if isinstance(decision, Switch):
                            if decision.silence:  # kept without its traceback, for the same reason
                                silent_guess = (error.with_traceback(None), target)
                        else:
                            await anyio.sleep(decision.pause)
                    finally:
                        del error
                if self.rate is not None:
                    await self.rate.wait()
        finally:
            if self.hosts is not None:
                self.hosts.release(host)
        result.ok = result.error is None
        if errors is not None and result.error in NETWORK_KINDS:
            errors[0] += 1
        result.time_ms = round((time.perf_counter() - started) * 1000.0, 3)
        result.timestamp = now_iso()
        if result.ip is None and is_ip(host):
            result.ip = host
        if resolution is not None:
            fill_dns(result, resolution)
            result.ip = result.ip or address
        return result

    async def _exchange(
        self, target: Target, result: ProbeResult, budget: Budget, attempts: Attempts, address: str | None
    ) -> Switch | None:
        """One request; the response fills ``result``, unless it says the guessed scheme was wrong: then the
        :class:`Switch` to make (and ``result`` is left to the next attempt)."""
        response = await self.client.send(self.options.method, target, budget=budget, address=address)
        try:
            body = bytearray()
            if self.options.max_body:
                async for chunk in response.stream():
                    body += chunk
                    if len(body) >= self.options.max_body:
                        break  # enough for a title; closing the response closes the connection
            content = bytes(body[: self.options.max_body])
            decision = decide_answer(response.status_code, content, attempts)
            if isinstance(decision, Switch):
                return decision
            fill_from_response(result, response, content)
            options = self.options
            if options.facts:
                fill_fingerprints(result, response.headers.raw, content)
                if response.tls is not None:
                    fill_tls(result, response.tls, _host_of(response.url), options.ca)
            if options.keep_body:
                result.body = content
        finally:
            await response.aclose()
        if self.options.favicon and self.options.method == "GET":
            await self._favicon(result, response, content, budget)
        return None

    async def _favicon(self, result: ProbeResult, page: Response, body: bytes, budget: Budget) -> None:
        """``favicon_mmh3`` and ``favicon_url``: from the page's ``<link rel=icon>`` (on the same host), else
        ``/favicon.ico``; the first that answers 2xx with a body of at most :data:`FAVICON_MAX` bytes. A
        favicon that cannot be had leaves both null: it never costs the record."""
        base = parse_target(page.url)
        candidates: list[Target] = []
        link = favicon_link(body) if "html" in (page.headers.get("content-type") or "text/html") else None
        if link is not None and not link.startswith("data:"):
            with suppress(InvalidTarget, ValueError):
                linked = parse_target(urljoin(page.url, link))
                if linked.host == base.host:
                    candidates.append(linked)
        default = base.with_path("/favicon.ico")
        if default not in candidates:
            candidates.append(default)
        for target in candidates:
            try:
                response = await self.client.send("GET", target, budget=budget)
                try:
                    if not 200 <= response.status_code < 300:
                        continue
                    data = bytearray()
                    async for chunk in response.stream():
                        data += chunk
                        if len(data) > FAVICON_MAX:
                            break
                finally:
                    await response.aclose()
            except AiotcpError:
                continue
            if data and len(data) <= FAVICON_MAX:
                result.favicon_mmh3 = favicon_hash(bytes(data))
                result.favicon_url = target.url
                return


def _host_of(url: str) -> str:
    """The host of a URL the client built (``scheme://host:port/...``, IPv6 in brackets)."""
    authority = url.partition("://")[2].partition("/")[0]
    if authority.startswith("["):
        return authority[1 : authority.index("]")]
    return authority.rpartition(":")[0] or authority


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
    (``reset``, ``disconnected``, ``connect_timeout``, ``local``, and ``dns`` with ``dns_rcode`` SERVFAIL or
    TIMEOUT, never NXDOMAIN) with jittered exponential ``backoff``, ``follow_redirects``, ``headers``,
    ``max_body`` bytes read for the title, ``order`` ``completion`` or ``input``, ``scheme`` http|https|auto,
    ``ports`` for lines that give no port, ``verify`` TLS certificates (off by default: a prober wants to see
    the service, not judge its certificate), ``resolver`` ``"auto"`` | ``"system"`` | a
    :class:`~aiotcp.resolution.ResolverConfig`, ``resolvers`` (``IP[:PORT]`` to query), ``all_ips`` (one
    record per address of a name, the same input line), ``proxy`` (every probe through it: ``http://``,
    ``socks5://``, ``socks5h://``...; a failure of the proxy's hop is kind ``proxy``).

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
    on_window_stall: Callable[[], None] | None = None,
) -> AsyncGenerator[ProbeResult, None]:
    """Probe already numbered jobs (see :func:`iter_jobs`): the engine under :func:`probe_many`, for callers
    that number the input themselves and probe parts of it elsewhere (sharding, Dask workers).

    ``on_window_stall()`` is called (from the feeding task) whenever, with ``order="input"``, the next target
    has waited :data:`WINDOW_STALL_S` for room in the re-ordering window: one slow target is holding back the
    records after it, and no new probe starts until it ends.
    """
    opts = options
    prober = Prober(opts)
    # Jobs travel with their dispatch number: contiguous even when `skip` leaves holes in `seq`, so the
    # re-ordering stage knows exactly which record comes next.
    send_jobs, receive_jobs = anyio.create_memory_object_stream[tuple[int, Job]](opts.concurrency)
    send_results, receive_results = anyio.create_memory_object_stream[tuple[int, list[ProbeResult]]](opts.concurrency)
    window = anyio.Semaphore(opts.window) if opts.order == "input" else None

    async def feed() -> None:
        with send_jobs:
            async with aclosing(as_async_iterator(jobs)) as numbered:
                index = 0
                async for job in numbered:
                    if skip is not None and skip(job.seq):
                        continue
                    if window is not None:
                        try:
                            window.acquire_nowait()  # no trip through the event loop when there is room
                        except anyio.WouldBlock:
                            await _wait_for_room(window, on_window_stall)
                    await _put(send_jobs, (index, job))
                    index += 1

    async def work(results: MemoryObjectSendStream[tuple[int, list[ProbeResult]]]) -> None:
        with results:  # the last worker to finish ends the results stream
            while (item := await _take(receive_jobs)) is not None:
                index, job = item
                await _put(results, (index, await prober.probe_records(job)))

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
                            for result in done[1]:
                                yield result
                    else:
                        async with aclosing(_in_order(receive_results, window)) as ordered:
                            async for records in ordered:
                                for result in records:
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


async def _wait_for_room(window: anyio.Semaphore, on_stall: Callable[[], None] | None) -> None:
    if on_stall is not None:
        with anyio.move_on_after(WINDOW_STALL_S):
            await window.acquire()
            return
        on_stall()
    await window.acquire()


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
    results: MemoryObjectReceiveStream[tuple[int, list[ProbeResult]]], window: anyio.Semaphore
) -> AsyncGenerator[list[ProbeResult], None]:
    """Yield each job's records by dispatch number, holding early ones (at most the window's size) until
    their turn."""
    held: dict[int, list[ProbeResult]] = {}
    next_index = 0
    while (item := await _take(results)) is not None:
        index, result = item
        held[index] = result
        while next_index in held:
            ready = held.pop(next_index)
            next_index += 1
            window.release()
            yield ready
