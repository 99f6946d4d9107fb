"""Tests for aiotcp.response: Headers, Response decoding and state, Timings."""

from __future__ import annotations

import json

import anyio
import pytest

from aiotcp.response import Headers, Response, Timings

RAW = [
    (b"Content-Type", b"text/html; charset=utf-8"),
    (b"Set-Cookie", b"a=1"),
    (b"set-cookie", b"b=2"),
    (b"X-Utf8", b"caf\xc3\xa9"),
    (b"X-Latin", b"caf\xe9"),
    (b"X-Empty", b""),
]


def response(content: bytes | None = b"", content_type: bytes | None = None) -> Response:
    raw = [] if content_type is None else [(b"Content-Type", content_type)]
    return Response(
        url="http://example.test/",
        method="GET",
        status_code=200,
        reason="OK",
        http_version="1.1",
        headers=Headers(raw),
        peer=("127.0.0.1", 80),
        timings=Timings(),
        content=content,
    )


# -- Headers ------------------------------------------------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    headers = Headers(RAW)
    assert headers["content-type"] == headers["CONTENT-TYPE"] == "text/html; charset=utf-8"
    assert "Content-Type" in headers
    assert "content-length" not in headers
    assert b"content-type" not in headers  # type: ignore[comparison-overlap]  # names are str
    assert headers.get("X-EMPTY") == ""
    assert headers.get("missing") is None
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_are_multi_valued() -> None:
    headers = Headers(RAW)
    assert headers["set-cookie"] == "a=1, b=2"
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert headers.get_all("missing") == []
    headers.get_all("set-cookie").append("c=3")  # a copy
    assert headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert len(headers) == 5
    assert list(headers) == ["content-type", "set-cookie", "x-utf8", "x-latin", "x-empty"]


def test_headers_keep_the_raw_bytes() -> None:
    headers = Headers(RAW)
    assert headers.raw == RAW
    assert headers.raw is not RAW
    assert headers.multi_items()[1:3] == [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]


def test_header_values_decode_utf8_then_latin1() -> None:
    headers = Headers(RAW)
    assert headers["x-utf8"] == "café"
    assert headers["x-latin"] == "café"  # not UTF-8: Latin-1, which cannot fail


def test_headers_equality_and_repr() -> None:
    assert Headers(RAW) == Headers(list(RAW))
    assert Headers([(b"A", b"1")]) == Headers([(b"a", b"1")])  # names compare case-insensitively
    assert Headers([(b"A", b"1")]) != Headers([(b"A", b"2")])
    assert Headers([(b"A", b"1")]) == {"a": "1"}
    assert Headers() == Headers(None) == {}
    assert repr(Headers([(b"A", b"1")])) == "Headers([('A', '1')])"
    with pytest.raises(TypeError):
        hash(Headers())


# -- Response -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        (b"text/plain; charset=utf-8", "café".encode(), "café"),
        (b"text/plain; charset=ISO-8859-1", "café".encode("latin-1"), "café"),
        (b'text/plain; charset="windows-1252"', b"\x80", "€"),
        (b"text/plain;CHARSET=utf-16 ; q=1", "hé".encode("utf-16"), "hé"),
        (b"text/plain; charset = utf-16", b"h\xc3\xa9", "hé"),  # not a charset parameter (as WHATWG reads it)
        (b"text/plain", "café".encode(), "café"),  # no charset: UTF-8
        (None, b"caf\xe9", "caf\ufffd"),  # no Content-Type: UTF-8, with replacement
        (b"text/plain; charset=no-such-charset", b"caf\xe9!", "caf\ufffd!"),  # unknown: UTF-8
        (b"text/plain; charset=", b"ok", "ok"),
        (b"text/plain; charset=utf-8", b"bad \xff byte", "bad \ufffd byte"),
    ],
)
def test_text_decodes_by_charset(content_type: bytes | None, body: bytes, text: str) -> None:
    assert response(body, content_type).text == text


