"""The life cycle of one connection (aiotcp.connection: HTTPConnection and BodyReader), on the memory stream.

A connection goes back to IDLE only after a response that ended cleanly and reusable; any other ending
closes it and hands it back exactly once; input that arrives while it is idle (stray bytes, FIN, RST) makes
it unsafe to reuse. The peer is a :class:`~memory_stream.Peer` (tests/memory_stream.py), so each ending is
scripted exactly, on asyncio and trio and with both parsers; what only a kernel shows stays in the loopback
tests (test_pool.py, test_transport.py, hostile/).
"""

from __future__ import annotations

import anyio
import pytest
from memory_stream import EOF, OK, RESET, Item, Peer, ok

from aiotcp.budget import Budget
from aiotcp.config import Timeouts
from aiotcp.connection import BodyReader, ConnectionState, HTTPConnection
from aiotcp.errors import AiotcpError
from aiotcp.http11 import Request, ResponseEnd, make_protocol

pytestmark = pytest.mark.anyio

URL = "http://origin.test/"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def request(path: bytes = b"/", *headers: tuple[bytes, bytes]) -> Request:
    return Request(b"GET", path, [(b"Host", b"origin.test"), *headers])


def budget(read: float | None = 1.0) -> Budget:
    return Budget.start(Timeouts(read=read, total=5))


