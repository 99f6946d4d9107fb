"""Tests for aiotcp.serve, the built-in loopback target server.

The client side is the stdlib only (raw sockets, plus http.client where its behaviour is the point), on
127.0.0.1 / ::1 port 0. Route and connection tests run against every server configuration: httptools on
uvloop, httptools on the stdlib loop, and the h11 fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import HAVE_HTTPTOOLS, PARSERS, needs_httptools, settled

from aiotcp._version import __version__
from aiotcp.serve import (
    MAX_BYTES,
    SilentServer,
    TargetServer,
    refused_port,
    running_in_thread,
    running_silent_in_thread,
    serve_forever,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "httptools+uvloop": {"parser": "httptools", "use_uvloop": True},
    "httptools+asyncio": {"parser": "httptools", "use_uvloop": False},
    "h11+uvloop": {"parser": "h11", "use_uvloop": True},
}
IO_TIMEOUT = 10.0
READ_CAP = 256 * 1024 * 1024  # a runaway response fails the test instead of eating memory


@pytest.fixture(params=list(CONFIGS))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    config: dict[str, Any] = CONFIGS[request.param]
    if config["parser"] == "httptools" and not HAVE_HTTPTOOLS:
        pytest.skip("httptools is not installed")
    if config["use_uvloop"]:
        pytest.importorskip("uvloop")
    return config


@pytest.fixture
def server(config: dict[str, Any]) -> Iterator[TargetServer]:
    with running_in_thread(**config) as target:
        yield target


# --------------------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client: a socket plus a read buffer, so pipelined responses are read one at a time and
# framing mistakes by the server show up as failures here.
# --------------------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunk_sizes: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}


class Wire:
    def __init__(self, server: TargetServer | SilentServer, timeout: float = IO_TIMEOUT) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.buf = bytearray()
        self.total = 0

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(256 * 1024)
        if not chunk:
            raise EOFError(f"server closed the connection; unread: {bytes(self.buf[:200])!r}")
        self.total += len(chunk)
        assert self.total < READ_CAP
        self.buf += chunk

    def read_until(self, separator: bytes) -> bytes:
        while separator not in self.buf:  # bounded by the socket timeout, EOF and READ_CAP
            self._fill()
        end = self.buf.index(separator) + len(separator)
        data = bytes(self.buf[:end])
        del self.buf[:end]
        return data

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:  # bounded by the socket timeout, EOF and READ_CAP
            self._fill()
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def at_eof(self) -> bool:
        """True if the server closed (FIN or RST) with nothing left unread."""
        if self.buf:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def read_response(self, method: str = "GET") -> Response:
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head[:-4].split("\r\n")
        version, status, reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers = [(name, value) for name, _, value in (line.partition(": ") for line in lines)]
        response = Response(int(status), reason, headers, b"")
        if method == "HEAD" or response.status in (204, 304):
            return response
        if response.header("Transfer-Encoding") == "chunked":
            assert response.header("Content-Length") is None
            body = bytearray()
            for _ in range(READ_CAP):  # bounded: every chunk consumes at least its size line
                size = int(self.read_until(b"\r\n")[:-2], 16)
                response.chunk_sizes.append(size)
                if size == 0:
                    assert self.read_exact(2) == b"\r\n"  # no trailers
                    break
                body += self.read_exact(size)
                assert self.read_exact(2) == b"\r\n"
            response.body = bytes(body)
        else:
            length = response.header("Content-Length")
            assert length is not None, "every framed response here has Content-Length"
            response.body = self.read_exact(int(length))
        return response

    def exchange(self, target: str, method: str = "GET", headers: str = "") -> Response:
        self.send(request(target, method, headers))
        return self.read_response(method)


def request(target: str, method: str = "GET", headers: str = "", version: str = "1.1") -> bytes:
    host = "Host: test\r\n" if version == "1.1" else ""
    return f"{method} {target} HTTP/{version}\r\n{host}{headers}\r\n".encode("latin-1")


def get(server: TargetServer, target: str, method: str = "GET", headers: str = "") -> Response:
    with Wire(server) as wire:
        return wire.exchange(target, method, headers)


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # bounded by the deadline
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def assert_common_headers(response: Response) -> None:
    assert response.header("Server") == f"aiotcp-serve/{__version__}"
    assert response.header("Content-Type") is not None
    assert response.header("Date") is None  # deliberately omitted, see the module docstring


# --------------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------------


def test_root(server: TargetServer) -> None:
    response = get(server, "/")
    assert (response.status, response.reason) == (200, "OK")
    assert_common_headers(response)
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert int(response.header("Content-Length") or -1) == len(response.body)
    assert b"<title>aiotcp test server</title>" in response.body
    assert response.header("Connection") is None  # HTTP/1.1: persistent without saying so


def test_query_string_is_ignored_for_routing(server: TargetServer) -> None:
    assert get(server, "/?a=1&b=2").body == get(server, "/").body
    assert get(server, "/bytes/3?x=y").body == b"xxx"


def test_absolute_form_target(server: TargetServer) -> None:
    assert get(server, f"http://127.0.0.1:{server.port}/bytes/4").body == b"xxxx"
    assert b"<title>" in get(server, "http://127.0.0.1").body
    assert get(server, "*").status == 400


@pytest.mark.parametrize("size", [0, 1, 999, 65536, 65537, 1_000_000])
def test_bytes(server: TargetServer, size: int) -> None:
    response = get(server, f"/bytes/{size}")
    assert response.status == 200
    assert_common_headers(response)
    assert response.header("Content-Type") == "application/octet-stream"
    assert response.header("Content-Length") == str(size)
    assert response.body == b"x" * size


@pytest.mark.parametrize("target", [f"/bytes/{MAX_BYTES + 1}", "/bytes/abc", "/bytes/-1", "/bytes/", "/bytes/1/"])
def test_bytes_invalid_is_400_and_keeps_the_connection(server: TargetServer, target: str) -> None:
    with Wire(server) as wire:
        response = wire.exchange(target)
        assert response.status == 400
        assert_common_headers(response)
        assert response.header("Connection") is None
        assert wire.exchange("/bytes/2").body == b"xx"


def test_bytes_cap_is_accepted_for_head(server: TargetServer) -> None:
    response = get(server, f"/bytes/{MAX_BYTES}", method="HEAD")
    assert response.status == 200
    assert response.header("Content-Length") == str(MAX_BYTES)


@pytest.mark.parametrize("size", [0, 1, 1000, 2500, 64_000, 200_123])
def test_chunked(server: TargetServer, size: int) -> None:
    response = get(server, f"/chunked/{size}")
    assert response.status == 200
    assert_common_headers(response)
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.body == b"x" * size
    *data_chunks, last = response.chunk_sizes
    assert last == 0
    assert all(chunk == 1000 for chunk in data_chunks[:-1])
    assert all(0 < chunk <= 1000 for chunk in data_chunks)


def test_chunked_to_http10_uses_content_length(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/chunked/2500", version="1.0"))
        response = wire.read_response()
        assert response.header("Transfer-Encoding") is None
        assert response.header("Content-Length") == "2500"
        assert response.body == b"x" * 2500


def test_delay(server: TargetServer) -> None:
    started = time.monotonic()
    response = get(server, "/delay/100")
    assert time.monotonic() - started >= 0.1
    assert response.status == 200
    assert b"<title>aiotcp test server</title>" in response.body


def test_delay_does_not_block_other_connections(server: TargetServer) -> None:
    with Wire(server) as slow, Wire(server) as fast:
        slow.send(request("/delay/1000"))
        started = time.monotonic()
        assert fast.exchange("/").status == 200
        assert time.monotonic() - started < 0.9
        assert slow.read_response().status == 200


@pytest.mark.parametrize("target", ["/delay/60001", "/delay/x"])
def test_delay_invalid(server: TargetServer, target: str) -> None:
    assert get(server, target).status == 400


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (200, "OK"),
        (201, "Created"),
        (404, "Not Found"),
        (418, "I'm a Teapot"),
        (503, "Service Unavailable"),
        (599, "Unknown"),
    ],
)
def test_status(server: TargetServer, code: int, reason: str) -> None:
    response = get(server, f"/status/{code}")
    assert (response.status, response.reason) == (code, reason)
    assert_common_headers(response)
    assert response.body == f"{code} {reason}\n".encode()


@pytest.mark.parametrize("code", [204, 304])
def test_status_without_content(server: TargetServer, code: int) -> None:
    with Wire(server) as wire:
        response = wire.exchange(f"/status/{code}")
        assert response.status == code
        assert "content-length" not in response.names()
        assert "content-type" not in response.names()
        # No stray body bytes: the next response on the connection starts right away.
        assert wire.exchange("/bytes/1").body == b"x"


def test_status_205_has_empty_content(server: TargetServer) -> None:
    response = get(server, "/status/205")
    assert (response.status, response.header("Content-Length"), response.body) == (205, "0", b"")


@pytest.mark.parametrize("target", ["/status/100", "/status/199", "/status/600", "/status/0", "/status/x"])
def test_status_invalid(server: TargetServer, target: str) -> None:
    assert get(server, target).status == 400


@pytest.mark.parametrize(
    ("target", "location"), [("/redirect/3", "/redirect/2"), ("/redirect/1", "/redirect/0"), ("/redirect/0", "/")]
)
def test_redirect(server: TargetServer, target: str, location: str) -> None:
    response = get(server, target)
    assert (response.status, response.header("Location")) == (302, location)
    assert_common_headers(response)


def test_redirect_to_with_http_client(server: TargetServer) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=IO_TIMEOUT)
    with contextlib.closing(connection):
        connection.request("GET", "/redirect-to?url=http%3A%2F%2F127.0.0.2%3A9%2Fx%3Fa%3D1")
        response = connection.getresponse()
        response.read()
        assert response.status == 302
        assert response.getheader("Location") == "http://127.0.0.2:9/x?a=1"


@pytest.mark.parametrize(
    "query", ["", "?url=", "?other=1", "?url=a%0d%0aSet-Cookie:%20x=1", "?url=a%20b", "?url=%C3%A9"]
)
def test_redirect_to_invalid(server: TargetServer, query: str) -> None:
    response = get(server, f"/redirect-to{query}")
    assert response.status == 400
    assert response.header("Location") is None
    assert response.header("Set-Cookie") is None


def test_headers_echo(server: TargetServer) -> None:
    response = get(server, "/headers", headers="X-Dup: a\r\nx-dup: b\r\nUser-Agent: test/1\r\n")
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert json.loads(response.body) == {"host": ["test"], "x-dup": ["a", "b"], "user-agent": ["test/1"]}


def test_close_route(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/close") + request("/"))
        response = wire.read_response()
        assert response.status == 200
        assert response.header("Connection") == "close"
        assert wire.at_eof()


def test_not_found(server: TargetServer) -> None:
    for target in ("/nope", "/bytes", "/headers/x", "/delays/1"):
        response = get(server, target)
        assert response.status == 404, target
        assert_common_headers(response)


def test_method_not_allowed_consumes_the_body(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + request("/bytes/2"))
        response = wire.read_response()
        assert response.status == 405
        assert response.header("Allow") == "GET, HEAD"
        assert_common_headers(response)
        assert wire.read_response().body == b"xx"
        assert get(server, "/", method="DELETE").status == 405


@pytest.mark.parametrize(
    "target", ["/", "/bytes/10", "/bytes/100000", "/chunked/2500", "/status/404", "/status/204", "/redirect/1"]
)
def test_head_has_the_headers_of_get_and_no_body(server: TargetServer, target: str) -> None:
    with Wire(server) as wire:
        get_response = wire.exchange(target)
        # HEAD, then GET on the same connection: any body bytes after HEAD would corrupt the second read.
        wire.send(request(target, "HEAD") + request("/bytes/3"))
        head_response = wire.read_response("HEAD")
        assert wire.read_response().body == b"xxx"
    assert head_response.status == get_response.status
    assert head_response.headers == get_response.headers


# --------------------------------------------------------------------------------------------------------
# Connections: keep-alive, pipelining, closing, errors
# --------------------------------------------------------------------------------------------------------


def test_keep_alive_with_http_client(server: TargetServer) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=IO_TIMEOUT)
    with contextlib.closing(connection):
        for target in ("/", "/bytes/5", "/delay/10", "/chunked/10"):
            connection.request("GET", target)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
    assert server.connections_accepted == 1
    assert settled(lambda: server.requests_served == 4), server


def test_two_requests_on_one_socket(server: TargetServer) -> None:
    with Wire(server) as wire:
        assert wire.exchange("/bytes/1").body == b"x"
        assert wire.exchange("/bytes/2").body == b"xx"
    assert server.connections_accepted == 1


def test_pipelining_in_order(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/delay/100") + request("/bytes/3") + request("/status/201") + request("/"))
        first = wire.read_response()
        assert b"<title>" in first.body
        assert wire.read_response().body == b"xxx"
        assert wire.read_response().status == 201
        assert b"<title>" in wire.read_response().body


def test_pipelining_deep_mixed(server: TargetServer) -> None:
    # More than the server queues before it pauses reading, with delays and streamed bodies mixed in.
    targets = [
        ["/bytes/7", "/delay/1", "/chunked/1500", "/bytes/70000", "/status/202", "/", "/redirect/2"][i % 7]
        for i in range(150)
    ]
    with Wire(server) as wire:
        wire.send(b"".join(request(target) for target in targets))
        for target in targets:
            response = wire.read_response()
            if target.startswith(("/bytes/", "/chunked/")):
                assert len(response.body) == int(target.rsplit("/", 1)[1]), target
            elif target == "/status/202":
                assert response.status == 202
            elif target == "/redirect/2":
                assert response.header("Location") == "/redirect/1"
            else:
                assert b"<title>" in response.body
    assert server.requests_served == len(targets)


def test_large_pipelined_responses_with_a_slow_reader(server: TargetServer) -> None:
    # The client does not read until everything is sent: the server must pause, not buffer 20 MB.
    with Wire(server) as wire:
        wire.send(request("/bytes/1000000") * 20)
        time.sleep(0.2)
        for _ in range(20):
            assert wire.read_response().body == b"x" * 1_000_000


def test_http10_closes_by_default(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/bytes/2", version="1.0"))
        response = wire.read_response()
        assert response.body == b"xx"
        assert response.header("Connection") == "close"
        assert wire.at_eof()


def test_http10_keep_alive(server: TargetServer) -> None:
    with Wire(server) as wire:
        for size in (1, 2):
            wire.send(request(f"/bytes/{size}", headers="Connection: keep-alive\r\n", version="1.0"))
            response = wire.read_response()
            assert response.header("Connection") == "keep-alive"
            assert response.body == b"x" * size
    assert server.connections_accepted == 1


def test_connection_close_is_honoured(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/bytes/2", headers="Connection: close\r\n") + request("/bytes/3"))
        response = wire.read_response()
        assert response.body == b"xx"
        assert response.header("Connection") == "close"
        assert wire.at_eof()  # the pipelined request after "close" is not answered
    assert server.requests_served == 1


def test_connection_close_after_delay_is_honoured(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/delay/50") + request("/bytes/2", headers="Connection: close\r\n"))
        assert wire.read_response().status == 200
        assert wire.read_response().header("Connection") == "close"
        assert wire.at_eof()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",  # a TLS ClientHello
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
        b"GET / HTTP/0.9\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_bad_request_is_400_and_close(server: TargetServer, garbage: bytes) -> None:
    with Wire(server) as wire:
        wire.send(garbage)
        response = wire.read_response()
        assert response.status == 400
        assert response.header("Connection") == "close"
        assert_common_headers(response)
        assert wire.at_eof()
    assert server.requests_served == 1


def test_garbage_after_a_good_request_is_answered_in_order(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/delay/20") + b"NOT HTTP\r\n\r\n")
        assert wire.read_response().status == 200
        assert wire.read_response().status == 400
        assert wire.at_eof()


def test_missing_host_in_http11_is_400(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(b"GET / HTTP/1.1\r\n\r\n")
        assert wire.read_response().status == 400
        assert wire.at_eof()


def test_oversized_head_is_400(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):  # the server may answer before we finish sending
            for _ in range(40):
                wire.send(b"a" * 4096)
                time.sleep(0.001)
        response = wire.read_response()
        assert response.status == 400
        assert wire.at_eof()


def test_upgrade_request_is_answered_as_plain_http(server: TargetServer) -> None:
    upgrade = request("/bytes/1", headers="Connection: Upgrade\r\nUpgrade: websocket\r\n")
    with Wire(server) as wire:
        wire.send(upgrade + request("/bytes/2"))
        assert wire.read_response().body == b"x"
        assert wire.read_response().body == b"xx"


def test_half_close_still_gets_the_answers(server: TargetServer) -> None:
    with Wire(server) as wire:
        wire.send(request("/delay/50") + request("/bytes/100000"))
        wire.sock.shutdown(socket.SHUT_WR)
        assert wire.read_response().status == 200
        assert len(wire.read_response().body) == 100000
        assert wire.at_eof()


def test_counters_are_exact(server: TargetServer) -> None:
    targets = ["/", "/delay/5", "/bytes/100000", "/chunked/3000", "/nope"]
    for _ in range(3):
        with Wire(server) as wire:
            for target in targets:
                wire.exchange(target)
    # The server counts a response once its last byte is handed to the transport, which can be a moment
    # after the client has read it: wait for the counts to settle, then require them exact.
    wait_for(lambda: server.open_connections == 0 and server.requests_served >= 15)
    assert server.requests_served == 15
    assert server.connections_accepted == 3
    assert "requests_served=15 connections_accepted=3 open_connections=0" in repr(server)


def test_aclose_closes_idle_keep_alive_connections(config: dict[str, Any]) -> None:
    with contextlib.ExitStack() as cleanup:
        with running_in_thread(**config) as target:
            wire = cleanup.enter_context(Wire(target))
            assert wire.exchange("/").status == 200
            assert target.open_connections == 1
            assert target.is_serving
            # Leaving the block closes the server while the keep-alive connection is idle.
        assert wire.at_eof()
        assert target.open_connections == 0
        assert not target.is_serving
        assert "closed" in repr(target)


def test_aclose_drops_pending_delayed_responses(config: dict[str, Any]) -> None:
    with contextlib.ExitStack() as cleanup:
        started = time.monotonic()
        with running_in_thread(**config) as target:
            wire = cleanup.enter_context(Wire(target))
            wire.send(request("/delay/30000"))
            wait_for(lambda: target.open_connections == 1)
        assert time.monotonic() - started < 5
        assert wire.at_eof()
        assert target.requests_served == 0


# --------------------------------------------------------------------------------------------------------
# Parsers fed directly: whole, one byte at a time, and with trailing bytes (no sockets).
# --------------------------------------------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.written += data

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True  # the server is done with this connection (it lingers only to discard input)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def feed(parser: str, chunks: list[bytes]) -> tuple[bytes, bool]:
    """Bytes written and whether the connection closed, for input delivered in the given pieces."""

    async def main() -> tuple[bytes, bool]:
        target = TargetServer(parser=parser)  # type: ignore[arg-type]
        connection = target._protocol()  # the per-connection protocol, driven without a socket
        transport = FakeTransport()
        connection.connection_made(transport)
        for chunk in chunks:
            connection.data_received(chunk)
        connection.connection_lost(None)
        return bytes(transport.written), transport.closed

    return asyncio.run(main())


PIPELINE = (
    request("/bytes/3")
    + request("/headers", headers="X-A: 1\r\n")
    + request("/status/204", "HEAD")
    + b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    + request("/redirect/0", headers="Connection: Upgrade\r\nUpgrade: h2c\r\n")
    + request("/", version="1.0", headers="Connection: keep-alive\r\n")
    + request("/chunked/5")
)


@pytest.mark.parametrize("parser", PARSERS)
def test_parser_whole_then_byte_by_byte_then_with_trailing_bytes(parser: str) -> None:
    whole, closed = feed(parser, [PIPELINE])
    assert not closed
    assert whole.count(b"HTTP/1.1 ") == 7
    assert feed(parser, [bytes([byte]) for byte in PIPELINE]) == (whole, False)
    # A trailing partial request is held until it completes.
    partial = request("/bytes/2")
    assert feed(parser, [PIPELINE + partial[:10]]) == (whole, False)
    completed, _ = feed(parser, [PIPELINE + partial[:10], partial[10:]])
    assert completed.startswith(whole)
    assert completed[len(whole) :].endswith(b"\r\n\r\nxx")


@needs_httptools
def test_both_parsers_write_identical_bytes() -> None:
    extra = request("/bytes/1", headers="Connection: close\r\n") + request("/never-answered")
    assert feed("httptools", [PIPELINE + extra]) == feed("h11", [PIPELINE + extra])
    garbage = request("/") + b"\x00\x01\x02\r\n\r\n"
    ht_bytes, ht_closed = feed("httptools", [garbage])
    h11_bytes, h11_closed = feed("h11", [garbage])
    assert ht_closed
    assert h11_closed
    # Same responses; only the parser's wording of the 400 detail may differ.
    assert ht_bytes.split(b"HTTP/1.1 400 ")[0] == h11_bytes.split(b"HTTP/1.1 400 ")[0]
    assert ht_bytes.count(b"HTTP/1.1 400 Bad Request\r\n") == h11_bytes.count(b"HTTP/1.1 400 Bad Request\r\n") == 1


@needs_httptools
def test_deep_pipelining_in_one_read_is_not_an_oversized_head() -> None:
    many = request("/bytes/1") * 20_000  # ~600 kB in one read, far over the 64 KiB head limit
    written, closed = feed("httptools", [many, many[:7]])
    assert not closed
    assert written.count(b"HTTP/1.1 200 OK") == 20_000


# --------------------------------------------------------------------------------------------------------
# SilentServer, refused_port, binding rules, lifecycle
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_uvloop", [True, False])
def test_silent_server_never_answers(use_uvloop: bool) -> None:
    with running_silent_in_thread(use_uvloop=use_uvloop) as silent, Wire(silent, timeout=0.3) as wire:
        wire.send(request("/"))
        with pytest.raises(TimeoutError):
            wire.sock.recv(1)
        assert silent.connections_accepted == 1
        assert silent.open_connections == 1
        assert "SilentServer" in repr(silent)


def test_refused_port() -> None:
    with refused_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT).close()
        # Still reserved: nobody else can bind it meanwhile.
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.1", "198.51.100.1", "example.com"])
def test_non_loopback_bind_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        TargetServer(host)
    with pytest.raises(ValueError, match="not a loopback address"):
        SilentServer(host)
    with pytest.raises(ValueError, match="not a loopback address"), running_in_thread(host):
        pass
    with pytest.raises(ValueError, match="not a loopback address"), refused_port(host):
        pass


def test_allow_public_is_explicit() -> None:
    server = TargetServer("0.0.0.0", allow_public=True)  # constructed, never started
    assert not server.is_serving


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": -1}, "out of range"),
        ({"port": 65536}, "out of range"),
        ({"backlog": 0}, "backlog"),
        ({"parser": "picohttp"}, "parser must be"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TargetServer(**kwargs)


def test_other_loopback_addresses() -> None:
    with running_in_thread("localhost") as target:
        assert target.url.startswith("http://127.0.0.1:") or target.url.startswith("http://[::1]:")
        assert get(target, "/bytes/1").body == b"x"
    with running_in_thread("127.0.0.2") as target:
        assert target.url == f"http://127.0.0.2:{target.port}"
        assert get(target, "/bytes/1").body == b"x"


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with running_in_thread("::1") as target:
        assert target.url == f"http://[::1]:{target.port}"
        assert get(target, "/bytes/2").body == b"xx"
    with refused_port("::1") as port, pytest.raises(ConnectionRefusedError):
        socket.create_connection(("::1", port), timeout=IO_TIMEOUT).close()


def test_port_in_use_raises_oserror() -> None:
    with running_in_thread() as first, pytest.raises(OSError, match="in use"), running_in_thread(port=first.port):
        pass


def test_repr_and_state() -> None:
    server = TargetServer(parser="h11")
    assert repr(server) == (
        "<TargetServer http://127.0.0.1:0 not started parser=h11 requests_served=0"
        " connections_accepted=0 open_connections=0>"
    )
    with running_in_thread(parser="h11") as target:
        get(target, "/")
        assert repr(target).startswith(f"<TargetServer http://127.0.0.1:{target.port} serving parser=h11")
        assert "requests_served=1 connections_accepted=1" in repr(target)


def test_start_twice_and_aclose_twice() -> None:
    async def main() -> None:
        target = TargetServer()
        await target.start()
        with pytest.raises(RuntimeError, match="only be started once"):
            await target.start()
        await target.aclose()
        await target.aclose()
        assert not target.is_serving
        with pytest.raises(RuntimeError, match="only be started once"):
            await target.start()

    asyncio.run(main())


def test_serve_forever_until_cancelled() -> None:
    async def main() -> None:
        ready: asyncio.Future[TargetServer] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve_forever(port=0, on_ready=ready.set_result))
        target = await asyncio.wait_for(ready, IO_TIMEOUT)
        reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.write(request("/bytes/4", headers="Connection: close\r\n"))
        data = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
        writer.close()
        await writer.wait_closed()
        assert data.endswith(b"\r\n\r\nxxxx")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not target.is_serving

    asyncio.run(main())


def test_large_closing_reply_survives_a_client_that_keeps_sending(server: TargetServer) -> None:
    # The reply is still in the kernel's send buffer when the client sends more: closing a socket with
    # unread input makes the kernel send RST and discard the unsent part. The server lingers instead
    # (FIN, then discards input until the client closes), so the reply arrives intact.
    with Wire(server) as wire:
        wire.send(request("/bytes/5000000", headers="Connection: close\r\n"))
        time.sleep(0.1)
        wire.send(b"junk\r\n" * 1000)
        time.sleep(0.1)
        response = wire.read_response()
        assert len(response.body) == 5_000_000
        assert wire.at_eof()
