"""Probe records: :class:`ProbeResult` (one per target and path; its field order is the JSONL/CSV schema), how
a response fills one in, and how one is written as JSON.

Both engines build records here and only here, by functions over plain values (status, headers, body bytes,
a :class:`TLSInfo`): the lean engine from the parser's :class:`~aiotcp.http11.ResponseHead` and the body bytes
(:func:`fill_from_head`), the reference engine from a :class:`~aiotcp.Response` (:func:`fill_from_response`,
which is :func:`fill_from_head` applied to the response's parts, then what only a client response has: TLS,
DNS, the redirect chain), so the two cannot disagree on a field. The facts: :func:`fill_fingerprints`,
:func:`fill_tls`, :func:`fill_dns`, :func:`fill_dns_error`, :func:`skip_record`, :func:`favicon_hash` and
:func:`favicon_link`.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import ipaddress
import json
import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import mmh3

from ..errors import ConnectError, DNSError, Skipped
from ..resolution import Resolution
from ..response import Response, charset_of, decode_header_value
from ..tlsfacts import TLSInfo

__all__ = [
    "FIELD_NAMES",
    "NETWORK_KINDS",
    "ProbeResult",
    "favicon_hash",
    "favicon_link",
    "fill_dns",
    "fill_dns_error",
    "fill_fingerprints",
    "fill_from_head",
    "fill_from_response",
    "fill_tls",
    "is_ip",
    "now_iso",
    "skip_record",
]

#: The error kinds that count towards ``max_host_errors``: the host did not answer as a server does.
NETWORK_KINDS = frozenset(
    {
        "dns",
        "refused",
        "unreachable",
        "connect_timeout",
        "tls",
        "reset",
        "disconnected",
        "read_timeout",
        "write_timeout",
        "timeout",
        "error",
    }
)

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
    a: list[str] | None = None
    aaaa: list[str] | None = None
    cname: list[str] | None = None
    resolver: str | None = None
    dns_rcode: str | None = None
    port: int | None = None
    path: str | None = None
    ok: bool = False
    status_code: int | None = None
    reason: str | None = None
    http_version: str | None = None
    content_length: int | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    server: str | None = None
    title: str | None = None
    location: str | None = None
    quirks: list[str] | None = None
    body_sha256: str | None = None
    header_sha256: str | None = None
    words: int | None = None
    lines: int | None = None
    favicon_mmh3: int | None = None
    favicon_url: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    tls_alpn: str | None = None
    cert_subject_cn: str | None = None
    cert_sans: list[str] | None = None
    cert_issuer: str | None = None
    cert_not_before: str | None = None
    cert_not_after: str | None = None
    cert_sha256: str | None = None
    cert_self_signed: bool | None = None
    cert_verify_error: str | None = None
    dns_ms: float | None = None
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
    #: Records of this one job (``all_ips``: one per address), so that --resume counts the job done only
    #: once all of them are journaled; not part of the schema.
    parts: int = field(default=1, repr=False)
    #: The body bytes read, kept only when a matcher needs them (see .matchers); not part of the schema.
    body: bytes | None = field(default=None, repr=False)

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
        """Every field, schema order, then ``redirects``, ``seq``, ``parts`` and ``body``: ``ProbeResult(*r.values())
        == r``. (How a record crosses a process boundary cheaply: a tuple of plain values pickles fast.)"""
        return _values(self)


#: JSONL/CSV field names, in order.
_NOT_IN_SCHEMA = ("redirects", "seq", "parts", "body")
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ProbeResult) if f.name not in _NOT_IN_SCHEMA)
_values: Callable[[ProbeResult], tuple[Any, ...]] = operator.attrgetter(*(f.name for f in fields(ProbeResult)))

# -- JSON without a dict ------------------------------------------------------------------------------------
# ``_to_json`` is generated from the fields, as dataclasses generates __init__: one f-string with a snippet per
# field chosen by its annotation, so a field added to ProbeResult is encoded like the others (an annotation
# not listed below goes through json.dumps). It must equal json.dumps of as_dict(): tests/test_output.py
# checks that on every kind of value. About three times faster than the dict and the encoder.

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_string = json.encoder.encode_basestring  # what the encoder above writes a str with
_NUMBER = "{{'null' if (v := self.{0}) is None else _number(v)}}"
_SNIPPETS = {
    "str": "{{_string(self.{0})}}",
    "str | None": "{{'null' if (v := self.{0}) is None else _string(v)}}",
    "int": "{{_number(self.{0})}}",
    "int | None": _NUMBER,
    "float | None": _NUMBER,
    "bool": "{{'true' if self.{0} else 'false'}}",
    "bool | None": "{{'null' if (v := self.{0}) is None else 'true' if v else 'false'}}",
    "list[str] | None": "{{'null' if (v := self.{0}) is None else _strings(v)}}",
}


def _number(value: float) -> str:
    # int and float print as json prints them; NaN and infinities (never in a record) in json's spelling.
    return repr(value) if type(value) is int or value - value == 0 else _dumps(value)


def _strings(values: list[str]) -> str:
    # A list of str as json prints it (anything else in it: json itself).
    if not values:
        return "[]"
    if all(type(value) is str for value in values):
        return "[" + ",".join([_string(value) for value in values]) + "]"
    return _dumps(values)


def _compile_to_json() -> Callable[[ProbeResult], str]:
    parts = []
    for f in fields(ProbeResult):
        if f.name in FIELD_NAMES:
            snippet = _SNIPPETS.get(str(f.type), "{{_dumps(self.{0})}}").format(f.name)
            parts.append(f"{json.dumps(f.name)}:{snippet}".replace('"', '\\"'))
    source = 'def _to_json(self):\n    return f"{{' + ",".join(parts) + '}}"\n'
    namespace: dict[str, Any] = {}
    exec(source, {"_string": _string, "_number": _number, "_strings": _strings, "_dumps": _dumps}, namespace)
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


def fill_dns(result: ProbeResult, resolution: Resolution) -> None:
    """The DNS facts of the name into the record: addresses, CNAME chain, the resolver that answered."""
    result.a = list(resolution.a)
    result.aaaa = list(resolution.aaaa)
    result.cname = list(resolution.cname)
    result.resolver = resolution.resolver
    result.dns_rcode = resolution.rcode
    if resolution.dns_ms is not None:
        result.dns_ms = resolution.dns_ms


def fill_dns_error(result: ProbeResult, error: ConnectError) -> None:
    """The DNS facts a failed connect carries: for a failed lookup ``dns_rcode`` and, when the async resolver
    made them, the rest; for a name that resolved but did not connect, what it resolved to."""
    if isinstance(error.resolution, Resolution):
        fill_dns(result, error.resolution)
    if isinstance(error, DNSError):
        result.dns_rcode = error.rcode
        result.ip = None


def skip_record(
    result: ProbeResult, *, url: str, scheme: str, port: int, path: str, ip: str | None, errors: int, limit: int
) -> None:
    """Make ``result`` the ``skipped`` record of a target not probed: its host gave ``errors`` network errors
    (:data:`NETWORK_KINDS`), ``max_host_errors`` (``limit``) or more."""
    skipped = Skipped(f"not probed: {result.host} gave {errors} network errors (max_host_errors {limit})")
    result.url, result.scheme, result.port, result.path = url, scheme, port, path
    result.error, result.error_message = skipped.kind, skipped.message
    result.ip = ip
    result.timestamp = now_iso()


# The response headers a record keeps, and the lengths of their names (a cheap first test per header).
_KEPT_HEADERS = frozenset({"content-length", "content-type", "content-encoding", "server", "location"})
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
    quirks: tuple[str, ...],
    body: bytes,
    dns_ms: float | None,
    connect_ms: float | None,
    tls_ms: float | None,
    ttfb_ms: float | None,
    fingerprints: bool,
    keep_body: bool,
) -> None:
    """Fill ``result`` from one response: its status line, its raw ``headers`` (as received), the ``quirks`` of
    its head, the first ``body`` bytes (as decoded: a server that compresses though asked not to, and
    ``content_encoding`` says how, still gives its title and hashes) and the phase timings; with
    ``fingerprints`` the hashes and counts (:func:`fill_fingerprints`); with ``keep_body`` the body bytes, for
    the matchers. Header values read as :class:`~aiotcp.Headers` reads them (a repeated field joined with
    ``", "``)."""
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
    result.content_encoding = picked.get("content-encoding")
    result.server = picked.get("server")
    result.location = picked.get("location")
    result.quirks = list(quirks)
    result.dns_ms = dns_ms
    result.connect_ms = connect_ms
    result.tls_ms = tls_ms
    result.ttfb_ms = ttfb_ms
    if "html" in (content_type or "text/html"):
        result.title = _title(body, charset_of(content_type))
    if fingerprints:
        fill_fingerprints(result, headers, body)
    if keep_body:
        result.body = body


def fill_from_response(
    result: ProbeResult, response: Response, body: bytes, *, fingerprints: bool = False, keep_body: bool = False
) -> None:
    """Fill ``result`` from a response of :class:`~aiotcp.Client` (:func:`fill_from_head`, then the handshake's
    TLS facts, the name's DNS facts and the redirect chain); ``body`` is (the start of) the body as decoded."""
    first_hop = response.history[0] if response.history else response
    first = first_hop.timings
    fill_from_head(
        result,
        url=response.url,
        ip=response.peer[0] if response.peer else None,
        status_code=response.status_code,
        reason=response.reason,
        http_version=response.http_version,
        headers=response.headers.raw,
        quirks=response.quirks,
        body=body,
        dns_ms=first.dns_ms,
        connect_ms=first.connect_ms,
        tls_ms=first.tls_ms,
        ttfb_ms=first.ttfb_ms,
        fingerprints=fingerprints,
        keep_body=keep_body,
    )
    if response.tls is not None:
        result.tls_version = response.tls.version
        result.tls_cipher = response.tls.cipher
        result.tls_alpn = response.tls.alpn
    if first_hop.dns is not None:
        fill_dns(result, first_hop.dns)
        result.dns_ms = first.dns_ms
    if response.history:
        result.redirects = [
            {"url": hop.url, "status_code": hop.status_code, "location": hop.headers.get("location")}
            for hop in response.history
        ]
        result.scheme = response.url.partition(":")[0]


# -- fingerprints -----------------------------------------------------------------------------------------


def fill_fingerprints(result: ProbeResult, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Hashes and counts of what was read: ``body_sha256`` of the body bytes read (at most ``max_body``),
    ``header_sha256`` of the header fields as received (one ``name: value\\r\\n`` line each, in order; the
    status line left out), ``words`` (runs of non-whitespace) and ``lines`` (a last line without LF counts)."""
    result.body_sha256 = hashlib.sha256(body).hexdigest()
    result.header_sha256 = hashlib.sha256(b"".join([b"%s: %s\r\n" % pair for pair in headers])).hexdigest()
    result.words = len(body.split())
    result.lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def favicon_hash(data: bytes) -> int:
    """The favicon hash Shodan indexes (``http.favicon.hash``): MurmurHash3 (x86, 32-bit, seed 0, signed) of
    the base64 encoding of ``data`` with a newline after every 76 characters and at the end -- what Python's
    ``codecs.encode(data, "base64")`` gives, which is how Shodan computes it."""
    return int(mmh3.hash(codecs.encode(data, "base64")))


_LINK = re.compile(rb"<link\b([^>]*)>", re.IGNORECASE)
_ATTRIBUTE = re.compile(rb"""([a-zA-Z-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+)""")


def favicon_link(body: bytes) -> str | None:
    """The ``href`` of the page's first ``<link rel="icon">`` (or ``shortcut icon``), HTML entities decoded;
    None when the page names none."""
    for tag in _LINK.finditer(body):
        attributes = {name.lower(): value.strip(b"\"'") for name, value in _ATTRIBUTE.findall(tag.group(1))}
        rel = attributes.get(b"rel", b"").lower().split()
        href = attributes.get(b"href")
        if b"icon" in rel and href:
            return html.unescape(href.decode("utf-8", errors="replace")).strip() or None
    return None


# -- TLS facts ----------------------------------------------------------------------------------------------


def fill_tls(result: ProbeResult, tls: TLSInfo, host: str, ca: str | None = None) -> None:
    """The handshake's and the certificate's facts, and ``cert_verify_error``: None when the chain the server
    sent verifies for ``host`` against the system's CAs (or the PEM bundle ``ca``), else why not
    (:data:`aiotcp.tlsfacts.VERIFY_ERRORS`). Never raises for a missing or broken certificate."""
    result.tls_version = tls.version
    result.tls_cipher = tls.cipher
    result.tls_alpn = tls.alpn
    try:
        facts = tls.certificate()
    except ValueError:
        result.cert_verify_error = "unreadable"
        return
    if facts is None:
        result.cert_verify_error = "no_certificate"
        return
    result.cert_subject_cn = facts.subject_cn
    result.cert_sans = list(facts.sans)
    result.cert_issuer = facts.issuer
    result.cert_not_before = facts.not_before
    result.cert_not_after = facts.not_after
    result.cert_sha256 = facts.sha256
    result.cert_self_signed = facts.self_signed
    result.cert_verify_error = tls.verify(host, ca)
