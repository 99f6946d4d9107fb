"""Unix domain sockets (``Client(uds=...)``, ``get --unix-socket``) and the source address
(``Client(local_address=...)``), on asyncio, uvloop and trio."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cli_runner import run_cli
from counting_server import counting_server

from aiotcp import Client
from aiotcp.bench.config import available_engines
from aiotcp.errors import ConnectionRefused, InvalidTarget, LocalError

pytestmark = pytest.mark.anyio

BACKENDS = ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


@contextlib.contextmanager
def unix_server(count: int = 10) -> Iterator[tuple[str, list[bytes]]]:
    """A Unix socket answering up to ``count`` requests per connection with the request line it got."""
    directory = tempfile.mkdtemp(prefix="aiotcp-uds-")
    path = os.path.join(directory, "http.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    listener.settimeout(10)
    seen: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    for _ in range(count):
                        head = b""
                        while b"\r\n\r\n" not in head:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            head += chunk
                        if not head:
                            break
                        line = head.split(b"\r\n")[0]
                        seen.append(head)
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path, seen
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.rmdir(directory)


async def test_requests_over_a_unix_socket(anyio_backend: Any) -> None:
    with unix_server() as (path, seen):
        async with Client(uds=path, timeout=5) as client:
            first = await client.get("http://api.local/v1/items?x=1")
            second = await client.get("http://api.local/v1/other")
    assert first.content == b"GET /v1/items?x=1 HTTP/1.1"
    assert first.peer == (path, 0)
    assert second.timings.reused
    assert b"\r\nHost: api.local\r\n" in seen[0]


async def test_a_missing_unix_socket_is_refused(anyio_backend: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "nothing.sock")
    async with Client(uds=path, timeout=5) as client:
        with pytest.raises(ConnectionRefused, match=f"cannot connect to unix socket {path}"):
            await client.get("http://api.local/")


async def test_the_source_address(anyio_backend: Any) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    peers: list[tuple[str, int]] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, peer = listener.accept()
            peers.append(peer)
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        async with Client(local_address="127.0.0.2", timeout=5) as client:
            assert (await client.get(f"http://127.0.0.1:{listener.getsockname()[1]}/")).content == b"ok"
    finally:
        listener.close()
        thread.join(10)
    assert peers[0][0] == "127.0.0.2"
    async with Client(local_address="::1", timeout=5) as client:
        with pytest.raises(LocalError, match="no IPv6 address to connect to from local address ::1"):
            await client.get("http://127.0.0.1:8/")
    with pytest.raises(InvalidTarget, match="local_address must be an IP address"):
        Client(local_address="eth0")


def test_get_unix_socket() -> None:
    with unix_server() as (path, _):
        done = run_cli("get", "--unix-socket", path, "http://api.local/hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"GET /hello HTTP/1.1"


def test_bench_over_a_unix_socket() -> None:
    with unix_server(count=1000) as (path, _):
        for engine in ("httptools", "h11"):
            done = run_cli(
                "bench", "-n", "50", "-c", "1", "--engine", engine, "--unix-socket", path, "--json", "http://api.local/"
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["requests"] == 50


def test_a_urls_mix_over_a_unix_socket_counts_what_the_server_counts() -> None:
    with tempfile.TemporaryDirectory(prefix="aiotcp-uds-") as directory:
        urls = os.path.join(directory, "urls.txt")
        with open(urls, "w", encoding="ascii") as file:
            file.write("GET /a\nHEAD /b\nPOST /c 2\n")
        path = os.path.join(directory, "http.sock")
        with counting_server(unix_socket=path) as server:
            for engine in available_engines():
                server.requests.clear()
                done = run_cli(
                    *("bench", "http://api.local/", "--urls", urls, "-n", "120", "-c", "2", "--engine", engine),
                    *("--unix-socket", path, "--order", "sequential", "--json", "--no-progress"),
                )
                assert done.returncode == 0, done.stderr
                report = json.loads(done.stdout)
                assert (report["requests"], report["status"], report["dns"]) == (120, {"200": 120}, None)
                ours = {(endpoint["method"], endpoint["url"]): endpoint["requests"] for endpoint in report["endpoints"]}
                assert ours == {
                    ("GET", "http://api.local/a"): 40,
                    ("HEAD", "http://api.local/b"): 40,
                    ("POST", "http://api.local/c"): 40,
                }
                assert server.requests == {("GET", "/a"): 40, ("HEAD", "/b"): 40, ("POST", "/c"): 40}
                assert report["arguments"]["unix_socket"] == path
            text = run_cli("bench", "http://api.local/", "--urls", urls, "-n", "30", "-c", "1", "--unix-socket", path)
            assert text.returncode == 0, text.stderr
            assert f"over the Unix socket {path};".encode() in b" ".join(text.stdout.split())  # however it wraps
            assert server.protocol_errors == []
