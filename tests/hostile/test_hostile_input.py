"""Bad input is ``invalid_target`` and puts nothing on the wire: CR/LF/NUL/space in targets and paths,
ports that only look like numbers, IPv4 shorthands, bad methods and headers -- through the client, the
module-level ``aiotcp.get`` and the probe, each aimed at a real listening port that counts what reaches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import pytest
from scripted_server import ScriptedServer

import aiotcp
from aiotcp import AiotcpError, Client, Response
from aiotcp.probe import probe_many

pytestmark = pytest.mark.anyio

# {port} is the listening port: were any of these accepted, the request would reach the server.
BAD_URLS = [
    "http://127.0.0.1:{port}/a b",
    "http://127.0.0.1:{port}/a\tb",
    "http://127.0.0.1:{port}/a\r\nX-Injected: yes",
    "http://127.0.0.1:{port}/a\nb",
    "http://127.0.0.1:{port}/\x00",
    "http://127.0.0.1:{port}/\x1b[2J",
    "http://127.0.0.1:{port}/\x7f",
    "http://127.0.0.1\x00:{port}/",
    "http://127.0.0.1 :{port}/",
    " http://127.0.0.1:{port}/",
    "http://127.0.0.1:{port}/ ",
    "http://127.1:{port}/",
    "http://127.0.1:{port}/",
    "http://0x7f.0.0.1:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://2130706433:{port}/",
    "http://127.0.0.1:٨٠/",
    "http://127.0.0.1:\uff18\uff10/",  # fullwidth 8 0
    "http://127.0.0.1:8_0/",
    "http://127.0.0.1: +80 /",
    "http://127.0.0.1:+80/",
    "http://127.0.0.1:-80/",
    "http://127.0.0.1:65536/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:0{port}/",
    "http://127.0.0.1:{port}{port}{port}/",
    "http://[127.0.0.1]:{port}/",
    "http://127.0.0.1:{port}\r\n/",
]
# Lines are stripped (a list file's line ends and indentation are not part of a target): whitespace at the ends of
# a line is not bad input there.
BAD_LINES = [
    *(url.removeprefix("http://") for url in BAD_URLS if url == url.strip()),
    "127.1",
    "127.0.0.1:{port} extra",
    "127.0.0.1:{port}\x0b/",
]
BAD_METHODS = ["G T", "GET\r\n", "GET\x00", "", "CONNECT"]
BAD_HEADERS: list[list[tuple[str | bytes, str | bytes]]] = [
    [("X-A", "a\r\nX-Injected: yes")],
    [("X-A", "a\nb")],
    [("X-A", "a\rb")],
    [("X-A", "a\x00b")],
    [("X-A", " leading space")],
    [("X-A", "trailing space ")],
    [(b"X-A", b"a\r\n\r\nGET /smuggled HTTP/1.1")],
    [("X-A\r\nX-Injected", "yes")],
    [("X A", "space in the name")],
    [("X-A:", "colon in the name")],
    [("", "empty name")],
    [("X-\x00", "NUL in the name")],
    [("Host", "127.0.0.1"), ("Host", "twice")],
    [("Content-Length", "5")],
    [("Transfer-Encoding", "chunked")],
]


@pytest.fixture
def listener() -> Any:
    with ScriptedServer([]) as server:
        yield server
    assert server.connections_accepted == 0, "bad input reached the wire"


def label(text: object) -> str:
    return f"bad-input{text!r}"


async def test_bad_urls_never_reach_the_wire(anyio_backend: str, listener: ScriptedServer, reliability: Any) -> None:
    async with Client() as client:
        for template in BAD_URLS:
            url = template.format(port=listener.port)
            reliability.start(label(url))
            calls: list[Callable[[], Awaitable[Response]]] = [
                lambda: client.get(url),  # noqa: B023 - each lambda is called in this iteration
                lambda: aiotcp.get(url),  # noqa: B023
                lambda: client.head(url),  # noqa: B023
            ]
            for call in calls:
                with pytest.raises(AiotcpError) as caught:
                    await call()
                assert caught.value.kind == "invalid_target", (url, caught.value)
                assert isinstance(caught.value, ValueError)
            assert client.pool.opened == 0
            reliability.survive(label(url))


async def test_bad_methods_never_reach_the_wire(anyio_backend: str, listener: ScriptedServer, reliability: Any) -> None:
    url = f"{listener.url}/"
    async with Client() as client:
        for method in BAD_METHODS:
            reliability.start(label(method))
            with pytest.raises(AiotcpError) as caught:
                await client.request(method, url)
            assert caught.value.kind == "invalid_target", (method, caught.value)
            assert caught.value.target == url
            reliability.survive(label(method))
        assert client.pool.opened == 0


async def test_bad_headers_never_reach_the_wire(anyio_backend: str, listener: ScriptedServer, reliability: Any) -> None:
    url = f"{listener.url}/"
    async with Client() as client:
        for headers in BAD_HEADERS:
            reliability.start(label(headers))
            with pytest.raises(AiotcpError) as caught:
                await client.get(url, headers=headers)
            assert caught.value.kind == "invalid_target", (headers, caught.value)
            assert caught.value.target == url
            reliability.survive(label(headers))
        assert client.pool.opened == 0


async def test_bad_lines_are_invalid_target_records(
    anyio_backend: str, listener: ScriptedServer, reliability: Any
) -> None:
    lines = [template.format(port=listener.port) for template in BAD_LINES]
    async with aclosing(probe_many(lines, concurrency=4, timeout=2)) as results:
        records = [record async for record in results]
    assert sorted(record.line or 0 for record in records) == list(range(1, len(lines) + 1))  # one record per line
    for record in records:
        assert record.line is not None
        reliability.start(label(record.input))
        assert record.error == "invalid_target", record
        assert record.input == lines[record.line - 1].strip()
        assert record.attempts == 0, record  # never tried
        reliability.survive(label(record.input))
