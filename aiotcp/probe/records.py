"""Probe records: :class:`ProbeResult` (one per target; its field order is the JSONL/CSV schema), how a
response fills one in, and how one is written as JSON.

Both engines build records here and only here: the reference path from a :class:`~aiotcp.Response`
(:func:`fill_from_response`), the lean path from the parser's :class:`~aiotcp.http11.ResponseHead` and the
body bytes (:func:`fill_from_head`); the first is the second applied to the response's parts, so the two
cannot disagree on a field.
"""

from __future__ import annotations

import html
import ipaddress
import json
import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ..response import Response, charset_of, decode_header_value

__all__ = ["FIELD_NAMES", "ProbeResult", "fill_from_head", "fill_from_response", "is_ip", "now_iso"]

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TITLE_LIMIT = 512
_TITLE_SCAN = 4096


@dataclass(slots=True)
class ProbeResult:
    """One record: what one input target gave. Field order is the JSONL/CSV schema (see the README)."""

    input: str
    line: int | None
    url: str | None = None
    scheme: str | None = None
    host: str | None = None
    ip: str | None = None
    port: int | None = None
    ok: bool = False
    status_code: int | None = None
    reason: str | None = None
    http_version: str | None = None
    content_length: int | None = None
    content_type: str | None = None
    server: str | None = None
    title: str | None = None
    location: str | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    time_ms: float | None = None
    attempts: int = 0
    error: str | None = None
    error_message: str | None = None
    timeout_phase: str | None = None
    timestamp: str | None = None
    redirects: list[dict[str, Any]] | None = None
    seq: int = field(default=-1, repr=False)  # position in the expanded input; not part of the schema

    def as_dict(self) -> dict[str, Any]:
        """The record as a dict in schema order (``redirects`` only when redirects were followed)."""
        record = {name: getattr(self, name) for name in FIELD_NAMES}
        if self.redirects is not None:
            record["redirects"] = self.redirects
        return record

    def to_json(self) -> str:
        """The record as one JSON object, exactly ``json.dumps(self.as_dict(), ensure_ascii=False,
        separators=(",", ":"))``, without building the dict (the probe writes one per target)."""
        text = _to_json(self)
        return text if self.redirects is None else f'{text[:-1]},"redirects":{_dumps(self.redirects)}}}'

    def values(self) -> tuple[Any, ...]:
        """Every field, schema order, then ``redirects`` and ``seq``: ``ProbeResult(*r.values()) == r``. (How a
        record crosses a process boundary cheaply: a tuple of plain values pickles fast.)"""
        return _values(self)


#: JSONL/CSV field names, in order.
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ProbeResult) if f.name not in ("redirects", "seq"))
_values: Callable[[ProbeResult], tuple[Any, ...]] = operator.attrgetter(*(f.name for f in fields(ProbeResult)))

# -- JSON without a dict ------------------------------------------------------------------------------------
# ``_to_json`` is generated from the fields, as dataclasses generates __init__: one f-string with a snippet per
# field chosen by its annotation, so a field added to ProbeResult is encoded like the others (an annotation
# not listed below goes through json.dumps). It must equal json.dumps of as_dict(): tests/test_output.py
# checks that on every kind of value. About three times faster than the dict and the encoder.

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_NUMBER = "{{'null' if (v := self.{0}) is None else _number(v)}}"
_SNIPPETS = {
    "str": "{{_string(self.{0})}}",
    "str | None": "{{'null' if (v := self.{0}) is None else _string(v)}}",
    "int": "{{_number(self.{0})}}",
    "int | None": _NUMBER,
    "float | None": _NUMBER,
    "bool": "{{'true' if self.{0} else 'false'}}",
}


def _number(value: float) -> str:
    # int and float print as json prints them; NaN and infinities (never in a record) in json's spelling.
    return repr(value) if type(value) is int or value - value == 0 else _dumps(value)


def _compile_to_json() -> Callable[[ProbeResult], str]:
    parts = []
    for f in fields(ProbeResult):
        if f.name in FIELD_NAMES:
            snippet = _SNIPPETS.get(str(f.type), "{{_dumps(self.{0})}}").format(f.name)
            parts.append(f"{json.dumps(f.name)}:{snippet}".replace('"', '\\"'))
    source = 'def _to_json(self):\n    return f"{{' + ",".join(parts) + '}}"\n'
    namespace: dict[str, Any] = {}
    exec(source, {"_string": json.encoder.encode_basestring, "_number": _number, "_dumps": _dumps}, namespace)
    return namespace["_to_json"]  # type: ignore[no-any-return]


_to_json = _compile_to_json()


_second_stamp: tuple[int, str] = (0, "")


