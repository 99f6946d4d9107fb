"""The lean engine's response reading (aiotcp.probe.fast.ResponseReader) against HttptoolsProtocol alone.

ResponseReader reads with llhttp alone (http11.PlainResponseParser) while that parser vouches for the
response, and replays every read into HttptoolsProtocol at its first doubt. Whatever the bytes and however
they are split, the outcome must be HttptoolsProtocol's: the same head and body (cut at ``max_body``), or the
same error kind and message, or the same "more bytes needed". Fed the corpus of tests/test_http11.py (well-formed
responses and protocol errors, whole, byte by byte, at hypothesis splits, mutated), its response grammar,
and the hostile corpus. The quirks of the head are part of the outcome. A body a server compresses though
asked for ``identity`` is decoded as the client decodes it, ``max_body`` counting decoded bytes, whichever
parser read it and however it was split.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from helpers import EDITS, bytewise, mutate, split_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http11 import CASES, PROTOCOL_ERRORS, responses

from aiotcp.config import Limits
from aiotcp.errors import AiotcpError
from aiotcp.http11 import PlainResponseParser, Request
from aiotcp.probe.fast import ResponseReader

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
from hostile_table import BEHAVIOURS

pytest.importorskip("httptools")

LIMITS = Limits(keepalive_expiry=None, max_body_bytes=None)  # what the prober parses with
GET = Request(b"GET", b"/", [(b"Host", b"127.0.0.1"), (b"Connection", b"close")])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_BODIES = st.sampled_from([0, 1, 3, 64 * 1024])
WIRES = {**{f"case:{name}": case.wire for name, case in CASES.items()}, **PROTOCOL_ERRORS}
WIRES.update({f"row:{row.name}": row.wire for row in BEHAVIOURS if row.wire is not None})


def read(chunks: list[bytes], *, plain: bool, max_body: int, eof: bool) -> tuple[tuple[Any, ...], bool]:
    """What a lean attempt makes of ``chunks`` (then EOF, if ``eof``), and whether llhttp alone read it all."""
    reader = ResponseReader(LIMITS, GET, max_body, plain=plain, decode=True)
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            done = reader.feed(chunk)
            if done is not None:
                head, body = done
                fields = (head.status_code, head.reason, head.http_version, head.headers, head.interim, head.quirks)
                return ("response", *fields, body), reader.by_llhttp_alone
    except AiotcpError as exc:
        return ("error", exc.kind, exc.message), reader.by_llhttp_alone
    return ("more",), reader.by_llhttp_alone


def check(chunks: list[bytes], max_body: int, eof: bool) -> bool:
    """Both ways give the same outcome; whether llhttp alone read it."""
    chunks = [chunk for chunk in chunks if chunk]
    lean, alone = read(chunks, plain=True, max_body=max_body, eof=eof)
    reference, _ = read(chunks, plain=False, max_body=max_body, eof=eof)
    assert lean == reference, (chunks, lean, reference)
    return alone


@pytest.mark.parametrize("name", sorted(WIRES))
@pytest.mark.parametrize("eof", [False, True])
def test_every_wire_of_the_corpora_whole_and_bytewise(name: str, eof: bool) -> None:
    for max_body in (0, 4, 64 * 1024):
        check([WIRES[name]], max_body, eof)
        check(bytewise(WIRES[name]), max_body, eof)


def test_llhttp_alone_reads_the_usual_responses() -> None:
    """Not a vacuous test: the shape most servers send is read without HttptoolsProtocol."""
    usual = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
    assert check([usual], 64 * 1024, eof=False)
    assert check([usual[:-2], usual[-2:]], 64 * 1024, eof=False)  # the body goes on in the next read
    assert check([usual + b"HTTP/1.1 200 OK\r\n\r\n"], 64 * 1024, eof=False)  # leftover: not looked at
    assert check([b"HTTP/1.0 404 Not Found\r\n\r\nno length, " + b"x" * 20], 8, eof=False)  # cut at max_body
    for doubt in (
        usual[:20],  # the head does not end in the first read
        usual.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        usual.replace(b"200 OK", b"204 No Content"),
        usual.replace(b"200 OK", b"100 Continue"),
        usual.replace(b"\r\n", b"\n"),  # bare LF: llhttp is strict about it alone, lenient under HttptoolsProtocol
        usual.replace(b"Server: nginx", b"Content-Length: 5"),  # twice
        usual.replace(b"200 OK", b"200 O\x0bK"),
    ):
        assert not check([doubt], 64 * 1024, eof=True), doubt


def test_llhttp_alone_gives_the_quirks_it_can_meet() -> None:
    # HTTP/1.0 and an empty reason phrase are the only quirks a head llhttp alone vouches for can have.
    for wire, quirks in (
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", ("http10",)),
        (b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nhi", ("no_reason",)),
        (b"HTTP/1.0 200 \r\nContent-Length: 2\r\n\r\nhi", ("http10", "no_reason")),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", ()),
    ):
        assert check([wire], 64 * 1024, eof=False)
        assert read([wire], plain=True, max_body=100, eof=False)[0][6] == quirks
    # Any other quirk is HttptoolsProtocol's to find.
    for wire in (
        b"HTTP/1.1 200 O\x1bK\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nServer: a\x1bb\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",
    ):
        assert not check([wire], 64 * 1024, eof=False), wire
        assert read([wire], plain=True, max_body=100, eof=False)[0][6], wire


def _compressed(body: bytes, coding: bytes, framing: str) -> bytes:
    data = gzip.compress(body) if coding == b"gzip" else zlib.compress(body)
    if framing == "chunked":
        return (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"
        )  # fmt: skip
    length = b"Content-Length: %d\r\n" % len(data) if framing == "length" else b""
    return b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding + b"\r\n" + length + b"\r\n" + data


@FUZZ
@given(
    size=st.integers(min_value=0, max_value=200_000),
    coding=st.sampled_from([b"gzip", b"deflate"]),
    framing=st.sampled_from(["length", "chunked", "close"]),
    points=st.lists(st.integers(min_value=0), max_size=4),
    max_body=MAX_BODIES,
)
def test_a_compressed_body_is_read_decoded_at_any_split(
    size: int, coding: bytes, framing: str, points: list[int], max_body: int
) -> None:
    body = bytes(range(256)) * (size // 256) + b"<title>t</title>"
    wire = _compressed(body, coding, framing)
    for chunks in ([wire], split_at(wire, points)):
        check(chunks, max_body, eof=True)
        outcome, _ = read(chunks, plain=True, max_body=max_body, eof=True)
        assert outcome[0] == "response", outcome
        assert outcome[-1] == body[:max_body]


def test_a_body_that_does_not_decode_is_a_protocol_error() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!"
    outcome, _ = read([wire], plain=True, max_body=1000, eof=False)
    assert outcome[:2] == ("error", "protocol"), outcome
    check([wire], 1000, eof=False)
    check(bytewise(wire), 1000, eof=False)


@FUZZ
@given(data=responses(), points=st.lists(st.integers(min_value=0), max_size=4), max_body=MAX_BODIES, eof=st.booleans())
def test_the_response_grammar_at_any_split(data: bytes, points: list[int], max_body: int, eof: bool) -> None:
    check([data], max_body, eof)
    check(split_at(data, points), max_body, eof)


@FUZZ
@given(
    name=st.sampled_from(sorted(WIRES)),
    edits=EDITS,
    points=st.lists(st.integers(min_value=0), max_size=4),
    max_body=MAX_BODIES,
    eof=st.booleans(),
)
def test_the_corpora_mutated_at_any_split(
    name: str, edits: list[tuple[int, int, bytes]], points: list[int], max_body: int, eof: bool
) -> None:
    data = mutate(WIRES[name], edits)
    check(split_at(data, points), max_body, eof)


def test_plain_parser_state_shows_in_its_repr() -> None:
    parser = PlainResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh", LIMITS)
    assert repr(parser) == "<PlainResponseParser body vouched=True body_bytes=1>"
    assert not parser.feed(b"", LIMITS)  # EOF before the end: HttptoolsProtocol's to say
    assert "vouched=False" in repr(parser)
