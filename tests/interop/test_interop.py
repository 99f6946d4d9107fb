"""aiotcp against real servers on loopback (tests/interop/interop_servers.py starts them): uvicorn with its h11
and its httptools parser, waitress (twice: with a short idle timeout, and with a connection limit and its
default one), gunicorn (gthread), aiohttp.web, and nginx, Apache httpd and lighttpd when installed.

Against each: GET, HEAD, 404 and a redirect (followed and not), a 4 MiB body's SHA-256, a chunked body, a gzip
body decoded (and passed through with decode=False), a 1 MiB POST, keep-alive across the server's per-connection
request cap and its idle timeout, 200 concurrent requests through one Client (more than the server serves at a
time, where it has a limit), and ``aiotcp bench`` request counts equal to the server's own count.
Library checks run with both parsers, on asyncio with uvloop and on trio. Nothing may be logged at WARNING or
above meanwhile (conftest.py), and ``aiotcp bench`` must print nothing on stderr. The TLS checks are in
test_interop_tls.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest
from interop_app import BIG_SIZE, chunked_body, gzip_text
from interop_servers import BIG_SHA256, IDLE_MARGIN_S, ROOT, RealServer, client

from aiotcp import Client, Limits
from aiotcp.bench import BenchConfig, run_bench

pytestmark = pytest.mark.anyio

POST_BODY = os.urandom(1024 * 1024)
WAIT_S = 5.0  # bound of every wait for a server's count
BENCH = [sys.executable, "-m", "aiotcp", "bench", "-t", "10", "--no-progress"]


@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


def settled_count(server: RealServer, expected: int) -> int:
    """The server's count once it reaches ``expected`` (access logs may be written a moment later), or what it
    is after WAIT_S; then a moment more, so a count that overshoots shows."""
    deadline = time.monotonic() + WAIT_S
    while server.count() < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    return server.count()


# -- one request at a time -----------------------------------------------------------------------------------


async def test_get_head_404_and_redirects(anyio_backend: Any, http: str, real_server: RealServer) -> None:
    url = real_server.url
    async with client(http) as c:
        get = await c.get(f"{url}/")
        assert (get.status_code, get.http_version) == (200, "1.1")
        assert get.content.startswith(b"hello from a ")
        # identity: nginx (gzip on) would compress the body a plain GET asks for, and a HEAD then has no length
        head = await c.head(f"{url}/", headers={"Accept-Encoding": "identity"})
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(get.content))  # get.content is decoded
        missing = await c.get(f"{url}/missing")
        assert missing.status_code == 404
        redirect = await c.get(f"{url}/redirect")
        assert redirect.status_code == 302
        assert redirect.headers["location"] in ("/", f"{url}/")
        followed = await c.get(f"{url}/redirect", follow_redirects=True)
        assert (followed.status_code, followed.url, followed.content) == (200, f"{url}/", get.content)
        assert [hop.status_code for hop in followed.history] == [302]


async def test_large_body_hash(anyio_backend: Any, http: str, real_server: RealServer) -> None:
    async with client(http) as c:
        response = await c.get(f"{real_server.url}/bytes")
        assert response.status_code == 200
        assert len(response.content) == BIG_SIZE
        assert hashlib.sha256(response.content).hexdigest() == BIG_SHA256
        async with c.stream("GET", f"{real_server.url}/bytes") as streamed:
            digest, size = hashlib.sha256(), 0
            async for chunk in streamed.stream():
                digest.update(chunk)
                size += len(chunk)
        assert (size, digest.hexdigest()) == (BIG_SIZE, BIG_SHA256)


async def test_chunked_and_gzip_decoded(anyio_backend: Any, http: str, real_server: RealServer) -> None:
    async with client(http) as c:
        chunked = await c.get(f"{real_server.url}/chunked")
        assert chunked.status_code == 200
        assert chunked.headers.get("transfer-encoding") == "chunked", chunked.headers
        assert chunked.content == b"".join(chunked_body())
        zipped = await c.get(f"{real_server.url}/gzip", headers={"Accept-Encoding": "gzip"})
        assert zipped.status_code == 200
        assert zipped.headers["content-encoding"] == "gzip"  # the headers say how it was sent
        assert zipped.content == gzip_text()  # decoded by default
    async with Client(http=http, decode=False, timeout=10) as raw_client:
        raw = await raw_client.get(f"{real_server.url}/gzip", headers={"Accept-Encoding": "gzip"})
        assert gzip.decompress(raw.content) == gzip_text()  # decode=False: passed through


async def test_post(anyio_backend: Any, http: str, real_server: RealServer) -> None:
    async with client(http) as c:
        posted = await c.request("POST", f"{real_server.url}/post", content=POST_BODY)
        assert posted.status_code == 200
        if real_server.post_hash:
            assert posted.text == f"{hashlib.sha256(POST_BODY).hexdigest()} {len(POST_BODY)}\n"
        else:
            assert posted.text == f"{len(POST_BODY)}\n"
        after = await c.get(f"{real_server.url}/")  # the connection goes on after a body was sent
        assert after.status_code == 200


# -- keep-alive --------------------------------------------------------------------------------------------


async def test_keepalive_across_the_server_s_request_cap(
    anyio_backend: Any, http: str, real_server: RealServer
) -> None:
    """Sequential requests on one Client: a server that closes after its last request per connection
    (Connection: close) costs a new connection, never a failed request; HEAD replies in between (the servers'
    file APIs are where a body after a HEAD reply comes from) never answer the next request."""
    count = 30
    async with client(http) as c:
        for n in range(count):
            if n % 3 == 1:
                head = await c.head(f"{real_server.url}/file")
                assert (head.status_code, head.content) == (200, b"")
            else:
                response = await c.get(f"{real_server.url}/")
                assert response.status_code == 200
                assert response.content.startswith(b"hello from a ")
        cap = real_server.requests_per_connection
        if cap is not None:  # (Apache and lighttpd count the requests after the first: one more per connection)
            assert c.pool.opened >= count // (cap + 1), c.pool
        assert c.pool.reused > 0


async def test_keepalive_across_the_server_s_idle_timeout(anyio_backend: Any, real_server: RealServer) -> None:
    """A server closes an idle keep-alive connection; the next request goes on a new one, transparently (both
    parsers at once: one wait for the server's timeout)."""
    if real_server.idle_timeout > 5:
        pytest.skip(f"{real_server.name} keeps idle connections {real_server.idle_timeout:g} s")
    if anyio_backend == "trio" and real_server.idle_timeout > 0.5:
        pytest.skip(f"{real_server.name} keeps idle connections {real_server.idle_timeout:g} s: uvloop only")
    async with client("h11") as h11, client("httptools") as httptools:
        clients = (h11, httptools)
        for c in clients:
            assert (await c.get(f"{real_server.url}/")).status_code == 200
        await anyio.sleep(real_server.idle_timeout + IDLE_MARGIN_S)
        for c in clients:
            again = await c.get(f"{real_server.url}/")
            assert again.status_code == 200
            assert not again.timings.reused
            assert c.pool.opened == 2


# -- concurrency -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anyio_backend", "http"),
    [pytest.param(("asyncio", {"use_uvloop": True}), "httptools", id="uvloop-httptools"), ("trio", "h11")],
)
async def test_concurrency_above_the_server_s_connection_limit(
    anyio_backend: Any, http: str, real_server: RealServer
) -> None:
    """200 concurrent requests through one Client allowed twice as many connections as the server serves at a
    time (where it has a limit; else the default 100): every request is answered, once. The connections a
    server does not serve yet wait in its backlog, and the slots they wait for are held by our idle
    connections until those expire (keepalive_expiry): a pool that closed them only when next taken would
    leave the last requests waiting until the deadline (waitress-limited). (Each parser once, and trio once:
    200 requests take a while.)"""
    limit = real_server.connection_limit
    limits = Limits(max_connections=2 * limit if limit else 100, keepalive_expiry=0.2)
    before = real_server.count()
    statuses: list[int] = []
    async with client(http, limits=limits) as c:

        async def one() -> None:
            statuses.append((await c.get(f"{real_server.url}/bench")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(one)
    assert statuses == [200] * 200
    assert await anyio.to_thread.run_sync(settled_count, real_server, before + 200) == before + 200


# -- aiotcp bench -------------------------------------------------------------------------------------------


def test_bench_counts_equal_the_server_s_count(real_server: RealServer) -> None:
    """``aiotcp bench -n N`` (the httptools engine, on uvloop): N requests in its report, N in the server's own
    count, nothing on stderr."""
    requests = 300
    before = real_server.count()
    done = subprocess.run(
        [*BENCH, f"{real_server.url}/bench", "-n", str(requests), "-c", "4", "--engine", "httptools", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning from asyncio or uvloop, no progress line
    report = json.loads(done.stdout)
    assert report["requests"] == requests, report
    assert report["status"] == {"200": requests}, report
    assert report["errors"] == {}, report
    assert settled_count(real_server, before + requests) == before + requests


def test_bench_h11_engine_counts_equal_the_server_s_count(real_server: RealServer) -> None:
    """The portable engine (anyio + h11), run in this process (no interpreter to start): the same counts."""
    requests = 300
    before = real_server.count()
    result = run_bench(
        BenchConfig(
            f"{real_server.url}/bench", connections=4, duration=None, requests=requests, engine="h11", timeout=10
        )
    )
    counters = result.counters
    assert (counters.requests, counters.status, counters.errors, counters.in_flight) == (
        requests,
        {200: requests},
        {},
        0,
    )
    assert settled_count(real_server, before + requests) == before + requests
