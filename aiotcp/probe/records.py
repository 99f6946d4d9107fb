"""Probe records: :class:`ProbeResult` (one per target and path; its field order is the JSONL/CSV schema) and
how a response fills one in.

The facts are computed by functions over plain values (status, headers, body bytes, a :class:`TLSInfo`), so
that any engine can call them: :func:`fill_from_response`, :func:`fill_fingerprints`, :func:`fill_tls`,
:func:`favicon_hash` and :func:`favicon_link`.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import ipaddress
import re
import time
from dataclasses import dataclass, field, fields
from typing import Any

import mmh3

from ..errors import ConnectError, DNSError
from ..resolution import Resolution
from ..response import Response
from ..tlsfacts import TLSInfo

__all__ = [
    "FIELD_NAMES",
    "ProbeResult",
    "favicon_hash",
    "favicon_link",
    "fill_dns",
    "fill_dns_error",
    "fill_fingerprints",
    "fill_from_response",
    "fill_tls",
    "is_ip",
    "now_iso",
]

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TITLE_LIMIT = 512
_SPACES = re.compile(r"\s+")


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


#: JSONL/CSV field names, in order.
FIELD_NAMES: tuple[str, ...] = tuple(
    f.name for f in fields(ProbeResult) if f.name not in ("redirects", "seq", "parts", "body")
)


_second_stamp: tuple[int, str] = (0, "")


def now_iso() -> str:
    """RFC 3339 UTC with milliseconds. The date-and-time part is formatted once per second, not per record."""
    global _second_stamp
    now = time.time()
    second = int(now)
    if _second_stamp[0] != second:
        _second_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_stamp[1]}.{int((now - second) * 1000):03d}Z"


def _title(body: bytes, charset: str | None) -> str | None:
    match = _TITLE.search(body)
    if match is None:
        return None
    raw = match.group(1)[: _TITLE_LIMIT * 4]
    text = _decode(raw, charset)
    text = _SPACES.sub(" ", html.unescape(text)).strip()
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


def fill_from_response(result: ProbeResult, response: Response, body: bytes) -> None:
    """The record's fields from a response; ``body`` is (the start of) the body as decoded: a server that
    compresses though asked not to (``content_encoding`` says how) still gives its title."""
    headers = response.headers
    result.url = response.url
    result.ip = response.peer[0] if response.peer else None
    result.status_code = response.status_code
    result.reason = response.reason
    result.http_version = response.http_version
    result.content_length = _int_or_none(headers.get("content-length"))
    result.content_type = headers.get("content-type")
    result.content_encoding = headers.get("content-encoding")
    result.server = headers.get("server")
    result.location = headers.get("location")
    result.quirks = list(response.quirks)
    if response.tls is not None:
        result.tls_version = response.tls.version
        result.tls_cipher = response.tls.cipher
        result.tls_alpn = response.tls.alpn
    timings = response.timings
    first = response.history[0].timings if response.history else timings
    first_dns = response.history[0].dns if response.history else response.dns
    if first_dns is not None:
        fill_dns(result, first_dns)
    result.dns_ms = first.dns_ms
    result.connect_ms = first.connect_ms
    result.tls_ms = first.tls_ms
    result.ttfb_ms = first.ttfb_ms
    if "html" in (result.content_type or "text/html"):
        result.title = _title(body, response.charset)
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
