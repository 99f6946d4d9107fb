"""params=, json=, data=, auth= and the cookie jar, against the built-in server (which echoes what it got) on
asyncio, uvloop and trio; cookie rules (domain, path, secure, expiry) with names pinned to loopback."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from aiotcp import Client, testing
from aiotcp.errors import InvalidHeader
from aiotcp.serve import TargetServer

pytestmark = pytest.mark.anyio

BACKENDS = ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


async def test_params_json_data_and_auth(anyio_backend: Any, shared_server: TargetServer) -> None:
    url = f"{shared_server.url}/anything"
    async with Client(timeout=5, auth=("client", "wide")) as client:
        with_params = (await client.get(f"{url}?a=1", params={"q": "a b&c", "n": [1, 2], "flag": True})).json()
        as_json = (await client.post(url, json={"name": "é", "n": [1, None]})).json()
        as_form = (await client.post(url, data=[("k", "v=1"), ("k", "ü")])).json()
        own_auth = (await client.get(url, auth=("user", "pa:ss"))).json()
        typed = (await client.post(url, json=[1], headers={"Content-Type": "application/vnd.x+json"})).json()
    assert with_params["path"] == "/anything?a=1&q=a+b%26c&n=1&n=2&flag=true"
    assert as_json["body"] == '{"name":"é","n":[1,null]}'
    assert as_json["headers"]["content-type"] == ["application/json"]
    assert as_form["body"] == "k=v%3D1&k=%C3%BC"
    assert as_form["headers"]["content-type"] == ["application/x-www-form-urlencoded"]
    assert as_json["headers"]["authorization"] == ["Basic " + base64.b64encode(b"client:wide").decode()]
    assert own_auth["headers"]["authorization"] == ["Basic " + base64.b64encode(b"user:pa:ss").decode()]
    assert typed["headers"]["content-type"] == ["application/vnd.x+json"]


async def test_bad_helper_input_is_invalid_before_anything_is_sent(anyio_backend: Any, refused: int) -> None:
    url = f"http://127.0.0.1:{refused}/"
    async with Client(timeout=5) as client:
        for kwargs in ({"json": {1, 2}}, {"json": [1], "data": {"a": 1}}, {"data": b"raw"}, {"auth": ("a:b", "c")}):
            with pytest.raises(InvalidHeader):
                await client.post(url, **kwargs)
        assert client.pool.opened == 0


async def test_cookies_come_back_where_they_belong(anyio_backend: Any, shared_server: TargetServer) -> None:
    port = shared_server.port
    names = ["app.test", "www.app.test", "other.test"]
    async with Client(timeout=5, resolve={(name, port): "127.0.0.1" for name in names}) as client:
        await client.get(f"http://app.test:{port}/cookies/set?session=s1&theme=dark")
        assert client.cookies.get("session") == "s1"
        same = (await client.get(f"http://app.test:{port}/cookies")).json()
        sub = (await client.get(f"http://www.app.test:{port}/cookies")).json()
        other = (await client.get(f"http://other.test:{port}/cookies")).json()
        mine = (await client.get(f"http://other.test:{port}/cookies", headers={"Cookie": "mine=1"})).json()
    assert same == {"session": "s1", "theme": "dark"}
    assert sub == {}  # a host-only cookie: not for subdomains
    assert other == {}  # never across domains
    assert mine == {"mine": "1"}  # a Cookie header given is sent as given


async def test_cookie_domain_path_secure_and_expiry(anyio_backend: Any) -> None:
    set_cookies = [
        ("Set-Cookie", "wide=1; Domain=app.test; Path=/"),
        ("Set-Cookie", "api=2; Path=/api"),
        ("Set-Cookie", "secret=3; Secure; Path=/"),
        ("Set-Cookie", "gone=4; Path=/; Max-Age=0"),
        ("Set-Cookie", "foreign=5; Domain=other.test; Path=/"),  # not the setter's domain: refused
    ]
    seen: list[str | None] = []

    def handler(request: testing.Request) -> testing.Response:
        seen.append(request.headers.get("cookie"))
        return testing.Response(200, headers=set_cookies if not seen[:-1] else [])

    async with Client(transport=testing.MockTransport(handler)) as client:
        await client.get("http://app.test/")
        for url in ("http://www.app.test/", "http://app.test/api/v1", "http://other.test/", "https://app.test/"):
            await client.get(url)
        assert client.cookies.get("gone") is None
        client.cookies.clear()
        await client.get("http://app.test/api/")
    assert seen[0] is None
    assert seen[1] == "wide=1"  # the subdomain: only the Domain cookie
    assert seen[2] == "api=2; wide=1"  # the longer path first (RFC 6265 5.4)
    assert seen[3] is None  # other.test: nothing, and "foreign" was never kept
    assert seen[4] == "wide=1; secret=3"  # Secure: over https only
    assert seen[5] is None  # cleared
    assert all("secret" not in (cookie or "") for cookie in seen[:4])


async def test_cookies_set_by_hand(anyio_backend: Any, shared_server: TargetServer) -> None:
    async with Client(timeout=5) as client:
        client.cookies.set("token", "t1", domain="127.0.0.1")
        got = (await client.get(f"{shared_server.url}/cookies")).json()
    assert got == {"token": "t1"}
    assert "token=t1" in repr(client.cookies)
