"""The facts a probe record carries beyond the status line: TLS and certificate facts (checked against what
``openssl x509`` prints for the same certificate), fingerprints, the Shodan favicon hash, paths and
``--max-host-errors``, and quirks -- each against a loopback server this module starts on port 0.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import datetime
import hashlib
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted_server import _load_chain, _self_signed

from aiotcp import Client
from aiotcp.http11 import available_backends
from aiotcp.probe import ProbeResult, probe_many
from aiotcp.probe.records import favicon_hash, favicon_link, fill_fingerprints, fill_tls
from aiotcp.tlsfacts import TLSInfo, verify_chain, verify_error_from_message

pytestmark = pytest.mark.anyio

DAY = datetime.timedelta(days=1)
NAMES = ("localhost", "127.0.0.1")
PAGE = b"<html><head><title>t</title><link rel='shortcut icon' href='/static/i.png?v=1'></head>one two\n three</html>"
ICON = bytes(range(256)) * 3  # 768 bytes: base64 spans several 76-character lines


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


Handler = Callable[[bytes], bytes]


def page_or_icon(request: bytes) -> bytes:
    path = request.split(b" ", 2)[1]
    if path == b"/static/i.png?v=1":
        return b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(ICON) + ICON
    if path == b"/favicon.ico":
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-A: 1\r\nContent-Length: %d\r\n\r\n" % len(PAGE) + PAGE


@asynccontextmanager
async def serving(handler: Handler = page_or_icon, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A loopback server answering each request with ``handler(request head)``, then closing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            request = await reader.readuntil(b"\r\n\r\n")
            writer.write(handler(request))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def probe_one(line: str, **options: Any) -> list[ProbeResult]:
    return [result async for result in probe_many([line], timeout=5, **options)]


# -- TLS and certificate facts ---------------------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


def openssl_x509(pem: bytes) -> dict[str, Any]:
    """What ``openssl x509`` prints for the certificate, parsed."""
    printed = subprocess.run(
        [
            "openssl",
            "x509",
            "-noout",
            "-nameopt",
            "RFC2253",
            "-subject",
            "-issuer",
            "-dates",
            "-fingerprint",
            "-sha256",
            "-ext",
            "subjectAltName",
        ],
        input=pem,
        capture_output=True,
        check=True,
    ).stdout.decode()
    facts: dict[str, Any] = {"sans": []}
    lines = printed.splitlines()
    for number, line in enumerate(lines):
        key, _, value = line.partition("=")
        if key == "subject":
            cns = [part[3:] for part in value.split(",") if part.startswith("CN=")]
            facts["subject_cn"] = cns[0] if cns else None
        elif key == "issuer":
            facts["issuer"] = value
        elif key in ("notBefore", "notAfter"):
            moment = datetime.datetime.strptime(value, "%b %d %H:%M:%S %Y GMT").replace(tzinfo=datetime.UTC)
            facts[key] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif key.lower().startswith("sha256 fingerprint"):
            facts["sha256"] = value.replace(":", "").lower()
        elif line.startswith("X509v3 Subject Alternative Name"):
            for name in lines[number + 1].strip().split(", "):
                kind, _, san = name.partition(":")
                if kind in ("DNS", "IP Address"):
                    facts["sans"].append(str(ipaddress.ip_address(san)) if kind == "IP Address" else san)
    return facts


def leaf_pem(context_maker: str, ca: Any) -> tuple[ssl.SSLContext, bytes]:
    """A server context presenting the certificate ``context_maker`` names, and the certificate as PEM."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    if context_maker == "self_signed":
        cert_pem, key_pem = _self_signed(NAMES, now)
        _load_chain(context, cert_pem, key_pem)
        return context, cert_pem
    issuer = type(ca)() if context_maker == "unknown_issuer" else ca
    kwargs: dict[str, Any] = {}
    names: tuple[str, ...] = NAMES
    if context_maker == "expired":
        kwargs = {"not_before": now - 30 * DAY, "not_after": now - DAY}
    elif context_maker == "not_yet_valid":
        kwargs = {"not_before": now + DAY, "not_after": now + 30 * DAY}
    elif context_maker == "name_mismatch":
        names = ("other.example",)
    leaf = issuer.issue_cert(*names, common_name=names[0], **kwargs)
    leaf.configure_cert(context)
    return context, leaf.cert_chain_pems[0].bytes()


