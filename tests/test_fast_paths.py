"""The prober's shortcuts give what the general paths give, whatever the input (hypothesis).

Each shortcut exists because the general path costs too much per target; each is checked here against the
general path it stands for:

* ``ProbeResult.to_json()`` (generated from the fields) is ``json.dumps(as_dict())``; ``values()`` rebuilds the
  record;
* the title found with ``find`` in a lowercased prefix is what the case-insensitive regex finds, and the
  whitespace collapsed with ``str.split`` is what ``\\s+`` collapses;
* ``fill_from_head`` reads the headers a record keeps as :class:`aiotcp.Headers` reads them;
* ``parse_spec`` of an ``a.b.c.d[:port]`` line (one regex) is what the general parser makes of it, and
  ``iter_jobs`` without a generator per line numbers lines as before;
* ``map_connect_error`` of a lone ``OSError`` is what it gives for the same error in a chain.
"""

from __future__ import annotations

import errno
import html
import json
import os
import re
import tempfile
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiotcp.error_mapping import map_connect_error
from aiotcp.probe import iter_jobs
from aiotcp.probe.fast import content_encoding
from aiotcp.probe.jobs import _jobs_for_line
from aiotcp.probe.journal import Journal
from aiotcp.probe.records import _TITLE, ProbeResult, _title, fill_from_head
from aiotcp.response import Headers
from aiotcp.targets import _parse

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from('a"\\\x00\x1f\x7f\x9b\u2028\u202e\udcff é😀 \t\n'), max_size=12),
)
NUMBER = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.just(float("nan")))


@st.composite
def records(draw: st.DrawFn) -> ProbeResult:
    return ProbeResult(
        input=draw(st.text(max_size=20)),
        line=draw(st.one_of(st.none(), st.integers(0, 10**9))),
        url=draw(TEXT),
        scheme=draw(TEXT),
        ip=draw(TEXT),
        port=draw(st.one_of(st.none(), st.integers(1, 65535))),
        ok=draw(st.booleans()),
        status_code=draw(st.one_of(st.none(), st.integers(100, 999))),
        reason=draw(TEXT),
        content_length=draw(st.one_of(st.none(), st.integers(0, 2**63))),
        title=draw(TEXT),
        connect_ms=draw(NUMBER),
        ttfb_ms=draw(NUMBER),
        time_ms=draw(st.one_of(st.none(), st.floats(0, 1e6))),
        attempts=draw(st.integers(0, 100)),
        error=draw(TEXT),
        error_message=draw(TEXT),
        timeout_phase=draw(st.sampled_from([None, "connect", "read"])),
        a=draw(st.one_of(st.none(), st.lists(st.text(max_size=8), max_size=3))),
        quirks=draw(st.one_of(st.none(), st.lists(st.sampled_from(["http10", "bare_lf"]), max_size=2))),
        cert_self_signed=draw(st.one_of(st.none(), st.booleans())),
        favicon_mmh3=draw(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))),
        dns_ms=draw(NUMBER),
        redirects=draw(st.one_of(st.none(), st.lists(st.fixed_dictionaries({"url": st.text(max_size=5)}), max_size=2))),
        seq=draw(st.integers(0, 10**6)),
        parts=draw(st.integers(1, 3)),
    )


@FUZZ
@given(record=records())
def test_a_journal_line_from_to_json_is_the_line_from_the_dict(record: ProbeResult) -> None:
    with tempfile.TemporaryDirectory() as directory:
        lines = []
        for append in ("append", "append_json"):
            path = os.path.join(directory, append)
            journal = Journal(path, {"input": "x"})
            marks = {"written": False} if record.ok else None  # a record the matchers kept out of the output
            if append == "append":
                journal.append(record.seq, {**record.as_dict(), **(marks or {})}, record.parts)
            else:
                journal.append_json(record.seq, record.to_json(), record.parts, marks=marks)
            journal.close()
            with open(path, "rb") as file:
                lines.append(file.read())
    assert lines[0] == lines[1]


@FUZZ
@given(record=records())
def test_to_json_is_json_dumps_of_as_dict(record: ProbeResult) -> None:
    assert record.to_json() == json.dumps(record.as_dict(), ensure_ascii=False, separators=(",", ":"))
    rebuilt = ProbeResult(*record.values())
    assert rebuilt.as_dict() == record.as_dict() or record.to_json() == rebuilt.to_json()  # (NaN != NaN)
    assert rebuilt.seq == record.seq


TITLE_PIECES = st.sampled_from(
    [b"<title", b"<TITLE", b"<TiTlE lang=x", b">", b"</title", b"</TITLE>", b"a", b" ", b"\n", b"<", b"/", b"&amp;"]
)


