"""Retries (``Client(retries=...)``): the decision as a pure function of :class:`aiotcp.Retry`, then against real
loopback servers: connect failures, a reset before any response byte, 429/503 with Retry-After within the
deadline, and what is never retried (a POST after it was sent, a response already started)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from scripted_server import CloseAfterSending, ReadRequest, Reset, ScriptedServer, Send, response

from aiotcp import Client, Retry, Timeouts
from aiotcp.config import parse_retry_after
from aiotcp.errors import (
    ConnectionRefused,
    ConnectionReset,
    Disconnected,
    DNSError,
    ProtocolError,
    TLSError,
)

pytestmark = pytest.mark.anyio

BACKENDS = ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


def _reset(started: bool | None) -> ConnectionReset:
    error = ConnectionReset("reset")
    error.response_started = started
    return error


def test_the_decision() -> None:
    retry = Retry(attempts=2, backoff=0.1)
    assert retry.after_error("POST", ConnectionRefused("x"), retry=1, remaining=10) == pytest.approx(0.1)
    assert retry.after_error("GET", ConnectionRefused("x"), retry=2, remaining=10) == pytest.approx(0.2)
    assert retry.after_error("GET", ConnectionRefused("x"), retry=3, remaining=10) is None  # attempts used up
    assert retry.after_error("GET", ConnectionRefused("x"), retry=1, remaining=0.05) is None  # past the deadline
    assert retry.after_error("GET", _reset(False), retry=1, remaining=10) is not None
    assert retry.after_error("GET", _reset(True), retry=1, remaining=10) is None  # a response had started
    assert retry.after_error("POST", _reset(False), retry=1, remaining=10) is None  # sent: not unless asked
    assert Retry(methods={"POST"}).after_error("POST", _reset(False), retry=1, remaining=10) is not None
    assert retry.after_error("GET", DNSError("x", rcode="NXDOMAIN"), retry=1, remaining=10) is None
    assert retry.after_error("GET", DNSError("x", rcode="SERVFAIL"), retry=1, remaining=10) is not None
    assert retry.after_error("GET", TLSError("x"), retry=1, remaining=10) is None
    assert retry.after_error("GET", ProtocolError("x"), retry=1, remaining=10) is None
    assert retry.after_status("GET", 503, "3", retry=1, remaining=10) == 3.0
    assert retry.after_status("GET", 503, "30", retry=1, remaining=10) is None  # Retry-After past the deadline
    assert retry.after_status("GET", 500, None, retry=1, remaining=10) is None
    assert retry.after_status("POST", 429, "1", retry=1, remaining=10) is None
    assert Retry.from_value(0) is None
    assert Retry.from_value(3) == Retry(attempts=3)
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=-1)


def test_retry_after_as_seconds_or_a_date() -> None:
    now = time.time()
    date = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(date, now=now) == pytest.approx(90, abs=1)
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("soon") is None


async def test_a_refused_connect_is_retried_for_any_method(anyio_backend: Any, refused: int) -> None:
    async with Client(retries=Retry(attempts=2, backoff=0.01), timeout=5) as client:
        started = time.perf_counter()
        with pytest.raises(ConnectionRefused):
            await client.post(f"http://127.0.0.1:{refused}/", content=b"x")
        assert time.perf_counter() - started >= 0.01 * 0.5 + 0.02 * 0.5  # two pauses were taken


async def test_a_reset_before_the_response_is_retried_for_get_not_post(anyio_backend: Any) -> None:
    ok = response(200, b"fine")
    with ScriptedServer([ReadRequest(), Reset()], [ReadRequest(), Send(ok)]) as server:
        async with Client(retries=Retry(attempts=3, backoff=0.01), timeout=5) as client:
            got = await client.get(f"{server.url}/")
        assert (got.content, got.attempts, got.retried) == (b"fine", 2, ("reset",))
    with ScriptedServer([ReadRequest(), Reset()], [ReadRequest(), Send(ok)]) as server:
        async with Client(retries=3, timeout=5) as client:
            with pytest.raises(ConnectionReset):
                await client.post(f"{server.url}/", content=b"order=1")
        assert server.connections_accepted == 1  # sent once, never again


async def test_a_response_cut_short_is_not_retried(anyio_backend: Any) -> None:
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    with ScriptedServer([ReadRequest(), Send(partial), CloseAfterSending()]) as server:
        async with Client(retries=3, timeout=5) as client:
            with pytest.raises(Disconnected):
                await client.get(f"{server.url}/")
        assert server.connections_accepted == 1


async def test_503_and_429_with_retry_after_within_the_deadline(anyio_backend: Any) -> None:
    busy = response(503, b"busy", headers=[("Retry-After", "0")])
    slow_down = response(429, b"", headers=[("Retry-After", "1")])
    with ScriptedServer(
        [ReadRequest(), Send(busy), ReadRequest(), Send(slow_down), ReadRequest(), Send(response(200, b"ok"))]
    ) as server:
        async with Client(retries=5, timeout=5) as client:
            started = time.perf_counter()
            got = await client.get(f"{server.url}/")
            waited = time.perf_counter() - started
    assert (got.status_code, got.attempts, got.retried) == (200, 3, ("503", "429"))
    assert waited >= 1.0  # Retry-After: 1 was honoured
    too_long = response(503, b"", headers=[("Retry-After", "60")])
    with ScriptedServer([ReadRequest(), Send(too_long)]) as server:
        async with Client(retries=5, timeout=Timeouts(total=2)) as client:
            started = time.perf_counter()
            got = await client.get(f"{server.url}/")
    assert (got.status_code, got.attempts) == (503, 1)  # the wait would pass the deadline: the answer as it is
    assert time.perf_counter() - started < 1.0