@pytest.fixture(scope="module")
def ca_file(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


VERDICTS = [None, "expired", "not_yet_valid", "self_signed", "unknown_issuer", "name_mismatch"]


@needs_openssl
@pytest.mark.parametrize("verdict", VERDICTS, ids=[str(v) for v in VERDICTS])
async def test_certificate_facts_are_what_openssl_prints(verdict: str | None, ca: Any, ca_file: str) -> None:
    context, pem = leaf_pem(verdict or "valid", ca)
    async with serving(context=context) as port:
        (result,) = await probe_one(f"https://127.0.0.1:{port}/", ca=ca_file)
    assert result.error is None, result  # verification is off: every certificate gives a record
    assert result.status_code == 200
    printed = openssl_x509(pem)
    assert result.cert_subject_cn == printed["subject_cn"]
    assert result.cert_sans == printed["sans"]
    assert result.cert_issuer == printed["issuer"]
    assert result.cert_not_before == printed["notBefore"]
    assert result.cert_not_after == printed["notAfter"]
    assert result.cert_sha256 == printed["sha256"]
    assert result.cert_self_signed == (verdict == "self_signed")
    assert result.cert_verify_error == verdict
    assert result.tls_version in ("TLSv1.2", "TLSv1.3")
    assert result.tls_cipher
    assert result.tls_alpn is None  # the server offers no ALPN


async def test_the_system_store_does_not_know_the_test_ca(ca: Any) -> None:
    context, _ = leaf_pem("valid", ca)
    async with serving(context=context) as port:
        (result,) = await probe_one(f"https://127.0.0.1:{port}/")
    assert result.cert_verify_error == "unknown_issuer"


async def test_alpn_is_recorded(ca: Any, ca_file: str) -> None:
    context, _ = leaf_pem("valid", ca)
    context.set_alpn_protocols(["http/1.1"])
    async with serving(context=context) as port:
        (result,) = await probe_one(f"https://localhost:{port}/", ca=ca_file, resolvers=(), resolver="system")
    assert result.tls_alpn == "http/1.1"
    assert result.cert_verify_error is None  # the name matches too


@pytest.mark.parametrize("verdict", ["expired", "self_signed", "unknown_issuer"])
async def test_with_verify_on_a_refused_certificate_says_why(verdict: str, ca: Any, ca_file: str) -> None:
    context, _ = leaf_pem(verdict, ca)
    async with serving(context=context) as port:
        (result,) = await probe_one(f"https://127.0.0.1:{port}/", ca=ca_file, verify=True)
    assert result.error == "tls"
    assert result.cert_verify_error == verdict


async def test_with_verify_on_a_good_certificate_gets_its_facts(ca: Any, ca_file: str) -> None:
    context, pem = leaf_pem("valid", ca)
    async with serving(context=context) as port:
        (result,) = await probe_one(f"https://127.0.0.1:{port}/", ca=ca_file, verify=True)
    assert result.ok
    assert result.cert_verify_error is None
    assert result.cert_sha256 == hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


async def test_the_library_response_carries_the_chain(ca: Any) -> None:
    context, pem = leaf_pem("valid", ca)
    async with serving(context=context) as port, Client(verify=False) as client:
        response = await client.get(f"https://127.0.0.1:{port}/")
    assert response.tls is not None
    assert response.tls.chain[0] == ssl.PEM_cert_to_DER_cert(pem.decode())
    facts = response.tls.certificate()
    assert facts is not None
    assert facts.sans == NAMES
    assert "certificates=1" in repr(response.tls)


async def test_no_certificate_or_a_broken_one_gives_a_record_not_a_crash() -> None:
    # A server that sends no certificate needs an anonymous cipher no default client offers; the record is
    # built from the same values, so the values are fed directly.
    for chain, verdict in (((), "no_certificate"), ((b"\x30\x03\x02\x01\x00",), "unreadable")):
        result = ProbeResult(input="x", line=1)
        fill_tls(result, TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", None, chain), "127.0.0.1")
        assert result.cert_verify_error == verdict
        assert result.tls_version == "TLSv1.3"
        assert result.cert_sha256 is None


def test_verify_at_a_given_time(ca: Any) -> None:
    leaf = ca.issue_cert("localhost")
    chain = (ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode()),)
    with tempfile.NamedTemporaryFile(suffix=".pem") as file:
        file.write(ca.cert_pem.bytes())
        file.flush()
        assert verify_chain(chain, "localhost", file.name) is None
        assert verify_chain(chain, "LOCALHOST.", file.name) is None
        assert verify_chain(chain, "127.0.0.1", file.name) == "name_mismatch"
        far = datetime.datetime(3001, 1, 1, tzinfo=datetime.UTC)
        assert verify_chain(chain, "localhost", file.name, at=far) == "expired"


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1006)",
            "expired",
        ),
        ("certificate verify failed: self-signed certificate", "self_signed"),
        ("certificate verify failed: unable to get local issuer certificate", "unknown_issuer"),
        ("certificate verify failed: Hostname mismatch, certificate is not valid for 'x'.", "name_mismatch"),
        ("certificate verify failed: something else", "invalid"),
        ("TLS handshake not answered within 2s", None),
    ],
)
def test_verdict_from_openssl_message(message: str, verdict: str | None) -> None:
    assert verify_error_from_message(message) == verdict


