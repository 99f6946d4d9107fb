"""Fuzzing what hostile servers and hostile input reach: both parsers over the hostile corpus, request
building, and target lines as the probe reads them.

tests/test_http11.py fuzzes the sans-IO core with its own corpus and grammar, and tests/test_targets.py the
target parser; this module adds what the issue asks beyond them:

* the hostile corpus -- every reply of the behaviour table (hostile_table.py) -- fed to both parsers whole,
  a byte at a time and at any split hypothesis picks: the outcome is the one the table says for that parser
  (so the parsers agree wherever the table does not say they differ), and it does not depend on the split;
* the corpus mutated: any byte string ends in events or an aiotcp error, never a foreign exception, the same
  way whatever the split, and the two parsers agree on accept or reject except for the classes of input
  aiotcp/http11.py documents as known disagreements;
* request building: whatever method, path and headers are asked for, either ``invalid_target`` or a request
  with exactly one blank line ending its head and no CR or LF anywhere but in its line ends;
* target lines: every line the probe reads gives targets that parse back to themselves, or one
  ``invalid_target`` record.
"""

from __future__ import annotations

import re
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from helpers import (
    EDITS,
    HAVE_HTTPTOOLS,
    INSTALLED_PARSERS,
    PARSERS,
    Outcome,
    any_text,
    bytewise,
    drive,
    mutate,
    split_at,
)
from hostile_table import BEHAVIOURS, Behaviour
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from aiotcp.config import Limits
from aiotcp.errors import AiotcpError, InvalidInput
from aiotcp.http11 import Request, ResponseEnd, ResponseHead, make_protocol
from aiotcp.probe import iter_jobs
from aiotcp.targets import parse_target

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIMEOUT_KINDS = {"read_timeout", "timeout"}
CORPUS = {row.name: row for row in BEHAVIOURS if row.wire is not None}
LEFTOVER = "unexpected bytes after the response"


def feed(row: Behaviour, parser: str, chunks: list[bytes]) -> Outcome:
    protocol = make_protocol(parser, row.limits)
    protocol.send_request(Request(row.method.encode(), b"/", [(b"Host", b"127.0.0.1")]))
    try:
        return drive(protocol, chunks, eof=row.eof)
    except AiotcpError as exc:  # pragma: no cover - drive() returns them
        raise AssertionError("an AiotcpError escaped the driver") from exc


def verdict(outcome: Outcome) -> str:
    """``ok``, ``incomplete`` (waiting for bytes: on the network, a timeout) or the error kind."""
    if outcome.error is not None:
        return outcome.error.kind
    if outcome.events and isinstance(outcome.events[-1], ResponseEnd):
        return "ok"
    return "incomplete"


def expected_verdict(row: Behaviour, parser: str) -> str:
    expected = row.expected(parser)
    return "incomplete" if expected in TIMEOUT_KINDS else expected


def check_row(row: Behaviour, parser: str, chunks: list[bytes]) -> None:
    outcome = feed(row, parser, chunks)
    assert verdict(outcome) == expected_verdict(row, parser), (row.name, parser, outcome)
    if verdict(outcome) == "ok":
        head = next(event for event in outcome.events if isinstance(event, ResponseHead))
        assert head.quirks == row.quirks, (row.name, parser, outcome)
    if verdict(outcome) == "ok" and row.body is not None:
        assert outcome.body == row.body, (row.name, parser, outcome)
        end = outcome.events[-1]
        assert isinstance(end, ResponseEnd)
        if row.fresh_after and len(chunks) == 1 and row.wire and not row.eof:
            assert not end.reusable, (row.name, parser, end)  # the leftover came with the response


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_corpus_whole_and_bytewise(name: str, parser: str) -> None:
    row = CORPUS[name]
    assert row.wire is not None
    check_row(row, parser, [row.wire])
    if len(row.wire) <= 4096:  # a byte at a time through the big ones would only be slow
        check_row(row, parser, bytewise(row.wire))


@FUZZ
@given(name=st.sampled_from(sorted(CORPUS)), points=st.lists(st.integers(min_value=0), max_size=16))
def test_hostile_corpus_at_any_split(name: str, points: list[int]) -> None:
    row = CORPUS[name]
    assert row.wire is not None
    for parser in INSTALLED_PARSERS:
        check_row(row, parser, split_at(row.wire, points))


# -- the cap on a chunked body's framing is exact -----------------------------------------------------------------

CAP = 256
SMALL = Limits(max_header_bytes=CAP)
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@FUZZ
@given(
    size=st.integers(min_value=CAP - 24, max_value=CAP + 24),
    where=st.sampled_from(["trailer", "first-size-line", "later-size-line"]),
    points=st.lists(st.integers(min_value=0), max_size=10),
)
def test_framing_cap_is_exact_whatever_the_split(size: int, where: str, points: list[int]) -> None:
    """A chunk-size line or a trailer section of ``size`` bytes: accepted up to the cap, ``too_large`` past it --
    on both parsers, however the bytes are split (each parser's own bound holds only to within one feed)."""
    if where == "trailer":
        section = b"X-T: " + b"t" * (size - 9) + b"\r\n\r\n"  # the whole trailer section is `size` bytes
        wire = CHUNKED + b"5\r\nhello\r\n0\r\n" + section
    else:
        line = b"5;" + b"e" * (size - 4) + b"\r\n"  # the size line, extension included, is `size` bytes
        before = b"" if where == "first-size-line" else b"3\r\nabc\r\n"
        wire = CHUNKED + before + line + b"hello\r\n0\r\n\r\n"
    row = Behaviour("framing", "fuzz", "ok" if size <= CAP else "too_large", "", limits=SMALL)
    for parser in INSTALLED_PARSERS:
        for chunks in ([wire], split_at(wire, points)):
            assert verdict(feed(row, parser, chunks)) == row.expect, (parser, size, where, chunks)


