"""Tests for aiotcp.transport: the raw exchange, connecting (happy eyeballs, TCP_NODELAY, peer).

Servers are real and on loopback: the built-in one, and scripted ones (tests/scripted_server.py) for the
endings a well-behaved server never produces.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from scripted_server import (
    CloseAfterSending,
    HalfClose,
    NeverAcceptServer,
    ReadRequest,
    ReadToEnd,
    Reset,
    ScriptedServer,
    Send,
    Sleep,
)

from aiotcp.anyio_transport import AnyioStream
from aiotcp.budget import Budget
from aiotcp.config import Timeouts
from aiotcp.errors import ConnectionRefused
from aiotcp.resolution import Resolution
from aiotcp.serve import TargetServer
from aiotcp.streams import NetworkStream
from aiotcp.targets import parse_target, resolve_overrides
from aiotcp.transport import _connect_any, _opener, connect, tcp_exchange, tcp_session

pytestmark = pytest.mark.anyio

SLACK = 0.5  # an error may come this much after its deadline on a loaded machine


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")


def _raw_socket(stream: NetworkStream) -> socket.socket:
    """The client socket under either stream implementation (anyio's, or the asyncio fast path)."""
    if isinstance(stream, AnyioStream):
        assert stream._socket is not None
        return stream._socket
    from aiotcp.asyncio_transport import AsyncioStream

    assert isinstance(stream, AsyncioStream)
    sock = stream.transport.get_extra_info("socket")
    assert sock is not None
    return sock  # type: ignore[no-any-return]


# -- tcp_exchange: how the exchange ended ---------------------------------------------------------------------


async def test_exchange_eof(anyio_backend: str) -> None:
    with ScriptedServer([ReadRequest(), Send(b"hello\r\n"), CloseAfterSending()]) as server:
        result = await tcp_exchange(server.address, b"PING / HTTP/1.0\r\n\r\n", timeout=5)
        assert server.requests(0) == [b"PING / HTTP/1.0\r\n\r\n"]
        assert server.connections_accepted == 1
    assert result.ended == "eof"
    assert result.data == b"hello\r\n"
    assert result.sent == len(b"PING / HTTP/1.0\r\n\r\n")
    assert result.peer == ("127.0.0.1", server.port)
    assert result.first_byte_ms is not None
    assert 0 <= result.connect_ms <= result.first_byte_ms <= result.total_ms
    assert result.tls_ms is None


async def test_exchange_eof_on_half_close(anyio_backend: str) -> None:
    # FIN from the server while it keeps reading: the exchange ends "eof"; the server still got our bytes.
    with ScriptedServer([Send(b"bye"), HalfClose(), ReadRequest()]) as server:
        result = await tcp_exchange(server.address, b"GET / HTTP/1.0\r\n\r\n", timeout=5)
        assert server.wait_until(lambda s: s.requests(0) == [b"GET / HTTP/1.0\r\n\r\n"])
    assert (result.ended, result.data) == ("eof", b"bye")


async def test_exchange_reset(anyio_backend: str) -> None:
    with ScriptedServer([Send(b"partial"), Sleep(0.2), Reset()]) as server:
        result = await tcp_exchange(server.address, timeout=5)
    assert result.ended == "reset"
    assert result.data == b"partial"  # read before the RST came
    assert result.sent == 0


async def test_exchange_limit(anyio_backend: str) -> None:
    with ScriptedServer([Send(b"x" * 10_000)]) as server:
        result = await tcp_exchange(server.address, max_bytes=100, timeout=5)
    assert result.ended == "limit"
    assert result.data == b"x" * 100


async def test_exchange_timeout(anyio_backend: str) -> None:
    with ScriptedServer([Send(b"abc")]) as server:  # then silent, connection held open
        started = time.perf_counter()
        result = await tcp_exchange(server.address, b"hi", timeout=0.5)
        elapsed = time.perf_counter() - started
    assert result.ended == "timeout"
    assert result.data == b"abc"
    assert 0.4 <= elapsed <= 0.5 + SLACK


async def test_exchange_head_http10_against_builtin_server(anyio_backend: str, shared_server: TargetServer) -> None:
    result = await tcp_exchange(f"127.0.0.1:{shared_server.port}", b"HEAD / HTTP/1.0\r\n\r\n", timeout=5)
    assert result.ended == "eof"
    head, sep, body = result.data.partition(b"\r\n\r\n")
    assert sep
    assert body == b""
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close" in head
    assert result.peer == ("127.0.0.1", shared_server.port)


async def test_exchange_bad_max_bytes(anyio_backend: str) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        await tcp_exchange("127.0.0.1:9", max_bytes=0)


async def test_exchange_names_the_target_host_and_port(anyio_backend: str, refused: int) -> None:
    with pytest.raises(ConnectionRefused) as caught:
        await tcp_exchange(f"http://127.0.0.1:{refused}/", timeout=5)
    assert caught.value.target == f"127.0.0.1:{refused}"  # a raw exchange has no URL


# -- tcp_session: both ways at once, half-close, linger ----------------------------------------------------


async def _chunks(*parts: bytes, pause: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        await anyio.sleep(pause)
        yield part


async def test_session_half_closes_when_the_source_ends(anyio_backend: str) -> None:
    # The server answers only after our FIN: without the half-close the session would run into its deadline.
    with ScriptedServer([ReadToEnd(), Send(b"done"), CloseAfterSending()]) as server:
        received: list[bytes] = []
        result = await tcp_session(server.address, _chunks(b"one ", b"two", pause=0.01), received.append, timeout=5)
        assert server.received(0) == b"one two"
    assert (result.ended, b"".join(received), result.sent, result.received) == ("eof", b"done", 7, 4)
    assert result.half_closed
    assert result.data == b""  # the sink had it


async def test_session_without_half_close_waits(anyio_backend: str) -> None:
    with ScriptedServer([ReadToEnd(), Send(b"done"), CloseAfterSending()]) as server:
        result = await tcp_session(server.address, [b"x"], lambda chunk: None, half_close=False, timeout=0.5)
    assert (result.ended, result.received, result.half_closed) == ("timeout", 0, False)


async def test_session_linger_ends_it_after_the_source(anyio_backend: str) -> None:
    with ScriptedServer([Send(b"hi"), Sleep(10)]) as server:  # then silent and open, whatever we send
        result = await tcp_session(server.address, [b"x"], lambda chunk: None, linger=0.2, timeout=10)
    assert (result.ended, result.received, result.half_closed) == ("linger", 2, True)


async def test_session_the_peer_closing_ends_it_while_the_source_has_more(anyio_backend: str) -> None:
    with ScriptedServer([Send(b"bye"), CloseAfterSending()]) as server:
        result = await tcp_session(server.address, _chunks(*[b"."] * 1000, pause=0.01), lambda c: None, timeout=10)
    assert result.ended == "eof"
    assert result.sent < 1000


async def test_session_errors_from_the_sink_are_raised(anyio_backend: str) -> None:
    def broken(chunk: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with ScriptedServer([Send(b"data"), Sleep(1)]) as server, pytest.raises(BrokenPipeError):
        await tcp_session(server.address, [], broken, timeout=5)


# -- connecting -------------------------------------------------------------------------------------------


async def test_connect_resolve_overrides_skip_dns(anyio_backend: str, shared_server: TargetServer) -> None:
    # "aiotcp.test" is reserved and resolves nowhere: the override is the only way it can connect.
    target = parse_target(f"http://aiotcp.test:{shared_server.port}/")
    overrides = resolve_overrides({("AIOTCP.test", shared_server.port): ["127.0.0.1"]})
    budget = Budget.start(Timeouts(connect=5, total=5))
    stream = await connect(target, budget, resolve=overrides)
    try:
        assert stream.info.peer == ("127.0.0.1", shared_server.port)
        assert stream.target == target.url
    finally:
        await stream.aclose()
    other = parse_target(f"http://aiotcp.test:{shared_server.port + 1 if shared_server.port < 65535 else 1}/")
    assert (other.host, other.port) not in overrides  # another port of the same host is not pinned


async def test_send_eof_on_tls_is_refused_quietly(anyio_backend: str, server_ssl_context: Any, ca: Any) -> None:
    import ssl

    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with ScriptedServer([ReadToEnd()], tls=server_ssl_context) as server:
        target = parse_target(f"https://localhost:{server.port}/")
        budget = Budget.start(Timeouts(connect=5, total=5))
        stream = await connect(
            target, budget, ssl_context=client_context, resolve={("localhost", server.port): ["127.0.0.1"]}
        )
        try:
            assert await stream.send_eof() is False  # TLS has no half-close
        finally:
            await stream.aclose()


def test_addresses_alternate_families_ipv6_first() -> None:
    resolution = Resolution("n.test", a=("192.0.2.1", "192.0.2.2", "192.0.2.3"), aaaa=("::1", "fe80::1"))
    assert resolution.addresses() == ["::1", "192.0.2.1", "fe80::1", "192.0.2.2", "192.0.2.3"]
    assert Resolution("n.test", a=("192.0.2.1",)).addresses() == ["192.0.2.1"]
    assert Resolution("n.test").addresses() == []


async def test_connect_sets_nodelay_and_reports_peer(anyio_backend: str, shared_server: TargetServer) -> None:
    budget = Budget.start(Timeouts(connect=5))
    stream = await connect(parse_target(f"http://127.0.0.1:{shared_server.port}/x"), budget)
    try:
        raw = _raw_socket(stream)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert stream.info.peer == ("127.0.0.1", shared_server.port)
        assert stream.info.peer == raw.getpeername()[:2]
        assert stream.info.dns_ms >= 0
        assert stream.info.connect_ms >= 0
        assert stream.info.tls_ms is None
        assert "open" in repr(stream)
    finally:
        await stream.aclose()
    assert stream.is_closed
    assert "closed" in repr(stream)


@needs_ipv6
async def test_connect_ipv6_peer(anyio_backend: str) -> None:
    with ScriptedServer([], host="::1") as server:
        stream = await connect(parse_target(server.url), Budget.start(Timeouts(connect=5)))
        try:
            assert stream.info.peer == ("::1", server.port)
        finally:
            await stream.aclose()


async def test_localhost_dual_stack_happy_eyeballs(anyio_backend: str) -> None:
    """``localhost`` resolving to ::1 and 127.0.0.1, the server on 127.0.0.1 only: still connects."""
    families = {info[0] for info in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}
    if families != {socket.AF_INET, socket.AF_INET6}:
        pytest.skip(f"localhost does not resolve to both ::1 and 127.0.0.1 here ({families})")
    with ScriptedServer([]) as server:
        stream = await connect(parse_target(f"http://localhost:{server.port}/"), Budget.start(Timeouts(connect=5)))
        try:
            assert stream.info.peer == ("127.0.0.1", server.port)
        finally:
            await stream.aclose()


@needs_ipv6
async def test_happy_eyeballs_refused_first_address(anyio_backend: str) -> None:
    """The first address refuses at once: the next one is tried without waiting for the race delay."""
    with ScriptedServer([]) as server:
        started = time.perf_counter()
        stream = await _connect_any(["::1", "127.0.0.1"], server.port, _opener())
        elapsed = time.perf_counter() - started
        try:
            assert stream.peer() == ("127.0.0.1", server.port)
            assert _raw_socket(stream).getpeername()[:2] == ("127.0.0.1", server.port)
        finally:
            await stream.aclose()
    assert elapsed < 5


@needs_ipv6
async def test_happy_eyeballs_races_past_a_silent_address(anyio_backend: str) -> None:
    """The first address never answers the SYN: the second starts after the delay and wins."""
    with ScriptedServer([]) as server:
        try:
            tarpit = NeverAcceptServer(host="::1", port=server.port)
            tarpit.__enter__()
        except OSError:
            pytest.skip("::1 has that port taken")
        try:
            stream = await connect(
                parse_target(f"http://127.0.0.1:{server.port}/"), Budget.start(Timeouts(connect=5))
            )  # warm-up: the direct path works
            await stream.aclose()
            started = time.perf_counter()
            raw = await _connect_any(["::1", "127.0.0.1"], server.port, _opener())
            elapsed = time.perf_counter() - started
            try:
                assert raw.peer() == ("127.0.0.1", server.port)
            finally:
                await raw.aclose()
        finally:
            tarpit.__exit__()
    assert 0.2 <= elapsed <= 0.25 + SLACK


async def test_happy_eyeballs_winner_closed_when_cancelled_as_it_wins(anyio_backend: str) -> None:
    """A cancellation from outside (the connect deadline, or the caller) that lands just as an attempt wins
    must not leak the winning connection: nobody else will ever close it."""
    opened: list[NetworkStream] = []
    with ScriptedServer([]) as server:
        with anyio.CancelScope() as outer:

            async def open_and_get_cancelled(address: str, port: int) -> NetworkStream:
                stream = await _opener()(address, port)
                opened.append(stream)
                outer.cancel()  # lands between this attempt's success and the race's end
                return stream

            await _connect_any(["127.0.0.1", "127.0.0.1"], server.port, open_and_get_cancelled)
        assert outer.cancelled_caught
        assert opened
        assert all(stream.is_closed for stream in opened)
        assert server.wait_until(lambda s: s.open_connections == 0, timeout=5)
