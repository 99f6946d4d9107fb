"""One job's records and one target's attempts: the bookkeeping both engines share around
:func:`~aiotcp.probe.retry.decide`.

A job (one numbered target) gives one record per path (``paths``, else the target's own) and, with
``all_ips``, per address of its name: :class:`JobRecords` says which record comes next (a
:class:`TargetAttempts` to run, or a ``skipped`` record once the job's records so far had ``max_host_errors``
network errors) and collects them. For each record an engine does the I/O of each attempt; :class:`TargetAttempts`
says which URL the attempt asks for (:meth:`~TargetAttempts.begin`), what a response that says the guessed
scheme was wrong does (:meth:`~TargetAttempts.answered`), what a failure does to the record and what comes next
(:meth:`~TargetAttempts.failed`, which asks :func:`~aiotcp.probe.retry.decide`), and finishes the record
(:meth:`~TargetAttempts.finish`). Nothing here waits or reads a clock but ``finish``: the engine passes the time
left and the jitter, so the lean engine (callbacks) and the reference one (coroutines) make the same records
from the same events.
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace

from ..errors import AiotcpError, ConnectError, InternalError
from ..resolution import Resolution
from ..targets import Target, TargetSpec
from ..tlsfacts import verify_error_from_message
from .jobs import Job
from .options import ProbeOptions, Scheme
from .records import NETWORK_KINDS, ProbeResult, fill_dns, fill_dns_error, is_ip, now_iso, skip_record
from .retry import Attempts, Decision, Stop, Switch, decide, decide_answer

__all__ = ["TLS_PORTS", "JobRecords", "TargetAttempts", "schemes_for"]

#: Ports where ``scheme="auto"`` guesses https first.
TLS_PORTS = frozenset({443, 8443, 9443, 4443})
_STOP = Stop()


def schemes_for(spec: TargetSpec, port: int | None, scheme: Scheme) -> tuple[str, ...]:
    """The schemes to try for a target: the one it names, else ``scheme``; under ``auto`` a guess from the
    port and then the other one (switched to once if the answer says the guess was wrong)."""
    if spec.scheme is not None:
        return (spec.scheme,)
    if scheme != "auto":
        return (scheme,)
    return ("https", "http") if port in TLS_PORTS else ("http", "https")


@functools.lru_cache(maxsize=8)
def _first(schemes: tuple[str, ...]) -> Attempts:
    """Where every target's attempts start (a frozen value: one per tuple of schemes serves every target)."""
    return Attempts(schemes, schemes[0])


class TargetAttempts:
    """The attempts at one record of a parsed job (``job.spec`` set) and the record they build.

    ``path`` asks for that path instead of the target's; ``address`` connects there instead of resolving the
    name (``all_ips``), and ``resolution`` holds the name's DNS facts for the record. ``result`` is the record;
    ``target`` the URL of the current attempt (after :meth:`begin`).
    """

    __slots__ = (
        "_silent_guess",
        "address",
        "attempts",
        "job",
        "path",
        "resolution",
        "result",
        "schemes",
        "started",
        "target",
    )

    def __init__(
        self,
        job: Job,
        scheme: Scheme,
        *,
        path: str | None = None,
        address: str | None = None,
        resolution: Resolution | None = None,
    ) -> None:
        spec = job.spec
        assert spec is not None
        self.job = job
        self.path = path
        self.address = address
        self.resolution = resolution
        self.result = ProbeResult(input=job.text, line=job.line, host=spec.host, port=job.port, seq=job.seq)
        self.schemes = schemes_for(spec, job.port, scheme)
        self.attempts = _first(self.schemes)
        self.target: Target | None = None
        self.started = 0.0  # time.perf_counter() when the target's turn came (the record's time_ms runs from it)
        # The http guess that got no byte back, while https is tried for it (see retry.decide).
        self._silent_guess: tuple[AiotcpError, Target] | None = None

    def __repr__(self) -> str:
        return f"<TargetAttempts {self.job.text!r} attempts={self.result.attempts} scheme={self.attempts.scheme}>"

    def begin(self) -> Target:
        """Start an attempt: the URL it asks for (also written to the record).

        Raises ``InvalidTarget`` if the job's port cannot go with the scheme (never for a parsed line).
        """
        result = self.result
        result.attempts += 1
        spec = self.job.spec
        assert spec is not None
        target = spec.resolve(default_scheme=self.attempts.scheme, default_port=self.job.port)
        if self.path is not None:
            target = target.with_path(self.path)
        self.target = target
        result.url, result.scheme, result.port, result.path = target.url, target.scheme, target.port, target.path
        return target

    def answered(self, status_code: int, body: bytes) -> Switch | None:
        """The attempt got a response (``body``: what was read of it): the :class:`Switch` to make when it says
        the guessed http reached a TLS port (:func:`~aiotcp.probe.retry.decide_answer`; then the engine makes
        the next attempt and fills nothing from this one), else None (the engine fills the record from it and
        calls :meth:`succeeded`)."""
        decision = decide_answer(status_code, body, self.attempts)
        if isinstance(decision, Switch):
            self.attempts = decision.attempts
            return decision
        return None

    def succeeded(self) -> None:
        """The attempt got its response (the engine filled the record from it)."""
        result = self.result
        result.error = result.error_message = result.timeout_phase = result.dns_rcode = None

    def failed(self, exc: Exception, *, retries: int, backoff: float, remaining: float, jitter: float) -> Decision:
        """The attempt failed with ``exc``: record the error and say what comes next (:func:`decide`).

        An exception that is not an :class:`~aiotcp.errors.AiotcpError` is a bug met on this target: the record
        names it (kind ``internal``) and it is not retried.
        """
        result = self.result
        if not isinstance(exc, AiotcpError):
            # A bug met on one target must cost that target's record, not the run (and every record after it).
            internal = InternalError.wrap(exc, result.url)
            result.error, result.error_message, result.timeout_phase = internal.kind, internal.message, None
            return _STOP
        error: AiotcpError = exc
        target = self.target
        assert target is not None
        if self._silent_guess is not None:  # https did not answer either: back to the guess, and its error
            (error, target), self._silent_guess = self._silent_guess, None
            self.attempts = replace(self.attempts, scheme=self.schemes[0])
            self.target = target
            result.url, result.scheme, result.port = target.url, target.scheme, target.port
        result.error, result.error_message, result.timeout_phase = error.kind, error.message, error.timeout_phase
        if isinstance(error, ConnectError):
            fill_dns_error(result, error)
            if error.kind == "tls":  # with verify on, a refused certificate says why
                result.cert_verify_error = verify_error_from_message(error.message)
        decision = decide(error, self.attempts, retries=retries, backoff=backoff, remaining=remaining, jitter=jitter)
        if not isinstance(decision, Stop):
            self.attempts = decision.attempts
            if isinstance(decision, Switch) and decision.silence:
                # Kept without its traceback: the traceback holds the frames of the attempt, and one of them may
                # hold this object -- a reference cycle per failed attempt, left to the garbage collector.
                self._silent_guess = (error.with_traceback(None), target)
        return decision

    def finish(self) -> ProbeResult:
        """The finished record: ``ok``, ``time_ms``, ``timestamp``, ``ip`` (for an address, or the one
        connected to) and the name's DNS facts under ``all_ips``."""
        result = self.result
        result.ok = result.error is None
        result.time_ms = round((time.perf_counter() - self.started) * 1000.0, 3)
        result.timestamp = now_iso()
        if result.ip is None and self.target is not None and self.target.is_ip:
            result.ip = self.target.host
        if self.resolution is not None:
            fill_dns(result, self.resolution)
            result.ip = result.ip or self.address
        return result