# -- fingerprints -----------------------------------------------------------------------------------------------


async def test_fingerprints_of_what_was_read() -> None:
    async with serving() as port:
        (result,) = await probe_one(f"127.0.0.1:{port}")
    assert result.body_sha256 == hashlib.sha256(PAGE).hexdigest()
    fields = b"Content-Type: text/html\r\nX-A: 1\r\nContent-Length: %d\r\n" % len(PAGE)
    assert result.header_sha256 == hashlib.sha256(fields).hexdigest()
    assert result.words == len(PAGE.split())
    assert result.lines == 2
    async with serving() as port:
        (cut,) = await probe_one(f"127.0.0.1:{port}", max_body=10)
    assert cut.body_sha256 == hashlib.sha256(PAGE[:10]).hexdigest()  # over the bytes read
    async with serving() as port:
        (lean,) = await probe_one(f"127.0.0.1:{port}", facts=False)
    assert (lean.body_sha256, lean.header_sha256, lean.words, lean.lines) == (None, None, None, None)
    assert lean.status_code == 200


def test_lines_and_words_count_a_last_line_without_newline() -> None:
    result = ProbeResult(input="x", line=1)
    for body, words, lines in ((b"", 0, 0), (b"a", 1, 1), (b"a\n", 1, 1), (b"a b\n\nc", 3, 3), (b" \t\n", 0, 1)):
        fill_fingerprints(result, [], body)
        assert (result.words, result.lines) == (words, lines), body


# -- the favicon hash -------------------------------------------------------------------------------------------


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 (Austin Appleby's reference, SMHasher), written out here to check mmh3 against,
    signed as mmh3.hash returns it."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    tail = data[whole:]
    for i in reversed(range(len(tail))):
        k = (k << 8) | tail[i]
    if tail:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def shodan_hash(data: bytes) -> int:
    """Shodan's favicon hash built independently: base64 in lines of 76 characters, each ending in a newline."""
    encoded = base64.b64encode(data)
    lines = b"".join(encoded[i : i + 76] + b"\n" for i in range(0, len(encoded), 76))
    return murmur3_x86_32(lines)


def test_murmur3_known_vectors() -> None:
    # Published values: mmh3's documentation (mmh3.hash("foo") == -156908512) and SMHasher's verification
    # vectors for MurmurHash3_x86_32 (empty input with seed 0 is 0; seed 1 is 0x514E28B7).
    assert mmh3.hash("foo") == -156908512
    assert murmur3_x86_32(b"foo") == -156908512
    assert murmur3_x86_32(b"") == 0
    assert murmur3_x86_32(b"", seed=1) == 0x514E28B7
    assert mmh3.hash(b"", seed=1) == 0x514E28B7


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600))
def test_favicon_hash_is_shodans(data: bytes) -> None:
    assert codecs.encode(data, "base64") == base64.encodebytes(data)
    assert favicon_hash(data) == shodan_hash(data)