@pytest.mark.parametrize(
    "charset", [b"base64", b"hex", b"zlib", b"rot13", b"bz2", b"uu", b"idna", b"punycode", b"undefined"]
)
def test_charsets_that_are_not_text_encodings_fall_back_to_utf8(charset: bytes) -> None:
    # codecs.lookup knows these, but bytes.decode refuses them or fails whatever the error handler.
    resp = response(b"caf\xc3\xa9 \xff", b"text/plain; charset=" + charset)
    assert resp.charset is None
    assert resp.text == "café \ufffd"


def test_charset_property() -> None:
    assert response(b"", b"text/html; charset=UTF8").charset == "utf-8"
    assert response(b"", b"text/html; charset=latin1").charset == "iso8859-1"
    assert response(b"", b"text/html").charset is None
    assert response(b"", None).charset is None


def test_json() -> None:
    assert response(json.dumps({"a": [1, "é"]}).encode()).json() == {"a": [1, "é"]}


class _Body:
    """A stand-in for connection.BodyReader: chunks, then the end."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)
        self.consumed = False
        self.closed = False

    def __aiter__(self) -> _Body:
        self.consumed = True
        return self

    async def __anext__(self) -> bytes:
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    async def read_all(self) -> bytes:
        self.consumed = True
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        self.closed = True


def streamed(chunks: list[bytes]) -> tuple[Response, _Body]:
    body = _Body(chunks)
    resp = response(None)
    resp._body = body  # type: ignore[assignment]
    return resp, body


def test_content_of_an_unread_streamed_response_raises() -> None:
    resp, _ = streamed([b"a", b"b"])
    with pytest.raises(RuntimeError, match=r"not read yet: await response\.aread\(\)"):
        _ = resp.content
    with pytest.raises(RuntimeError):
        _ = resp.text
    assert "streaming" in repr(resp)


def test_aread_then_content() -> None:
    async def main() -> None:
        resp, body = streamed([b"he", b"llo"])
        assert await resp.aread() == b"hello"
        assert await resp.aread() == b"hello"  # once read, kept
        assert resp.content == b"hello"
        assert resp.text == "hello"
        assert "read" in repr(resp)
        assert [chunk async for chunk in resp.stream()] == [b"hello"]  # a read body comes as one chunk
        await resp.aclose()
        assert body.closed

    anyio.run(main)


def test_stream_twice_raises() -> None:
    async def main() -> None:
        resp, _ = streamed([b"a", b"b"])
        assert [chunk async for chunk in resp.stream()] == [b"a", b"b"]
        with pytest.raises(RuntimeError, match="already streamed"):
            resp.stream()

    anyio.run(main)


def test_empty_read_body_streams_nothing() -> None:
    async def main() -> None:
        assert [chunk async for chunk in response(b"").stream()] == []

    anyio.run(main)


def test_ok_and_redirect() -> None:
    resp = response(b"")
    assert resp.ok
    resp.status_code = 302
    assert resp.ok
    assert not resp.is_redirect  # no Location
    resp.headers = Headers([(b"Location", b"/next")])
    assert resp.is_redirect
    resp.status_code = 404
    assert not resp.ok
    assert not resp.is_redirect


# -- Timings ------------------------------------------------------------------------------------------------


def test_timings_as_dict() -> None:
    timings = Timings(dns_ms=1.5, connect_ms=2.0, ttfb_ms=10.25, total_ms=12.0)
    assert timings.as_dict() == {
        "dns_ms": 1.5,
        "connect_ms": 2.0,
        "tls_ms": None,
        "ttfb_ms": 10.25,
        "total_ms": 12.0,
        "reused": False,
        "proxy_connect_ms": None,
    }
    assert Timings(reused=True).as_dict() == dict.fromkeys(
        ["dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms", "proxy_connect_ms"]
    ) | {"reused": True}
    json.dumps(timings.as_dict())  # JSON-ready
