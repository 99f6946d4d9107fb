"""The reference probe of one job: every attempt through :class:`aiotcp.Client`, on any anyio backend.

This is the portable path (asyncio or trio, h11 or llhttp) and the one the lean engine (:mod:`.fast`) is held
to: the same options give the same records (tests/test_probe_lean.py compares them on the hostile corpus and
a mixed list). The lean engine also hands it what it does not do itself: attempts over https, at a host name,
with redirects followed or through a proxy (:meth:`Prober.exchange`), the favicon
(:meth:`Prober.fetch_favicon`), and the whole job of a name probed at all its addresses
(:meth:`Prober.probe_records`).
"""

from __future__ import annotations

import math
import random
import time
from contextlib import suppress
from dataclasses import replace
from urllib.parse import urljoin

import anyio

from ..budget import Budget
from ..client import Client
from ..config import Limits, Timeouts
from ..cookies import Cookies
from ..errors import AiotcpError, DNSError, InvalidTarget
from ..resolution import Resolution
from ..targets import Target, parse_target
from .attempts import JobRecords, TargetAttempts
from .jobs import Job
from .limits import HostLimiter, RateLimiter
from .options import ProbeOptions
from .records import ProbeResult, favicon_hash, favicon_link, fill_from_response, fill_tls, is_ip, now_iso
from .retry import Stop, Switch

__all__ = ["FAVICON_MAX", "Prober"]

#: Bytes of a favicon read at most (a larger one gets no hash: it would not be the one Shodan saw).
FAVICON_MAX = 1024 * 1024