def test_favicon_link() -> None:
    assert favicon_link(PAGE) == "/static/i.png?v=1"
    assert favicon_link(b'<LINK REL="icon" HREF="a.ico?x=1&amp;y=2">') == "a.ico?x=1&y=2"
    assert favicon_link(b'<link rel="stylesheet" href="s.css"><link rel=icon href=/i.ico>') == "/i.ico"
    assert favicon_link(b"<link rel=apple-touch-icon href=/t.png>") is None
    assert favicon_link(b"<html></html>") is None


async def test_favicon_from_the_link_then_favicon_ico() -> None:
    async with serving() as port:
        (result,) = await probe_one(f"127.0.0.1:{port}", favicon=True)
    assert result.favicon_url == f"http://127.0.0.1:{port}/static/i.png?v=1"
    assert result.favicon_mmh3 == shodan_hash(ICON)

    def no_link(request: bytes) -> bytes:
        if b" /favicon.ico " in request:
            return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ICON) + ICON
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"

    async with serving(no_link) as port:
        (result,) = await probe_one(f"127.0.0.1:{port}", favicon=True)
    assert result.favicon_url == f"http://127.0.0.1:{port}/favicon.ico"
    assert result.favicon_mmh3 == shodan_hash(ICON)

    def none(request: bytes) -> bytes:
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    async with serving(none) as port:
        (result,) = await probe_one(f"127.0.0.1:{port}", favicon=True)
    assert (result.status_code, result.favicon_mmh3, result.favicon_url) == (404, None, None)


# -- paths and --max-host-errors ------------------------------------------------------------------------------


async def test_one_record_per_path() -> None:
    def echo_path(request: bytes) -> bytes:
        path = request.split(b" ", 2)[1]
        status = 200 if path == b"/a" else 404
        return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(path), path)

    async with serving(echo_path) as port:
        results = await probe_one(f"127.0.0.1:{port}", paths=("/a", "/b?x=1"))
    assert sorted((r.path, r.status_code, r.url) for r in results) == [
        ("/a", 200, f"http://127.0.0.1:{port}/a"),
        ("/b?x=1", 404, f"http://127.0.0.1:{port}/b?x=1"),
    ]
    assert {r.seq for r in results} == {0}  # one target: the journal accounts for it once


async def test_max_host_errors_skips_the_rest_and_says_so(unused_tcp_port: int) -> None:
    results = await probe_one(f"127.0.0.1:{unused_tcp_port}", paths=("/1", "/2", "/3", "/4"), max_host_errors=2)
    assert [(r.path, r.error) for r in results] == [
        ("/1", "refused"),
        ("/2", "refused"),
        ("/3", "skipped"),
        ("/4", "skipped"),
    ]
    assert "2 network errors" in (results[2].error_message or "")
    assert results[2].attempts == 0


def test_bad_path_is_a_value_error() -> None:
    from aiotcp.probe import ProbeOptions

    with pytest.raises(ValueError, match="path"):
        ProbeOptions(paths=("no-slash",))
    with pytest.raises(ValueError, match="max_host_errors"):
        ProbeOptions(max_host_errors=0)


# -- quirks in the record ---------------------------------------------------------------------------------------


async def test_a_server_header_with_an_escape_is_a_response_with_a_quirk() -> None:
    def red(request: bytes) -> bytes:
        return b"HTTP/1.0 200\r\nServer: \x1b[31mred\x1b[0m\r\nContent-Length: 2\r\n\r\nok"

    for http in available_backends():
        async with serving(red) as port:
            (result,) = await probe_one(f"127.0.0.1:{port}", http=http)
        assert result.error is None, result
        assert result.server == "\x1b[31mred\x1b[0m"
        assert result.quirks == ["ctl_in_header_value", "http10", "no_reason"]


async def test_a_line_that_is_no_target_gets_one_record_whatever_the_paths() -> None:
    results = await probe_one("http://[bad", paths=("/a", "/b"))
    assert [r.error for r in results] == ["invalid_target"]
