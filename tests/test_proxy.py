"""Proxies: the values (:mod:`aiotcp.proxy`), real proxies on loopback (pproxy from PyPI; squid and dante when
installed) and misbehaving ones scripted with :mod:`scripted_server`, each of which must end in the right kind
within the deadline; and the command line's ``-x``.

Every proxy and target is on 127.0.0.1; a name that must not resolve is asked of a loopback DNS server.
"""

from __future__ import annotations

import json
import pathlib
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from cli_runner import run_cli
from counting_server import counting_server
from dns_server import zone_server
from proxy_servers import RunningProxy, dante, pproxy, squid
from scripted_server import CloseAfterSending, Read, ReadRequest, Repeat, Reset, ScriptedServer, Send, Step

import aiotcp
from aiotcp import Client, Timeouts
from aiotcp.bench import BenchConfig
from aiotcp.bench.config import available_engines
from aiotcp.bench.mix import Endpoint
from aiotcp.errors import (
    AiotcpError,
    ConnectTimeout,
    InvalidTarget,
    ProxyConnectError,
    ProxyError,
    ProxyResolveError,
    ProxyTunnelRefused,
    TLSError,
)
from aiotcp.proxy import EnvironmentProxies, Proxy, parse_proxy
from aiotcp.serve import TargetServer
from aiotcp.targets import parse_target

pytestmark = pytest.mark.anyio

BACKENDS = ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"]
SOCKS = ("socks5", "socks5h", "socks4", "socks4a")
HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
SLACK = 1.0


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningProxy]:
    with pproxy() as running:
        yield running


@pytest.fixture
def tls_origin(server_ssl_context: ssl.SSLContext) -> Iterator[ScriptedServer]:
    with ScriptedServer([Repeat([ReadRequest(), Send(HELLO)], 50)], tls=server_ssl_context) as server:
        yield server


# -- values --------------------------------------------------------------------------------------------------


def test_proxy_urls_parse_with_curl_defaults_and_hide_the_password() -> None:
    assert parse_proxy("127.0.0.1:3128") == Proxy("http", "127.0.0.1", 3128)
    assert parse_proxy("socks5h://LOCALHOST").port == 1080  # curl's default port
    proxy = parse_proxy("http://us%40er:p%3Ass@127.0.0.1:8080")
    assert (proxy.username, proxy.password) == ("us@er", "p:ss")
    assert proxy.url == "http://127.0.0.1:8080"
    assert "p:ss" not in repr(proxy)
    assert "p:ss" not in str(proxy)
    assert proxy.authorization() == b"Basic dXNAZXI6cDpzcw=="
    assert parse_proxy("socks://[::1]:1080").url == "socks5://[::1]:1080"
    assert parse_proxy("socks5h://h:1").resolves_names
    assert not parse_proxy("socks5://h:1").resolves_names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://127.0.0.1:21", "unsupported proxy scheme 'ftp'"),
        ("https://127.0.0.1:443", "not supported"),
        ("http://127.0.0.1:99999", "port"),
        ("http://user:secret@127.0.0.1:1/path", "no path"),
        ("socks4://user:secret@127.0.0.1:1", "SOCKS4 has no password"),
        ("", "a proxy is a URL"),
    ],
)
def test_bad_proxy_urls_are_invalid_target_and_never_show_the_password(text: str, message: str) -> None:
    with pytest.raises(InvalidTarget, match=message) as caught:
        parse_proxy(text)
    assert "secret" not in str(caught.value)