def _identity_unless_given(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """A prober asks for bodies as they are (``identity``) unless ``-H`` says otherwise; it decodes what a server
    compresses anyway."""
    if any(name.lower() == "accept-encoding" for name, _ in headers):
        return []
    return [("Accept-Encoding", "identity")]


class _NoCookies(Cookies):
    """A jar that keeps nothing: a probe's answer must not depend on what another target set (cookies are not
    kept apart by port), and the lean engine sends none either."""

    __slots__ = ()

    def extract(self, url: str, set_cookie: list[str]) -> None:
        pass


class Prober:
    """Runs the probes of one run: the shared client, limiters and options."""

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        self.timeouts = Timeouts.one_deadline(options.timeout, options.connect_timeout)
        #: The response caps both engines parse with: every probe has its own connection (Connection: close),
        #: so the pool only counts sockets. A body is read up to max_body (decoded, when a server compresses
        #: though asked not to): no cap of the client's, the bomb guard's included, is needed to bound it.
        self.limits = Limits(
            max_connections=options.concurrency,
            keepalive_expiry=None,
            max_body_bytes=None,
            max_decompression_ratio=None,
        )
        self.client = Client(
            timeout=self.timeouts,
            limits=self.limits,
            verify=(options.ca or True) if options.verify else False,
            headers=[*_identity_unless_given(options.headers), *options.headers, ("Connection", "close")],
            follow_redirects=options.follow_redirects,
            max_redirects=options.max_redirects,
            http=options.backend,
            resolver=options.resolver,
            resolvers=options.resolvers or None,
            proxy=options.proxy,
        )
        self.client.cookies = _NoCookies()
        self.rate = RateLimiter(options.rate) if options.rate else None
        self.hosts = HostLimiter(options.per_host) if options.per_host else None

    def __repr__(self) -> str:
        return f"<Prober {self.client!r}>"

    async def probe_records(self, job: Job) -> list[ProbeResult]:
        """The records of one job, in order (see :class:`~aiotcp.probe.attempts.JobRecords`): one per path and,
        with ``all_ips``, per address of a name (resolved first, in happy-eyeballs order, each address probed on
        its own with the name's facts; a name that does not resolve gets the usual records, which report the
        failure). Never raises for the target."""
        if job.result is not None:  # a line that is no target: one record, whatever the paths
            job.result.timestamp = now_iso()
            return [job.result]
        assert job.spec is not None
        resolution = None
        if self.options.all_ips and not is_ip(job.spec.host):
            resolution = await self._resolve(job.spec.host)
        parts = JobRecords(
            job,
            self.options,
            addresses=resolution.addresses() if resolution is not None else None,
            resolution=resolution,
        )
        while (attempts := parts.next()) is not None:
            parts.done(await self.probe(attempts))
        return parts.records

    async def _resolve(self, host: str) -> Resolution | None:
        """The name's addresses and facts, within the connect timeout; None when it does not resolve (then the
        usual probe reports why: a negative answer comes from the cache, a transient one is asked again, with
        the retries it is entitled to)."""
        timeouts = self.timeouts
        started = time.perf_counter()
        resolution: Resolution | None = None
        with anyio.move_on_after(timeouts.connect or timeouts.total or math.inf):
            with suppress(DNSError):
                resolution = await self.client.resolver.resolve(host)
        if resolution is None:
            return None
        return replace(resolution, dns_ms=round((time.perf_counter() - started) * 1000.0, 3))

    async def probe(self, attempts: TargetAttempts) -> ProbeResult:
        """Probe one record of a job (its attempts, retries and scheme switches); its record (never raises for
        the target)."""
        options = self.options
        host = attempts.result.host
        assert host is not None
        if self.hosts is not None:
            await self.hosts.acquire(host)
        try:
            # The clock starts when the target's turn comes: waiting for our own limits (a per-host slot, a
            # rate slot) is not the target's time, or a long list would time out targets never contacted.
            if self.rate is not None:
                await self.rate.wait()
            attempts.started = time.perf_counter()
            # One budget for the target: every attempt and every wait draws on the same deadline.
            budget = Budget.start(self.timeouts)
            while True:
                attempts.begin()
                try:
                    if await self.exchange(attempts, budget) is None:
                        attempts.succeeded()
                        break
                    # else the answer says a plaintext request reached a TLS port: the switched attempt next
                except Exception as exc:
                    decision = attempts.failed(
                        exc,
                        retries=options.retries,
                        backoff=options.backoff,
                        remaining=budget.remaining(),
                        jitter=random.uniform(0.5, 1.5),
                    )
                    if isinstance(decision, Stop):
                        break
                    if not isinstance(decision, Switch):
                        await anyio.sleep(decision.pause)
                if self.rate is not None:
                    await self.rate.wait()
        finally:
            if self.hosts is not None:
                self.hosts.release(host)
        return attempts.finish()

    async def exchange(self, attempts: TargetAttempts, budget: Budget) -> Switch | None:
        """One attempt at ``attempts.target`` (after :meth:`TargetAttempts.begin`): request it, read the head and
        up to ``max_body`` bytes of the body (decoded), fill the record -- unless the answer says the guessed
        scheme was wrong: then the :class:`Switch` made (the record is left to the next attempt).

        Raises the attempt's :class:`~aiotcp.errors.AiotcpError`; anything else is a bug (the caller records
        it as ``internal``).
        """
        options = self.options
        target, result = attempts.target, attempts.result
        assert target is not None
        response = await self.client.send(options.method, target, budget=budget, address=attempts.address)
        try:
            body = bytearray()
            if options.max_body:
                async for chunk in response.stream():
                    body += chunk
                    if len(body) >= options.max_body:
                        break  # enough for a title; closing the response closes the connection
            content = bytes(body[: options.max_body])
            switch = attempts.answered(response.status_code, content)
            if switch is not None:
                return switch
            fill_from_response(result, response, content, fingerprints=options.facts, keep_body=options.keep_body)
            if options.facts and response.tls is not None:
                fill_tls(result, response.tls, _host_of(response.url), options.ca)
        finally:
            await response.aclose()
        if options.favicon and options.method.upper() == "GET":
            await self.fetch_favicon(result, response.url, response.headers.get("content-type"), content, budget)
        return None

    async def fetch_favicon(
        self, result: ProbeResult, page_url: str, content_type: str | None, body: bytes, budget: Budget
    ) -> None:
        """``favicon_mmh3`` and ``favicon_url`` of the page at ``page_url`` (its ``body`` read so far): from the
        page's ``<link rel=icon>`` (on the same host), else ``/favicon.ico``; the first that answers 2xx with a
        body of at most :data:`FAVICON_MAX` bytes, within ``budget``. A favicon that cannot be had leaves both
        null: it never costs the record (never raises for the target)."""
        base = parse_target(page_url)
        candidates: list[Target] = []
        link = favicon_link(body) if "html" in (content_type or "text/html") else None
        if link is not None and not link.startswith("data:"):
            with suppress(InvalidTarget, ValueError):
                linked = parse_target(urljoin(page_url, link))
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