def now_iso() -> str:
    """RFC 3339 UTC with milliseconds. The date-and-time part is formatted once per second, not per record."""
    global _second_stamp
    now = time.time()
    second = int(now)
    if _second_stamp[0] != second:
        _second_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_stamp[1]}.{int((now - second) * 1000):03d}Z"


def _title_bytes(body: bytes) -> bytes | None:
    """What ``_TITLE`` captures in ``body``, or None. Looked for by ``find`` in a lowercased copy of the first
    :data:`_TITLE_SCAN` bytes first (the title is near the top of a page, and a case-insensitive regex over the
    whole body costs more than the rest of a record); the regex decides when the prefix does not."""
    head = body[:_TITLE_SCAN].lower()  # bytes.lower() and IGNORECASE on a bytes pattern: both ASCII only
    start = head.find(b"<title")
    if start >= 0:
        close = head.find(b">", start + 6)  # [^>]*> ends at the first ">"
        if close >= 0:
            end = head.find(b"</title", close + 1)  # (.*?)</title ends at the first "</title" after it
            if end >= 0:
                return body[close + 1 : end]
    if len(body) <= _TITLE_SCAN:
        return None  # the prefix was the whole body: the regex would find nothing either
    match = _TITLE.search(body)
    return None if match is None else match.group(1)


def _title(body: bytes, charset: str | None) -> str | None:
    found = _title_bytes(body)
    if found is None:
        return None
    raw = found[: _TITLE_LIMIT * 4]
    text = _decode(raw, charset)
    if "&" in text:
        text = html.unescape(text)
    # Whitespace runs to one space, and none at the ends: str.split() splits where the regex \s+ matches.
    text = " ".join(text.split())
    return text[:_TITLE_LIMIT] or None


def _decode(raw: bytes, charset: str | None) -> str:
    """``raw`` in the server's charset, else UTF-8; undecodable bytes become U+FFFD.

    The charset comes from the server: Python knows names that are not text codecs (``rot13``, ``hex``) or
    that fail with ``errors="replace"`` (``idna``, ``punycode``), and none of them may cost us the record.
    """
    if charset is not None:
        try:
            return raw.decode(charset, errors="replace")
        except (LookupError, UnicodeError):
            pass
    return raw.decode("utf-8", errors="replace")


def _int_or_none(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False  # a name, even one that starts with a digit (1password.com)
    return True


# The response headers a record keeps, and the lengths of their names (a cheap first test per header).
_KEPT_HEADERS = frozenset({"content-length", "content-type", "server", "location"})
_KEPT_LENGTHS = frozenset(len(name) for name in _KEPT_HEADERS)


def fill_from_head(
    result: ProbeResult,
    *,
    url: str,
    ip: str | None,
    status_code: int,
    reason: str,
    http_version: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    connect_ms: float | None,
    tls_ms: float | None,
    ttfb_ms: float | None,
) -> None:
    """Fill ``result`` from one response: its status line, its raw ``headers`` (as received), the first
    ``body`` bytes and the phase timings. Header values read as :class:`~aiotcp.Headers` reads them (a
    repeated field joined with ``", "``)."""
    picked: dict[str, str] = {}
    for name, value in headers:
        if len(name) in _KEPT_LENGTHS:
            key = name.decode("latin-1").lower()
            if key in _KEPT_HEADERS:
                text = decode_header_value(value)
                before = picked.get(key)
                picked[key] = text if before is None else f"{before}, {text}"  # as Headers joins repeats
    result.url = url
    result.ip = ip
    result.status_code = status_code
    result.reason = reason
    result.http_version = http_version
    result.content_length = _int_or_none(picked.get("content-length"))
    content_type = result.content_type = picked.get("content-type")
    result.server = picked.get("server")
    result.location = picked.get("location")
    result.connect_ms = connect_ms
    result.tls_ms = tls_ms
    result.ttfb_ms = ttfb_ms
    if "html" in (content_type or "text/html"):
        result.title = _title(body, charset_of(content_type))


def fill_from_response(result: ProbeResult, response: Response, body: bytes) -> None:
    """Fill ``result`` from a response of :class:`~aiotcp.Client` (the redirect chain included)."""
    first = response.history[0].timings if response.history else response.timings
    fill_from_head(
        result,
        url=response.url,
        ip=response.peer[0] if response.peer else None,
        status_code=response.status_code,
        reason=response.reason,
        http_version=response.http_version,
        headers=response.headers.raw,
        body=body,
        connect_ms=first.connect_ms,
        tls_ms=first.tls_ms,
        ttfb_ms=first.ttfb_ms,
    )
    if response.history:
        result.redirects = [
            {"url": hop.url, "status_code": hop.status_code, "location": hop.headers.get("location")}
            for hop in response.history
        ]
        result.scheme = response.url.partition(":")[0]
