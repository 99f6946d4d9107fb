"""The behaviour table: every hostile server behaviour the suite plays, and what aiotcp must make of it.

One row per behaviour. ``expect`` is the outcome on both parsers -- ``"ok"`` (a response, checked further by
``body``, ``quirks`` and ``fresh_after``) or an error ``kind`` -- unless ``parsers`` names a parser that legitimately
differs (``why`` then says why; aiotcp/http11.py lists the known disagreements). ``deadline`` is the second
by which the outcome must be there (plus ``SLACK``); for the timeout rows it is the timeout that must fire.

The network rows (concerns ``close``, ``keepalive``, ``status``, ``framing``, ``quirks``, ``caps``, ``timeouts``)
are played by tests/hostile/test_hostile_wire.py on asyncio with both parsers, each reply delivered whole, one
byte at a time and at seeded random split points (rows with ``splits=False`` carry no bytes worth splitting), and the
rows with ``trio=True`` on trio as well. The TLS rows are played by test_hostile_tls.py, the local-fault
rows by test_hostile_local.py, the client-state rows by test_hostile_pool_limits.py and
test_hostile_many_fds.py, and the bad-input rows by test_hostile_input.py; the rows that carry a
``wire`` are also the corpus of the sans-IO fuzz tests (test_hostile_fuzz.py): fed at any split to both
parsers, they must end the way this table says.

Run ``PYTHONPATH=tests python tests/hostile/hostile_table.py`` to print the table as markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scripted_server import (
    CloseAfterSending,
    ReadRequest,
    Repeat,
    Reset,
    Send,
    Sleep,
    Step,
    Trickle,
    response,
)

from aiotcp.config import Limits, Timeouts

SLACK = 0.5  # an outcome may come this much after its deadline on a loaded machine
KiB = 1024

FAST = Timeouts(connect=2, read=2, write=2, pool=2, total=3)
WARM = response(200, b"warm")  # the reply to the warm-up request of the keep-alive rows
FRESH = b"fresh"
CH = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
OK_HEAD = b"HTTP/1.1 200 OK\r\n"
FORGED = response(200, b"forged")


def keep_alive(body: bytes = FRESH, times: int = 20) -> tuple[Step, ...]:
    """A well-behaved keep-alive script: what a fresh connection gets in the rows that need one."""
    return (Repeat([ReadRequest(), Send(response(200, body))], times),)


def replies(*steps: Step) -> tuple[Step, ...]:
    """Read the request, then misbehave."""
    return (ReadRequest(), *steps)


def closing(reply: bytes) -> tuple[Step, ...]:
    """Read the request, send ``reply``, close cleanly."""
    return (ReadRequest(), Send(reply), CloseAfterSending())


def open_after(reply: bytes) -> tuple[Step, ...]:
    """Read the request, send ``reply`` and keep the connection open (the verdict comes from the bytes)."""
    return (ReadRequest(), Send(reply))


@dataclass(frozen=True)
class Behaviour:
    name: str
    concern: str
    expect: str  # "ok" or an error kind, on both parsers unless ``parsers`` says otherwise
    why: str
    scripts: tuple[tuple[Step, ...], ...] = ()
    parsers: dict[str, str] = field(default_factory=dict)  # per-parser expectation where they differ
    timeouts: Timeouts = FAST
    deadline: float = 3.0
    limits: Limits = field(default_factory=Limits)
    method: str = "GET"
    warmup: bool = False  # a first GET answered WARM on connection 0 (the keep-alive rows)
    body: bytes | None = None  # for "ok": the body the response must carry
    quirks: tuple[str, ...] = ()  # for "ok": the response's quirks (Response.quirks), on both parsers
    fresh_after: bool = False  # for "ok": the connection must not be reused; a next GET gets FRESH anew
    accepted: int | None = None  # connections the server must have accepted in the end
    splits: bool = True  # play with the three delivery modes
    trio: bool = False  # also on trio
    memory_cap: int | None = None  # tracemalloc peak, bytes
    busy_loop: bool = False  # wait for the server blocking the event loop: what arrived is unread by the loop
    wire: bytes | None = None  # the reply alone, for the sans-IO corpus
    eof: bool = False  # the server closes after ``wire`` (sans-IO: feed EOF)

    def expected(self, parser: str) -> str:
        return self.parsers.get(parser, self.expect)


def _row(
    name: str,
    concern: str,
    expect: str,
    why: str,
    reply: bytes | None = None,
    *,
    close: bool = False,
    **kwargs: object,
) -> Behaviour:
    """A row whose server reads the request and sends ``reply`` (then closes if ``close``, else stays open)."""
    if reply is not None:
        kwargs.setdefault("scripts", ((closing if close else open_after)(reply), keep_alive()))
        kwargs.setdefault("wire", reply)
        kwargs.setdefault("eof", close)
    return Behaviour(name, concern, expect, why, **kwargs)  # type: ignore[arg-type]


HEAD_200K = (
    OK_HEAD + b"".join(b"X-Filler-%05d: %s\r\n" % (n, b"a" * 200) for n in range(1000)) + b"Content-Length: 0\r\n\r\n"
)
HEADERS_10K = OK_HEAD + b"".join(b"X%d: v\r\n" % n for n in range(10_000)) + b"Content-Length: 0\r\n\r\n"
CAPS = Timeouts(connect=2, read=2, write=2, pool=2, total=5)
MEMORY_CAP = 4 * 1024 * KiB  # tracemalloc peak for the size rows: a few times the 64 KiB head cap, and the server

BEHAVIOURS: list[Behaviour] = [
    # -- the connection closes or breaks before the response is complete -------------------------------------
    _row(
        "close-before-any-byte",
        "close",
        "disconnected",
        "FIN and no byte: a fresh connection is never retried (only a reused one is, see keepalive)",
        scripts=((ReadRequest(), CloseAfterSending()), keep_alive()),
        accepted=1,
        splits=False,
        trio=True,
        wire=b"",
        eof=True,
    ),
    _row(
        "fin-mid-head",
        "close",
        "disconnected",
        "FIN in the middle of the status line or headers",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        close=True,
        accepted=1,
    ),
    _row(
        "body-shorter-than-content-length",
        "close",
        "disconnected",
        "FIN after 3 of 10 announced bytes: the body is incomplete, never a short success",
        response(200, b"abc", content_length=10),
        close=True,
        accepted=1,
        trio=True,
    ),
    _row(
        "chunked-body-cut-short",
        "close",
        "disconnected",
        "FIN inside a chunk",
        CH + b"5\r\nhel",
        close=True,
        accepted=1,
    ),
    _row(
        "rst-mid-body",
        "close",
        "reset",
        "RST (SO_LINGER 0) after part of the body",
        scripts=((ReadRequest(), Send(response(200, b"x" * 1000, content_length=100_000)), Sleep(0.05), Reset()),),
        accepted=1,
        trio=True,
    ),
    _row(
        "rst-mid-head",
        "close",
        "reset",
        "RST after part of the head",
        scripts=((ReadRequest(), Send(b"HTTP/1.1 200 OK\r\nServer: x"), Sleep(0.05), Reset()),),
        accepted=1,
    ),
    _row(
        "rst-instead-of-response",
        "close",
        "reset",
        "RST in answer to the request, no byte of response",
        scripts=((ReadRequest(), Reset()),),
        accepted=1,
        splits=False,
        trio=True,
    ),
    _row(
        "close-delimited-body",
        "close",
        "ok",
        "no framing: the body runs to FIN, and the connection cannot be reused",
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
        close=True,
        body=b"until the end",
        fresh_after=True,
    ),
    _row(
        "body-without-framing-never-ends",
        "close",
        "timeout",
        "no framing and no end: only the total deadline stops it",
        scripts=((ReadRequest(), Send(b"HTTP/1.1 200 OK\r\n\r\n"), Repeat([Send(b"x" * 4096), Sleep(0.01)], 10_000)),),
        timeouts=Timeouts(connect=2, read=1, write=1, pool=1, total=1.0),
        deadline=1.0,
        splits=False,
        memory_cap=MEMORY_CAP,
    ),
    # -- keep-alive: stale connections, leftovers, bodies where none may be ---------------------------------------
    _row(
        "stale-keepalive-fin-while-idle",
        "keepalive",
        "ok",
        "the server closed the idle pooled connection: the pool sees the FIN and opens a new one",
        scripts=((ReadRequest(), Send(WARM), CloseAfterSending()), keep_alive()),
        warmup=True,
        body=FRESH,
        accepted=2,
        trio=True,
    ),
    _row(
        "stale-keepalive-fin-race",
        "keepalive",
        "ok",
        "FIN in answer to a request on a reused connection, no byte back: one transparent retry (GET)",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), CloseAfterSending()), keep_alive()),
        warmup=True,
        body=FRESH,
        accepted=2,
        trio=True,
    ),
    _row(
        "stale-keepalive-rst-race",
        "keepalive",
        "ok",
        "RST in answer to a request on a reused connection, no byte back: one transparent retry (GET)",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), Reset()), keep_alive()),
        warmup=True,
        body=FRESH,
        accepted=2,
    ),
    _row(
        "stale-keepalive-fin-race-head",
        "keepalive",
        "ok",
        "the same for HEAD: retried once",
        scripts=(
            (ReadRequest(), Send(WARM), ReadRequest(), CloseAfterSending()),
            (Repeat([ReadRequest(), Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")], 5),),
        ),
        method="HEAD",
        warmup=True,
        body=b"",
        accepted=2,
    ),
    _row(
        "stale-keepalive-retried-only-once",
        "keepalive",
        "disconnected",
        "the retry meets the same: one retry, then the error",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), CloseAfterSending()), (ReadRequest(), CloseAfterSending())),
        warmup=True,
        accepted=2,
    ),
    _row(
        "stale-keepalive-post-not-retried",
        "keepalive",
        "disconnected",
        "a POST may have been acted on: never sent twice",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), CloseAfterSending()), keep_alive()),
        method="POST",
        warmup=True,
        accepted=1,
    ),
    _row(
        "no-retry-after-response-bytes-fin",
        "keepalive",
        "disconnected",
        "the reused connection returned bytes before FIN: not stale, never retried",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), Send(b"HTTP/1.1 20"), CloseAfterSending()), keep_alive()),
        warmup=True,
        accepted=1,
    ),
    _row(
        "no-retry-after-response-bytes-rst",
        "keepalive",
        "reset",
        "the reused connection returned bytes before RST: not stale, never retried",
        scripts=(
            (
                ReadRequest(),
                Send(WARM),
                ReadRequest(),
                Send(response(200, b"abc", content_length=10)),
                Sleep(0.05),
                Reset(),
            ),
            keep_alive(),
        ),
        warmup=True,
        accepted=1,
    ),
    _row(
        "stray-bytes-answer-reused-connection",
        "keepalive",
        "ok",
        "bytes a server sent after an earlier response (a body after a HEAD reply) arrive only after the next "
        "request went out on the reused connection: they cannot start a status line, so no byte of a response "
        "came; one transparent retry on a fresh connection (GET)",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), Send(b"left over from the last reply")), keep_alive()),
        warmup=True,
        body=FRESH,
        accepted=2,
        trio=True,
    ),
    _row(
        "stray-bytes-then-response-on-reused-connection",
        "keepalive",
        "ok",
        "the same with a response after the stray bytes in the same write: never taken as the answer",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), Send(b"hello" + FORGED)), keep_alive()),
        warmup=True,
        body=FRESH,
        accepted=2,
    ),
    _row(
        "stray-crlf-before-response-on-reused-connection",
        "keepalive",
        "ok",
        "a CRLF sent after the last response (an old server's habit) before the next one: retried on a fresh "
        "connection, as the first bytes of a response may not be a blank line",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), Send(b"\r\n" + FORGED)), keep_alive()),
        warmup=True,
        body=FRESH,
        accepted=2,
    ),
    _row(
        "stray-head-body-answers-reused-head",
        "keepalive",
        "ok",
        "waitress and aiohttp.web: the body of a HEAD reply comes late, in front of the next HEAD's reply: retried "
        "once (HEAD)",
        scripts=(
            (
                ReadRequest(),
                Send(WARM),
                ReadRequest(),
                Send(b"hello" + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            ),
            (Repeat([ReadRequest(), Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")], 5),),
        ),
        method="HEAD",
        warmup=True,
        body=b"",
        accepted=2,
    ),
    _row(
        "stray-bytes-retried-only-once",
        "keepalive",
        "protocol",
        "the retry is answered with garbage too, on a fresh connection: that is the answer",
        scripts=(
            (ReadRequest(), Send(WARM), ReadRequest(), Send(b"left over")),
            (ReadRequest(), Send(b"not http either")),
        ),
        warmup=True,
        accepted=2,
    ),
    _row(
        "stray-bytes-post-not-retried",
        "keepalive",
        "protocol",
        "a POST answered with garbage on a reused connection may have been acted on: never sent twice",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), Send(b"left over from the last reply")), keep_alive()),
        method="POST",
        warmup=True,
        accepted=1,
    ),
    _row(
        "bad-status-line-on-reused-connection-not-retried",
        "keepalive",
        "protocol",
        "a reply that starts like a status line and then breaks is a response, not leftovers: never retried",
        scripts=((ReadRequest(), Send(WARM), ReadRequest(), Send(b"HTTP/1.1 2000 OK\r\n\r\n")), keep_alive()),
        warmup=True,
        accepted=1,
    ),
    _row(
        "extra-bytes-same-write",
        "keepalive",
        "ok",
        "bytes after a complete response: the connection is not reused, the next GET is not answered by them",
        response(200, b"ok") + FORGED,
        body=b"ok",
        fresh_after=True,
        accepted=2,
        trio=True,
    ),
    _row(
        "extra-bytes-later-write",
        "keepalive",
        "ok",
        "the same, the stray bytes arriving a moment later",
        scripts=((ReadRequest(), Send(response(200, b"ok")), Sleep(0.05), Send(FORGED)), keep_alive()),
        body=b"ok",
        fresh_after=True,
        accepted=2,
    ),
    _row(
        "extra-bytes-while-loop-busy",
        "keepalive",
        "ok",
        "the stray bytes arrive while the event loop is busy elsewhere: they are in the socket, not yet read "
        "by the loop, and the pool must still see them",
        scripts=((ReadRequest(), Send(response(200, b"ok")), Sleep(0.05), Send(FORGED)), keep_alive()),
        body=b"ok",
        fresh_after=True,
        accepted=2,
        busy_loop=True,
        splits=False,
        trio=True,
    ),
    _row(
        "stale-keepalive-fin-while-loop-busy",
        "keepalive",
        "ok",
        "the server closed the idle connection while the event loop was busy: its FIN is in the socket; a POST "
        "(never retried) must go on a new connection, not fail on the closed one",
        scripts=((ReadRequest(), Send(WARM), CloseAfterSending()), keep_alive()),
        method="POST",
        warmup=True,
        body=FRESH,
        accepted=2,
        busy_loop=True,
        splits=False,
        trio=True,
    ),
    _row(
        "body-on-head-reply",
        "keepalive",
        "ok",
        "a HEAD reply has no body whatever it announces: leftover",
        response(200, b"hello"),
        method="HEAD",
        body=b"",
        fresh_after=True,
        accepted=2,
    ),
    _row(
        "body-on-204",
        "keepalive",
        "ok",
        "204 has no body: what follows the head is leftover",
        b"HTTP/1.1 204 No Content\r\n\r\nhello",
        body=b"",
        fresh_after=True,
        accepted=2,
    ),
    _row(
        "body-on-304",
        "keepalive",
        "ok",
        "304 has no body, even with Content-Length: leftover",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
        body=b"",
        fresh_after=True,
        accepted=2,
    ),
    _row(
        "transfer-encoding-and-content-length",
        "keepalive",
        "ok",
        "read as chunked (RFC 9112 6.3), and never reused: a smuggling vector",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        body=b"hello",
        fresh_after=True,
        accepted=2,
    ),
    # -- not HTTP/1.x at all ------------------------------------------------------------------------------
    _row(
        "http09-reply",
        "status",
        "protocol",
        "an HTTP/0.9 reply is a body with no status line",
        b"<html><body>hello</body></html>",
        close=True,
        trio=True,
    ),
    _row(
        "ssh-banner",
        "status",
        "protocol",
        "a banner sent on connect, before the request: rejected from its first bytes",
        scripts=((Send(b"SSH-2.0-OpenSSH_9.6\r\n"), ReadRequest()),),
        wire=b"SSH-2.0-OpenSSH_9.6\r\n",
    ),
    _row(
        "smtp-banner-no-newline",
        "status",
        "protocol",
        "a banner with no line end: not waited for",
        scripts=((Send(b"220 mail.example.test ESMTP"), ReadRequest()),),
        wire=b"220 mail.example.test ESMTP",
    ),
    _row(
        "tls-alert-to-plain-request",
        "status",
        "protocol",
        "a TLS alert record in answer to plaintext",
        b"\x15\x03\x01\x00\x02\x02\x46",
        close=True,
    ),
    _row(
        "four-digit-status",
        "status",
        "protocol",
        "status codes have three digits",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "two-digit-status",
        "status",
        "protocol",
        "status codes have three digits",
        b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "unknown-version-1.2",
        "status",
        "protocol",
        "only HTTP/1.0 and HTTP/1.1 are spoken here",
        b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "unknown-version-2",
        "status",
        "protocol",
        "an HTTP/2-looking status line over HTTP/1",
        b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "101-without-upgrade",
        "status",
        "protocol",
        "no upgrade was asked for",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ),
    # -- framing --------------------------------------------------------------------------------------------
    _row(
        "content-length-conflicting",
        "framing",
        "protocol",
        "two different lengths: which one frames the body?",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        trio=True,
    ),
    _row(
        "content-length-repeated-equal",
        "quirks",
        "ok",
        "the same length twice: one length, read as one (RFC 9110 8.6 allows it; h11 and curl do)",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        body=b"abc",
        quirks=("duplicate_content_length_equal",),
    ),
    _row(
        "content-length-listed-equal",
        "quirks",
        "ok",
        "the same length listed twice in one field: read as one",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
        body=b"abc",
        quirks=("duplicate_content_length_equal",),
    ),
    _row(
        "content-length-listed-conflicting",
        "framing",
        "protocol",
        "two different lengths in one field",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc",
    ),
    _row(
        "content-length-plus",
        "framing",
        "protocol",
        "digits only: no sign",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab",
    ),
    _row(
        "content-length-minus",
        "framing",
        "protocol",
        "digits only: no sign",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nab",
    ),
    _row(
        "content-length-25-digits",
        "framing",
        "protocol",
        "more than fits in 64 bits",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 25 + b"\r\n\r\nab",
    ),
    _row(
        "transfer-encoding-gzip",
        "framing",
        "protocol",
        "a transfer coding we cannot undo: no framing we trust",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nab",
    ),
    _row(
        "transfer-encoding-chunked-twice",
        "framing",
        "protocol",
        "chunked applied twice (RFC 9112 6.1 forbids)",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    ),
    _row("chunk-size-not-hex", "framing", "protocol", "malformed chunk size", CH + b"zz\r\nhello\r\n0\r\n\r\n"),
    _row("chunk-size-negative", "framing", "protocol", "malformed chunk size", CH + b"-5\r\nhello\r\n0\r\n\r\n"),
    _row("chunk-size-0x", "framing", "protocol", "malformed chunk size", CH + b"0x5\r\nhello\r\n0\r\n\r\n"),
    _row("chunk-size-empty", "framing", "protocol", "malformed chunk size", CH + b"\r\nhello\r\n0\r\n\r\n"),
    _row(
        "chunk-size-20-hex-digits",
        "framing",
        "protocol",
        "a chunk size beyond 64 bits",
        CH + b"f" * 20 + b"\r\nhello\r\n0\r\n\r\n",
        trio=True,
    ),
    _row(
        "chunk-data-too-long",
        "framing",
        "protocol",
        "bad chunk terminator: data runs past the size",
        CH + b"5\r\nhelloXX\r\n0\r\n\r\n",
    ),
    _row(
        "chunk-terminator-bare-lf",
        "framing",
        "protocol",
        "bad chunk terminator: LF without CR",
        CH + b"5\r\nhello\n0\r\n\r\n",
    ),
    _row("chunk-terminator-missing", "framing", "protocol", "bad chunk terminator: none", CH + b"5\r\nhello0\r\n\r\n"),
    _row(
        "chunk-extension-with-lf",
        "framing",
        "protocol",
        "LF inside a chunk extension",
        CH + b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    ),
    _row(
        "nul-in-header-value",
        "framing",
        "protocol",
        "NUL in a header value",
        b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "cr-in-header-value",
        "framing",
        "protocol",
        "a bare CR in a header value",
        b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "esc-in-header-value",
        "quirks",
        "ok",
        "an escape sequence in a Server header: read as curl, browsers and h11 read it (it cannot split the "
        "message), recorded, and escaped wherever it is printed",
        b"HTTP/1.1 200 OK\r\nServer: evil\x1b[31mred\r\nContent-Length: 2\r\n\r\nok",
        body=b"ok",
        quirks=("ctl_in_header_value",),
        trio=True,
    ),
    _row(
        "bel-del-us-in-header-values",
        "quirks",
        "ok",
        "BEL, DEL and US in values, in a chunked response",
        CH.replace(b"\r\n\r\n", b"\r\nX-A: \x07\x7f\r\nX-B: a\x1fb\r\n\r\n") + b"2\r\nok\r\n0\r\n\r\n",
        body=b"ok",
        quirks=("ctl_in_header_value",),
    ),
    _row(
        "vt-in-header-value",
        "framing",
        "protocol",
        "VT is whitespace to many parsers (h11 refuses it): a value that could be read two ways",
        b"HTTP/1.1 200 OK\r\nX-Bad: a\x0bb\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "ff-in-header-value",
        "framing",
        "protocol",
        "FF, likewise",
        b"HTTP/1.1 200 OK\r\nX-Bad: a\x0cb\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "esc-then-nul-in-header-values",
        "framing",
        "protocol",
        "a tolerated control character does not make a NUL after it tolerated",
        b"HTTP/1.1 200 OK\r\nX-A: \x1b\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "esc-in-header-name",
        "framing",
        "protocol",
        "a name is a token: no control character",
        b"HTTP/1.1 200 OK\r\nX-B\x1bad: a\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "bare-lf-head",
        "quirks",
        "ok",
        "the lines of the head end with LF alone (RFC 9112 2.2 lets a recipient accept it; everyone does)",
        b"HTTP/1.1 200 OK\nServer: lf\nContent-Length: 2\n\nok",
        body=b"ok",
        quirks=("bare_lf",),
    ),
    _row(
        "obs-fold",
        "quirks",
        "ok",
        "a header value continued on the next line: unfolded with one space (RFC 9112 5.2)",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\nContent-Length: 2\r\n\r\nok",
        body=b"ok",
        quirks=("obs_fold",),
    ),
    _row(
        "obs-fold-of-the-status-line",
        "framing",
        "protocol",
        "a continuation line right after the status line continues no field",
        b"HTTP/1.1 200 OK\r\n X-Folded: a\r\nContent-Length: 2\r\n\r\nok",
    ),
    _row(
        "http10-response",
        "quirks",
        "ok",
        "an HTTP/1.0 reply to an HTTP/1.1 request: read, and the connection closed after it",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        close=True,
        body=b"ok",
        quirks=("http10",),
        fresh_after=True,
    ),
    _row(
        "no-reason-phrase",
        "quirks",
        "ok",
        "a status line without a reason phrase (nor the space before it)",
        b"HTTP/1.1 204\r\n\r\n",
        body=b"",
        quirks=("no_reason",),
    ),
    _row(
        "every-quirk-at-once",
        "quirks",
        "ok",
        "all of them, in an interim head and the final one: recorded once each, in a fixed order",
        b"HTTP/1.1 103 Hints\r\nLink: \x01\r\n\r\nHTTP/1.0 200\nX: a\r\n b\r\nServer: \x1b\r\n"
        b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        close=True,
        body=b"ok",
        quirks=("ctl_in_header_value", "bare_lf", "obs_fold", "duplicate_content_length_equal", "http10", "no_reason"),
    ),
    _row(
        "nul-in-reason",
        "framing",
        "protocol",
        "NUL in the reason phrase",
        b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "cr-in-reason",
        "framing",
        "protocol",
        "a bare CR in the reason phrase",
        b"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
    ),
    _row(
        "esc-in-reason",
        "quirks",
        "ok",
        "the reason phrase is data nobody acts on: kept (h11's rule), and escaped wherever it is printed",
        b"HTTP/1.1 200 Evil\x1b[2J\x1b]0;owned\x07\r\nContent-Length: 2\r\n\r\nok",
        body=b"ok",
        quirks=("ctl_in_reason",),
    ),
    # -- size caps --------------------------------------------------------------------------------------------
    _row(
        "header-line-never-ends",
        "caps",
        "too_large",
        "one header line that never ends: the head cap stops it",
        scripts=((ReadRequest(), Send(OK_HEAD + b"X-Long: "), Repeat([Send(b"a" * 4096)], 10_000)),),
        timeouts=CAPS,
        deadline=5,
        memory_cap=MEMORY_CAP,
        wire=OK_HEAD + b"X-Long: " + b"a" * 200 * KiB,
        trio=True,
    ),
    _row(
        "head-200-kib",
        "caps",
        "too_large",
        "a complete head of 200 KiB: over max_header_bytes (64 KiB)",
        HEAD_200K,
        timeouts=CAPS,
        deadline=5,
        memory_cap=MEMORY_CAP,
    ),
    _row(
        "ten-thousand-headers",
        "caps",
        "too_large",
        "10,000 header fields: over the head cap and max_headers",
        HEADERS_10K,
        timeouts=CAPS,
        deadline=5,
        memory_cap=MEMORY_CAP,
    ),
    _row(
        "interim-flood",
        "caps",
        "too_large",
        "1xx after 1xx: more than max_interim (10)",
        scripts=((ReadRequest(), Repeat([Send(b"HTTP/1.1 100 Continue\r\n\r\n")], 10_000)),),
        timeouts=CAPS,
        deadline=5,
        memory_cap=MEMORY_CAP,
        wire=b"HTTP/1.1 100 Continue\r\n\r\n" * 100,
    ),
    _row(
        "garbage-after-100-continue",
        "status",
        "protocol",
        "curl's test 1480: a 100 Continue with a header, then 'Data' with no line end and the connection left "
        "open: rejected from its first bytes, as a first response would be, not waited on until the deadline",
        b"HTTP/1.1 100 Continue\r\nServer: interim\r\n\r\nData",
        deadline=0.5,
        trio=True,
    ),
    _row(
        "garbage-line-after-100-continue",
        "status",
        "protocol",
        "the same with a line end after 'Data': no head follows, so no blank line is waited for either",
        b"HTTP/1.1 100 Continue\r\n\r\nData\r\n",
        deadline=0.5,
    ),
    _row(
        "blank-line-after-100-continue",
        "status",
        "protocol",
        "a blank line where the next head must start: the first response may not start with one either",
        b"HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        deadline=0.5,
    ),
    _row(
        "endless-trailers",
        "caps",
        "too_large",
        "a trailer section that never ends: bounded like a head",
        scripts=((ReadRequest(), Send(CH + b"0\r\n"), Repeat([Send(b"X-Trailer: " + b"t" * 100 + b"\r\n")], 100_000)),),
        timeouts=CAPS,
        deadline=5,
        memory_cap=MEMORY_CAP,
        wire=CH + b"0\r\n" + b"X-Trailer: " + b"t" * 200 * KiB + b"\r\n",
    ),
    _row(
        "body-larger-than-cap",
        "caps",
        "too_large",
        "Content-Length over max_body_bytes",
        response(200, b"x" * 2000),
        limits=Limits(max_body_bytes=1000),
    ),
    _row(
        "chunked-body-never-ends",
        "caps",
        "too_large",
        "chunks forever: max_body_bytes stops it",
        scripts=((ReadRequest(), Send(CH), Repeat([Send(b"1000\r\n" + b"x" * 4096 + b"\r\n")], 100_000)),),
        limits=Limits(max_body_bytes=256 * KiB),
        timeouts=CAPS,
        deadline=5,
        memory_cap=MEMORY_CAP,
    ),
    _row(
        "unframed-body-over-cap",
        "caps",
        "too_large",
        "a body with no framing over max_body_bytes",
        scripts=((ReadRequest(), Send(b"HTTP/1.1 200 OK\r\n\r\n"), Repeat([Send(b"x" * 4096)], 100_000)),),
        limits=Limits(max_body_bytes=256 * KiB),
        timeouts=CAPS,
        deadline=5,
        memory_cap=MEMORY_CAP,
        trio=True,
    ),
    # -- silence and slowness ---------------------------------------------------------------------------------
    _row(
        "accepts-never-answers",
        "timeouts",
        "read_timeout",
        "accepts, reads, never answers",
        scripts=((ReadRequest(),),),
        timeouts=Timeouts(connect=2, read=0.3, total=3),
        deadline=0.3,
        splits=False,
        trio=True,
    ),
    _row(
        "silent-mid-body",
        "timeouts",
        "read_timeout",
        "stops sending in the middle of the body",
        scripts=((ReadRequest(), Send(response(200, b"abc", content_length=10))),),
        timeouts=Timeouts(connect=2, read=0.3, total=3),
        deadline=0.3,
        splits=False,
    ),
    _row(
        "trickle-under-read-timeout",
        "timeouts",
        "timeout",
        "one byte every 0.2 s, under the 0.4 s read timeout, forever: only the total deadline stops it",
        scripts=((ReadRequest(), Trickle(response(200, b"x" * 200), bytes_per_second=5)),),
        timeouts=Timeouts(connect=2, read=0.4, total=1.0),
        deadline=1.0,
        splits=False,
        trio=True,
    ),
    _row(
        "never-accepts",
        "timeouts",
        "connect_timeout",
        "the accept queue is full: SYN never answered",
        timeouts=Timeouts(connect=0.3, total=3),
        deadline=0.3,
        splits=False,
        trio=True,
    ),
]

# -- rows played elsewhere (their test modules hold the details) -------------------------------------------------

TLS_BEHAVIOURS: list[Behaviour] = [
    Behaviour("tls-valid", "tls", "ok", "control: the test CA's certificate for 127.0.0.1"),
    Behaviour("tls-unknown-ca", "tls", "tls", "certificate verify failed: issued by a CA nobody trusts"),
    Behaviour("tls-self-signed", "tls", "tls", "certificate verify failed: self-signed"),
    Behaviour("tls-expired", "tls", "tls", "certificate verify failed: expired"),
    Behaviour("tls-not-yet-valid", "tls", "tls", "certificate verify failed: not yet valid"),
    Behaviour("tls-wrong-name", "tls", "tls", "certificate verify failed: hostname mismatch"),
    Behaviour(
        "tls-tarpit",
        "tls",
        "tls",
        "TCP accepted, ClientHello never answered: the connect timeout",
        timeouts=Timeouts(connect=0.5, total=3),
        deadline=0.5,
    ),
    Behaviour("tls-reset-in-handshake", "tls", "tls", "RST in answer to the ClientHello"),
    Behaviour("tls-closed-in-handshake", "tls", "tls", "FIN in answer to the ClientHello"),
    Behaviour("plaintext-on-tls-port", "tls", "tls", "an HTTP server answers the ClientHello in plaintext"),
    Behaviour(
        "tls-on-plain-port",
        "tls",
        "disconnected",
        "plaintext to a TLS server: it fails the handshake and closes without a byte (no TLS was tried, "
        "and no byte came to misparse)",
    ),
    Behaviour("tls-bad-cert-insecure", "tls", "ok", "verify=False: a prober sees the service, not its certificate"),
]

LOCAL_BEHAVIOURS: list[Behaviour] = [
    Behaviour("emfile-get", "local", "local", "no descriptor left (RLIMIT_NOFILE): ours, not the target's"),
    Behaviour(
        "emfile-probe",
        "local",
        "local",
        "the probe retries `local` with back-off and reports it as local, never as the target down",
    ),
    Behaviour(
        "ephemeral-ports-exhausted-get",
        "local",
        "local",
        "no free source port toward the target (EADDRNOTAVAIL), in a network namespace",
    ),
    Behaviour("ephemeral-ports-exhausted-probe", "local", "local", "the same through the probe"),
]

CLIENT_BEHAVIOURS: list[Behaviour] = [
    Behaviour(
        "stale-retry-at-the-per-host-limit",
        "keepalive",
        "ok",
        "the stale retry finds the origin's only slot held by an idle connection another request put back: it "
        "takes the slot (closing that idle connection) instead of waiting for pool_timeout",
        timeouts=Timeouts(connect=2, read=2, write=2, pool=1, total=3),
        deadline=1.0,
    ),
    Behaviour(
        "keepalive-above-fd-setsize",
        "keepalive",
        "ok",
        "more than 1024 descriptors open: a pooled connection is still checked and reused (select() cannot take "
        "such a descriptor; its ValueError must not read as 'closed by the peer')",
    ),
]

INPUT_BEHAVIOURS: list[Behaviour] = [
    Behaviour(
        "bad-input",
        "input",
        "invalid_target",
        "CR/LF/NUL/space in targets, paths and headers; ports like ٨٠, 8_0, ' +80 ', 65536; host 127.1: "
        "rejected before a socket exists, nothing on the wire",
    ),
]

ALL_BEHAVIOURS = [*BEHAVIOURS, *TLS_BEHAVIOURS, *LOCAL_BEHAVIOURS, *CLIENT_BEHAVIOURS, *INPUT_BEHAVIOURS]
BY_NAME = {behaviour.name: behaviour for behaviour in ALL_BEHAVIOURS}
assert len(BY_NAME) == len(ALL_BEHAVIOURS), "behaviour names must be unique"


def as_markdown() -> str:
    """The table as markdown: behaviour, concern, kind with h11, kind with httptools, why."""
    lines = ["| behaviour | concern | h11 | httptools | why |", "|---|---|---|---|---|"]
    for row in ALL_BEHAVIOURS:
        why = row.why.replace("|", "\\|")
        lines.append(f"| {row.name} | {row.concern} | {row.expected('h11')} | {row.expected('httptools')} | {why} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(as_markdown())
