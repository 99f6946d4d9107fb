"""Printed output escapes what the server chose: a reason phrase, headers, a title, a location, the bytes an
error message quotes. ``aiotcp head`` and ``aiotcp probe`` (text, CSV and JSONL) run for real, with warnings
as errors, against scripted servers that put terminal escapes (ESC, BEL, 8-bit CSI) and bidi overrides in
every field a server controls; no such character reaches the output raw, and JSONL keeps the text as data.

(The body written by ``aiotcp get`` and the bytes of ``aiotcp tcp`` are the payload the user asked for and
go out raw, as curl and nc write them.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from scripted_server import CloseAfterSending, ReadRequest, ScriptedServer, Send

RUN_TIMEOUT_S = 30.0
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\x00")
EVIL_REASON = b"Evil\x1b[2J\x1b]0;owned\x07 \xc2\x9b1A"
EVIL_TITLE = "<title>t\x1b[31m\u202eitle\u009b2J</title>".encode()
EVIL_REPLY = (
    b"HTTP/1.1 200 " + EVIL_REASON + b"\r\n"
    b"Server: s\xc2\x9b31m\xe2\x80\xaeerver\r\n"
    b"Location: /\xc2\x9b1A\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % len(EVIL_TITLE)
) + EVIL_TITLE
EVIL_BANNER = b"\x1b[2J\x1b]0;owned\x07SSH-2.0\r\n"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "aiotcp", *args],
        input=stdin.encode() if stdin is not None else None,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def assert_nothing_raw(output: bytes) -> str:
    text = output.decode("utf-8")
    for char in RAW:
        assert char not in text, (char, text)
    return text


def test_head_escapes_the_reason_phrase(reliability: Any) -> None:
    reliability.start("escape-reason[aiotcp head]")
    with ScriptedServer([ReadRequest(), Send(EVIL_REPLY), CloseAfterSending()]) as server:
        done = run("head", server.url)
    assert done.returncode == 0, done.stderr
    text = assert_nothing_raw(done.stdout + done.stderr)
    assert text.splitlines()[0] == "HTTP/1.1 200 Evil\\x1b[2J\\x1b]0;owned\\x07 \u00c2\\x9b1A"
    reliability.survive("escape-reason[aiotcp head]")


@pytest.mark.parametrize("fmt", ["text", "csv", "jsonl"])
def test_probe_output_escapes_every_server_field(fmt: str, reliability: Any) -> None:
    label = f"escape-fields[probe --format {fmt}]"
    reliability.start(label)
    with ScriptedServer([ReadRequest(), Send(EVIL_REPLY), CloseAfterSending()]) as server:
        done = run("probe", "-", "-q", "--format", fmt, stdin=server.address)
    assert done.returncode == 0, done.stderr
    text = assert_nothing_raw(done.stdout + done.stderr)
    if fmt == "jsonl":
        (record,) = [json.loads(line) for line in text.splitlines()]
        assert record["reason"] == EVIL_REASON.decode("latin-1")  # kept as data, escaped only on the wire
        assert record["title"] == "t\x1b[31m\u202eitle\u009b2J"
        assert record["server"] == "s\u009b31m\u202eerver"
    elif fmt == "csv":
        assert "Evil\\u001b[2J\\u001b]0;owned\\u0007" in text, text
        assert "s\\u009b31m\\u202eerver" in text, text
    else:
        assert "[s\\x9b31m\\u202eerver] [t\\x1b[31m\\u202eitle\\x9b2J] -> /\\x9b1A" in text, text
    reliability.survive(label)


@pytest.mark.parametrize("fmt", ["text", "csv", "jsonl"])
def test_error_messages_quote_server_bytes_escaped(fmt: str, reliability: Any) -> None:
    label = f"escape-error-message[probe --format {fmt}]"
    reliability.start(label)
    with ScriptedServer([Send(EVIL_BANNER), ReadRequest()]) as server:
        done = run("probe", "-", "-q", "--format", fmt, "-t", "3", stdin=server.address)
    assert done.returncode == 0, done.stderr
    text = assert_nothing_raw(done.stdout + done.stderr)
    assert "protocol" in text, text
    assert "not an HTTP/1.x response" in text, text
    reliability.survive(label)