def test_environment_proxies_follow_curl_and_no_proxy() -> None:
    env = {
        "http_proxy": "http://127.0.0.1:3128",
        "HTTP_PROXY": "http://127.0.0.1:9",  # the lowercase name wins
        "HTTPS_PROXY": "socks5h://127.0.0.1:1080",
        "NO_PROXY": "internal.test, .corp.test,127.0.0.0/8,::1, host.test:8080",
    }
    proxies = EnvironmentProxies(env)
    assert proxies.proxy_for(parse_target("http://example.test/")) == parse_proxy("http://127.0.0.1:3128")
    assert proxies.proxy_for(parse_target("https://example.test/")) == parse_proxy("socks5h://127.0.0.1:1080")
    for url in (
        "http://internal.test/",
        "http://a.internal.test/",
        "http://b.corp.test/",
        "http://corp.test/",
        "http://127.0.0.2/",
        "http://[::1]/",
        "http://host.test/",
    ):
        assert proxies.proxy_for(parse_target(url)) is None, url
    assert proxies.proxy_for(parse_target("http://notinternal.test/")) is not None
    assert (
        EnvironmentProxies({"ALL_PROXY": "socks5://127.0.0.1:1", "NO_PROXY": "*"}).proxy_for(
            parse_target("http://x.test/")
        )
        is None
    )
    fallback = EnvironmentProxies({"ALL_PROXY": "socks5://127.0.0.1:1"})
    assert fallback.proxy_for(parse_target("https://x.test/")) == parse_proxy("socks5://127.0.0.1:1")


