"""TLS against real loopback servers: the scripted server's TLS variant with certificates from a local
trustme CA (conftest ``ca``/``server_ssl_context``/``client_ssl_context``). Nothing here needs the network:
certificate verification fails or succeeds locally.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from scripted_server import CloseAfterSending, HalfClose, ReadRequest, Repeat, ScriptedServer, Send, Sleep, response

from aiotcp import AiotcpError, Client, Timeouts, tcp_exchange
from aiotcp.serve import TargetServer

pytestmark = pytest.mark.anyio

SLACK = 0.5
HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def keep_alive() -> list[Any]:
    return [Repeat([ReadRequest(), Send(HELLO)], 50)]


def _server_context(cert: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def tls_server(server_ssl_context: ssl.SSLContext) -> Iterator[ScriptedServer]:
    with ScriptedServer(keep_alive(), tls=server_ssl_context) as server:
        yield server


async def expect_tls_error(client: Client, url: str, deadline: float) -> AiotcpError:
    started = time.perf_counter()
    with pytest.raises(AiotcpError) as caught:
        await client.get(url)
    elapsed = time.perf_counter() - started
    assert caught.value.kind == "tls", repr(caught.value)
    assert caught.value.target == url
    assert elapsed <= deadline + SLACK
    assert client.pool.open_connections == 0
    return caught.value


async def test_tls_success_with_a_context(
    anyio_backend: str, tls_server: ScriptedServer, client_ssl_context: ssl.SSLContext
) -> None:
    url = f"{tls_server.url}/"
    assert url.startswith("https://127.0.0.1:")
    async with Client(verify=client_ssl_context, timeout=Timeouts(total=5)) as client:
        first = await client.get(url)
        second = await client.get(url)
    assert (first.status_code, first.content) == (200, b"hello")
    t = first.timings
    assert t.tls_ms is not None
    assert t.dns_ms is not None
    assert t.connect_ms is not None
    assert t.ttfb_ms is not None
    assert t.total_ms is not None
    assert t.tls_ms > 0
    assert t.dns_ms + t.connect_ms + t.tls_ms <= t.ttfb_ms <= t.total_ms
    assert second.timings.reused
    assert second.timings.tls_ms is None  # no handshake on a reused connection
    assert tls_server.connections_accepted == 1
    assert tls_server.handshake_failures == 0
    assert tls_server.requests(0)[0].startswith(b"GET / HTTP/1.1\r\n")


async def test_tls_success_with_a_ca_file_and_a_name(
    anyio_backend: str, tls_server: ScriptedServer, ca: Any, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    url = f"https://localhost:{tls_server.port}/"  # localhost is in /etc/hosts; the cert names it
    async with Client(verify=str(ca_file), timeout=Timeouts(total=5)) as client:
        response = await client.get(url)
    assert response.content == b"hello"
    assert response.peer == ("127.0.0.1", tls_server.port)


async def test_tls_exchange(
    anyio_backend: str, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    with ScriptedServer([ReadRequest(), Send(HELLO), CloseAfterSending()], tls=server_ssl_context) as server:
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        result = await tcp_exchange(f"https://127.0.0.1:{server.port}", request, verify=client_ssl_context, timeout=5)
    assert result.data == HELLO
    assert result.ended == "eof"  # close_notify and FIN
    assert result.tls_ms is not None
    assert result.first_byte_ms is not None


@pytest.mark.parametrize(
    "first",
    [
        [ReadRequest(), Send(HELLO), Sleep(0.1), Send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")],
        [ReadRequest(), Send(HELLO), CloseAfterSending()],
    ],
    ids=["stray-bytes", "closed-while-idle"],
)
async def test_tls_pooled_connection_unusable_while_idle(
    anyio_backend: str, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext, first: list[Any]
) -> None:
    """What arrives on an idle TLS connection sits in the TLS layer or the socket: either way it is seen."""
    with ScriptedServer(first, keep_alive(), tls=server_ssl_context) as server:
        async with Client(verify=client_ssl_context, timeout=Timeouts(total=5)) as client:
            assert (await client.get(f"{server.url}/")).content == b"hello"
            await anyio.sleep(0.2)
            again = await client.get(f"{server.url}/")
            assert again.content == b"hello"
            assert not again.timings.reused
        assert server.connections_accepted == 2


async def test_tls_wrong_hostname(anyio_backend: str, ca: Any, client_ssl_context: ssl.SSLContext) -> None:
    context = _server_context(ca.issue_cert("other.example"))
    with ScriptedServer(keep_alive(), tls=context) as server:
        async with Client(verify=client_ssl_context, timeout=Timeouts(connect=2, total=5)) as client:
            error = await expect_tls_error(client, f"{server.url}/", 2)
    assert "certificate verify failed" in error.message
    assert "mismatch" in error.message.lower()


async def test_tls_unknown_ca_with_default_verify(anyio_backend: str) -> None:
    trustme = pytest.importorskip("trustme")
    stranger = trustme.CA()  # in no trust store
    context = _server_context(stranger.issue_cert("127.0.0.1", "localhost"))
    with ScriptedServer(keep_alive(), tls=context) as server:
        async with Client(timeout=Timeouts(connect=2, total=5)) as client:  # verify=True: the system store
            error = await expect_tls_error(client, f"{server.url}/", 2)
        assert "certificate verify failed" in error.message
        async with Client(verify=False, timeout=Timeouts(total=5)) as insecure:
            response = await insecure.get(f"{server.url}/")
            assert response.content == b"hello"
            assert response.timings.tls_ms is not None


async def test_tls_tarpit(anyio_backend: str) -> None:
    # TCP is accepted and the ClientHello read, but the handshake is never answered.
    with ScriptedServer([]) as tarpit:
        url = f"https://127.0.0.1:{tarpit.port}/"
        async with Client(timeout=Timeouts(connect=0.5, total=5)) as client:
            error = await expect_tls_error(client, url, 0.5)
        assert "not answered" in error.message
        assert tarpit.connections_accepted == 1
        assert tarpit.wait_until(lambda s: s.received(0)[:1] == b"\x16")  # a handshake record: our ClientHello


async def test_plaintext_server_on_the_https_port(anyio_backend: str, shared_server: TargetServer) -> None:
    url = f"https://127.0.0.1:{shared_server.port}/"
    async with Client(timeout=Timeouts(connect=2, total=5)) as client:
        error = await expect_tls_error(client, url, 2)
    # The server answers the ClientHello with "400 Bad Request" in plain text, which is no TLS record.
    assert "TLS handshake failed" in error.message


async def test_tls_server_spoken_to_in_plain_http(anyio_backend: str, tls_server: ScriptedServer) -> None:
    """A TLS server reads our plain request as a broken ClientHello; OpenSSL fails the handshake without
    sending an alert (the record is not a TLS record at all), and the server closes: we see EOF before any
    byte of response, which is ``disconnected`` -- not ``protocol`` (no bytes came to misparse) and not
    ``tls`` (we never tried TLS)."""
    url = f"http://127.0.0.1:{tls_server.port}/"
    async with Client(timeout=Timeouts(total=5)) as client:
        with pytest.raises(AiotcpError) as caught:
            await client.get(url)
    assert caught.value.kind == "disconnected", repr(caught.value)
    assert caught.value.target == url
    assert "without sending a response" in caught.value.message
    assert tls_server.wait_until(lambda s: s.handshake_failures == 1)  # counted once its close is done


@pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"],
)
async def test_a_tls_server_closing_a_kept_alive_connection_logs_nothing(
    anyio_backend: Any,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server closing an idle keep-alive TLS connection (close_notify, then FIN) is routine: asyncio and
    uvloop log "returning true from eof_received() has no effect when using ssl" for a protocol that asks to
    keep a TLS transport half-open, so ours must not ask on TLS."""
    if isinstance(anyio_backend, tuple):
        pytest.importorskip("uvloop")
    caplog.set_level(logging.DEBUG)
    with ScriptedServer([ReadRequest(), Send(HELLO), CloseAfterSending()], tls=server_ssl_context) as server:
        async with Client(verify=client_ssl_context, timeout=Timeouts(total=5)) as client:
            assert (await client.get(f"{server.url}/")).content == b"hello"
            assert client.pool.idle_connections == 1
            assert server.wait_until(lambda s: s.script_done(0))
            await anyio.sleep(0.2)  # the loop reads the close_notify and the FIN
            again = await client.get(f"{server.url}/")  # the closed connection is seen and replaced
            assert again.content == b"hello"
            assert not again.timings.reused
    noise = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not noise, [record.getMessage() for record in noise]


