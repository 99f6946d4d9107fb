"""Tests for aiotcp.http11, the sans-IO HTTP/1.1 core, on both backends.

Every response is fed whole, one byte at a time, at split points hypothesis picks, and with bytes after it
(as h11's tests/test_io.py does); the events must be the same on both backends and for every split, once
body chunks are joined. No sockets: bytes in, events out.
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pytest
from helpers import (
    EDITS,
    HAVE_HTTPTOOLS,
    INSTALLED_PARSERS,
    PARSERS,
    Outcome,
    bytewise,
    drive,
    mutate,
    needs_httptools,
    split_at,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiotcp.config import Limits
from aiotcp.errors import AiotcpError, Disconnected, InvalidHeader, InvalidTarget, ProtocolError, TooLarge
from aiotcp.http11 import (
    H11Protocol,
    HTTP11Protocol,
    HttptoolsProtocol,
    Request,
    ResponseEnd,
    ResponseHead,
    available_backends,
    make_protocol,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOST = (b"Host", b"example.test")


@pytest.fixture(params=PARSERS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- driving a protocol -------------------------------------------------------------------------------------


def request(method: bytes = b"GET", headers: Sequence[tuple[bytes, bytes]] = ()) -> Request:
    return Request(method, b"/", [HOST, *headers])


def run(
    backend: str,
    chunks: Iterable[bytes],
    *,
    method: bytes = b"GET",
    limits: Limits | None = None,
    eof: bool = True,
    request_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Outcome:
    protocol = make_protocol(backend, limits)
    protocol.send_request(request(method, request_headers))
    return drive(protocol, chunks, eof=eof)


def feed_until_error(protocol: HTTP11Protocol, chunks: Sequence[bytes]) -> tuple[AiotcpError, int]:
    """Take events and feed ``chunks`` until the protocol raises; the error and the bytes fed until then."""
    fed = 0
    try:
        for chunk in chunks:
            while protocol.next_event() is not None:
                pass
            fed += len(chunk)
            protocol.receive_data(chunk)
        protocol.next_event()
    except AiotcpError as exc:
        return exc, fed
    raise AssertionError(f"no error after {fed} bytes")


def whole(data: bytes) -> list[bytes]:
    return [data]


FEEDS: dict[str, Callable[[bytes], list[bytes]]] = {"whole": whole, "bytewise": bytewise}


# -- well-formed responses: the corpus ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    wire: bytes
    method: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    reusable: bool
    why: str | None = None
    interim: int = 0
    close_delimited: bool = False


CASES: dict[str, Case] = {
    "content-length": Case(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello",
        b"GET",
        200,
        [(b"Content-Length", b"5"), (b"Server", b"t")],
        b"hello",
        True,
    ),
    "content-length-0": Case(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"GET", 200, [(b"Content-Length", b"0")], b"", True
    ),
    "chunked-ext-trailers": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\nA;a=1;b\r\n, world!!!\r\n0;last\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n",
        b"GET",
        200,
        [(b"Transfer-Encoding", b"chunked")],
        b"hello, world!!!",
        True,
    ),
    "chunked-uppercase-hex": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n0B\r\nhello world\r\n0\r\n\r\n",
        b"GET",
        200,
        [(b"Transfer-Encoding", b"chunked")],  # h11 lowercases it; so do we
        b"hello world",
        True,
    ),
    "close-delimited": Case(
        b"HTTP/1.1 200 OK\r\nServer: t\r\n\r\nuntil the end",
        b"GET",
        200,
        [(b"Server", b"t")],
        b"until the end",
        False,
        "body was delimited by the connection closing",
        close_delimited=True,
    ),
    "head-with-length": Case(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        b"HEAD",
        200,
        [(b"Content-Length", b"1234")],
        b"",
        True,
    ),
    "head-chunked": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HEAD",
        200,
        [(b"Transfer-Encoding", b"chunked")],
        b"",
        True,
    ),
    "head-no-framing": Case(b"HTTP/1.1 200 OK\r\n\r\n", b"HEAD", 200, [], b"", True),
    "204": Case(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
        b"GET",
        204,
        [(b"Content-Length", b"7")],
        b"",
        True,
    ),
    "304": Case(
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET",
        304,
        [(b"Transfer-Encoding", b"chunked")],
        b"",
        True,
    ),
    "interim": Case(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"GET",
        200,
        [(b"Content-Length", b"2")],
        b"ok",
        True,
        interim=2,
    ),
    "interim-with-length": Case(
        # llhttp would read a body for a 1xx other than 100/102/103; a 1xx never has one.
        b"HTTP/1.1 104 Odd\r\nContent-Length: 5\r\n\r\nHTTP/1.1 150 Odder\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"GET",
        200,
        [(b"Content-Length", b"2")],
        b"ok",
        True,
        interim=2,
    ),
    "connection-close": Case(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
        b"GET",
        200,
        [(b"Connection", b"keep-alive, Close"), (b"Content-Length", b"2")],
        b"ok",
        False,
        "server asked to close the connection",
    ),
    "http10": Case(
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"GET",
        200,
        [(b"Content-Length", b"2")],
        b"ok",
        False,
        "HTTP/1.0 response: no keep-alive",
    ),
    "http10-keep-alive": Case(
        # h11 (the reference) does not do HTTP/1.0 keep-alive; llhttp would.
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        b"GET",
        200,
        [(b"Connection", b"keep-alive"), (b"Content-Length", b"2")],
        b"ok",
        False,
        "HTTP/1.0 response: no keep-alive",
    ),
    "te-and-cl": Case(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET",
        200,
        [(b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")],
        b"hello",
        False,
        "Transfer-Encoding and Content-Length both present",
    ),
    "odd-but-valid-head": Case(
        # No reason phrase, OWS around values, obs-text, a tab inside a value, an empty value, status 599.
        b"HTTP/1.1 599\r\nX-A:   spaced out \t \r\nX-B: caf\xc3\xa9\tbar\r\nX-Empty:\r\nContent-Length: 1\r\n\r\n!",
        b"GET",
        599,
        [(b"X-A", b"spaced out"), (b"X-B", b"caf\xc3\xa9\tbar"), (b"X-Empty", b""), (b"Content-Length", b"1")],
        b"!",
        True,
    ),
    "bare-lf-head": Case(
        b"HTTP/1.1 200 OK\nContent-Length: 2\nX: y\n\nok",
        b"GET",
        200,
        [(b"Content-Length", b"2"), (b"X", b"y")],
        b"ok",
        True,
    ),
}
TRAILING = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def check_case(case: Case, outcome: Outcome, *, trailing: bool = False) -> None:
    assert outcome.error is None, outcome
    head = outcome.head
    assert (head.status_code, head.headers, head.interim) == (case.status, case.headers, case.interim)
    if case.close_delimited and trailing:  # bytes after a close-delimited body are body
        assert outcome.body == case.body + TRAILING
    else:
        assert outcome.body == case.body
    if trailing and not case.close_delimited:
        assert outcome.end == ResponseEnd(False, "unexpected bytes after the response")
    else:
        assert outcome.end == ResponseEnd(case.reusable, case.why)
    assert len(outcome.events) == (3 if case.body or (trailing and case.close_delimited) else 2)


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name", CASES)
def test_response(backend: str, name: str, feed: str) -> None:
    case = CASES[name]
    outcome = run(backend, FEEDS[feed](case.wire), method=case.method)
    check_case(case, outcome)


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name", CASES)
def test_response_with_trailing_bytes(backend: str, name: str, feed: str) -> None:
    # The trailing bytes arrive with the last byte of the response, so the parser sees them at its end.
    case = CASES[name]
    chunks = FEEDS[feed](case.wire)
    chunks[-1] += TRAILING
    check_case(case, run(backend, chunks, method=case.method), trailing=True)


@FUZZ
@given(name=st.sampled_from(sorted(CASES)), points=st.lists(st.integers(min_value=0), max_size=12))
def test_response_at_any_split(name: str, points: list[int]) -> None:
    case = CASES[name]
    for backend in INSTALLED_PARSERS:
        check_case(case, run(backend, split_at(case.wire, points), method=case.method))


@FUZZ
@given(name=st.sampled_from(sorted(CASES)), points=st.lists(st.integers(min_value=0), max_size=12))
def test_response_with_trailing_bytes_at_any_split(name: str, points: list[int]) -> None:
    case = CASES[name]
    for backend in INSTALLED_PARSERS:
        chunks = split_at(case.wire, points)
        chunks[-1] += TRAILING
        check_case(case, run(backend, chunks, method=case.method), trailing=True)


def test_body_arrives_as_it_comes(backend: str) -> None:
    # Streaming: each fed piece of body is an event of its own, not held until the end.
    protocol = make_protocol(backend)
    protocol.send_request(request())
    protocol.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
    assert isinstance(protocol.next_event(), ResponseHead)
    assert protocol.next_event() == b"ab"
    assert protocol.next_event() is None
    protocol.receive_data(b"cd")
    assert protocol.next_event() == b"cd"
    protocol.receive_data(b"ef")
    assert protocol.next_event() == b"ef"
    assert protocol.next_event() == ResponseEnd(True)


def test_close_delimited_body_is_never_reusable(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    protocol.receive_data(b"HTTP/1.1 200 OK\r\n\r\npart")
    assert isinstance(protocol.next_event(), ResponseHead)
    assert protocol.next_event() == b"part"
    assert protocol.next_event() is None  # no end without EOF
    protocol.receive_data(b"")
    assert protocol.next_event() == ResponseEnd(False, "body was delimited by the connection closing")
    with pytest.raises(RuntimeError):
        protocol.start_next_cycle()


def test_request_connection_close_is_not_reusable(backend: str) -> None:
    outcome = run(backend, [CASES["content-length"].wire], request_headers=[(b"Connection", b"close")])
    assert outcome.end == ResponseEnd(False, "the request asked to close the connection")


def test_eof_right_after_a_complete_response(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    protocol.receive_data(CASES["content-length"].wire)
    protocol.receive_data(b"")  # EOF arrives before the events are taken
    outcome = drive(protocol, [])
    assert outcome.body == b"hello"
    assert outcome.end == ResponseEnd(False, "server closed the connection")


def test_trailers_do_not_change_the_head(backend: str) -> None:
    # llhttp reports trailer fields through the same callback as header fields.
    outcome = run(backend, [CASES["chunked-ext-trailers"].wire])
    assert outcome.head.headers == [(b"Transfer-Encoding", b"chunked")]


def test_make_protocol() -> None:
    assert type(make_protocol("h11")) is H11Protocol
    if HAVE_HTTPTOOLS:
        assert type(make_protocol("httptools")) is HttptoolsProtocol
        assert available_backends() == ["httptools", "h11"]
    else:
        with pytest.raises(ValueError, match="needs the httptools package"):
            make_protocol("httptools")
        assert available_backends() == ["h11"]
    with pytest.raises(ValueError, match="unknown HTTP backend"):
        make_protocol("h2")


def test_repr_shows_state(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    assert "state=idle" in repr(protocol)
    protocol.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n")
    assert protocol.next_event() is None
    assert "state=head" in repr(protocol)
    assert protocol.response_started
    protocol.receive_data(b"\r\nab")
    assert isinstance(protocol.next_event(), ResponseHead)
    assert protocol.next_event() == b"ab"
    assert "state=body" in repr(protocol)
    assert "body_bytes=2" in repr(protocol)
    protocol.receive_data(b"cd")
    assert protocol.next_event() == b"cd"
    assert protocol.next_event() == ResponseEnd(True)
    assert "state=ended" in repr(protocol)
    protocol.start_next_cycle()
    assert "state=idle cycles=1" in repr(protocol)
    assert not protocol.response_started
    with pytest.raises(ProtocolError):
        protocol.receive_data(b"SSH-2.0")
    assert "state=failed" in repr(protocol)


# -- errors -------------------------------------------------------------------------------------------------

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

PROTOCOL_ERRORS: dict[str, bytes] = {
    "http09-body": b"<html><body>hello</body></html>",
    "ssh-banner-with-newline": b"SSH-2.0-OpenSSH_9.6\r\n",
    "lowercase-http": b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "four-digit-status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "two-digit-status": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "status-below-100": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    "status-000": b"HTTP/1.1 000 Odd\r\nContent-Length: 0\r\n\r\n",
    "version-1.2": b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "version-2.0": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "version-0.9": b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n",
    "version-1.1.1": b"HTTP/1.1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "interim-version-2.0": b"HTTP/2.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "blank-line-after-interim": b"HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "rtsp-after-interim": b"HTTP/1.1 100 Continue\r\n\r\nRTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "nul-in-reason": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n",
    "ff-in-value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x0cb\r\nContent-Length: 0\r\n\r\n",
    "esc-then-nul-in-value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x1bb\r\nX-Worse: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "ctl-in-name": b"HTTP/1.1 200 OK\r\nX-B\x1bad: a\r\nContent-Length: 0\r\n\r\n",
    "conflicting-after-fold": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    "conflicting-content-length-empty-in-list": b"HTTP/1.1 200 OK\r\nContent-Length: 2,\r\n\r\nab",
    "continuation-first": b"HTTP/1.1 200 OK\r\n Content-Length: 0\r\n\r\n",
    "101-switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    "conflicting-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    "conflicting-content-length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nabc",
    "content-length-plus": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab",
    "content-length-minus": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nab",
    "content-length-25-digits": b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 25 + b"\r\n\r\nab",
    "content-length-20-digits": b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 20 + b"\r\n\r\nab",
    "content-length-padded-25-digits": b"HTTP/1.1 200 OK\r\nContent-Length: " + b"0" * 24 + b"2\r\n\r\nab",
    "content-length-hex": b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nab",
    "content-length-empty": b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\nab",
    "transfer-encoding-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nab",
    "transfer-encoding-gzip-chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
    ),
    "transfer-encoding-twice": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
    ),
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "cr-in-value": b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 0\r\n\r\n",
    "vt-in-value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x0bb\r\nContent-Length: 0\r\n\r\n",
    "nul-in-interim-value": b"HTTP/1.1 103 Hints\r\nLink: a\x00b\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nX-Bad : a\r\nContent-Length: 0\r\n\r\n",
    "no-colon": b"HTTP/1.1 200 OK\r\nX-Bad\r\nContent-Length: 0\r\n\r\n",
    "empty-name": b"HTTP/1.1 200 OK\r\n: a\r\nContent-Length: 0\r\n\r\n",
    "chunk-size-not-hex": CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": CHUNKED_HEAD + b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-0x": CHUNKED_HEAD + b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-empty": CHUNKED_HEAD + b"\r\nhello\r\n0\r\n\r\n",
    "chunk-size-20-hex-digits": CHUNKED_HEAD + b"f" * 20 + b"\r\nhello\r\n0\r\n\r\n",
    "chunk-size-17-hex-digits": CHUNKED_HEAD + b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n",
    "chunk-data-too-long": CHUNKED_HEAD + b"5\r\nhelloXX\r\n0\r\n\r\n",
    "chunk-data-bare-lf": CHUNKED_HEAD + b"5\r\nhello\n0\r\n\r\n",
    "bad-trailer": CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nnot a field\r\n\r\n",
}


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name", PROTOCOL_ERRORS)
def test_protocol_error(backend: str, name: str, feed: str) -> None:
    outcome = run(backend, FEEDS[feed](PROTOCOL_ERRORS[name]))
    assert isinstance(outcome.error, ProtocolError), outcome
    assert outcome.error.kind == "protocol"
    # Nothing of the body gets through, and a head only when the error is in the body.
    if name.startswith(("chunk", "bad-trailer")):  # found in the body: after the head (and maybe some body)
        assert outcome.head.status_code == 200
        assert all(isinstance(e, bytes) for e in outcome.events[1:])
    else:
        assert outcome.events == []


# -- quirks: what the RFCs do not allow but curl, browsers and h11 read, read the same way by both parsers ------------

QUIRK_CASES: dict[str, tuple[bytes, tuple[str, ...], bytes, list[tuple[bytes, bytes]]]] = {
    # name: (wire, quirks, reason, headers); each body is b"ok"
    "esc-in-value": (
        b"HTTP/1.1 200 OK\r\nServer: \x1b[31mred\x1b[0m\r\nX: \x01\x7f\x1f\r\nContent-Length: 2\r\n\r\nok",
        ("ctl_in_header_value",),
        b"OK",
        [(b"Server", b"\x1b[31mred\x1b[0m"), (b"X", b"\x01\x7f\x1f"), (b"Content-Length", b"2")],
    ),
    "esc-in-value-with-every-high-byte": (
        # No byte is free to disguise the ESC as for llhttp: refused, with llhttp's words (h11 reads it).
        b"HTTP/1.1 200 OK\r\nX: " + bytes(range(0x80, 0x100)) + b"\x1b\r\nContent-Length: 2\r\n\r\nok",
        ("ctl_in_header_value",),
        b"OK",
        [(b"X", bytes(range(0x80, 0x100)) + b"\x1b"), (b"Content-Length", b"2")],
    ),
    "esc-in-reason": (
        b"HTTP/1.1 200 O\x1bK\r\nContent-Length: 2\r\n\r\nok",
        ("ctl_in_reason",),
        b"O\x1bK",
        [(b"Content-Length", b"2")],
    ),
    "bare-lf": (b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\nok", ("bare_lf",), b"OK", [(b"Content-Length", b"2")]),
    "obs-fold": (
        b"HTTP/1.1 200 OK\r\nX: a \r\n\t b\r\nContent-Length: 2\r\n\r\nok",
        ("obs_fold",),
        b"OK",
        [(b"X", b"a  b"), (b"Content-Length", b"2")],
    ),
    "repeated-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
        ("duplicate_content_length_equal",),
        b"OK",
        [(b"Content-Length", b"2")],
    ),
    "listed-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2 , 2\r\n\r\nok",
        ("duplicate_content_length_equal",),
        b"OK",
        [(b"Content-Length", b"2")],
    ),
    "http10-no-reason": (
        b"HTTP/1.0 200\r\nContent-Length: 2\r\n\r\nok",
        ("http10", "no_reason"),
        b"",
        [(b"Content-Length", b"2")],
    ),
    "quirks-in-interim-and-final": (
        b"HTTP/1.1 103 Hints\r\nLink: \x01\r\n\r\nHTTP/1.1 200 OK\nX: a\r\n b\r\nContent-Length: 2\r\n"
        b"Content-Length: 2\r\n\r\nok",
        ("ctl_in_header_value", "bare_lf", "obs_fold", "duplicate_content_length_equal"),
        b"OK",
        [(b"X", b"a b"), (b"Content-Length", b"2")],
    ),
}


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name", QUIRK_CASES)
def test_quirk_is_read_and_recorded(backend: str, name: str, feed: str) -> None:
    wire, quirks, reason, headers = QUIRK_CASES[name]
    if name == "esc-in-value-with-every-high-byte" and backend == "httptools":
        assert run(backend, FEEDS[feed](wire)).summary == ("error", "protocol")
        return
    outcome = run(backend, FEEDS[feed](wire))
    assert outcome.error is None, outcome
    assert outcome.head.quirks == quirks
    assert outcome.head.reason == reason
    assert outcome.head.headers == headers
    assert outcome.body == b"ok"
    assert outcome.end.reusable == ("http10" not in quirks)  # an HTTP/1.0 response closes the connection


def test_a_plain_response_has_no_quirks(backend: str) -> None:
    outcome = run(backend, [b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 2\r\n\r\nok"])
    assert outcome.head.quirks == ()


@FUZZ
@given(name=st.sampled_from(sorted(PROTOCOL_ERRORS)), points=st.lists(st.integers(min_value=0), max_size=8))
def test_protocol_error_at_any_split(name: str, points: list[int]) -> None:
    data = PROTOCOL_ERRORS[name]
    for backend in INSTALLED_PARSERS:
        assert run(backend, split_at(data, points)).summary == run(backend, [data]).summary == ("error", "protocol")


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_9.6", b"220 smtp.example.test ESMTP", b"\x16\x03\x01\x02\x00"])
def test_non_http_banner_fails_from_its_first_bytes(backend: str, banner: bytes) -> None:
    # No newline ever comes: the protocol must not wait for one.
    protocol = make_protocol(backend)
    protocol.send_request(request())
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x response"):
        protocol.receive_data(banner[:5])
    protocol = make_protocol(backend)
    protocol.send_request(request())
    # One byte at a time: fails at the first byte that cannot start "HTTP/".
    error, fed = feed_until_error(protocol, bytewise(banner[:5]))
    assert isinstance(error, ProtocolError)
    assert fed == 1
    with pytest.raises(ProtocolError):  # and stays failed
        protocol.next_event()


def test_101_is_a_protocol_error(backend: str) -> None:
    outcome = run(backend, [PROTOCOL_ERRORS["101-switching"]])
    assert isinstance(outcome.error, ProtocolError)
    if backend == "httptools":  # h11 words it its own way ("_SWITCH_UPGRADE event without a pending proposal")
        assert "101" in outcome.error.message


def test_error_in_body_comes_after_the_head(backend: str) -> None:
    # llhttp finds the bad chunk size in the same feed as the head; the head is still returned first.
    protocol = make_protocol(backend)
    protocol.send_request(request())
    protocol.receive_data(PROTOCOL_ERRORS["chunk-size-not-hex"])
    assert isinstance(protocol.next_event(), ResponseHead)
    with pytest.raises(ProtocolError):
        protocol.next_event()
    with pytest.raises(ProtocolError):  # sticky
        protocol.receive_data(b"more")


def test_upgrade_after_a_no_body_response_is_leftover(backend: str) -> None:
    # llhttp raises its own HttpParserUpgrade for a 101 it parses; after a complete response it is leftover.
    data = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nxx"
    outcome = run(backend, [data])
    assert outcome.end == ResponseEnd(False, "unexpected bytes after the response")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "without sending a response (0 bytes received)"),
        (b"HTTP/1.1 200 OK\r\nContent-", "in the middle of the response head (after 25 bytes)"),
        (b"HTT", "in the middle of the response head (after 3 bytes)"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "in the middle of the response head (after 25 bytes)"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "before the body was complete (got 5 bytes)"),
        (CHUNKED_HEAD + b"5\r\nhel", "before the body was complete (got 3 bytes)"),
        (CHUNKED_HEAD + b"5\r\nhello\r\n", "before the body was complete (got 5 bytes)"),
        (CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n", "before the body was complete (got 5 bytes)"),
    ],
)
@pytest.mark.parametrize("feed", FEEDS)
def test_early_eof_is_disconnected(backend: str, data: bytes, message: str, feed: str) -> None:
    outcome = run(backend, FEEDS[feed](data))
    assert isinstance(outcome.error, Disconnected), outcome
    assert outcome.error.kind == "disconnected"
    assert message in outcome.error.message


def test_eof_is_sticky(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    protocol.receive_data(b"")
    for _ in range(2):
        with pytest.raises(Disconnected):
            protocol.next_event()


# -- caps ---------------------------------------------------------------------------------------------------


def head_of_size(size: int, body: bytes = b"") -> bytes:
    """A response head of exactly ``size`` bytes (padding in one header), then ``body``."""
    start = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Pad: " % len(body)
    padding = size - len(start) - len(b"\r\n\r\n")
    assert padding >= 0
    return start + b"p" * padding + b"\r\n\r\n" + body


@pytest.mark.parametrize("feed", FEEDS)
def test_head_cap_is_exact(backend: str, feed: str) -> None:
    limits = Limits(max_header_bytes=300)
    outcome = run(backend, FEEDS[feed](head_of_size(300, b"body")), limits=limits)
    assert outcome.error is None
    assert outcome.body == b"body"
    outcome = run(backend, FEEDS[feed](head_of_size(301, b"body")), limits=limits)
    assert isinstance(outcome.error, TooLarge)
    assert "max_header_bytes (300)" in outcome.error.message


@FUZZ
@given(size=st.integers(min_value=100, max_value=400), points=st.lists(st.integers(min_value=0), max_size=6))
def test_head_cap_does_not_depend_on_splits(size: int, points: list[int]) -> None:
    limits = Limits(max_header_bytes=256)
    data = head_of_size(size, b"x" * 500)
    for backend in INSTALLED_PARSERS:
        outcome = run(backend, split_at(data, points), limits=limits)
        if size <= 256:
            assert outcome.error is None
            assert outcome.body == b"x" * 500
        else:
            assert isinstance(outcome.error, TooLarge)


def test_small_head_cap_with_a_big_body_in_one_chunk(backend: str) -> None:
    # The whole response in one receive, far bigger than the head cap: only the head counts.
    data = head_of_size(200, b"b" * 100_000)
    outcome = run(backend, [data], limits=Limits(max_header_bytes=1024))
    assert outcome.error is None
    assert outcome.body == b"b" * 100_000


@pytest.mark.parametrize("chunk_size", [65536, 4096, 1_000_000])
def test_200_kib_head_is_too_large(backend: str, chunk_size: int) -> None:
    fields = b"".join(b"X-Field-%04d: %s\r\n" % (i, b"v" * 100) for i in range(1800))
    data = b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n"
    assert len(data) > 200 * 1024
    outcome = run(backend, split_at(data, range(0, len(data), chunk_size)))
    assert isinstance(outcome.error, TooLarge)
    assert outcome.error.kind == "too_large"
    assert outcome.events == []


def test_header_line_that_never_ends(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    protocol.receive_data(b"HTTP/1.1 200 OK\r\nX-Endless: ")
    error, fed = feed_until_error(protocol, [b"a" * 4096] * 100)  # 400 KiB; the cap is 64 KiB
    assert isinstance(error, TooLarge)
    assert fed <= 64 * 1024


def test_ten_thousand_headers(backend: str) -> None:
    data = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 10_000 + b"Content-Length: 0\r\n\r\n"
    assert len(data) < Limits().max_header_bytes  # the count trips, not the size
    outcome = run(backend, [data])
    assert isinstance(outcome.error, TooLarge)
    assert "10001 headers, more than 256" in outcome.error.message
    outcome = run(backend, [data], limits=Limits(max_headers=10_001))
    assert outcome.error is None
    assert len(outcome.head.headers) == 10_001


@pytest.mark.parametrize("feed", FEEDS)
def test_interim_flood(backend: str, feed: str) -> None:
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    interim = b"HTTP/1.1 102 Processing\r\n\r\n"
    outcome = run(backend, FEEDS[feed](interim * 10 + final))
    assert outcome.error is None
    assert outcome.head.interim == 10
    outcome = run(backend, FEEDS[feed](interim * 11 + final))
    assert isinstance(outcome.error, TooLarge)
    assert "more than 10 interim" in outcome.error.message
    outcome = run(backend, FEEDS[feed](interim * 1000))
    assert isinstance(outcome.error, TooLarge)


def test_interim_heads_count_towards_the_head_cap(backend: str) -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: " + b"l" * 150 + b"\r\n\r\n"
    data = interim * 2 + head_of_size(100)
    assert len(data) > 400
    limits = Limits(max_header_bytes=400)
    for chunks in ([data], bytewise(data)):
        assert isinstance(run(backend, chunks, limits=limits).error, TooLarge)
    assert run(backend, [data], limits=Limits(max_header_bytes=len(data))).error is None


BODIES = {
    "content-length": lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"b" * n,
    "chunked": lambda n: CHUNKED_HEAD + b"%x\r\n" % n + b"b" * n + b"\r\n0\r\n\r\n",
    "chunked-small": lambda n: CHUNKED_HEAD + b"1\r\nb\r\n" * n + b"0\r\n\r\n",
    "close-delimited": lambda n: b"HTTP/1.1 200 OK\r\n\r\n" + b"b" * n,
}


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("framing", BODIES)
def test_body_cap(backend: str, framing: str, feed: str) -> None:
    limits = Limits(max_body_bytes=100)
    outcome = run(backend, FEEDS[feed](BODIES[framing](100)), limits=limits)
    assert outcome.error is None
    assert outcome.body == b"b" * 100
    outcome = run(backend, FEEDS[feed](BODIES[framing](101)), limits=limits)
    assert isinstance(outcome.error, TooLarge)
    assert "max_body_bytes (100)" in outcome.error.message


def test_body_cap_zero_and_none(backend: str) -> None:
    assert run(backend, [BODIES["content-length"](0)], limits=Limits(max_body_bytes=0)).error is None
    assert isinstance(run(backend, [BODIES["chunked"](1)], limits=Limits(max_body_bytes=0)).error, TooLarge)
    outcome = run(backend, [BODIES["close-delimited"](300_000)], limits=Limits(max_body_bytes=None))
    assert outcome.error is None
    assert len(outcome.body) == 300_000


def test_endless_trailer_is_too_large(backend: str) -> None:
    # After the head, the bytes that are not body (chunk lines, trailers) are bounded too.
    protocol = make_protocol(backend, Limits(max_header_bytes=4096))
    protocol.send_request(request())
    protocol.receive_data(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-Endless: ")
    error, fed = feed_until_error(protocol, [b"t" * 1024] * 64)
    assert isinstance(error, TooLarge)
    assert fed <= 4096 + 1024


def test_endless_chunk_extension_is_bounded(backend: str) -> None:
    protocol = make_protocol(backend, Limits(max_header_bytes=4096))
    protocol.send_request(request())
    protocol.receive_data(CHUNKED_HEAD + b"5;ext=")
    error, fed = feed_until_error(protocol, [b"e" * 1024] * 64)
    assert isinstance(error, TooLarge)
    assert fed <= 4096 + 1024


@pytest.mark.parametrize("split", [1, 2, 3], ids=["CR|LF", "LF|CRLF", "CRLF|CRLF"])
def test_chunk_framing_is_measured_when_the_blank_line_spans_two_reads(backend: str, split: int) -> None:
    # The first read ends inside the blank line that ends a chunked head: the body's framing must still be
    # measured from its first byte (the first read may have been fed whole, as the usual response is).
    protocol = make_protocol(backend, Limits(max_header_bytes=4096))
    protocol.send_request(request())
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    protocol.receive_data(head[: len(head) - split])
    error, fed = feed_until_error(protocol, [head[len(head) - split :] + b"5;ext=", *[b"e" * 1024] * 64])
    assert isinstance(error, TooLarge)
    assert fed <= 4096 + 1024


def test_a_blank_line_after_an_interim_head_is_refused_however_the_reads_split(backend: str) -> None:
    # The interim head's blank line ends in the third read ("\n" | "\r" | "\n"): the blank line after it is
    # still seen (it once was lost with a tail of one byte).
    data = PROTOCOL_ERRORS["blank-line-after-interim"]
    first = data.index(b"\r\n") + 2
    outcome = run(backend, [data[:first], data[first : first + 1], data[first + 1 :]])
    assert outcome.summary == ("error", "protocol")


@pytest.mark.parametrize("take_events", [True, False], ids=["connection-like", "feed-only"])
def test_memory_stays_bounded_on_an_endless_header_line(backend: str, take_events: bool) -> None:
    cap = Limits().max_header_bytes
    chunk = b"a" * 65536
    protocol = make_protocol(backend)
    protocol.send_request(request())
    errors = 0
    tracemalloc.start()
    try:
        protocol.receive_data(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(50 * 16):  # 50 MiB in 64 KiB chunks; keep feeding after the error, as a bad caller would
            try:
                protocol.receive_data(chunk)
                if take_events:
                    protocol.next_event()
            except TooLarge:
                errors += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors == 50 * 16  # the first chunk already overflows the cap, and the error sticks
    assert peak < 10 * cap, f"peak {peak} bytes"


# -- keep-alive cycles --------------------------------------------------------------------------------------


def test_two_responses_on_one_protocol(backend: str) -> None:
    protocol = make_protocol(backend)
    for index, case in enumerate(["content-length", "chunked-ext-trailers", "interim", "odd-but-valid-head"]):
        if index:
            protocol.start_next_cycle()
        protocol.send_request(request())
        check_case(CASES[case], drive(protocol, bytewise(CASES[case].wire) if index % 2 else [CASES[case].wire]))
    assert protocol.cycles == 3


@pytest.mark.parametrize("first", ["head-with-length", "head-chunked", "head-no-framing", "204", "304"])
def test_next_response_after_a_no_body_response(backend: str, first: str) -> None:
    # llhttp does not know the request was HEAD: it would wait for the 1234 bytes the head announced.
    protocol = make_protocol(backend)
    protocol.send_request(request(CASES[first].method))
    check_case(CASES[first], drive(protocol, [CASES[first].wire]))
    for case in ["content-length", "chunked-ext-trailers"]:
        protocol.start_next_cycle()
        protocol.send_request(request())
        check_case(CASES[case], drive(protocol, [CASES[case].wire]))


@pytest.mark.parametrize("after", [b"1;a", b"1\r\n", b"\r\n", b"\n", b"x", b"HTTP/1.1 200 OK\r\n"])
@pytest.mark.parametrize("framing", [b"Transfer-Encoding: chunked", b"Content-Length: 3", b"X: no-framing"])
def test_anything_after_a_head_reply_is_leftover(backend: str, after: bytes, framing: bytes) -> None:
    # llhttp reads on into the body the headers announce, silently for a partial chunk-size line.
    wire = b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n"
    for chunks in ([wire + after], [wire[:-1], wire[-1:] + after]):
        outcome = run(backend, chunks, method=b"HEAD")
        assert outcome.end == ResponseEnd(False, "unexpected bytes after the response"), chunks


@pytest.mark.parametrize("after", [b"\r\n", b"\n", b"\r", b"\r\n\r\n"])
def test_line_ends_after_a_response_are_leftover(backend: str, after: bytes) -> None:
    # llhttp skips CR and LF between messages without telling anyone.
    for name in ["content-length", "chunked-ext-trailers", "204"]:
        outcome = run(backend, [CASES[name].wire + after], method=CASES[name].method)
        assert outcome.end == ResponseEnd(False, "unexpected bytes after the response"), name


def test_many_small_chunks_with_a_small_head_cap(backend: str) -> None:
    # Chunk framing is not head: a big receive of tiny chunks is fine whatever max_header_bytes is.
    data = BODIES["chunked-small"](20_000)
    outcome = run(backend, [data], limits=Limits(max_header_bytes=1024))
    assert outcome.error is None
    assert outcome.body == b"b" * 20_000


def test_pipelined_responses_are_leftover(backend: str) -> None:
    wire = CASES["content-length"].wire
    outcome = run(backend, [wire + wire])
    assert outcome.body == b"hello"
    assert outcome.end == ResponseEnd(False, "unexpected bytes after the response")


@pytest.mark.parametrize("case", ["close-delimited", "connection-close", "http10", "te-and-cl"])
def test_no_next_cycle_after_a_response_that_is_not_reusable(backend: str, case: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    assert not drive(protocol, [CASES[case].wire]).end.reusable
    with pytest.raises(RuntimeError):
        protocol.start_next_cycle()


def test_no_next_cycle_before_the_end(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    with pytest.raises(RuntimeError):
        protocol.start_next_cycle()
    protocol.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    assert isinstance(protocol.next_event(), ResponseHead)
    with pytest.raises(RuntimeError):
        protocol.start_next_cycle()


def test_second_response_is_checked_from_its_first_bytes(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    drive(protocol, [CASES["content-length"].wire])
    protocol.start_next_cycle()
    protocol.send_request(request())
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x response"):
        protocol.receive_data(b"SSH-2.0-x")


# -- requests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ([(b"X", b"a\r\nInjected: yes")], "invalid value"),
        ([(b"X", b"a\nb")], "invalid value"),
        ([(b"X", b"a\rb")], "invalid value"),
        ([(b"X", b"a\x00b")], "invalid value"),
        ([(b"X", b"a\x7fb")], "invalid value"),
        ([(b"X", b"a\x1bb")], "invalid value"),
        ([(b"X", b" leading")], "invalid value"),
        ([(b"X", b"trailing\t")], "invalid value"),
        ([(b"Bad Name", b"v")], "invalid header name"),
        ([(b"Bad:Name", b"v")], "invalid header name"),
        ([(b"", b"v")], "invalid header name"),
        ([(b"X\r\n", b"v")], "invalid header name"),
        ([(b"Content-Length", b"5")], "set by aiotcp"),
        ([(b"transfer-encoding", b"chunked")], "set by aiotcp"),
        ([HOST], "exactly one Host"),
        ([(b"host", b"other.test")], "exactly one Host"),
    ],
)
def test_request_rejects_bad_headers(headers: list[tuple[bytes, bytes]], match: str) -> None:
    with pytest.raises(InvalidHeader, match=match) as info:
        Request(b"GET", b"/", [HOST, *headers])
    assert info.value.kind == "invalid_target"


def test_request_needs_a_host() -> None:
    with pytest.raises(InvalidHeader, match="exactly one Host"):
        Request(b"GET", b"/", [])


def test_request_allows_empty_values_and_obs_text() -> None:
    request = Request(b"GET", b"/", [HOST, (b"X-Empty", b""), (b"X-Text", b"caf\xc3\xa9 \tok")])
    assert request.encode() == h11_bytes(request)
    assert b"X-Empty: \r\n" in request.encode()


@pytest.mark.parametrize("target", [b"/a b", b"/a\tb", b"/a\r\nX: y", b"/\x00", b"/\x7f", b"", b"/caf\xc3\xa9"])
def test_request_rejects_bad_targets(target: bytes) -> None:
    with pytest.raises(InvalidTarget, match="invalid request path"):
        Request(b"GET", target, [HOST])


@pytest.mark.parametrize("method", [b"", b"G T", b"GET\r\n", b"G\x00", b"CONNECT"])
def test_request_rejects_bad_methods(method: bytes) -> None:
    with pytest.raises(InvalidTarget):
        Request(method, b"/", [HOST])


def test_request_frames_the_body() -> None:
    assert Request(b"GET", b"/", [HOST]).encode() == b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"
    assert Request(b"POST", b"/", [HOST]).encode() == (
        b"POST / HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\n\r\n"
    )
    assert Request(b"PUT", b"/x", [(b"A", b"1"), HOST], b"data").encode() == (
        b"PUT /x HTTP/1.1\r\nHost: example.test\r\nA: 1\r\nContent-Length: 4\r\n\r\ndata"
    )


def h11_bytes(req: Request) -> bytes:
    protocol = make_protocol("h11")
    return protocol.send_request(req)


TOKENS = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1)
FIELD_VALUES = st.binary(max_size=40).map(
    lambda raw: bytes(b if (0x20 <= b <= 0x7E or b >= 0x80 or b == 9) else 0x61 for b in raw).strip(b" \t")
)
NAMES = TOKENS.filter(lambda name: name.lower() not in ("host", "content-length", "transfer-encoding"))
TARGETS = st.binary(min_size=1, max_size=60).map(lambda raw: bytes(0x21 + b % 94 for b in raw))


@FUZZ
@given(
    method=st.one_of(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]), TOKENS),
    target=TARGETS,
    before=st.lists(st.tuples(NAMES, FIELD_VALUES), max_size=5),
    after=st.lists(st.tuples(NAMES, FIELD_VALUES), max_size=5),
    host=st.sampled_from([b"Host", b"host", b"HOST"]),
    body=st.binary(max_size=64),
)
def test_request_encode_matches_h11(
    method: str,
    target: bytes,
    before: list[tuple[str, bytes]],
    after: list[tuple[str, bytes]],
    host: bytes,
    body: bytes,
) -> None:
    if method == "CONNECT":
        return
    headers = [(name.encode(), value) for name, value in before]
    headers.append((host, b"example.test:8080"))
    headers.extend((name.encode(), value) for name, value in after)
    req = Request(method.encode(), target, headers, body)
    encoded = req.encode()
    assert encoded == h11_bytes(req)
    for backend in INSTALLED_PARSERS:
        assert make_protocol(backend).send_request(req) == encoded, backend
    head, _, rest = encoded.partition(b"\r\n\r\n")
    assert rest == body
    assert b"\r\n\r\n" not in head
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", head) is None, "bare CR or LF in the head"
    assert all(0x20 <= b < 0x7F or b >= 0x80 or b in b"\t\r\n" for b in head)


def test_second_request_before_the_response_ended(backend: str) -> None:
    protocol = make_protocol(backend)
    protocol.send_request(request())
    with pytest.raises(RuntimeError, match="before the previous response ended"):
        protocol.send_request(request())


# -- fuzzing ------------------------------------------------------------------------------------------------


def outcome_or_foreign(backend: str, chunks: list[bytes], method: bytes = b"GET") -> Outcome:
    """Run, failing the test on anything but events or an AiotcpError."""
    try:
        return run(backend, chunks, method=method)
    except AiotcpError as exc:  # pragma: no cover - run() catches these
        raise AssertionError("AiotcpError escaped the driver") from exc


ANY_RESPONSE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda tail: b"HTTP/1.1 " + tail),
    st.tuples(st.sampled_from(sorted(CASES)), EDITS).map(lambda pair: mutate(CASES[pair[0]].wire, pair[1])),
    st.tuples(st.sampled_from(sorted(PROTOCOL_ERRORS)), EDITS).map(
        lambda pair: mutate(PROTOCOL_ERRORS[pair[0]], pair[1])
    ),
)


@FUZZ
@given(data=ANY_RESPONSE_BYTES, points=st.lists(st.integers(min_value=0), max_size=8), head=st.booleans())
@example(
    data=b"HTTP/1.1 204 OK\r\n\r\nHTTP/1.1 101 S\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nxx",
    points=[],
    head=False,
)
def test_any_bytes_end_in_events_or_an_aiotcp_error_whatever_the_split(
    data: bytes, points: list[int], head: bool
) -> None:
    method = b"HEAD" if head else b"GET"
    for backend in INSTALLED_PARSERS:
        at_once = outcome_or_foreign(backend, [data], method)
        assert_same_outcome(outcome_or_foreign(backend, split_at(data, points), method), at_once)
        assert_same_outcome(outcome_or_foreign(backend, bytewise(data), method), at_once)


LEFTOVER = "unexpected bytes after the response"


def assert_same_outcome(split: Outcome, whole: Outcome) -> None:
    """``split`` got the bytes in pieces, ``whole`` at once: the same outcome, except that bytes after the end
    of the response are seen only when they come with its last byte (a connection reads no further)."""
    if whole.error is None and whole.end.why_not_reusable == LEFTOVER:
        assert split.error is None, (split, whole)
        assert split.events[:-1] == whole.events[:-1], (split, whole)
    else:
        assert split.summary == whole.summary, (split, whole)


# A grammar of responses, valid and not, for the differential test. It leaves out the few classes of input
# on which the backends cannot agree (listed in the module docstring of aiotcp.http11): chunk extensions other
# than ";token[=token]", or followed by whitespace; chunk sizes of more than 20 digits; bare LF line ends after
# the head (chunk lines, trailers). Everything else -- versions, status codes, reason phrases, names, values
# with control characters, quirks (obs-fold, repeated equal lengths), framing, interim responses, trailers,
# truncation, leftovers -- is fair game.
_VALUE_BYTES = st.sampled_from([b"a", b"Z", b"0", b" ", b"\t", b"\xc3\xa9", b"\xff", b",", b"\x01", b"\x7f", b'"'])
_BAD_VALUE_BYTES = st.sampled_from([b"\x00", b"\r", b"\x0b", b"\x0c", b"\n"])


@st.composite
def header_fields(draw: st.DrawFn) -> tuple[bytes, bytes]:
    name = draw(st.one_of(TOKENS.map(str.encode), st.sampled_from([b"X Y", b"", b"X\x01", b"\xc3\xa9"])))
    value = b"".join(draw(st.lists(_VALUE_BYTES, max_size=6)))
    if draw(st.integers(0, 20)) == 0:
        value += draw(_BAD_VALUE_BYTES) + b"v"
    return name, value


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([b"1.1"] * 6 + [b"1.0", b"1.2", b"2.0", b"0.9"]))
    status = draw(st.one_of(st.sampled_from([200, 204, 304, 404, 500, 599]), st.integers(0, 999)))
    reason = draw(st.sampled_from([b" OK", b"", b" ", b" Not\tFound", b" \xc3\xa9t\xc3\xa9", b" a\x01b"]))
    eol = draw(st.sampled_from([b"\r\n"] * 4 + [b"\n"]))
    interim = b"".join(
        b"HTTP/1.1 %d Wait" % code
        + eol
        + b"".join(n + b": " + v + eol for n, v in draw(st.lists(header_fields(), max_size=2)))
        + eol
        for code in draw(st.lists(st.sampled_from([100, 102, 103, 101]), max_size=2))
    )
    fields = draw(st.lists(header_fields(), max_size=4))
    if fields and draw(st.integers(0, 5)) == 0:  # obs-fold: the first field's value goes on on the next line
        name, value = fields[0]
        fields[0] = (name, value + eol + draw(st.sampled_from([b" ", b"\t", b"  "])) + b"folded")
    body = draw(st.binary(max_size=20))
    framing = draw(st.sampled_from(["length", "chunked", "none", "both", "bad-length"]))
    if draw(st.booleans()):
        fields.append((b"Connection", draw(st.sampled_from([b"close", b"keep-alive", b"Keep-Alive, CLOSE", b"x"]))))
    payload = b""
    if framing in ("length", "both"):
        fields.append((b"Content-Length", b"%d" % (len(body) + draw(st.sampled_from([0, 0, 0, 1, -1])))))
        repeat = draw(st.sampled_from([None] * 6 + ["field", "list", "other"]))
        if repeat == "field":
            fields.append((b"content-length", fields[-1][1]))
        elif repeat == "list":
            fields[-1] = (b"Content-Length", fields[-1][1] + b", " + fields[-1][1])
        elif repeat == "other":
            fields.append((b"Content-Length", fields[-1][1] + b"0"))
    if framing == "bad-length":
        fields.append((b"Content-Length", draw(st.sampled_from([b"1 2", b"x", b"-0", b"1" * 22, b""]))))
    if framing in ("chunked", "both"):
        fields.append((b"Transfer-Encoding", draw(st.sampled_from([b"chunked"] * 4 + [b"CHUNKED", b"gzip"]))))
        pieces = draw(st.lists(st.integers(1, 5), max_size=4))
        offset = 0
        for size in pieces:
            ext = draw(st.sampled_from([b"", b";a", b";a=b", b";x=1;y"]))
            digits = draw(st.sampled_from([b"%x", b"%X", b"00%x"])) % size
            space = draw(st.sampled_from([b""] * 8 + [b" ", b"\t "])) if not ext else b""
            payload += digits + ext + space + b"\r\n"
            payload += (body * 5)[offset : offset + size] + b"\r\n"
            offset += size
        payload += b"0\r\n" + b"".join(b"T-%d: t\r\n" % i for i in range(draw(st.integers(0, 2)))) + b"\r\n"
    else:
        payload = body
    head = b"HTTP/" + version + b" %03d" % status + reason + eol
    head += b"".join(name + b":" + draw(st.sampled_from([b" ", b"", b"  "])) + value + eol for name, value in fields)
    data = interim + head + eol + payload
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 4)) == 0:
        data += draw(st.sampled_from([b"HTTP/1.1 200 OK\r\n\r\n", b"x", b"\r\n"]))
    return data


@needs_httptools
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=responses(), head=st.booleans(), points=st.lists(st.integers(min_value=0), max_size=4))
def test_backends_agree(data: bytes, head: bool, points: list[int]) -> None:
    method = b"HEAD" if head else b"GET"
    for chunks in ([data], split_at(data, points)):
        reference = outcome_or_foreign("h11", chunks, method)
        fast = outcome_or_foreign("httptools", chunks, method)
        if reference.error is None or fast.error is None:
            # Accepted by either: both accept, with the same events.
            assert fast.summary == reference.summary, (fast, reference)
        # Rejected by both: the kinds may differ only between "protocol" and "disconnected", for a response
        # both malformed and cut short (llhttp sees the bad byte; h11 waits for a line end that never comes).
        elif fast.error.kind != reference.error.kind:
            assert {fast.error.kind, reference.error.kind} == {"protocol", "disconnected"}, (fast, reference)


def test_bare_lf_ending_a_head_whose_body_holds_crlfcrlf(backend: str) -> None:
    # The first CRLFCRLF is in the body: the head ended before it, at a blank line with a bare LF.
    for feed in FEEDS.values():
        outcome = run(backend, feed(b"HTTP/1.1 200 OK\r\nContent-Length: 6\n\nok\r\n\r\n"))
        assert outcome.head.quirks == ("bare_lf",)
        assert outcome.body == b"ok\r\n\r\n"