def test_a_cgi_request_header_cannot_set_the_http_proxy() -> None:
    # httpoxy: under CGI, HTTP_PROXY comes from the request's "Proxy:" header.
    proxies = EnvironmentProxies({"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert proxies.proxy_for(parse_target("http://example.test/")) is None
    assert not proxies


def test_a_bad_proxy_in_the_environment_names_the_variable() -> None:
    with pytest.raises(InvalidTarget, match="HTTPS_PROXY"):
        EnvironmentProxies({"HTTPS_PROXY": "gopher://127.0.0.1:1"})


# -- through pproxy --------------------------------------------------------------------------------------------


async def test_http_proxy_forwards_http_in_absolute_form(
    anyio_backend: Any, proxy: RunningProxy, shared_server: TargetServer
) -> None:
    url = f"{shared_server.url}/headers"
    async with Client(proxy=proxy.url("http"), timeout=5) as client:
        first = await client.get(url)
        second = await client.get(url)
    assert first.status_code == 200
    assert first.request is not None
    assert first.request.target == url.encode()  # absolute form: the proxy needs the whole URL
    assert first.json()["host"] == [f"127.0.0.1:{shared_server.port}"]
    assert first.peer == ("127.0.0.1", proxy.port)
    assert first.proxy == f"http://127.0.0.1:{proxy.port}"
    assert first.timings.proxy_connect_ms is None  # no tunnel: requests go to the proxy as they are
    assert first.timings.connect_ms is not None
    assert second.timings.reused
    assert client.pool.opened == 1


@pytest.mark.parametrize("scheme", SOCKS)
async def test_socks_tunnels_carry_http(
    anyio_backend: Any, proxy: RunningProxy, shared_server: TargetServer, scheme: str
) -> None:
    # localhost: socks5h hands the name to the proxy, socks5 and socks4 resolve it here first. (pproxy has no
    # SOCKS4A: an address goes as plain SOCKS4, and the name form is checked on the wire below.)
    host = "127.0.0.1" if scheme == "socks4a" else "localhost"
    url = f"http://{host}:{shared_server.port}/headers"
    async with Client(proxy=proxy.url(scheme), timeout=5) as client:
        first = await client.get(url)
        second = await client.get(url)
    assert first.json()["host"] == [f"{host}:{shared_server.port}"]
    assert first.request is not None
    assert first.request.target == b"/headers"  # origin form inside a tunnel
    assert first.peer == ("127.0.0.1", proxy.port)
    assert first.timings.proxy_connect_ms is not None
    assert second.timings.reused
    assert second.timings.proxy_connect_ms is None
    assert client.pool.opened == 1


@pytest.mark.parametrize(
    ("scheme", "request_bytes"),
    [
        # VER 5, CMD CONNECT, RSV, ATYP 3 (a name), its length, the name, the port.
        ("socks5h", b"\x05\x01\x00\x03\x09localhost\x1f\x90"),
        # VER 4, CMD CONNECT, the port, 0.0.0.x (a name follows), the user id and its NUL, the name and its NUL.
        ("socks4a", b"\x04\x01\x1f\x90\x00\x00\x00\xffid\x00localhost\x00"),
    ],
)
async def test_socks_proxies_that_resolve_get_the_name(anyio_backend: Any, scheme: str, request_bytes: bytes) -> None:
    # The "proxy" grants the tunnel and then answers as the target would.
    granted = b"\x05\x00" if scheme == "socks5h" else b""
    reply = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90" if scheme == "socks5h" else b"\x00\x5a" + b"\x00" * 6
    greeting = [Read(3), Send(granted)] if scheme == "socks5h" else []
    script = [*greeting, Read(len(request_bytes)), Send(reply), ReadRequest(), Send(HELLO)]
    with ScriptedServer(script) as fake:
        auth = "id@" if scheme == "socks4a" else ""
        async with Client(proxy=f"{scheme}://{auth}127.0.0.1:{fake.port}", timeout=5) as client:
            response = await client.get("http://localhost:8080/")
        wire = fake.received(0)
    assert response.content == b"hello"
    assert request_bytes in wire
    assert b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n" in wire


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
async def test_https_through_a_tunnel_verifies_the_target(
    anyio_backend: Any,
    proxy: RunningProxy,
    tls_origin: ScriptedServer,
    client_ssl_context: ssl.SSLContext,
    scheme: str,
) -> None:
    url = f"https://localhost:{tls_origin.port}/"
    async with Client(proxy=proxy.url(scheme), verify=client_ssl_context, timeout=5) as client:
        response = await client.get(url)
        again = await client.get(url)
    assert (response.status_code, response.content) == (200, b"hello")
    assert response.timings.proxy_connect_ms is not None
    assert response.timings.tls_ms is not None
    assert again.timings.reused
    assert tls_origin.requests(0)[0].startswith(b"GET / HTTP/1.1\r\n")  # the origin saw no CONNECT: TLS ran end to end


async def test_proxy_credentials_go_to_the_proxy_only(anyio_backend: Any, shared_server: TargetServer) -> None:
    with pproxy(auth="user:pass") as guarded:
        async with Client(proxy=guarded.url("http"), timeout=5) as client:
            response = await client.get(f"{shared_server.url}/headers")
            assert response.status_code == 200
            assert "proxy-authorization" not in response.json()  # pproxy takes it off before forwarding
            assert response.request is not None
            assert (b"Proxy-Authorization", b"Basic dXNlcjpwYXNz") in response.request.headers
        async with Client(proxy=guarded.url("socks5"), timeout=5) as client:
            tunneled = await client.get(f"{shared_server.url}/headers", headers={"Proxy-Authorization": "Basic x"})
            assert "proxy-authorization" not in tunneled.json()  # not even one given: the tunnel's end is the target
            assert tunneled.request is not None
            assert not any(name.lower() == b"proxy-authorization" for name, _ in tunneled.request.headers)


async def test_wrong_proxy_credentials(anyio_backend: Any, shared_server: TargetServer) -> None:
    # A pproxy of its own: it lets in, without credentials, an address that once gave the right ones.
    with pproxy(auth="user:pass") as guarded:
        async with Client(proxy=guarded.url("http", auth="user:wrong@"), timeout=5) as client:
            # Forwarding: the proxy's 407 is the response (as curl shows it).
            assert (await client.get(f"{shared_server.url}/")).status_code == 407
            # A tunnel: the proxy refused it, a kind of its own naming the proxy, with the status.
            with pytest.raises(ProxyTunnelRefused) as caught:
                await client.get(f"https://127.0.0.1:{shared_server.port}/")
        async with Client(proxy=guarded.url("socks5", auth="user:wrong@"), timeout=5) as client:
            # pproxy hangs up on wrong credentials (a proxy that says so: HOSTILE's socks5-wrong-credentials).
            with pytest.raises(ProxyError, match="closed the connection during the SOCKS5 authentication"):
                await client.get(f"{shared_server.url}/")
    assert caught.value.kind == "proxy"
    assert caught.value.status_code == 407
    assert f"proxy http://127.0.0.1:{guarded.port}" in str(caught.value)
    assert "wrong" not in str(caught.value)


async def test_the_pool_keys_connections_by_proxy(
    anyio_backend: Any, proxy: RunningProxy, shared_server: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url("http"))
    monkeypatch.setenv("no_proxy", "localhost")
    monkeypatch.delenv("NO_PROXY", raising=False)
    async with Client(trust_env=True, timeout=5) as client:
        via = await client.get(f"{shared_server.url}/")
        direct = await client.get(f"http://localhost:{shared_server.port}/")
        again = await client.get(f"{shared_server.url}/")
    assert via.proxy is not None
    assert direct.proxy is None
    assert direct.peer == ("127.0.0.1", shared_server.port)
    assert again.timings.reused
    assert again.proxy == via.proxy
    assert client.pool.opened == 2
    async with Client(timeout=5) as client:  # trust_env is opt-in
        assert (await client.get(f"{shared_server.url}/")).proxy is None


# -- proxies that fail -------------------------------------------------------------------------------------------


async def expect(client: Client, url: str, cls: type[AiotcpError], deadline: float) -> AiotcpError:
    started = time.perf_counter()
    with pytest.raises(cls) as caught:
        await client.get(url)
    assert time.perf_counter() - started <= deadline + SLACK
    assert caught.value.target == url
    assert client.pool.open_connections == 0
    return caught.value


async def test_a_proxy_that_is_not_listening(anyio_backend: Any, refused: int) -> None:
    async with Client(proxy=f"http://127.0.0.1:{refused}", timeout=5) as client:
        error = await expect(client, "http://127.0.0.1:8/", ProxyConnectError, 5)
    assert error.kind == "proxy"
    assert f"cannot connect to proxy http://127.0.0.1:{refused}: connection refused" in str(error)


async def test_a_proxy_name_that_does_not_resolve(anyio_backend: Any) -> None:
    with zone_server({}) as dns:  # NXDOMAIN for every name, from loopback
        async with Client(proxy="socks5://proxy.test:1080", resolvers=[dns.address], timeout=5) as client:
            error = await expect(client, "http://127.0.0.1:8/", ProxyResolveError, 5)
    assert "proxy socks5://proxy.test:1080: its name does not resolve" in str(error)


# (scheme, script of the proxy, expected class, text in the message). The https:// target makes an HTTP proxy
# open a CONNECT tunnel.
CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
HOSTILE: list[tuple[str, str, list[Step], type[AiotcpError], str]] = [
    (
        "connect-403",
        "http",
        [ReadRequest(), Send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"), CloseAfterSending()],
        ProxyTunnelRefused,
        "refused the tunnel to 127.0.0.1:8: 403 Forbidden",
    ),
    (
        "connect-407",
        "http",
        [ReadRequest(), Send(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")],
        ProxyTunnelRefused,
        "407 Proxy Authentication Required",
    ),
    (
        "connect-502-with-body",
        "http",
        [ReadRequest(), Send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\noops!"), CloseAfterSending()],
        ProxyTunnelRefused,
        "502 Bad Gateway",
    ),
    (
        "connect-garbage",
        "http",
        [ReadRequest(), Send(b"SSH-2.0-OpenSSH_9.6\r\n"), CloseAfterSending()],
        ProxyError,
        "answered CONNECT with something that is not HTTP/1.x",
    ),
    (
        "connect-closed",
        "http",
        [ReadRequest(), CloseAfterSending()],
        ProxyError,
        "closed the connection during the CONNECT to 127.0.0.1:8",
    ),
    ("connect-reset", "http", [ReadRequest(), Reset()], ProxyError, "failed during the handshake"),
    (
        "connect-bytes-after-200",
        "http",
        [ReadRequest(), Send(CONNECT_OK + b"unasked")],
        ProxyError,
        "sent 7 bytes after its answer",
    ),
    ("connect-silent", "http", [ReadRequest()], ConnectTimeout, "did not open the tunnel within 1s"),
    (
        "tunnel-closes-mid-tls",
        "http",
        [ReadRequest(), Send(CONNECT_OK), Read(10), CloseAfterSending()],
        TLSError,
        "(through proxy http://127.0.0.1:",
    ),
    (
        "socks5-refused",
        "socks5",
        [Read(3), Send(b"\x05\x00"), Read(10), Send(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"), CloseAfterSending()],
        ProxyError,
        "could not open a tunnel to 127.0.0.1:8: connection refused",
    ),
    (
        "socks5-wants-credentials",
        "socks5",
        [Read(3), Send(b"\x05\xff"), CloseAfterSending()],
        ProxyError,
        "accepts none of our authentication methods (it wants credentials)",
    ),
    (
        "socks5-wrong-credentials",
        "socks5",
        [Read(3), Send(b"\x05\x02"), Read(5), Send(b"\x01\x01"), CloseAfterSending()],
        ProxyError,
        "refused our user name and password",
    ),
    (
        "socks5-garbage",
        "socks5",
        [Read(3), Send(b"HTTP/1.1 400 Bad Request\r\n\r\n"), CloseAfterSending()],
        ProxyError,
        "with something that is not SOCKS",
    ),
    ("socks5-silent", "socks5", [Read(3)], ConnectTimeout, "did not open the tunnel within 1s"),
    (
        "socks4-rejected",
        "socks4",
        [Read(9), Send(b"\x00\x5b\x00\x00\x00\x00\x00\x00"), CloseAfterSending()],
        ProxyError,
        "could not open a tunnel to 127.0.0.1:8: request rejected or failed",
    ),
]


@pytest.mark.parametrize(("name", "scheme", "script", "cls", "message"), HOSTILE, ids=[case[0] for case in HOSTILE])
async def test_a_misbehaving_proxy_gives_its_kind_within_the_deadline(
    anyio_backend: Any, name: str, scheme: str, script: list[Step], cls: type[AiotcpError], message: str
) -> None:
    with ScriptedServer(script) as hostile:
        proxy = f"{scheme}://127.0.0.1:{hostile.port}"
        if name == "socks5-wrong-credentials":
            proxy = f"{scheme}://u:p@127.0.0.1:{hostile.port}"
        url = "https://127.0.0.1:8/" if scheme == "http" else "http://127.0.0.1:8/"
        async with Client(proxy=proxy, timeout=Timeouts(connect=1, total=5), verify=False) as client:
            error = await expect(client, url, cls, 1)
    assert message in str(error), str(error)
    if isinstance(error, ProxyError):
        assert error.proxy == f"{scheme}://127.0.0.1:{hostile.port}"
        assert error.kind == "proxy"


# -- squid and dante, when installed ------------------------------------------------------------------------------


async def test_squid_forwards_and_tunnels(
    anyio_backend: Any, shared_server: TargetServer, tls_origin: ScriptedServer, client_ssl_context: ssl.SSLContext
) -> None:
    try:
        running = squid()
        squid_proxy = running.__enter__()
    except LookupError as exc:
        pytest.skip(str(exc))
    try:
        async with Client(proxy=squid_proxy.url(), verify=client_ssl_context, timeout=10) as client:
            forwarded = await client.get(f"{shared_server.url}/headers")
            tunneled = await client.get(f"https://127.0.0.1:{tls_origin.port}/")
            with pytest.raises(ProxyTunnelRefused) as caught:  # squid answers 503 when the target refuses
                await client.get("https://127.0.0.1:1/")
    finally:
        running.__exit__(None, None, None)
    assert forwarded.status_code == 200
    assert "squid" in forwarded.headers.get("via", "")
    assert tunneled.content == b"hello"
    assert caught.value.status_code is not None
    assert caught.value.status_code >= 500


async def test_dante_tunnels_and_reports_a_refused_target(anyio_backend: Any, shared_server: TargetServer) -> None:
    try:
        running = dante()
        dante_proxy = running.__enter__()
    except LookupError as exc:
        pytest.skip(str(exc))
    try:
        async with Client(proxy=dante_proxy.url("socks5"), timeout=10) as client:
            response = await client.get(f"{shared_server.url}/")
            with pytest.raises(ProxyError, match="connection refused"):
                await client.get("http://127.0.0.1:1/")
    finally:
        running.__exit__(None, None, None)
    assert response.status_code == 200


# -- the command line ----------------------------------------------------------------------------------------------


def test_get_x_goes_through_the_proxy(proxy: RunningProxy, shared_server: TargetServer) -> None:
    for scheme in ("http", "socks5h"):
        done = run_cli("get", "-x", proxy.url(scheme), "-v", f"{shared_server.url}/headers")
        assert done.returncode == 0, done.stderr
        assert b"* via proxy " + proxy.url(scheme).encode() in done.stderr
        assert b'"host": ["127.0.0.1:' in done.stdout


def test_proxy_exit_codes_are_curls(refused: int) -> None:
    assert run_cli("get", "-x", f"127.0.0.1:{refused}", "http://127.0.0.1:8/").returncode == 7
    with ScriptedServer([ReadRequest(), Send(b"HTTP/1.1 407 No\r\nContent-Length: 0\r\n\r\n")]) as hostile:
        done = run_cli("get", "-x", f"127.0.0.1:{hostile.port}", "-k", "https://127.0.0.1:8/")
    assert done.returncode == 56, done.stderr
    assert b"error: proxy: " in done.stderr
    with ScriptedServer([Read(3), Send(b"\x05\xff")]) as hostile:
        assert run_cli("get", "-x", f"socks5://127.0.0.1:{hostile.port}", "http://127.0.0.1:8/").returncode == 97
    done = run_cli("get", "-x", "gopher://127.0.0.1:1", "http://127.0.0.1:8/")
    assert done.returncode == 2
    assert done.stderr.startswith(b"error: usage: ")
    assert b"-x/--proxy" in done.stderr


def test_the_proxy_kind_is_exported() -> None:
    assert "proxy" in aiotcp.KINDS
    assert anyio is not None


def test_probe_and_bench_go_through_the_proxy(proxy: RunningProxy, shared_server: TargetServer) -> None:
    for scheme in ("http", "socks5"):
        done = run_cli("probe", "-", "-x", proxy.url(scheme), "-q", stdin=f"127.0.0.1:{shared_server.port}\n".encode())
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        assert (record["ok"], record["status_code"], record["title"]) == (True, 200, "aiotcp test server")
    refused = run_cli("probe", "-", "-x", "socks5://127.0.0.1:1", "-q", stdin=b"127.0.0.1:8\n")
    assert json.loads(refused.stdout)["error"] == "proxy"
    for engine in ("httptools", "h11"):
        for scheme in ("http", "socks5h"):
            done = run_cli(
                "bench",
                "-n",
                "100",
                "-c",
                "2",
                "--engine",
                engine,
                "-x",
                proxy.url(scheme),
                "--json",
                shared_server.url,
            )
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            assert report["requests"] == 100, (engine, scheme)
            assert report["connections"]["opened"] == 2


def test_bench_requests_through_a_proxy_are_in_the_form_it_takes() -> None:
    endpoints = (Endpoint("GET", "http://127.0.0.1:9/a"), Endpoint("POST", "http://127.0.0.1:9/b/{seq}"))
    common: dict[str, Any] = {"endpoints": endpoints, "bodies": (b"x",), "order": "sequential"}
    # An HTTP proxy forwards: every endpoint in absolute form, the credentials once in each request.
    forwarded = BenchConfig("http://127.0.0.1:9/", proxy="http://user:pass@127.0.0.1:3128", **common).plans()[0]
    assert (forwarded.host, forwarded.port, forwarded.tunnel) == ("127.0.0.1", 3128, None)
    picker = forwarded.picker()
    assert picker is not None
    requests = [picker.next()[1] for _ in range(4)]
    assert requests[0].startswith(b"GET http://127.0.0.1:9/a HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    assert requests[1].startswith(b"POST http://127.0.0.1:9/b/0 HTTP/1.1\r\n")
    assert requests[1].endswith(b"\r\nContent-Length: 1\r\n\r\nx")
    assert requests[3].startswith(b"POST http://127.0.0.1:9/b/1 HTTP/1.1\r\n")
    for request in requests:
        assert request.count(b"\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n") == 1
    one = BenchConfig("http://127.0.0.1:9/x?y=1", proxy="http://127.0.0.1:3128")
    assert one.request_bytes().startswith(b"GET http://127.0.0.1:9/x?y=1 HTTP/1.1\r\n")
    assert b"Proxy-Authorization" not in one.request_bytes()
    given = BenchConfig(
        "http://127.0.0.1:9/", proxy="http://user:pass@127.0.0.1:3128", headers=(("Proxy-Authorization", "Basic x"),)
    )
    assert given.request_bytes().count(b"Proxy-Authorization") == 1  # -H replaces it, as it does the defaults
    assert b"\r\nProxy-Authorization: Basic x\r\n" in given.request_bytes()
    # A SOCKS proxy tunnels: the requests as to the server itself, the credentials in the tunnel only.
    tunneled = BenchConfig("http://127.0.0.1:9/", proxy="socks5://user:pass@127.0.0.1:1080", **common).plans()[0]
    assert (tunneled.port, tunneled.tunnel) == (1080, ("socks5://user:pass@127.0.0.1:1080", "127.0.0.1", 9))
    picker = tunneled.picker()
    assert picker is not None
    requests = [picker.next()[1] for _ in range(2)]
    assert requests[0].startswith(b"GET /a HTTP/1.1\r\n")
    assert requests[1].startswith(b"POST /b/0 HTTP/1.1\r\n")
    assert not any(b"Proxy-Authorization" in request for request in requests)


@pytest.mark.parametrize("engine", available_engines())
def test_a_urls_mix_through_a_proxy_counts_what_the_server_counts(engine: str, tmp_path: pathlib.Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("GET /a 2\nHEAD /b\nPOST /c\nGET /d?n={rand:1-3}\n")
    bodies = tmp_path / "bodies.txt"
    bodies.write_text("one\ntwo\n")
    # A proxy that wants credentials: a request without them would be answered 407 (and counted so).
    with pproxy(auth="user:pass") as guarded, counting_server() as server:
        for scheme in ("http", "socks5"):
            server.requests.clear()
            server.body_bytes.clear()
            done = run_cli(
                *("bench", server.url, "--urls", str(urls), "--body-lines", str(bodies), "-n", "200", "-c", "2"),
                *("--engine", engine, "-x", guarded.url(scheme), "--json", "--no-progress"),
            )
            assert done.returncode == 0, (scheme, done.stderr)
            served = Counter(server.requests)
            report = json.loads(done.stdout)
            assert (report["requests"], report["errors"], report["status"]) == (200, {}, {"200": 200}), scheme
            assert report["connections"]["opened"] == 2
            assert report["arguments"]["proxy"] == f"{scheme}://127.0.0.1:{guarded.port}"
            assert b"pass" not in done.stdout  # the proxy's credentials are nowhere in the report
            ours = {(endpoint["method"], endpoint["url"]): endpoint["requests"] for endpoint in report["endpoints"]}
            assert sum(ours.values()) == sum(served.values()) == 200
            for method, path in (("GET", "/a"), ("HEAD", "/b"), ("POST", "/c")):
                assert ours[(method, server.url + path)] == served[(method, path)] > 0, (scheme, method, path)
            templated = sum(count for (_, path), count in served.items() if path.startswith("/d?n="))
            assert ours[("GET", server.url + "/d?n={rand:1-3}")] == templated > 0
            assert {path for _, path in served if path.startswith("/d")} <= {"/d?n=1", "/d?n=2", "/d?n=3"}
            assert server.body_bytes == {"POST": 3 * served[("POST", "/c")]}  # "one" and "two", in turn
        assert server.protocol_errors == []