BIG = bytes(range(256)) * 8192  # 2 MiB: several times the stream's 256 KiB read buffer


@pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"],
)
@pytest.mark.parametrize(
    "ending", [CloseAfterSending(), HalfClose()], ids=["close-notify-when-we-close", "fin-right-after-the-body"]
)
async def test_a_large_tls_body_read_slowly_arrives_whole(
    anyio_backend: Any,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
    ending: Any,
) -> None:
    """A body larger than the stream's read buffer pauses reading until the reader catches up. Over TLS the
    pause must be resumed where it was made (asyncio and uvloop stalled until the read timeout), and a FIN
    right after the body (a server that closes, as nginx does after a "Connection: close" response) must
    not cost its tail (uvloop drops the TLS records it holds for a paused TLS transport when the FIN
    arrives)."""
    if isinstance(anyio_backend, tuple):
        pytest.importorskip("uvloop")
    script = [ReadRequest(), Send(response(200, BIG, close=True)), ending]
    with ScriptedServer(script, tls=server_ssl_context) as server:
        async with Client(verify=client_ssl_context, timeout=Timeouts(read=3, total=10)) as client:
            async with client.stream("GET", f"{server.url}/") as streamed:
                received = bytearray()
                async for chunk in streamed.stream():
                    received += chunk
                    await anyio.sleep(0.01)  # a slow reader: the server's bytes pile up, reading pauses
            assert bytes(received) == BIG