class Releases:
    """A ``release`` for BodyReader that keeps the pool's contract (idle when reusable, else the caller
    closes) and records every call."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, connection: HTTPConnection, reusable: bool) -> bool:
        self.calls.append(reusable)
        if reusable:
            connection.mark_idle()
            return False
        return True


def connect(peer: Peer, http: str) -> HTTPConnection:
    peer.stream.target = URL
    return HTTPConnection(peer.stream, make_protocol(http), key="origin.test")


async def exchange(
    connection: HTTPConnection, releases: Releases, path: bytes = b"/", *headers: tuple[bytes, bytes]
) -> bytes:
    """One request on ``connection``, its body read to the end."""
    await connection.send_request(request(path, *headers), budget(), URL + path.decode()[1:])
    return await BodyReader(connection, budget(), releases).read_all()


# -- the clean path ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["whole", "bytewise"])
async def test_a_clean_reusable_response_makes_the_connection_idle(
    anyio_backend: str, http: str, delivery: str
) -> None:
    peer = Peer()
    peer.reply(*([OK] if delivery == "whole" else [OK[i : i + 1] for i in range(len(OK))]))
    peer.reply(ok(b"second"))
    connection = connect(peer, http)
    releases = Releases()
    assert repr(connection) == f"<HTTPConnection {URL} state=active requests=0 backend={http}>"

    head = await connection.send_request(request(), budget(), URL)
    assert head.status_code == 200
    assert connection.first_byte_at is not None
    assert connection.response_started()
    reader = BodyReader(connection, budget(), releases)
    assert repr(reader).startswith("<BodyReader reading bytes_read=0 <HTTPConnection")
    assert (connection.state, releases.calls) == (ConnectionState.ACTIVE, [])  # the head alone ends nothing

    assert await reader.read_all() == b"hello"
    assert reader.end == ResponseEnd(True)
    assert releases.calls == [True]
    assert reader.finished
    assert repr(reader).startswith("<BodyReader done bytes_read=5 ")
    assert connection.is_idle()
    assert connection.is_safe_to_reuse()
    assert not connection.is_reused()
    assert repr(connection) == f"<HTTPConnection {URL} state=idle requests=1 backend={http}>"

    connection.mark_active()
    assert await exchange(connection, releases, b"/two") == b"second"
    assert connection.is_reused()
    assert releases.calls == [True, True]
    assert repr(connection) == f"<HTTPConnection {URL}two state=idle requests=2 backend={http}>"
    assert [sent.split(b"\r\n")[0] for sent in peer.requests] == [b"GET / HTTP/1.1", b"GET /two HTTP/1.1"]
    assert not peer.stream.is_closed


async def test_the_head_comes_back_before_the_body_arrives(anyio_backend: str, http: str) -> None:
    peer = Peer()
    head, body = OK[:-5], OK[-5:]
    peer.reply(head)
    connection = connect(peer, http)
    assert (await connection.send_request(request(), budget(), URL)).status_code == 200
    reader = BodyReader(connection, budget(), Releases())
    async with anyio.create_task_group() as group:
        group.start_soon(reader.read_all)
        await anyio.wait_all_tasks_blocked()
        assert not reader.finished  # waiting for the body, the connection still busy
        assert connection.state is ConnectionState.ACTIVE
        peer.feed(body)
    assert reader.bytes_read == 5
    assert connection.is_idle()


# -- every other ending closes it ------------------------------------------------------------------------------

NOT_REUSABLE: dict[str, tuple[list[Item], tuple[tuple[bytes, bytes], ...], str]] = {
    "server-asks-to-close": ([ok(b"hello", b"Connection: close")], (), "server asked to close the connection"),
    "http-1.0": ([b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"], (), "HTTP/1.0 response: no keep-alive"),
    "close-delimited": (
        [b"HTTP/1.1 200 OK\r\n\r\nhel", b"lo", EOF],
        (),
        "body was delimited by the connection closing",
    ),
    "leftover-in-the-same-read": ([OK + b"HTTP/1.1 200 OK\r\n"], (), "unexpected bytes after the response"),
    "request-asks-to-close": ([OK], ((b"Connection", b"close"),), "the request asked to close the connection"),
}


@pytest.mark.parametrize("name", NOT_REUSABLE)
async def test_a_response_that_is_not_reusable_closes_the_connection(anyio_backend: str, http: str, name: str) -> None:
    reply, headers, why = NOT_REUSABLE[name]
    peer = Peer()
    peer.reply(*reply)
    connection = connect(peer, http)
    releases = Releases()
    assert await exchange(connection, releases, b"/", *headers) == b"hello"
    assert releases.calls == [False]
    assert connection.is_closed()
    assert connection.why_closed == why
    assert not connection.is_safe_to_reuse()
    assert peer.stream.closes == 1
    assert repr(connection).endswith(f"state=closed requests=1 backend={http}>")


@pytest.mark.parametrize("arrival", [b"HTTP/1.1 200 OK\r\n\r\nforged", EOF, RESET], ids=["stray-bytes", "fin", "rst"])
async def test_input_while_idle_makes_the_connection_unsafe(anyio_backend: str, http: str, arrival: Item) -> None:
    peer = Peer(answer=OK)
    connection = connect(peer, http)
    assert await exchange(connection, Releases()) == b"hello"
    assert connection.is_safe_to_reuse()
    peer.feed(arrival)
    assert connection.is_idle()  # still in the pool's hands: the pool is the one to find out and discard it
    assert not connection.is_safe_to_reuse()


@pytest.mark.parametrize("arrival", [b"HTTP/1.1 200 OK\r\n\r\nforged", EOF, RESET], ids=["stray-bytes", "fin", "rst"])
async def test_input_right_behind_the_response_is_not_read_as_part_of_it(
    anyio_backend: str, http: str, arrival: Item
) -> None:
    # The response ends with its last byte, so the protocol calls it reusable without reading on; what came
    # right behind it is pending on the idle connection, and that alone makes it unsafe.
    peer = Peer()
    peer.reply(OK, arrival)
    connection = connect(peer, http)
    releases = Releases()
    assert await exchange(connection, releases) == b"hello"
    assert releases.calls == [True]
    assert connection.is_idle()
    assert not connection.is_safe_to_reuse()


@pytest.mark.parametrize(
    ("after", "kind", "body"),
    [
        ((RESET,), "reset", b"hel"),
        ((EOF,), "disconnected", b"hel"),
        ((), "read_timeout", b"hel"),
        ((b"lo\r\nzz\r\n",), "protocol", b"hello"),
        ((b"lo\r\n" + b"9" * 30 + b"\r\n",), "protocol", b"hello"),
    ],
    ids=["rst", "fin", "silence", "bad-chunk-size", "chunk-size-overflow"],
)
async def test_an_error_mid_body_closes_the_connection_and_releases_it_once(
    anyio_backend: str, http: str, after: tuple[Item, ...], kind: str, body: bytes
) -> None:
    peer = Peer()
    peer.reply(CHUNKED_HEAD + b"5\r\nhel", *after)
    connection = connect(peer, http)
    releases = Releases()
    await connection.send_request(request(), Budget.start(Timeouts(read=0.05, total=5)), URL)
    reader = BodyReader(connection, Budget.start(Timeouts(read=0.05, total=5)), releases)
    received: list[bytes] = []

    async def read() -> None:
        async for chunk in reader:
            received.append(chunk)

    with pytest.raises(AiotcpError) as caught:
        await read()
    assert caught.value.kind == kind
    assert caught.value.target == URL
    assert (b"".join(received), reader.bytes_read) == (body, len(body))
    assert releases.calls == [False]
    assert connection.is_closed()
    assert connection.why_closed == "not reusable"
    assert (peer.stream.is_closed, peer.stream.closes) == (True, 1)
    # Finished: closing or reading again hands nothing back a second time.
    await reader.aclose()
    assert await reader.read_all() == b""
    assert releases.calls == [False]
    assert peer.stream.closes == 1


@pytest.mark.parametrize("reading", ["read_all", "iterate"])
async def test_cancellation_mid_body_closes_the_connection_and_releases_it_once(
    anyio_backend: str, http: str, reading: str
) -> None:
    peer = Peer()
    peer.reply(CHUNKED_HEAD + b"5\r\nhel")  # then silence, with no read timeout: only cancellation ends it
    connection = connect(peer, http)
    releases = Releases()
    await connection.send_request(request(), budget(read=None), URL)
    reader = BodyReader(connection, budget(read=None), releases)
    with anyio.move_on_after(0.05) as scope:
        if reading == "read_all":
            await reader.read_all()
        else:
            async for _ in reader:
                pass
    assert scope.cancelled_caught
    assert releases.calls == [False]
    assert connection.is_closed()
    assert peer.stream.closes == 1
    await reader.aclose()
    assert releases.calls == [False]


async def test_closing_an_unread_body_closes_the_connection(anyio_backend: str, http: str) -> None:
    peer = Peer(answer=OK)
    connection = connect(peer, http)
    releases = Releases()
    await connection.send_request(request(), budget(), URL)
    reader = BodyReader(connection, budget(), releases)
    await reader.aclose()
    await reader.aclose()
    assert releases.calls == [False]
    assert connection.is_closed()
    assert peer.stream.closes == 1


# -- a pooled connection the server closed: what the client's one retry relies on ------------------------------


@pytest.mark.parametrize(
    ("arrival", "kind", "started"),
    [(EOF, "disconnected", False), (RESET, "reset", False), (b"HTTP/1.1 20", "disconnected", True)],
    ids=["fin-while-idle", "rst-while-idle", "fin-mid-head"],
)
async def test_a_reused_connection_the_peer_ended_fails_with_the_new_url(
    anyio_backend: str, http: str, arrival: Item, kind: str, started: bool
) -> None:
    peer = Peer(answer=OK)
    connection = connect(peer, http)
    assert await exchange(connection, Releases()) == b"hello"
    if isinstance(arrival, bytes):  # the reply to the next request starts, then the peer closes
        peer.reply(arrival, EOF)
    else:
        peer.feed(arrival)
    connection.mark_active()
    with pytest.raises(AiotcpError) as caught:
        await connection.send_request(request(b"/again"), budget(), URL + "again")
    assert caught.value.kind == kind
    assert caught.value.target == URL + "again"  # about this request, not the one the connection was opened for
    assert connection.is_reused()
    assert connection.response_started() is started  # no byte of a response: safe to retry if idempotent


# -- small predicates ------------------------------------------------------------------------------------------


async def test_keepalive_expiry_counts_from_going_idle(anyio_backend: str) -> None:
    connection = connect(Peer(answer=OK), "h11")
    assert await exchange(connection, Releases()) == b"hello"
    since = connection.idle_since
    assert not connection.has_expired(since + 1000.0, None)
    assert not connection.has_expired(since + 0.25, 0.5)
    assert connection.has_expired(since + 0.75, 0.5)


async def test_aclose_is_idempotent_and_keeps_the_first_reason(anyio_backend: str) -> None:
    peer = Peer()
    connection = connect(peer, "h11")
    await connection.aclose("first")
    await connection.aclose("second")
    assert connection.is_closed()
    assert connection.why_closed == "first"
    assert peer.stream.closes == 1
