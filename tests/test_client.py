"""Tests for aiotcp.client: requests against real loopback servers, and every error kind produced for real.

The built-in server (conftest ``server``/``shared_server``) answers the well-formed cases; scripted servers
(tests/scripted_server.py) misbehave on purpose. Every async test runs on asyncio and on trio.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from dns_server import zone_server
from scripted_server import (
    CloseAfterSending,
    NeverAcceptServer,
    NeverRead,
    ReadRequest,
    Repeat,
    Reset,
    ScriptedServer,
    Send,
    Sleep,
    Trickle,
    response,
)

import aiotcp
import aiotcp.resolver
import aiotcp.transport
from aiotcp import AiotcpError, Client, Limits, Timeouts, TooManyRedirects
from aiotcp._version import __version__
from aiotcp.decoding import ACCEPT_ENCODING
from aiotcp.serve import SilentServer, TargetServer, running_in_thread

pytestmark = pytest.mark.anyio

SLACK = 0.5  # an error may come this much after its deadline on a loaded machine
MAX_CHUNK = 64 * 1024


async def expect_error(kind: str, url: str, deadline: float, call: Callable[[], Awaitable[object]]) -> AiotcpError:
    """Run ``call``; it must fail with ``kind``, naming ``url``, within ``deadline`` + SLACK seconds."""
    started = time.perf_counter()
    with pytest.raises(AiotcpError) as caught:
        await call()
    elapsed = time.perf_counter() - started
    error = caught.value
    assert error.kind == kind, repr(error)
    assert error.target == url, repr(error)
    assert elapsed <= deadline + SLACK, f"{error!r} after {elapsed:.3f}s"
    return error


# -- responses --------------------------------------------------------------------------------------------


async def test_get_response_fields(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    url = f"{shared_server.url}/"
    async with Client(http=http) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.reason == "OK"
    assert response.http_version == "1.1"
    assert response.ok
    assert not response.is_redirect
    assert response.url == url
    assert response.method == "GET"
    assert response.peer == ("127.0.0.1", shared_server.port)
    # Headers: raw bytes as received, and a case-insensitive view.
    assert (b"Content-Type", b"text/html; charset=utf-8") in response.headers.raw
    assert response.headers["content-type"] == response.headers["CONTENT-TYPE"] == "text/html; charset=utf-8"
    assert "Content-Length" in response.headers
    assert "content-length" in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content.startswith(b"<!DOCTYPE html>")
    assert "<title>aiotcp test server</title>" in response.text
    assert response.charset == "utf-8"
    t = response.timings
    assert not t.reused
    assert t.dns_ms is not None
    assert t.connect_ms is not None
    assert t.ttfb_ms is not None
    assert t.total_ms is not None
    assert t.tls_ms is None  # plain http
    assert t.dns_ms >= 0
    assert t.connect_ms >= 0
    assert t.dns_ms + t.connect_ms <= t.ttfb_ms <= t.total_ms
    assert "read" in repr(response)


async def test_head(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    async with Client(http=http) as client:
        response = await client.head(f"{shared_server.url}/bytes/1000")
        assert response.status_code == 200
        assert response.headers["content-length"] == "1000"
        assert response.content == b""
        again = await client.head(f"{shared_server.url}/")  # the HEAD left the connection reusable
        assert again.timings.reused
    assert client.pool.opened == 1


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 150_000])
async def test_chunked(anyio_backend: str, http: str, shared_server: TargetServer, size: int) -> None:
    async with Client(http=http) as client:
        response = await client.get(f"{shared_server.url}/chunked/{size}")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.content == b"x" * size
        assert (await client.get(f"{shared_server.url}/")).timings.reused


async def test_bytes_and_status(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    async with Client(http=http) as client:
        assert (await client.get(f"{shared_server.url}/bytes/300000")).content == b"x" * 300_000
        missing = await client.get(f"{shared_server.url}/status/404")  # a status is not an error
        assert (missing.status_code, missing.reason, missing.ok) == (404, "Not Found", False)
        for code in (204, 304):
            empty = await client.get(f"{shared_server.url}/status/{code}")
            assert (empty.status_code, empty.content) == (code, b"")
        data = (await client.get(f"{shared_server.url}/headers")).json()
        assert isinstance(data, dict)
        assert client.pool.opened == 1


async def test_module_level_get_and_head(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    response = await aiotcp.get(f"{shared_server.url}/bytes/10", timeout=5)
    assert (response.status_code, response.content) == (200, b"x" * 10)
    response = await aiotcp.head(f"{shared_server.url}/bytes/10", timeout=Timeouts(total=5), http=http)
    assert (response.status_code, response.content, response.headers["content-length"]) == (200, b"", "10")
    response = await aiotcp.get(f"{shared_server.url}/redirect/0", follow_redirects=True)
    assert response.status_code == 200
    assert len(response.history) == 1


async def test_close_delimited_body(anyio_backend: str, http: str) -> None:
    script = [ReadRequest(), Send(b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nhello, "), Send(b"world"), CloseAfterSending()]
    with ScriptedServer(script) as server:
        async with Client(http=http, timeout=Timeouts(total=5)) as client:
            result = await client.get(f"{server.url}/")
            assert (result.http_version, result.content) == ("1.0", b"hello, world")
            assert client.pool.open_connections == 0  # ended by EOF: nothing left to reuse


async def test_interim_responses_are_skipped(anyio_backend: str, http: str) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    with ScriptedServer([ReadRequest(), Send(interim + response(200, b"ok"))]) as server:
        async with Client(http=http, timeout=Timeouts(total=5)) as client:
            result = await client.get(f"{server.url}/")
    assert (result.status_code, result.content) == (200, b"ok")
    assert "link" not in result.headers


# -- request headers ------------------------------------------------------------------------------------


async def test_default_request_headers(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client() as client:
        sent = (await client.get(f"{shared_server.url}/headers")).json()
    assert sent["host"] == [f"127.0.0.1:{shared_server.port}"]
    assert sent["user-agent"] == [f"aiotcp/{__version__}"]
    assert sent["accept-encoding"] == [ACCEPT_ENCODING]  # what it decodes: gzip, deflate, and br and zstd if installed
    async with Client(decode=False) as client:
        sent = (await client.get(f"{shared_server.url}/headers")).json()
    assert sent["accept-encoding"] == ["identity"]


async def test_user_headers_override_defaults(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client(headers={"User-Agent": "client-wide/1", "X-Client": "c"}) as client:
        sent = (
            await client.get(f"{shared_server.url}/headers", headers={"accept-encoding": "gzip", "X-Request": "r"})
        ).json()
        assert sent["user-agent"] == ["client-wide/1"]
        assert sent["accept-encoding"] == ["gzip"]  # replaced, not added to
        assert sent["x-client"] == ["c"]
        assert sent["x-request"] == ["r"]
        sent = (await client.get(f"{shared_server.url}/headers", headers=[("User-Agent", "per-request")])).json()
        assert sent["user-agent"] == ["per-request"]


async def test_none_removes_a_default_header(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client(headers={"Accept": None}) as client:
        sent = (await client.get(f"{shared_server.url}/headers", headers=[("User-Agent", None)])).json()
        assert "accept" not in sent
        assert "user-agent" not in sent
        assert sent["accept-encoding"] == [ACCEPT_ENCODING]
        again = (await client.get(f"{shared_server.url}/headers", headers={"Host": None})).json()
        assert again["host"] == [f"127.0.0.1:{shared_server.port}"]  # HTTP/1.1 requires it: put back


async def test_response_request_is_what_went_on_the_wire(anyio_backend: str, http: str) -> None:
    script = [ReadRequest(), Send(response(307, headers=[("Location", "/next")])), ReadRequest()]
    script += [Send(response(200, b"ok", close=True)), CloseAfterSending()]
    with ScriptedServer(script) as server:
        async with Client(http=http, follow_redirects=True) as client:
            reply = await client.request("PUT", f"{server.url}/first", content=b"body", headers={"X-A": "1"})
        wire = server.requests(0)
    assert reply.request is not None
    assert [hop.request.head() + hop.request.body for hop in [*reply.history, reply] if hop.request] == wire
    assert reply.request.method == b"PUT"
    assert reply.request.target == b"/next"
    assert reply.history[0].request is not None
    assert reply.history[0].request.target == b"/first"
    assert reply.request.head().endswith(b"\r\n\r\n")
    assert (b"X-A", b"1") in reply.request.headers


async def test_resolve_pins_a_host_and_port(anyio_backend: str, shared_server: TargetServer) -> None:
    # "aiotcp.test" is a reserved name that resolves nowhere: only the pin can reach the server.
    url = f"http://aiotcp.test:{shared_server.port}/headers"
    async with Client(resolve={("aiotcp.test", shared_server.port): "127.0.0.1"}) as client:
        reply = await client.get(url)
    assert reply.peer == ("127.0.0.1", shared_server.port)
    assert reply.json()["host"] == [f"aiotcp.test:{shared_server.port}"]


@pytest.mark.parametrize(
    "resolve",
    [{("aiotcp.test", 80): "not-an-ip"}, {("aiotcp.test", 0): "127.0.0.1"}, {("bad host", 80): "127.0.0.1"}],
)
async def test_resolve_is_validated_when_the_client_is_built(anyio_backend: str, resolve: dict[Any, Any]) -> None:
    with pytest.raises(aiotcp.InvalidTarget, match="invalid resolve entry"):
        Client(resolve=resolve)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Bad": "a\r\nInjected: yes"},
        {"X-Bad": "a\nb"},
        {"X-Bad": "a\rb"},
        {"X-Bad": "a\x00b"},
        [(b"X-Bad", b"a\r\n\r\nGET /smuggled HTTP/1.1")],
        {"X-Bad\r\nInjected": "yes"},
        {"X Bad": "space in the name"},
        {"X-Bad": "\u20ac not latin-1"},
    ],
    ids=["crlf", "lf", "cr", "nul", "bytes-crlf", "crlf-in-name", "space-in-name", "not-latin-1"],
)
async def test_invalid_headers_rejected_before_connecting(
    anyio_backend: str, server: TargetServer, headers: dict[str, str]
) -> None:
    url = f"{server.url}/headers"
    async with Client() as client:
        error = await expect_error("invalid_target", url, 1.0, lambda: client.get(url, headers=headers))
        assert isinstance(error, aiotcp.InvalidHeader)
        assert client.pool.opened == 0
    assert server.connections_accepted == 0


async def test_invalid_client_wide_header(anyio_backend: str) -> None:
    with pytest.raises(aiotcp.InvalidHeader):
        Client(headers={"X-Bad": "\u20ac"})


# -- keep-alive -----------------------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(anyio_backend: str, http: str, server: TargetServer) -> None:
    async with Client(http=http) as client:
        first = await client.get(f"{server.url}/")
        responses = [await client.get(f"{server.url}/bytes/{n}") for n in range(9)]
        assert [len(r.content) for r in responses] == list(range(9))
        assert all(r.timings.reused for r in responses)
        assert all(r.timings.dns_ms is None and r.timings.connect_ms is None for r in responses)
        assert all(r.timings.ttfb_ms is not None and r.timings.ttfb_ms <= r.timings.total_ms for r in responses)  # type: ignore[operator]
        assert not first.timings.reused
        assert (client.pool.opened, client.pool.reused) == (1, 9)
        assert (client.pool.open_connections, client.pool.idle_connections) == (1, 1)
    assert server.connections_accepted == 1
    assert server.requests_served == 10


async def test_close_route_makes_the_next_request_open_a_connection(
    anyio_backend: str, http: str, server: TargetServer
) -> None:
    async with Client(http=http) as client:
        closing = await client.get(f"{server.url}/close")
        assert closing.headers["connection"] == "close"
        assert client.pool.open_connections == 0
        after = await client.get(f"{server.url}/")
        assert after.status_code == 200
        assert not after.timings.reused
    assert server.connections_accepted == 2


async def test_stream_large_body_chunk_by_chunk(anyio_backend: str, http: str, server: TargetServer) -> None:
    size = 5_000_000
    chunks = 0
    largest = 0
    total = 0
    async with Client(http=http) as client:
        async with client.stream("GET", f"{server.url}/bytes/{size}") as response:
            assert response.headers["content-length"] == str(size)
            with pytest.raises(RuntimeError):
                response.content  # noqa: B018 - not read yet
            async for chunk in response.stream():
                chunks += 1
                largest = max(largest, len(chunk))
                total += len(chunk)
            with pytest.raises(RuntimeError, match="already streamed"):
                response.stream()
        assert total == size
        assert chunks >= size // MAX_CHUNK
        assert largest <= MAX_CHUNK
        assert client.pool.idle_connections == 1  # read to the end: reusable
        assert (await client.get(f"{server.url}/")).timings.reused
    assert server.connections_accepted == 1


async def test_leaving_stream_early_closes_the_connection(anyio_backend: str, http: str, server: TargetServer) -> None:
    async with Client(http=http) as client:
        async with client.stream("GET", f"{server.url}/bytes/10000000") as response:
            async for chunk in response.stream():
                assert chunk
                break
        assert response.timings.total_ms is not None
        assert (client.pool.open_connections, client.pool.idle_connections) == (0, 0)
        after = await client.get(f"{server.url}/")
        assert not after.timings.reused
    assert server.connections_accepted == 2


# -- redirects ------------------------------------------------------------------------------------------------


async def test_redirects_not_followed_by_default(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    async with Client(http=http) as client:
        response = await client.get(f"{shared_server.url}/redirect/2")
    assert response.status_code == 302
    assert response.is_redirect
    assert response.headers["location"] == "/redirect/1"
    assert response.history == []


async def test_redirects_followed(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    # The built-in server's /redirect/N goes to /redirect/N-1, and /redirect/0 to /: N+1 hops.
    async with Client(http=http, follow_redirects=True) as client:
        response = await client.get(f"{shared_server.url}/redirect/2")
        assert response.status_code == 200
        assert response.url == f"{shared_server.url}/"
        assert [r.status_code for r in response.history] == [302, 302, 302]
        assert [r.url for r in response.history] == [f"{shared_server.url}/redirect/{n}" for n in (2, 1, 0)]
        assert client.pool.opened == 1  # redirect bodies were drained; one connection throughout
        head = await client.head(f"{shared_server.url}/redirect/1")
        assert head.status_code == 200
        assert head.method == "HEAD"
    async with Client(http=http) as client:  # per request
        response = await client.get(f"{shared_server.url}/redirect/1", follow_redirects=True)
        assert response.status_code == 200


async def test_too_many_redirects(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    async with Client(http=http, follow_redirects=True, max_redirects=2) as client:
        assert (await client.get(f"{shared_server.url}/redirect/1")).status_code == 200  # two hops
        url = f"{shared_server.url}/redirect/2"  # three hops; the error names the hop it stopped at
        error = await expect_error("too_many_redirects", f"{shared_server.url}/redirect/0", 5, lambda: client.get(url))
        assert isinstance(error, TooManyRedirects)
        assert client.pool.open_connections == client.pool.idle_connections  # nothing left half-read


async def test_303_turns_post_into_get(anyio_backend: str, http: str) -> None:
    script = [
        ReadRequest(),
        Send(response(303, b"see other", reason="See Other", headers=[("Location", "/next")])),
        ReadRequest(),
        Send(response(200, b"done")),
    ]
    with ScriptedServer(script) as server:
        async with Client(http=http, follow_redirects=True) as client:
            result = await client.request("POST", f"{server.url}/form", content=b"payload=1")
        first, second = server.requests(0)
    assert result.status_code == 200
    assert result.content == b"done"
    assert [r.status_code for r in result.history] == [303]
    assert first.startswith(b"POST /form HTTP/1.1\r\n")
    assert first.endswith(b"\r\n\r\npayload=1")
    assert second.startswith(b"GET /next HTTP/1.1\r\n")
    assert b"payload" not in second
    assert b"content-length" not in second.lower()


async def test_307_keeps_method_and_body(anyio_backend: str) -> None:
    script = [
        ReadRequest(),
        Send(response(307, reason="Temporary Redirect", headers=[("Location", "/again")])),
        ReadRequest(),
        Send(response(200, b"done")),
    ]
    with ScriptedServer(script) as server:
        async with Client(follow_redirects=True) as client:
            result = await client.request("POST", f"{server.url}/form", content=b"payload=1")
        second = server.requests(0)[1]
    assert result.content == b"done"
    assert second.startswith(b"POST /again HTTP/1.1\r\n")
    assert second.endswith(b"\r\n\r\npayload=1")


CREDENTIALS = {"Authorization": "Bearer secret", "Cookie": "session=1", "X-Keep": "kept"}


async def test_credentials_stripped_on_cross_origin_redirect(
    anyio_backend: str, server: TargetServer, shared_server: TargetServer
) -> None:
    assert server.port != shared_server.port  # same host, other port: another origin
    elsewhere = quote(f"{shared_server.url}/headers", safe="")
    async with Client(follow_redirects=True) as client:
        result = await client.get(f"{server.url}/redirect-to?url={elsewhere}", headers=CREDENTIALS)
    sent = result.json()
    assert result.url == f"{shared_server.url}/headers"
    assert "authorization" not in sent
    assert "cookie" not in sent
    assert sent["x-keep"] == ["kept"]
    assert sent["host"] == [f"127.0.0.1:{shared_server.port}"]


async def test_credentials_kept_on_same_origin_redirect(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client(follow_redirects=True, headers={"Authorization": "Bearer client-wide"}) as client:
        result = await client.get(f"{shared_server.url}/redirect-to?url=%2Fheaders", headers={"Cookie": "c=1"})
    sent = result.json()
    assert sent["authorization"] == ["Bearer client-wide"]
    assert sent["cookie"] == ["c=1"]


# -- every error kind, produced for real ----------------------------------------------------------------------


async def test_error_refused(anyio_backend: str, refused: int) -> None:
    url = f"http://127.0.0.1:{refused}/"
    async with Client(timeout=Timeouts(connect=2, total=5)) as client:
        error = await expect_error("refused", url, 2, lambda: client.get(url))
        assert isinstance(error, aiotcp.ConnectionRefused)
        assert client.pool.open_connections == 0


async def test_error_connect_timeout(anyio_backend: str) -> None:
    with NeverAcceptServer() as tarpit:
        url = f"{tarpit.url}/"
        async with Client(timeout=Timeouts(connect=0.3, total=5)) as client:
            error = await expect_error("connect_timeout", url, 0.3, lambda: client.get(url))
        assert isinstance(error, aiotcp.ConnectTimeout)


async def test_error_dns(anyio_backend: str) -> None:
    # A real DNS server on loopback that knows no name: the client's own resolver asks it, and nothing else.
    with zone_server({}) as dns:
        url = "http://no-such-host.test/"
        async with Client(timeout=Timeouts(connect=2, total=5), resolvers=[dns.address]) as client:
            error = await expect_error("dns", url, 2, lambda: client.get(url))
        assert dns.asked("no-such-host.test") == 2  # A and AAAA, once each
    assert isinstance(error, aiotcp.DNSError)
    assert error.rcode == "NXDOMAIN"
    assert error.target == url


async def test_error_dns_from_the_system_resolver(anyio_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The system resolver is never asked for a name outside /etc/hosts: getaddrinfo is replaced by one that
    # answers as the C library does for a name that does not exist (EAI_NONAME); the mapping is the real one.
    asked: list[object] = []

    async def no_such_name(host: object, *args: object, **kwargs: object) -> object:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr("aiotcp.resolver.anyio.getaddrinfo", no_such_name)
    url = "http://no-such-host.invalid/"
    async with Client(timeout=Timeouts(connect=2, total=5), resolver="system") as client:
        error = await expect_error("dns", url, 2, lambda: client.get(url))
    assert isinstance(error, aiotcp.DNSError)
    assert error.rcode == "NXDOMAIN"
    assert asked == ["no-such-host.invalid"]


async def test_a_name_resolves_through_the_given_resolver_and_the_facts_come_back(
    anyio_backend: str, shared_server: TargetServer
) -> None:
    zone = {"web.test": [("CNAME", "origin.test", 60)], "origin.test": [("A", "127.0.0.1", 60)]}
    with zone_server(zone) as dns:
        async with Client(resolvers=[dns.address]) as client:
            response = await client.get(f"http://web.test:{shared_server.port}/")
    assert response.status_code == 200
    assert response.peer == ("127.0.0.1", shared_server.port)
    assert response.dns is not None
    assert (response.dns.a, response.dns.cname, response.dns.resolver) == (
        ("127.0.0.1",),
        ("origin.test",),
        dns.address,
    )


async def test_error_reset_mid_body(anyio_backend: str, http: str) -> None:
    script = [ReadRequest(), Send(response(200, b"x" * 1000, content_length=100_000)), Sleep(0.2), Reset()]
    with ScriptedServer(script) as server:
        url = f"{server.url}/big"
        async with Client(http=http, timeout=Timeouts(read=5, total=5)) as client:
            await expect_error("reset", url, 5, lambda: client.get(url))
            assert client.pool.open_connections == 0


@pytest.mark.parametrize(
    "script",
    [
        [ReadRequest(), CloseAfterSending()],
        [ReadRequest(), Send(b"HTTP/1.1 200 OK\r\nContent-Le"), CloseAfterSending()],
        [ReadRequest(), Send(response(200, b"abc", content_length=10)), CloseAfterSending()],
    ],
    ids=["before-any-byte", "mid-head", "body-shorter-than-content-length"],
)
async def test_error_disconnected(anyio_backend: str, http: str, script: list[object]) -> None:
    with ScriptedServer(script) as server:  # type: ignore[arg-type]
        url = f"{server.url}/"
        async with Client(http=http, timeout=Timeouts(read=5, total=5)) as client:
            await expect_error("disconnected", url, 5, lambda: client.get(url))
        assert server.connections_accepted == 1  # a fresh connection is never retried


async def test_error_read_timeout(anyio_backend: str, silent_server: SilentServer) -> None:
    url = f"{silent_server.url}/quiet"
    async with Client(timeout=Timeouts(read=0.3, total=5)) as client:
        await expect_error("read_timeout", url, 0.3, lambda: client.get(url))
        assert client.pool.open_connections == 0


async def test_error_read_timeout_names_the_request_on_a_reused_connection(anyio_backend: str) -> None:
    with ScriptedServer([ReadRequest(), Send(response(200, b"ok")), ReadRequest()]) as server:
        async with Client(timeout=Timeouts(read=0.3, total=5)) as client:
            assert (await client.get(f"{server.url}/first")).content == b"ok"
            url = f"{server.url}/second"
            await expect_error("read_timeout", url, 0.3, lambda: client.get(url))
        assert server.connections_accepted == 1


async def test_error_write_timeout(anyio_backend: str) -> None:
    # The server's small receive window bounds what the kernels take before the write stalls: the time to
    # the error is the write timeout, not the time to copy tens of MiB through loopback on a busy machine.
    with ScriptedServer([NeverRead()], receive_buffer=64 * 1024) as server:
        url = f"{server.url}/upload"
        body = bytes(32 * 1024 * 1024)
        async with Client(timeout=Timeouts(write=0.3, total=5)) as client:
            await expect_error("write_timeout", url, 0.3, lambda: client.request("POST", url, content=body))
            assert client.pool.open_connections == 0


async def test_error_total_timeout_against_a_trickle(anyio_backend: str) -> None:
    trickle = response(200, b"x" * 100)  # 10 bytes a second: never finishes within the test
    with ScriptedServer([ReadRequest(), Trickle(trickle, bytes_per_second=10)]) as server:
        url = f"{server.url}/slow"
        async with Client(timeout=Timeouts(read=1, total=0.5)) as client:
            error = await expect_error("timeout", url, 0.5, lambda: client.get(url))
        assert isinstance(error, aiotcp.DeadlineExceeded)
        assert server.received(0).startswith(b"GET /slow HTTP/1.1\r\n")


async def test_error_pool_timeout(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client(limits=Limits(max_connections=1), timeout=Timeouts(pool=0.2, total=5)) as client:
        async with client.stream("GET", f"{shared_server.url}/bytes/1000000") as held:
            assert held.status_code == 200  # holds the only connection, body unread
            url = f"{shared_server.url}/"
            await expect_error("pool_timeout", url, 0.2, lambda: client.get(url))
        assert (await client.get(f"{shared_server.url}/")).status_code == 200  # the slot came back


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
    ids=["ssh-banner", "bad-status-code", "header-without-colon"],
)
async def test_error_protocol(anyio_backend: str, http: str, reply: bytes) -> None:
    with ScriptedServer([ReadRequest(), Send(reply)]) as server:
        url = f"{server.url}/"
        async with Client(http=http, timeout=Timeouts(read=2, total=5)) as client:
            await expect_error("protocol", url, 2, lambda: client.get(url))
            assert client.pool.open_connections == 0


async def test_error_too_large_head(anyio_backend: str, http: str) -> None:
    big_head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Filler-%05d: %s\r\n" % (n, b"a" * 200) for n in range(1000))
    assert len(big_head) > 200 * 1024
    with ScriptedServer([ReadRequest(), Send(big_head + b"Content-Length: 0\r\n\r\n")]) as server:
        url = f"{server.url}/"
        async with Client(http=http, timeout=Timeouts(read=2, total=5)) as client:
            error = await expect_error("too_large", url, 2, lambda: client.get(url))
        assert isinstance(error, aiotcp.TooLarge)


async def test_error_too_large_body(anyio_backend: str, http: str, shared_server: TargetServer) -> None:
    url = f"{shared_server.url}/bytes/2000"
    async with Client(http=http, limits=Limits(max_body_bytes=1000), timeout=Timeouts(total=5)) as client:
        await expect_error("too_large", url, 5, lambda: client.get(url))
        assert (await client.get(f"{shared_server.url}/bytes/1000")).content == b"x" * 1000


_EMFILE_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import anyio
    from aiotcp import AiotcpError, get  # `import aiotcp` loads its names on first use: load them now

    async def main(url):
        # The loop is running (its own descriptors exist); now take every descriptor left under a low limit,
        # so the client's socket() fails with EMFILE.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        files = []
        try:
            for _ in range(64):
                try:
                    files.append(open("/dev/null", "rb"))
                except OSError:
                    break
            try:
                await get(url, timeout=5)
            except AiotcpError as exc:
                print(exc.kind)
                print(exc.target)
                print(exc)
        finally:
            for file in files:
                file.close()

    anyio.run(main, sys.argv[1], backend=sys.argv[2])
    """
)


def test_error_local_emfile(refused: int, anyio_backend: str) -> None:
    url = f"http://127.0.0.1:{refused}/"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _EMFILE_SCRIPT, url, anyio_backend],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kind, target, message = done.stdout.splitlines()[:3]
    assert (kind, target) == ("local", url), done.stdout
    assert "client-side limit" in message
    assert time.perf_counter() - started < 30


# -- a small sanity check on the helpers above -------------------------------------------------------------------


async def test_two_builtin_servers_are_two_origins(anyio_backend: str) -> None:
    with running_in_thread() as one, running_in_thread() as two:
        assert one.port != two.port
        async with Client() as client:
            await client.get(f"{one.url}/")
            await client.get(f"{two.url}/")
            assert client.pool.opened == 2
            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(client.get, f"{one.url}/delay/20")
            assert client.pool.open_connections == client.pool.idle_connections


async def test_keep_alive_server_script(anyio_backend: str) -> None:
    with ScriptedServer([Repeat([ReadRequest(), Send(response(200, b"again"))], 3)]) as server:
        async with Client() as client:
            for _ in range(3):
                assert (await client.get(f"{server.url}/")).content == b"again"
        assert server.connections_accepted == 1
        assert len(server.requests(0)) == 3
        assert not server.errors