@FUZZ
@given(pieces=st.lists(TITLE_PIECES, max_size=12), padding=st.sampled_from([0, 0, 4090, 5000]))
def test_the_title_is_what_the_regex_finds(pieces: list[bytes], padding: int) -> None:
    body = b"x" * padding + b"".join(pieces)
    match = _TITLE.search(body)
    if match is None:
        assert _title(body, None) is None
        return
    text = match.group(1)[:2048].decode("utf-8", errors="replace")
    expected = re.sub(r"\s+", " ", html.unescape(text)).strip()[:512] or None
    assert _title(body, None) == expected


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(" \t\n\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000\u200bab&;#x2"), max_size=16))
def test_title_whitespace_collapses_as_the_regex_does(text: str) -> None:
    body = f"<title>{text}</title>".encode()
    expected = re.sub(r"\s+", " ", html.unescape(text)).strip()[:512] or None
    assert _title(body, "utf-8") == expected


HEADER_NAMES = st.sampled_from(
    [b"Server", b"SERVER", b"Content-Type", b"content-length", b"Location", b"Content-Encoding", b"X-Other"]
)
HEADER_VALUES = st.sampled_from([b"a", b"nginx/1.2", b"text/html; charset=utf-8", b"12", b"\xc3\xa9", b"\xe9", b""])


@FUZZ
@given(headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
def test_record_headers_read_as_headers_reads_them(headers: list[tuple[bytes, bytes]]) -> None:
    result = ProbeResult(input="x", line=1)
    fill_from_head(
        result,
        url="http://127.0.0.1/",
        ip="127.0.0.1",
        status_code=200,
        reason="OK",
        http_version="1.1",
        headers=headers,
        quirks=(),
        body=b"",
        dns_ms=None,
        connect_ms=None,
        tls_ms=None,
        ttfb_ms=None,
        fingerprints=False,
        keep_body=False,
    )
    reference = Headers(headers)
    assert result.content_type == reference.get("content-type")
    assert result.content_encoding == reference.get("content-encoding")
    # What the lean engine decodes by: the client's reading (Latin-1, repeats joined), which picks the decoder.
    codings = [value.decode("latin-1") for name, value in headers if name.lower() == b"content-encoding"]
    assert content_encoding(headers) == (", ".join(codings) if codings else None)
    assert result.server == reference.get("server")
    assert result.location == reference.get("location")


OCTETS = st.one_of(st.integers(0, 255).map(str), st.sampled_from(["00", "01", "256", "1000", "-1", ""]))
PORTS = st.one_of(st.integers(1, 65535).map(str), st.sampled_from(["0", "65536", "080", "99999", "", "1x"]))


@FUZZ
@given(octets=st.lists(OCTETS, min_size=3, max_size=5), port=st.one_of(st.none(), PORTS))
def test_an_address_line_parses_as_the_general_parser_parses_it(octets: list[str], port: str | None) -> None:
    import aiotcp.targets as targets

    line = ".".join(octets) + ("" if port is None else f":{port}")
    quick = targets._IPV4_LINE
    try:
        fast: Any = _parse(line)
    except Exception as exc:
        fast = type(exc)
    targets._IPV4_LINE = re.compile(r"(?!)")  # never matches: the general path
    try:
        try:
            slow: Any = _parse(line)
        except Exception as exc:
            slow = type(exc)
    finally:
        targets._IPV4_LINE = quick
    assert fast == slow


LINES = st.lists(
    st.sampled_from(
        ["127.0.0.1:80", "127.0.0.1", "# c", "", "  ", "http://h/x", "127.0.0.0/30", "bad line", "[::1]:9", "h:0"]
    ),
    max_size=8,
)


@FUZZ
@given(lines=LINES, ports=st.sampled_from([(), (80,), (80, 443)]))
def test_iter_jobs_numbers_lines_as_one_generator_per_line_did(lines: list[str], ports: tuple[int, ...]) -> None:
    expected = []
    seq = 0
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if text and not text.startswith("#"):
            for job in _jobs_for_line(seq, number, text, ports):
                seq = job.seq + 1
                expected.append((job.seq, job.line, job.text, job.spec, job.port, job.result and job.result.error))

    async def numbered() -> list[tuple[Any, ...]]:
        async with aclosing(iter_jobs(lines, ports=ports)) as jobs:
            return [(j.seq, j.line, j.text, j.spec, j.port, j.result and j.result.error) async for j in jobs]

    assert anyio.run(numbered) == expected


@pytest.mark.parametrize("code", [errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.EMFILE, 99999])
@pytest.mark.parametrize("phase", ["tcp", "tls", "dns"])
def test_a_lone_os_error_maps_as_the_same_error_in_a_chain(code: int, phase: Any) -> None:
    lone = OSError(code, os.strerror(code))
    chained = OSError(code, os.strerror(code))
    chained.__context__ = ValueError("context")
    a, b = map_connect_error(lone, "t", phase=phase), map_connect_error(chained, "t", phase=phase)
    assert (type(a), a.message) == (type(b), b.message)
