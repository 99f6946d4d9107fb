"""The probe's retry / scheme-switch decision (aiotcp.probe.retry.decide), without sockets: every branch."""

from __future__ import annotations

import pytest

from aiotcp.errors import (
    AiotcpError,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    Disconnected,
    DNSError,
    LocalError,
    NoResponse,
    ProtocolError,
    TLSError,
)
from aiotcp.probe.retry import LOCAL_EXTRA_ATTEMPTS, Attempts, Retry, Stop, Switch, asks_for_tls, decide, decide_answer

HTTP_FIRST = ("http", "https")
HTTPS_FIRST = ("https", "http")
TLS_ALERT = ProtocolError("not an HTTP/1.x response: starts with b'\\x15\\x03\\x01\\x00\\x02\\x02P'")
PLAINTEXT_TO_TLS = TLSError("TLS handshake failed: [SSL: WRONG_VERSION_NUMBER] wrong version number")


def step(error: AiotcpError, attempts: Attempts, *, retries: int = 0, remaining: float = 10.0) -> object:
    return decide(error, attempts, retries=retries, backoff=0.25, remaining=remaining, jitter=1.0)


def test_a_tls_alert_to_plain_http_switches_the_guess_to_https() -> None:
    decision = step(TLS_ALERT, Attempts(HTTP_FIRST, "http"))
    assert decision == Switch(Attempts(HTTP_FIRST, "https"))


def test_plaintext_answer_to_https_switches_the_guess_to_http() -> None:
    decision = step(PLAINTEXT_TO_TLS, Attempts(HTTPS_FIRST, "https"))
    assert decision == Switch(Attempts(HTTPS_FIRST, "http"))


def test_a_switch_happens_once_the_alternative_failing_the_same_way_stops() -> None:
    assert isinstance(step(PLAINTEXT_TO_TLS, Attempts(HTTP_FIRST, "https")), Stop)


def test_a_named_scheme_never_switches() -> None:
    assert isinstance(step(TLS_ALERT, Attempts(("http",), "http")), Stop)


def test_no_byte_back_from_a_guessed_http_tries_https_once() -> None:
    silent = NoResponse("server closed the connection without sending a byte")
    decision = step(silent, Attempts(HTTP_FIRST, "http"))
    assert decision == Switch(Attempts(HTTP_FIRST, "https", tried_https_for_silence=True), silence=True)
    # https failed too: the guess's error is judged again, with https marked as tried: no second switch; it is
    # a disconnect, so retried only if retries are allowed.
    after = Attempts(HTTP_FIRST, "http", tried_https_for_silence=True)
    assert isinstance(step(silent, after), Stop)
    assert isinstance(step(silent, after, retries=1), Retry)


def test_no_byte_back_on_https_first_is_not_a_switch() -> None:
    silent = NoResponse("closed")
    assert isinstance(step(silent, Attempts(HTTPS_FIRST, "https")), Stop)
    # ... and a plain disconnect (bytes had arrived) is not silence.
    assert isinstance(step(Disconnected("closed mid-body"), Attempts(HTTP_FIRST, "http")), Stop)


@pytest.mark.parametrize(
    "error", [ConnectionReset("reset"), Disconnected("closed"), ConnectTimeout("no SYN-ACK")], ids=lambda e: e.kind
)
def test_transient_kinds_retry_while_retries_last(error: AiotcpError) -> None:
    attempts = Attempts(("http",), "http")
    first = step(error, attempts, retries=2)
    assert first == Retry(0.25, Attempts(("http",), "http", retries=1))
    assert isinstance(first, Retry)
    second = step(error, first.attempts, retries=2)
    assert second == Retry(0.5, Attempts(("http",), "http", retries=2))  # the pause doubles
    assert isinstance(second, Retry)
    assert isinstance(step(error, second.attempts, retries=2), Stop)


@pytest.mark.parametrize("error", [ConnectionRefused("RST"), ProtocolError("banner"), TLSError("bad cert")])
def test_final_kinds_never_retry(error: AiotcpError) -> None:
    assert isinstance(step(error, Attempts(("http",), "http"), retries=5), Stop)


def test_local_errors_retry_without_retries_up_to_the_extra_attempts() -> None:
    attempts = Attempts(("http",), "http")
    for n in range(1, LOCAL_EXTRA_ATTEMPTS + 1):
        decision = step(LocalError("EMFILE"), attempts, retries=0, remaining=1e9)
        assert isinstance(decision, Retry), n
        assert decision.attempts.local_tries == n
        attempts = decision.attempts
    assert isinstance(step(LocalError("EMFILE"), attempts, remaining=1e9), Stop)


