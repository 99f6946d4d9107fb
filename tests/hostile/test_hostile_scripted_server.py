"""The scripted server itself: delivery modes really split what goes on the wire, the TLS mode runs the
server side of the handshake with each hostile certificate, Dispatch follows the request path, and the
records tell a test how far each connection got. Clients here are plain sockets (or ``ssl``): no aiotcp."""

from __future__ import annotations

import random
import socket
import ssl
import time
from typing import Any

import pytest
from scripted_server import (
    TLS_VARIANTS,
    CloseAfterSending,
    Delivery,
    DeliveryMode,
    Dispatch,
    HalfClose,
    ReadRequest,
    ScriptedServer,
    Send,
    Step,
    tls_server_context,
)

from aiotcp import tcp_exchange

REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"b" * 40


def read_pieces(address: tuple[str, int], request: bytes, expected: int) -> list[bytes]:
    """Send ``request`` and collect what each recv() returned until ``expected`` bytes came."""
    pieces: list[bytes] = []
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 5
        while sum(map(len, pieces)) < expected and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            pieces.append(data)
    return pieces


@pytest.mark.parametrize("mode", ["whole", "bytewise", "random"])
def test_delivery_modes_split_what_goes_on_the_wire(mode: DeliveryMode) -> None:
    with ScriptedServer([ReadRequest(), Send(REPLY)], delivery=Delivery(mode, seed=7)) as server:
        pieces = read_pieces((server.host, server.port), b"GET / HTTP/1.1\r\n\r\n", len(REPLY))
    assert b"".join(pieces) == REPLY
    if mode == "whole":
        assert len(pieces) == 1, pieces
    elif mode == "bytewise":
        # Each byte is its own segment, a millisecond apart: a reader sees (nearly) every one on its own.
        assert len(pieces) >= len(REPLY) // 2, pieces
    else:
        assert len(pieces) >= 2, pieces


@pytest.mark.parametrize("mode", ["whole", "bytewise", "random"])
def test_delivery_pieces(mode: DeliveryMode) -> None:
    delivery = Delivery(mode, seed=3, split_bytes=64, max_cuts=5)
    data = bytes(range(200))
    for offset in (0, 10, 64, 100):
        first = delivery.pieces(data, offset, random.Random(1))
        assert b"".join(first) == data
        assert first == delivery.pieces(data, offset, random.Random(1))  # same seed, same cuts
        room = max(0, 64 - offset)
        if mode == "whole" or room == 0:
            assert first == [data]
        elif mode == "bytewise":
            assert all(len(piece) == 1 for piece in first[:room])
            assert first[room:] == [data[room:]]
        else:
            assert 2 <= len(first) <= 5 + 1
            assert sum(map(len, first[:-1])) <= room
    with pytest.raises(ValueError, match="delivery mode"):
        Delivery("sometimes")  # type: ignore[arg-type]


VERIFY_ERRORS = {
    "valid": None,
    "expired": "certificate has expired",
    "not-yet-valid": "certificate is not yet valid",
    "wrong-name": "IP address mismatch",
    "self-signed": "self-signed certificate",
    "unknown-ca": "unable to get local issuer certificate",
}


@pytest.mark.parametrize("variant", sorted(TLS_VARIANTS))
def test_tls_mode_is_the_server_side_of_the_handshake(
    variant: str, ca: Any, client_ssl_context: ssl.SSLContext
) -> None:
    assert set(VERIFY_ERRORS) == set(TLS_VARIANTS)
    context = tls_server_context(ca, variant)
    with ScriptedServer([ReadRequest(), Send(REPLY)], tls=context) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            expected = VERIFY_ERRORS[variant]
            if expected is None:
                with client_ssl_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\n\r\n")
                    got = b""
                    while len(got) < len(REPLY):
                        got += tls.recv(65536)
                assert got == REPLY
            else:
                with pytest.raises(ssl.SSLCertVerificationError, match=expected):
                    client_ssl_context.wrap_socket(raw, server_hostname="127.0.0.1")
        failures = 0 if expected is None else 1
        assert server.wait_until(lambda s: s.handshake_failures == failures)
        assert not server.errors, server.errors
    with pytest.raises(ValueError, match="unknown TLS variant"):
        tls_server_context(ca, "revoked")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_half_close_over_tls_is_a_fin_without_close_notify(
    anyio_backend: str, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    with ScriptedServer([ReadRequest(), Send(REPLY), HalfClose(), ReadRequest()], tls=server_ssl_context) as server:
        result = await tcp_exchange(server.url, b"GET / HTTP/1.1\r\n\r\n", verify=client_ssl_context, timeout=5)
        assert (result.data, result.ended) == (REPLY, "eof")
        assert not server.errors, server.errors


def test_dispatch_follows_the_path_and_records_progress() -> None:
    routes: dict[bytes, list[Step]] = {b"/a": [Send(b"A")], b"/close": [Send(b"C"), CloseAfterSending()]}
    with ScriptedServer([Dispatch(routes, 10, default=[Send(b"?")])], backlog=16) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            for path, answer in ((b"/a", b"A"), (b"/a?x=1", b"A"), (b"/nope", b"?"), (b"/close", b"C")):
                sock.sendall(b"GET " + path + b" HTTP/1.1\r\n\r\n")
                assert sock.recv(10) == answer
                assert server.wait_until(lambda s: s.quiet(0))
            assert sock.recv(10) == b""  # the close route's FIN
        assert [request.split(b" ")[1] for request in server.requests(0)] == [b"/a", b"/a?x=1", b"/nope", b"/close"]
        assert server.wait_until(lambda s: s.script_done(0))
        assert server.steps_started(0) == 1
        assert not server.errors, server.errors
