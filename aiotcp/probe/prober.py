"""The reference probe of one target: every attempt through :class:`aiotcp.Client`, on any anyio backend.

This is the portable path (asyncio or trio, h11 or llhttp) and the one the lean engine (:mod:`.fast`) is held
to: the same options give the same records (tests/test_probe_lean.py compares them on the hostile corpus and
a mixed list). The lean engine also hands it the attempts it does not do itself (https, names, redirects):
:meth:`Prober.exchange`.
"""

from __future__ import annotations

import random
import time

import anyio

from ..budget import Budget
from ..client import Client
from ..config import Limits, Timeouts
from ..targets import Target
from .attempts import TargetAttempts
from .jobs import Job
from .limits import HostLimiter, RateLimiter
from .options import ProbeOptions
from .records import ProbeResult, fill_from_response, now_iso
from .retry import Stop, Switch

__all__ = ["Prober"]


class Prober:
    """Runs the probes of one run: the shared client, limiters and options."""

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        self.timeouts = Timeouts.one_deadline(options.timeout, options.connect_timeout)
        #: The response caps both engines parse with: every probe has its own connection (Connection:
        #: close), so the pool only counts sockets, and the body is cut at ``max_body`` by the prober.
        self.limits = Limits(max_connections=options.concurrency, keepalive_expiry=None, max_body_bytes=None)
        self.client = Client(
            timeout=self.timeouts,
            limits=self.limits,
            verify=options.verify,
            headers=[*options.headers, ("Connection", "close")],
            follow_redirects=options.follow_redirects,
            max_redirects=options.max_redirects,
            http=options.backend,
        )
        self.rate = RateLimiter(options.rate) if options.rate else None
        self.hosts = HostLimiter(options.per_host) if options.per_host else None

    def __repr__(self) -> str:
        return f"<Prober {self.client!r}>"

    async def probe(self, job: Job) -> ProbeResult:
        """Probe one job; its record (never raises for the target)."""
        if job.result is not None:
            job.result.timestamp = now_iso()
            return job.result
        assert job.spec is not None
        options = self.options
        host = job.spec.host
        attempts = TargetAttempts(job, options.scheme)
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
                target = attempts.begin()
                try:
                    await self.exchange(target, attempts.result, budget)
                    attempts.succeeded()
                    break
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

    async def exchange(self, target: Target, result: ProbeResult, budget: Budget) -> None:
        """One attempt: request ``target``, read the head and up to ``max_body`` bytes, fill ``result``.

        Raises the attempt's :class:`~aiotcp.errors.AiotcpError`; anything else is a bug (the caller records
        it as ``internal``).
        """
        response = await self.client.send(self.options.method, target, budget=budget)
        try:
            body = bytearray()
            if self.options.max_body:
                async for chunk in response.stream():
                    body += chunk
                    if len(body) >= self.options.max_body:
                        break  # enough for a title; closing the response closes the connection
            fill_from_response(result, response, bytes(body[: self.options.max_body]))
        finally:
            await response.aclose()