def test_the_backoff_is_capped_and_jittered() -> None:
    attempts = Attempts(("http",), "http", retries=20)
    decision = decide(ConnectionReset("r"), attempts, retries=30, backoff=0.25, remaining=1e9, jitter=1.5)
    assert isinstance(decision, Retry)
    assert decision.pause == pytest.approx(0.25 * 2**6 * 1.5)


def test_a_pause_that_does_not_fit_the_deadline_stops() -> None:
    attempts = Attempts(("http",), "http")
    assert isinstance(step(ConnectionReset("r"), attempts, retries=3, remaining=0.2), Stop)
    assert isinstance(step(ConnectionReset("r"), attempts, retries=3, remaining=0.3), Retry)


# -- an answer that says the guess was wrong -----------------------------------------------------------------

# What each server answers a plaintext request on its TLS port with (the bodies as sent, but Date lines).
NGINX_400 = (
    b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n"
    b"<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>"
    b"\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
)
APACHE_400 = (
    b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">\n<html><head>\n'
    b"<title>400 Bad Request</title>\n</head><body>\n<h1>Bad Request</h1>\n<p>Your browser sent a request that this "
    b"server could not understand.<br />\nReason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n"
    b" Instead use the HTTPS scheme to access this URL, please.<br />\n</p>\n</body></html>\n"
)
GO_400 = b"Client sent an HTTP request to an HTTPS server.\n"
TOMCAT_400 = b"Bad Request\nThis combination of host and port requires TLS.\n"
PLAIN_TO_TLS_BODIES = pytest.mark.parametrize(
    "body", [NGINX_400, APACHE_400, GO_400, TOMCAT_400], ids=["nginx", "apache", "go", "tomcat"]
)


@PLAIN_TO_TLS_BODIES
def test_a_400_saying_plain_http_reached_a_tls_port_switches_the_http_guess(body: bytes) -> None:
    assert asks_for_tls(400, body)
    assert decide_answer(400, body, Attempts(HTTP_FIRST, "http")) == Switch(Attempts(HTTP_FIRST, "https"))


@PLAIN_TO_TLS_BODIES
def test_such_an_answer_switches_only_a_guess_and_only_once(body: bytes) -> None:
    assert isinstance(decide_answer(400, body, Attempts(("http",), "http")), Stop)  # the scheme was named
    assert isinstance(decide_answer(400, body, Attempts(HTTP_FIRST, "https")), Stop)  # switched already
    assert isinstance(decide_answer(400, body, Attempts(HTTPS_FIRST, "http")), Stop)  # http was the switch


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"<html><head><title>400 Bad Request</title></head><body>bad request</body></html>"),
        (400, b""),  # a HEAD reply, or no body read: nothing says TLS was meant
        (200, NGINX_400),  # a page that quotes the text is not the error
        (497, b"plain HTTP"),
    ],
    ids=["other-400", "no-body", "a-200-quoting-it", "other-status"],
)
def test_any_other_answer_stops(status: int, body: bytes) -> None:
    assert not asks_for_tls(status, body)
    assert isinstance(decide_answer(status, body, Attempts(HTTP_FIRST, "http")), Stop)


@pytest.mark.parametrize("rcode", ["SERVFAIL", "TIMEOUT"])
def test_a_dns_failure_without_an_answer_is_retried(rcode: str) -> None:
    error = DNSError(f"name does not resolve ({rcode})", rcode=rcode)
    decision = step(error, Attempts(("http",), "http"), retries=1)
    assert decision == Retry(0.25, Attempts(("http",), "http", retries=1))
    assert isinstance(decision, Retry)
    assert isinstance(step(error, decision.attempts, retries=1), Stop)  # retries spent


@pytest.mark.parametrize("rcode", ["NXDOMAIN", "NODATA", "REFUSED", None])
def test_a_dns_answer_is_final_never_retried(rcode: str | None) -> None:
    # NXDOMAIN and NODATA are what the name is; REFUSED is the resolver's policy; no rcode (the system resolver
    # gave no reason) is not known to be transient.
    error = DNSError("name does not resolve", rcode=rcode)
    assert isinstance(step(error, Attempts(("http",), "http"), retries=5), Stop)
