"""aiotcp.testing.MockTransport: an application's code tested without sockets, through the client's own request
building and response parsing (a malformed canned response fails as a server's would)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import aiotcp
from aiotcp import Client, Limits
from aiotcp.errors import ConnectionRefused, ProtocolError, TooLarge
from aiotcp.testing import MockTransport, Request, Response

pytestmark = pytest.mark.anyio

BACKENDS = ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


async def test_a_sync_handler_sees_the_request_as_written(anyio_backend: Any) -> None:
    def handler(request: Request) -> Response:
        if request.url.startswith("http://api.test/users"):
            return Response(200, json={"got": request.json(), "query": request.url.partition("?")[2]})
        return Response(404, text="no")

    transport = MockTransport(handler)
    async with Client(transport=transport) as client:
        found = await client.post("http://api.test/users", json={"a": 1}, params={"page": 2})
        missing = await client.get("http://api.test/other")
        again = await client.get("http://api.test/other")
    assert found.json() == {"got": {"a": 1}, "query": "page=2"}
    assert (missing.status_code, missing.text) == (404, "no")
    assert again.timings.reused  # one connection, kept alive like a server's
    assert transport.connections == 1
    sent = transport.requests[0]
    assert (sent.method, sent.target) == ("POST", "/users?page=2")
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["host"] == "api.test"


async def test_an_async_handler_with_state(anyio_backend: Any) -> None:
    calls = 0

    async def handler(request: Request) -> Response:
        nonlocal calls
        calls += 1
        await anyio.lowlevel.checkpoint()
        if calls == 1:
            return Response(503, headers={"Retry-After": "0"})
        return Response(200, content=gzip.compress(b"hello"), headers={"Content-Encoding": "gzip"})

    async with Client(transport=MockTransport(handler), retries=2) as client:
        response = await client.get("https://api.test/")
    assert (response.status_code, response.content) == (200, b"hello")  # decoded, after a retry
    assert (response.attempts, response.retried) == (2, ("503",))


async def test_raw_bytes_go_through_the_same_parser(anyio_backend: Any) -> None:
    replies = iter(
        [
            b"HTTP/1.1 200 OK\r\n\r\nuntil the close",  # no length: the body ends with the connection
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
        ]
    )
    async with Client(transport=MockTransport(lambda request: next(replies)), limits=Limits()) as client:
        assert (await client.get("http://raw.test/")).content == b"until the close"
        with pytest.raises(ProtocolError):
            await client.get("http://raw.test/")
        with pytest.raises(TooLarge):
            await client.get("http://raw.test/")


async def test_a_handler_may_fail_the_request_as_the_network_would(anyio_backend: Any) -> None:
    def handler(request: Request) -> Response:
        raise ConnectionRefused("nothing listens")

    async with Client(transport=MockTransport(handler)) as client:
        with pytest.raises(ConnectionRefused, match="nothing listens"):
            await client.get("http://down.test/")


async def test_cookies_and_redirects_work_as_with_a_server(anyio_backend: Any) -> None:
    def handler(request: Request) -> Response:
        if request.target == "/login":
            return Response(302, headers=[("Location", "/home"), ("Set-Cookie", "session=abc; Path=/")])
        return Response(200, text=request.headers.get("cookie", "none"))

    async with Client(transport=MockTransport(handler), follow_redirects=True) as client:
        response = await client.get("http://app.test/login")
    assert response.text == "session=abc"
    assert [hop.status_code for hop in response.history] == [302]


def test_aiotcp_testing_imports_without_pytest() -> None:
    code = (
        "import sys; import aiotcp; aiotcp.testing.MockTransport; "
        "assert 'pytest' not in sys.modules and '_pytest' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr
    assert aiotcp.testing.Response is Response