class JobRecords:
    """The records of one parsed job, in order: one per path of ``paths`` (else one, for the target's own) and,
    with ``addresses`` (``all_ips``: the name's, in happy-eyeballs order, and ``resolution`` its facts), one per
    address and path. After ``max_host_errors`` network errors (:data:`~aiotcp.probe.records.NETWORK_KINDS`)
    among them, the rest are ``skipped`` records, made without a probe.

    An engine asks :meth:`next` for the next record to probe, probes it and hands the record to :meth:`done`,
    until :meth:`next` says None; :attr:`records` are then the job's, each knowing their number (``parts``) when
    there are several, so that ``--resume`` counts the job done only once all of them are journaled.
    """

    __slots__ = ("_errors", "_next", "_parts", "job", "options", "records", "resolution")

    def __init__(
        self,
        job: Job,
        options: ProbeOptions,
        *,
        addresses: list[str] | None = None,
        resolution: Resolution | None = None,
    ) -> None:
        self.job = job
        self.options = options
        self.resolution = resolution
        paths: tuple[str | None, ...] = options.paths or (None,)
        self._parts: list[tuple[str | None, str | None]] = [
            (address, path) for address in (addresses or (None,)) for path in paths
        ]
        self._next = 0
        self._errors = 0  # network errors among the records so far
        self.records: list[ProbeResult] = []

    def __repr__(self) -> str:
        return f"<JobRecords {self.job.text!r} {len(self.records)}/{len(self._parts)} errors={self._errors}>"

    def next(self) -> TargetAttempts | None:
        """The next record to probe, or None when the job has all its records (the skipped ones made here)."""
        job, options = self.job, self.options
        limit = options.max_host_errors
        while self._next < len(self._parts):
            address, path = self._parts[self._next]
            self._next += 1
            attempts = TargetAttempts(job, options.scheme, path=path, address=address, resolution=self.resolution)
            if limit is not None and self._errors >= limit:
                target = attempts.begin()
                result = attempts.result
                result.attempts = 0
                host = job.spec.host if job.spec is not None else ""
                skip_record(
                    result,
                    url=target.url,
                    scheme=target.scheme,
                    port=target.port,
                    path=target.path,
                    ip=address or (host if is_ip(host) else None),
                    errors=self._errors,
                    limit=limit,
                )
                self.records.append(result)
                continue
            return attempts
        if len(self.records) > 1:
            for record in self.records:
                record.parts = len(self.records)
        return None

    def done(self, result: ProbeResult) -> None:
        """The finished record of the attempts :meth:`next` gave."""
        if result.error in NETWORK_KINDS:
            self._errors += 1
        self.records.append(result)
