"""One target's attempts: the bookkeeping both engines share around :func:`~aiotcp.probe.retry.decide`.

An engine does the I/O of each attempt; :class:`TargetAttempts` says which URL the attempt asks for
(:meth:`~TargetAttempts.begin`), what a failure does to the record and what comes next
(:meth:`~TargetAttempts.failed`, which asks :func:`~aiotcp.probe.retry.decide`), and finishes the record
(:meth:`~TargetAttempts.finish`). Nothing here waits or reads a clock: the engine passes the time left and the
jitter, so the lean engine (callbacks) and the reference one (coroutines) make the same record from the same
events.
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace

from ..errors import AiotcpError, InternalError
from ..targets import Target, TargetSpec
from .jobs import Job
from .options import Scheme
from .records import ProbeResult, now_iso
from .retry import Attempts, Decision, Stop, Switch, decide

__all__ = ["TLS_PORTS", "TargetAttempts", "schemes_for"]

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
    """The attempts at one parsed job (``job.spec`` set) and the record they build.

    ``result`` is the record; ``target`` the URL of the current attempt (after :meth:`begin`).
    """

    __slots__ = ("_silent_guess", "attempts", "job", "result", "schemes", "started", "target")

    def __init__(self, job: Job, scheme: Scheme) -> None:
        spec = job.spec
        assert spec is not None
        self.job = job
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
        target = self.target = spec.resolve(default_scheme=self.attempts.scheme, default_port=self.job.port)
        result.url, result.scheme, result.port = target.url, target.scheme, target.port
        return target

    def succeeded(self) -> None:
        """The attempt got its response (the engine filled the record from it)."""
        result = self.result
        result.error = result.error_message = result.timeout_phase = None

    def failed(self, exc: Exception, *, retries: int, backoff: float, remaining: float, jitter: float) -> Decision:
        """The attempt failed with ``exc``: record the error and say what comes next (:func:`decide`).

        An exception that is not an :class:`~aiotcp.errors.AiotcpError` is a bug met on this target: the record
        names it (kind ``internal``) and it is not retried.
        """
        result = self.result
        if not isinstance(exc, AiotcpError):
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
        decision = decide(error, self.attempts, retries=retries, backoff=backoff, remaining=remaining, jitter=jitter)
        if not isinstance(decision, Stop):
            self.attempts = decision.attempts
            if isinstance(decision, Switch) and decision.silence:
                self._silent_guess = (error, target)
        return decision

    def finish(self) -> ProbeResult:
        """The finished record: ``ok``, ``time_ms``, ``timestamp`` and, for an address, ``ip``."""
        result = self.result
        result.ok = result.error is None
        result.time_ms = round((time.perf_counter() - self.started) * 1000.0, 3)
        result.timestamp = now_iso()
        if result.ip is None and self.target is not None and self.target.is_ip:
            result.ip = self.target.host
        return result