# -- the corpus mutated -------------------------------------------------------------------------------------------

SMALL_CORPUS = sorted(name for name, row in CORPUS.items() if row.wire is not None and len(row.wire) <= 4096)


def known_disagreement(data: bytes) -> str | None:
    """Which documented parser disagreement (aiotcp/http11.py) ``data`` may fall into, if any."""
    _, _, rest = data.partition(b"\r\n\r\n")
    lowered = data.lower()
    if b"chunked" in lowered and b";" in rest:
        return "chunk extensions"
    if re.search(rb"(?:^|\n)0{2,}[0-9a-fA-F]", rest) or re.search(rb"[0-9a-fA-F]{21,}", rest):
        return "chunk size of more than 20 hex digits"
    if re.search(rb"(?<!\r)\n", rest) or re.search(rb"(?<!\r)\n", data):
        return "bare LF"
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(SMALL_CORPUS),
    edits=EDITS,
    points=st.lists(st.integers(min_value=0), max_size=8),
    head=st.booleans(),
)
@example(name="content-length-conflicting", edits=[], points=[], head=False)
def test_mutated_corpus_ends_cleanly_the_same_way_on_both_parsers(
    name: str, edits: list[tuple[int, int, bytes]], points: list[int], head: bool
) -> None:
    row = CORPUS[name]
    assert row.wire is not None
    data = mutate(row.wire, edits)
    method = Behaviour(name, "fuzz", "", "", method="HEAD" if head else "GET", eof=row.eof, limits=row.limits)
    outcomes = {}
    for parser in INSTALLED_PARSERS:
        whole = feed(method, parser, [data])
        split = feed(method, parser, split_at(data, points))
        # Split-independence; bytes after the end of a response are seen only if they come with its last byte.
        if whole.error is None and verdict(whole) == "ok" and whole.events[-1] == ResponseEnd(False, LEFTOVER):
            assert verdict(split) == "ok", (parser, split, whole)
            assert split.events[:-1] == whole.events[:-1], (parser, split, whole)
        else:
            assert split.summary == whole.summary, (parser, split, whole)
        outcomes[parser] = verdict(whole)
    if HAVE_HTTPTOOLS and outcomes["h11"] != outcomes["httptools"]:
        if "ok" not in outcomes.values() and set(outcomes.values()) <= {"protocol", "disconnected", "incomplete"}:
            # Malformed and not yet complete: llhttp sees the bad byte at once, h11 waits for the end of the line
            # or head (then fails on EOF, or on the network times out). Both reject; documented.
            return
        assert known_disagreement(data), (outcomes, data)


# -- request building ---------------------------------------------------------------------------------------------

ANY_BYTES = st.binary(max_size=24)
TEXTISH = st.one_of(
    ANY_BYTES,
    st.text(max_size=16).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"GET", b"HEAD", b"/", b"/a?b=c", b"X-A", b"value", b"a\r\nb", b"a\nb", b"\r", b"\x00", b" v "]),
)


@FUZZ
@given(
    method=TEXTISH,
    target=TEXTISH,
    headers=st.lists(st.tuples(TEXTISH, TEXTISH), max_size=5),
    body=st.binary(max_size=8),
)
@example(method=b"GET", target=b"/", headers=[(b"X", b"a\r\n\r\nGET /smuggled HTTP/1.1")], body=b"")
def test_request_is_one_clean_head_or_invalid_target(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    try:
        request = Request(method, target, [(b"Host", b"127.0.0.1"), *headers], body)
    except InvalidInput:  # kind invalid_target: a bad method, path or header
        return
    for parser in INSTALLED_PARSERS:
        wire = make_protocol(parser).send_request(request)
        head, separator, rest = wire.partition(b"\r\n\r\n")
        assert separator, wire
        assert rest == body, wire  # exactly one blank line: the head ends once, the body follows
        lines = head.split(b"\r\n")
        assert all(b"\r" not in line and b"\n" not in line for line in lines), wire  # no stray CR or LF
        assert all(b"\x00" not in line for line in lines), wire
        assert lines[0] == b"%s %s HTTP/1.1" % (method, target), wire
        assert sum(line.lower().startswith(b"host:") for line in lines) == 1, wire
        if body:
            assert b"Content-Length: %d" % len(body) in lines, wire


# -- target lines as the probe reads them -------------------------------------------------------------------------


async def jobs_of(line: str) -> list[Any]:
    async with aclosing(iter_jobs([line], ports=(80, 8080))) as jobs:
        return [job async for job in jobs]


@settings(max_examples=300, deadline=None)
@given(line=any_text)
@example(line="127.0.0.1/30")
@example(line="127.1")
@example(line="127.0.0.1:\u0668\u0660")
def test_every_line_is_targets_or_one_invalid_target_record(line: str) -> None:
    jobs = anyio.run(jobs_of, line)
    text = line.strip()
    if not text or text.startswith("#"):
        assert jobs == []
        return
    assume(len(jobs) <= 1024)
    invalid = [job for job in jobs if job.result is not None]
    if invalid:
        assert len(jobs) == 1, jobs  # a bad line is one record, however it would have expanded
        assert invalid[0].result.error == "invalid_target"
        assert invalid[0].result.input == text
        return
    assert jobs, line
    for job in jobs[:8]:
        target = job.spec.resolve(default_scheme="http", default_port=job.port)
        assert parse_target(target.url) == target
        assert not re.search(r"[\x00-\x20\x7f]", target.url), target
