"""The TLS rows of the behaviour table: hostile certificates, a tarpit, handshakes cut short and protocol
mismatches, against the scripted server's TLS mode (the server side of the handshake, certificates from a
local trustme CA), on asyncio (the fast path's ``loop.start_tls``) and on trio (anyio's ``TLSStream``).
"""

from __future__ import annotations

import gc
import ssl
import time
from typing import Any

import pytest
from hostile_harness import open_fds, settle_fds
from hostile_table import SLACK, TLS_BEHAVIOURS, Behaviour
from scripted_server import (
    CloseAfterSending,
    Read,
    ReadRequest,
    Repeat,
    Reset,
    ScriptedServer,
    Send,
    tls_server_context,
)

from aiotcp import AiotcpError, Client, Response, Timeouts

pytestmark = pytest.mark.anyio

HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
ROWS = {row.name: row for row in TLS_BEHAVIOURS}
#: The certificate each row's server presents (None: a plain server).
VARIANT = {
    "tls-valid": "valid",
    "tls-unknown-ca": "unknown-ca",
    "tls-self-signed": "self-signed",
    "tls-expired": "expired",
    "tls-not-yet-valid": "not-yet-valid",
    "tls-wrong-name": "wrong-name",
    "tls-on-plain-port": "valid",
    "tls-bad-cert-insecure": "self-signed",
}
#: What a plain server does on the TLS port (rows without a certificate).
PLAIN_SCRIPT: dict[str, list[Any]] = {
    "tls-tarpit": [],  # reads the ClientHello, never answers
    "tls-reset-in-handshake": [Read(1), Reset()],
    "tls-closed-in-handshake": [Read(1), CloseAfterSending()],
    "plaintext-on-tls-port": [Read(1), Send(b"HTTP/1.1 400 Bad Request\r\n\r\n"), CloseAfterSending()],
}
MESSAGES = {
    "tls-unknown-ca": "certificate verify failed",
    "tls-self-signed": "certificate verify failed",
    "tls-expired": "certificate verify failed",
    "tls-not-yet-valid": "certificate verify failed",
    "tls-wrong-name": "certificate verify failed",
    "tls-tarpit": "not answered",
}


@pytest.fixture(scope="session")
def tls_contexts(ca: Any) -> dict[str, ssl.SSLContext]:
    return {variant: tls_server_context(ca, variant) for variant in set(VARIANT.values())}


def keep_alive() -> list[Any]:
    return [Repeat([ReadRequest(), Send(HELLO)], 5)]


async def play_tls(
    row: Behaviour, server: ScriptedServer, verify: Any, anyio_backend: str, reliability: Any
) -> tuple[Response | None, AiotcpError | None]:
    label = f"{row.name}[h11,whole,{anyio_backend}]"
    reliability.start(label)
    scheme = "http" if row.name == "tls-on-plain-port" else "https"
    url = f"{scheme}://127.0.0.1:{server.port}/case"
    timeouts = row.timeouts if row.timeouts.connect != 2 else Timeouts(connect=2, read=2, total=3)
    async with Client(verify=verify, timeout=timeouts) as client:
        started = time.perf_counter()
        response = error = None
        try:
            response = await client.get(url)
        except AiotcpError as exc:
            error = exc
        elapsed = time.perf_counter() - started
        outcome = "ok" if error is None else error.kind
        assert outcome == row.expect, f"{label}: {error!r}"
        assert elapsed <= row.deadline + SLACK, f"{label}: after {elapsed:.3f}s"
        if error is not None:
            assert error.target == url
            assert (client.pool.open_connections, client.pool.idle_connections) == (0, 0)
            assert MESSAGES.get(row.name, "") in error.message, error.message
        else:
            assert response is not None
            assert response.content == b"hello"
            assert response.timings.tls_ms is not None
    reliability.survive(label, elapsed - row.deadline)
    return response, error


@pytest.mark.parametrize("name", list(ROWS))
async def test_tls_behaviour(
    anyio_backend: str,
    name: str,
    tls_contexts: dict[str, ssl.SSLContext],
    client_ssl_context: ssl.SSLContext,
    reliability: Any,
) -> None:
    row = ROWS[name]
    gc.collect()
    before = open_fds()
    variant = VARIANT.get(name)
    verify: Any = False if name == "tls-bad-cert-insecure" else client_ssl_context
    if variant is not None:
        server = ScriptedServer(keep_alive(), tls=tls_contexts[variant])
    else:
        server = ScriptedServer(PLAIN_SCRIPT[name])
    with server:
        _, error = await play_tls(row, server, verify, anyio_backend, reliability)
        if variant is not None and error is not None and error.kind == "tls":
            # The server ran the server side of the handshake and saw the client give up on it.
            assert server.wait_until(lambda s: s.handshake_failures == 1), server
        if name == "tls-tarpit":
            assert server.wait_until(lambda s: s.received(0)[:1] == b"\x16")  # our ClientHello
        assert not server.errors, server.errors
    assert await settle_fds(before) == before
