"""What a probe does after an attempt: retry the same URL, switch scheme, or stop. Pure functions.

Theory of operation
-------------------
A target is tried with a scheme it names, or with a guess (``scheme="auto"``: https on the usual TLS ports,
http elsewhere) and the other scheme as the alternative. After each failed attempt :func:`decide` looks at the
error and at where the target's attempts stand (:class:`Attempts`) and answers one of:

- :class:`Switch` -- the answer shows the other scheme was meant: an http request answered by a TLS alert, an
  https handshake answered in plaintext (once per target, and not a retry). A guessed http that got no byte
  back at all (what a TLS server does to plaintext) also tries https, once; if https fails too, the guess and
  its error stand (the caller puts them back and asks again; the state says https was tried).
- :class:`Retry` -- the kind is transient (``reset``, ``disconnected``, ``connect_timeout``, or ``dns`` whose
  ``rcode`` is SERVFAIL or TIMEOUT: another try may get an answer, where NXDOMAIN and NODATA are the answer)
  and retries are left, or it is ``local`` (our own EMFILE or ports: never the target's fault, retried a few
  times even with ``retries=0``); after a jittered exponential pause that must fit in what is left of the deadline.
- :class:`Stop` -- anything else: the error is the record's.

An attempt that got a response can be a wrong guess too: many servers answer a plaintext request on their TLS
port with a 400 that says so (:data:`PLAIN_HTTP_TO_TLS_PORT`). :func:`decide_answer` switches a guessed http to
https on such an answer, once, and stops on any other (the response is the record's).

No I/O, no clock and no randomness here: the caller passes the time left and the jitter, so every branch is
tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import AiotcpError, DNSError, NoResponse
from ..resolution import TRANSIENT_RCODES

__all__ = [
    "PLAIN_HTTP_TO_TLS_PORT",
    "TRANSIENT_KINDS",
    "Attempts",
    "Decision",
    "Retry",
    "Stop",
    "Switch",
    "asks_for_tls",
    "decide",
    "decide_answer",
    "is_transient",
    "looks_like_tls_mismatch",
]

#: Kinds worth another try: the network, not the target's answer, may be at fault.
TRANSIENT_KINDS = frozenset({"reset", "disconnected", "connect_timeout", "local"})
# Our own limits (EMFILE, no ephemeral port) are never the target's fault: retried, with back-off, even when
# retries=0, as long as the target's deadline allows.
LOCAL_EXTRA_ATTEMPTS = 8
# The back-off doubles up to 2**6 times the base pause.
_MAX_EXPONENT = 6

#: What servers put in the body of the 400 they answer a plaintext request on their TLS port with. (lighttpd,
#: node and Python's ssl close without a byte instead: the silent-guess switch of :func:`decide` covers them.)
PLAIN_HTTP_TO_TLS_PORT: tuple[bytes, ...] = (
    b"The plain HTTP request was sent to HTTPS port",  # nginx (and OpenResty, Tengine), in the title too
    b"You're speaking plain HTTP to an SSL-enabled server port",  # Apache httpd (mod_ssl)
    b"Client sent an HTTP request to an HTTPS server",  # Go's net/http (Caddy, Traefik, ...)
    b"This combination of host and port requires TLS",  # Tomcat (Spring Boot, ...)
)


@dataclass(frozen=True, slots=True)
class Attempts:
    """Where a target's attempts stand, between two of them."""

    #: The schemes to try: the one named or guessed first, then (``scheme="auto"``) the alternative.
    schemes: tuple[str, ...]
    #: The scheme of the attempt that just failed.
    scheme: str
    #: Retries spent on transient kinds (``retries`` bounds them).
    retries: int = 0
    #: Extra attempts spent on ``local`` errors (bounded by :data:`LOCAL_EXTRA_ATTEMPTS`).
    local_tries: int = 0
    #: Whether https was already tried because the http guess got no byte back.
    tried_https_for_silence: bool = False

    def on_guess(self) -> bool:
        """Whether the failed attempt used the first scheme (the guess, under ``auto``)."""
        return self.scheme == self.schemes[0]


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the same URL again after ``pause`` seconds."""

    pause: float
    attempts: Attempts


@dataclass(frozen=True, slots=True)
class Switch:
    """Try the other scheme now. ``silence`` marks the https try after a silent http guess: if it fails, the
    guess's error is the one that counts."""

    attempts: Attempts
    silence: bool = False


@dataclass(frozen=True, slots=True)
class Stop:
    """No more attempts: the last error is the record's."""


Decision = Retry | Switch | Stop
STOP = Stop()


def looks_like_tls_mismatch(error: AiotcpError) -> bool:
    """An http request answered in TLS (an alert record), or an https handshake answered in plaintext."""
    text = error.message
    return (error.kind == "protocol" and "\\x15\\x03" in text) or (
        error.kind == "tls" and ("WRONG_VERSION_NUMBER" in text or "wrong version number" in text)
    )


def is_transient(error: AiotcpError) -> bool:
    """Whether another try may end differently: a transient kind, or a DNS failure that was no answer."""
    if isinstance(error, DNSError):
        return error.rcode in TRANSIENT_RCODES
    return error.kind in TRANSIENT_KINDS


def decide(
    error: AiotcpError,
    attempts: Attempts,
    *,
    retries: int,
    backoff: float,
    remaining: float,
    jitter: float = 1.0,
) -> Decision:
    """The next step after ``error`` ended the attempt described by ``attempts``.

    ``retries``: the retries allowed for transient kinds; ``backoff``: the base pause in seconds;
    ``remaining``: seconds left of the target's deadline (a pause must end before it); ``jitter``: the
    factor applied to the pause (the caller draws it, 0.5-1.5).
    """
    if len(attempts.schemes) > 1 and attempts.on_guess() and looks_like_tls_mismatch(error):
        return Switch(replace(attempts, scheme=attempts.schemes[1]))
    if (
        attempts.schemes == ("http", "https")
        and attempts.scheme == "http"
        and isinstance(error, NoResponse)
        and not attempts.tried_https_for_silence
    ):
        return Switch(replace(attempts, scheme="https", tried_https_for_silence=True), silence=True)
    if error.kind == "local":
        if attempts.local_tries >= LOCAL_EXTRA_ATTEMPTS:
            return STOP
        attempts = replace(attempts, local_tries=attempts.local_tries + 1)
    elif not is_transient(error) or attempts.retries >= retries:
        return STOP
    else:
        attempts = replace(attempts, retries=attempts.retries + 1)
    exponent = min(attempts.retries + attempts.local_tries - 1, _MAX_EXPONENT)
    pause = backoff * (2**exponent) * jitter
    if pause >= remaining:
        return STOP
    return Retry(pause, attempts)


def asks_for_tls(status_code: int, body: bytes) -> bool:
    """Whether a response says its plaintext request reached a TLS port: a 400 whose body (what was read of it)
    holds one of :data:`PLAIN_HTTP_TO_TLS_PORT`."""
    return status_code == 400 and any(marker in body for marker in PLAIN_HTTP_TO_TLS_PORT)


def decide_answer(status_code: int, body: bytes, attempts: Attempts) -> Switch | Stop:
    """The next step after an attempt that got a response (``body``: what was read of it): :class:`Switch` to
    https when http was the guess and the answer says a plaintext request reached a TLS port (so at most
    once), else :class:`Stop` -- the response is the record's."""
    if attempts.schemes == ("http", "https") and attempts.scheme == "http" and asks_for_tls(status_code, body):
        return Switch(replace(attempts, scheme="https"))
    return STOP
