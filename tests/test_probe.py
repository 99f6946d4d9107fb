"""Tests for aiotcp.probe: the fan-out engine, against real servers on loopback.

Several hosts are emulated with one server per 127.0.0.x address. Every test runs on asyncio and on trio
(conftest's ``anyio_backend``), except the tracemalloc one, whose subject -- memory that does not grow with
the list -- lives in the backend-neutral pipeline, and which is too slow under tracemalloc to run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import ssl
import threading
import time
import tracemalloc
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from dns_server import Zone, zone_server
from scripted_server import CloseAfterSending, ReadRequest, Reset, ScriptedServer, Send, response

import aiotcp.probe.records
from aiotcp.probe import FIELD_NAMES, ProbeOptions, ProbeResult, iter_jobs, probe_many
from aiotcp.probe.retry import TRANSIENT_KINDS
from aiotcp.resolution import Nameserver, ResolverConfig
from aiotcp.serve import SilentServer, TargetServer, running_in_thread

pytestmark = pytest.mark.anyio

WAIT_S = 5.0  # bound of every polling wait


async def collect(targets: Iterable[Any] | AsyncIterable[Any], **options: Any) -> list[ProbeResult]:
    async with aclosing(probe_many(targets, **options)) as results:
        return [result async for result in results]


def by_line(records: list[ProbeResult]) -> dict[int, ProbeResult]:
    got: dict[int, ProbeResult] = {}
    for record in records:
        assert record.line is not None, record
        assert record.line not in got, "one record per line expected"
        got[record.line] = record
    return got


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(predicate: Callable[[], bool]) -> bool:
    """Poll ``predicate`` for up to WAIT_S (the servers run in other threads and close on their own time)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return True
        await anyio.sleep(0.02)
    return predicate()


def html_reply(body: bytes, content_type: str = "text/html; charset=utf-8", **kwargs: Any) -> bytes:
    return response(200, body, headers=[("Content-Type", content_type), *kwargs.pop("headers", [])], close=True)


def serving(reply: bytes) -> list[Any]:
    return [ReadRequest(), Send(reply), CloseAfterSending()]


@pytest.fixture
def server2() -> Iterator[TargetServer]:
    """A built-in server on a second loopback address: another host, as far as the prober knows."""
    with running_in_thread("127.0.0.2") as server:
        yield server


class CountingServer:
    """Reads a request, holds it ``hold`` seconds, answers 200 with ``Connection: close``; counts how many
    requests it holds at once (``peak``). A request counts from the moment it is read until just before the
    reply is written, so a client can never see its reply while the server still counts it: ``peak`` is a
    lower bound of what the client had in flight, never inflated by sockets the server has yet to reap."""

    def __init__(self, host: str = "127.0.0.1", hold: float = 0.0, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.hold, self.tls = host, hold, tls
        self.port = 0
        self.active = self.peak = self.served = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CountingServer:
        self._thread.start()
        assert self._ready.wait(WAIT_S), "counting server did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "counting server did not stop"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.active += 1
            self.peak = max(self.peak, self.active)
            await asyncio.sleep(self.hold)
            self.active -= 1
            self.served += 1
            writer.write(html_reply(b"<title>counted</title>"))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # a client that went away, or spoke plaintext to TLS
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # failed handshakes are the point
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, self.host, 0, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()


# -- one record per target, the right kind each --------------------------------------------------------------


async def test_mixed_list_gives_one_record_per_target_with_the_right_kind(
    anyio_backend: str, server: TargetServer, server2: TargetServer, silent_server: SilentServer, refused: int
) -> None:
    lines = [
        "# a comment",  # 1
        f"127.0.0.1:{server.port}",  # 2
        "",  # 3
        f"127.0.0.2:{server2.port}",  # 4
        f"  127.0.0.1:{refused}  ",  # 5
        f"127.0.0.1:{silent_server.port}",  # 6
        "not a host!",  # 7
        "   ",  # 8
        "http://127.0.0.1:99999/",  # 9
        "\t# an indented comment",  # 10
    ]
    timeout = 1.0
    started = time.monotonic()
    records = await collect(lines, timeout=timeout, concurrency=10)
    elapsed = time.monotonic() - started

    got = by_line(records)
    assert sorted(got) == [2, 4, 5, 6, 7, 9]
    ok1, ok2, refused_record, silent, invalid, bad_port = (got[n] for n in (2, 4, 5, 6, 7, 9))

    for record, address in ((ok1, "127.0.0.1"), (ok2, "127.0.0.2")):
        assert record.ok
        assert record.error is None
        assert record.error_message is None
        assert (record.status_code, record.reason, record.http_version) == (200, "OK", "1.1")
        assert (record.ip, record.host, record.scheme, record.attempts) == (address, address, "http", 1)
        assert record.title == "aiotcp test server"
        assert record.server is not None
        assert record.server.startswith("aiotcp-serve/")
        assert record.content_type == "text/html; charset=utf-8"
        assert record.content_length
        assert record.connect_ms is not None
        assert record.ttfb_ms is not None
        assert record.tls_ms is None
    assert server.requests_served == 1
    assert server2.requests_served == 1

    assert (refused_record.error, refused_record.ok, refused_record.attempts) == ("refused", False, 1)
    assert refused_record.input == f"127.0.0.1:{refused}"  # stripped
    assert refused_record.url == f"http://127.0.0.1:{refused}/"
    assert refused_record.ip == "127.0.0.1"
    assert refused_record.status_code is None

    assert silent.error == "timeout"
    assert not silent.ok
    assert silent.error_message == f"total deadline of {timeout:g}s exceeded"
    assert silent.time_ms is not None
    assert timeout * 1000 - 50 <= silent.time_ms <= (timeout + 0.5) * 1000
    assert elapsed <= timeout + 2.0  # everything else ran alongside the silent target

    for record in (invalid, bad_port):
        assert (record.error, record.ok, record.attempts, record.url) == ("invalid_target", False, 0, None)
        assert record.error_message
        assert record.timestamp
    assert invalid.input == "not a host!"

    for record in records:
        assert list(record.as_dict()) == list(FIELD_NAMES)
        assert record.timestamp is not None
        assert record.timestamp.endswith("Z")


async def test_lines_from_an_async_iterable_and_target_objects(anyio_backend: str, server: TargetServer) -> None:
    from aiotcp.targets import parse_target

    async def lines() -> AsyncIterator[Any]:
        yield "# first line"
        yield parse_target(f"{server.url}/status/204")
        yield f"{server.url}/status/503"

    got = by_line(await collect(lines()))
    assert sorted(got) == [2, 3]
    assert got[2].status_code == 204
    assert got[2].ok
    assert got[3].status_code == 503
    assert got[3].ok
    assert got[3].error is None


async def test_ranges_and_ports_expand_to_one_record_per_address_and_port(
    anyio_backend: str, server: TargetServer, refused: int
) -> None:
    lines = [
        "127.0.0.1",  # 1: bare host, one record per port
        "127.0.0.2/31",  # 2: 127.0.0.2 and 127.0.0.3, times the ports
        f"127.0.0.1/31:{server.port}",  # 3: 127.0.0.0 and 127.0.0.1, its own port
        f"127.0.0.1:{refused}",  # 4: has a port: not expanded
        f"http://127.0.0.1:{server.port}/",  # 5: a URL: not expanded
        "127.0.0.0/33",  # 6: a malformed range: one invalid record
    ]
    ports = (server.port, refused)
    records = await collect(lines, ports=ports, timeout=2)

    seen = sorted((r.line, r.host, r.port) for r in records)
    expected = sorted(
        [(1, "127.0.0.1", p) for p in ports]
        + [(2, host, p) for host in ("127.0.0.2", "127.0.0.3") for p in ports]
        + [(3, "127.0.0.0", server.port), (3, "127.0.0.1", server.port)]
        + [(4, "127.0.0.1", refused), (5, "127.0.0.1", server.port), (6, None, None)]
    )
    assert seen == expected
    assert sorted(r.seq for r in records) == list(range(len(expected)))
    ok = sorted((r.line, r.host, r.port) for r in records if r.ok)
    assert ok == [(1, "127.0.0.1", server.port), (3, "127.0.0.1", server.port), (5, "127.0.0.1", server.port)]
    assert {r.error for r in records if not r.ok} == {"refused", "invalid_target"}


async def test_ranges_expand_lazily(anyio_backend: str) -> None:
    jobs = []
    async with aclosing(iter_jobs(["# /8 and /32 ranges", "127.0.0.0/8", "2001:db8::/32"], ports=(80, 443))) as it:
        async for job in it:
            jobs.append(job)
            if len(jobs) == 6:
                break
    assert [(job.seq, job.line, job.port) for job in jobs] == [(i, 2, (80, 443)[i % 2]) for i in range(6)]
    assert [job.spec.host for job in jobs if job.spec] == ["127.0.0.1"] * 2 + ["127.0.0.2"] * 2 + ["127.0.0.3"] * 2


# -- order -------------------------------------------------------------------------------------------------


async def test_input_order_holds_a_slow_first_target_within_a_bounded_window(
    anyio_backend: str, server: TargetServer
) -> None:
    lines = [f"{server.url}/delay/600"] + [f"{server.url}/"] * 60
    window = 4
    records: list[ProbeResult] = []
    accepted_at_first = -1
    async with aclosing(probe_many(lines, order="input", reorder_window=window, concurrency=8)) as results:
        async for record in results:
            if not records:
                accepted_at_first = server.connections_accepted
            records.append(record)
    assert [r.line for r in records] == list(range(1, 62))
    assert all(r.ok for r in records)
    # While the first target was slow, only the window's worth of targets were dispatched: the feeder waits
    # instead of piling up finished records.
    assert 1 <= accepted_at_first <= window


async def test_completion_order_does_not_wait_for_a_slow_first_target(anyio_backend: str, server: TargetServer) -> None:
    lines = [f"{server.url}/delay/600"] + [f"{server.url}/"] * 30
    records = await collect(lines, concurrency=8)
    assert sorted(by_line(records)) == list(range(1, 32))
    assert records[0].line != 1
    assert all(r.ok for r in records)


# -- limits ------------------------------------------------------------------------------------------------


async def test_rate_limit_spaces_probe_starts(anyio_backend: str, refused: int) -> None:
    # 100 probes at 50/s: the last one starts 99/50 = 1.98 s after the first. Waiting for a rate slot is not
    # the target's time: a 0.5 s deadline must not expire for targets that were never contacted.
    started = time.monotonic()
    records = await collect([f"127.0.0.1:{refused}"] * 100, rate=50, concurrency=100, timeout=0.5)
    elapsed = time.monotonic() - started
    assert len(records) == 100
    assert {r.error for r in records} == {"refused"}
    assert 2.0 * 0.7 <= elapsed <= 2.0 * 1.3


async def test_per_host_cap_bounds_concurrent_requests_per_address(anyio_backend: str) -> None:
    # 10 targets per address, 2 at a time, 0.15 s each: the last pair waits 0.6 s for its turn, which with its
    # own 0.15 s is more than the 0.6 s deadline -- waiting for our own cap must not count.
    per_address = 10
    with CountingServer("127.0.0.1", hold=0.15) as one, CountingServer("127.0.0.2", hold=0.15) as two:
        lines = [f"127.0.0.1:{one.port}", f"127.0.0.2:{two.port}"] * per_address
        records = await collect(lines, per_host=2, concurrency=2 * per_address, timeout=0.6)
    assert len(records) == 2 * per_address
    assert all(r.ok and r.title == "counted" for r in records), {r.error for r in records}
    for counting in (one, two):
        assert counting.served == per_address
        assert 1 <= counting.peak <= 2


@pytest.mark.parametrize("bad", [{"concurrency": 0}, {"timeout": 0}, {"rate": float("inf")}, {"order": "lines"}])
async def test_bad_options_raise_before_anything_is_probed(anyio_backend: str, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        await collect(["127.0.0.1:1"], **bad)


async def test_options_and_keywords_together_are_refused(anyio_backend: str) -> None:
    with pytest.raises(ValueError, match="not both"):
        async with aclosing(probe_many([], ProbeOptions(), timeout=1)) as results:
            await results.__anext__()


# -- retries -----------------------------------------------------------------------------------------------


def test_transient_kinds_are_the_network_s_not_the_target_s() -> None:
    assert {"reset", "disconnected", "connect_timeout", "local"} == TRANSIENT_KINDS
    assert "refused" not in TRANSIENT_KINDS
    assert "timeout" not in TRANSIENT_KINDS


async def test_reset_is_retried_until_the_server_answers(anyio_backend: str) -> None:
    resets = 2
    scripts = [[ReadRequest(), Reset()]] * resets + [serving(html_reply(b"<title>third time</title>"))]
    with ScriptedServer(*scripts) as scripted:
        (record,) = await collect([scripted.address], retries=3, backoff=0.02, timeout=5)
        assert scripted.connections_accepted == resets + 1
    assert record.ok
    assert record.status_code == 200
    assert record.title == "third time"
    assert record.attempts == resets + 1


async def test_retries_stop_at_the_limit_and_keep_the_last_error(anyio_backend: str) -> None:
    with ScriptedServer([ReadRequest(), Reset()]) as scripted:
        (record,) = await collect([scripted.address], retries=1, backoff=0.02, timeout=5)
        assert scripted.connections_accepted == 2
    assert record.attempts == 2
    assert not record.ok
    assert record.error in TRANSIENT_KINDS


async def test_refused_is_not_retried(anyio_backend: str, refused: int) -> None:
    (record,) = await collect([f"127.0.0.1:{refused}"], retries=5, backoff=0.02)
    assert (record.error, record.attempts) == ("refused", 1)


async def test_retry_back_off_stops_at_the_deadline(anyio_backend: str) -> None:
    with ScriptedServer([ReadRequest(), Reset()]) as scripted:
        started = time.monotonic()
        (record,) = await collect([scripted.address], retries=50, backoff=0.1, timeout=0.6)
        elapsed = time.monotonic() - started
    # The last attempt may be the one the deadline cuts short: then the record says so.
    assert record.error in {*TRANSIENT_KINDS, "timeout"}, record
    assert 2 <= record.attempts < 10, record
    assert elapsed <= 0.6 + 0.5


# -- what a record holds -------------------------------------------------------------------------------------


async def test_follow_redirects_records_the_chain(anyio_backend: str, server: TargetServer) -> None:
    url = f"{server.url}/redirect/2"
    (followed,) = await collect([url], follow_redirects=True)
    assert followed.ok
    assert followed.status_code == 200
    assert followed.url == f"{server.url}/"
    assert followed.location is None
    assert followed.title == "aiotcp test server"
    assert followed.redirects == [
        {"url": f"{server.url}/redirect/2", "status_code": 302, "location": "/redirect/1"},
        {"url": f"{server.url}/redirect/1", "status_code": 302, "location": "/redirect/0"},
        {"url": f"{server.url}/redirect/0", "status_code": 302, "location": "/"},
    ]
    assert followed.as_dict()["redirects"] == followed.redirects

    (not_followed,) = await collect([url])
    assert (not_followed.status_code, not_followed.location, not_followed.url) == (302, "/redirect/1", url)
    assert not_followed.redirects is None
    assert "redirects" not in not_followed.as_dict()

    (too_many,) = await collect([url], follow_redirects=True, max_redirects=1)
    assert too_many.error == "too_many_redirects"
    assert not too_many.ok


async def test_title_is_unescaped_and_whitespace_collapsed(anyio_backend: str) -> None:
    body = b"<html><head><TITLE lang='fr'>\n  Caf&eacute; &amp;\t\tBar &#x41;\xc3\xa9 </TITLE></head></html>"
    with ScriptedServer(serving(html_reply(body))) as scripted:
        (record,) = await collect([scripted.address])
    assert record.title == "Café & Bar Aé"


async def test_title_with_control_characters_is_kept_as_data(anyio_backend: str) -> None:
    body = b"<title>\x1b[31mred\x1b[0m \x07bell\x9b</title>"
    with ScriptedServer(serving(html_reply(body, "text/html; charset=latin-1"))) as scripted:
        (record,) = await collect([scripted.address])
    assert record.title == "\x1b[31mred\x1b[0m \x07bell\x9b"


@pytest.mark.parametrize("charset", ["rot13", "idna", "undefined", "no-such-charset"])
async def test_a_charset_python_cannot_decode_with_falls_back_to_utf8(anyio_backend: str, charset: str) -> None:
    body = "<title>naïve</title>".encode()
    with ScriptedServer(serving(html_reply(body, f"text/html; charset={charset}"))) as scripted:
        (record,) = await collect([scripted.address])
    assert record.ok
    assert record.title == "naïve"


async def test_body_read_stops_at_max_body(anyio_backend: str) -> None:
    late = b"x" * 5000 + b"<title>late</title>"
    with ScriptedServer(serving(html_reply(late)), serving(html_reply(late))) as scripted:
        (capped,) = await collect([scripted.address], max_body=1024)
        (whole,) = await collect([scripted.address], max_body=64 * 1024)
    assert capped.ok
    assert capped.title is None
    assert capped.content_length == len(late)
    assert whole.title == "late"


async def test_an_unexpected_exception_costs_its_target_s_record_not_the_run(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault injected where a bug could hide (reading the title of one target's page): that target gets an
    # "internal" record naming the exception, tried once; the targets after it are probed as usual.
    real_title = aiotcp.probe.records._title

    def title(body: bytes, charset: str | None) -> str | None:
        if b"boom" in body:
            raise KeyError("injected fault")
        return real_title(body, charset)

    monkeypatch.setattr(aiotcp.probe.records, "_title", title)
    bad_page, good_page = html_reply(b"<title>boom</title>"), html_reply(b"<title>fine</title>")
    with ScriptedServer(serving(bad_page)) as bad, ScriptedServer(serving(good_page), serving(good_page)) as good:
        records = by_line(await collect([good.address, bad.address, good.address], retries=2, order="input"))
    assert [records[line].ok for line in (1, 2, 3)] == [True, False, True]
    failed = records[2]
    assert failed.error == "internal"
    assert failed.error_message == "KeyError: 'injected fault'"
    assert failed.attempts == 1
    assert failed.status_code == 200  # what was read before the fault is kept
    assert records[3].title == "fine"


async def test_extra_headers_and_method_are_sent(anyio_backend: str) -> None:
    reply = response(200, b"", headers=[("Server", "scripted")], close=True)
    with ScriptedServer([ReadRequest(), Send(reply), CloseAfterSending()]) as scripted:
        (record,) = await collect([scripted.address], method="HEAD", headers=(("X-Probe", "yes"),))
        request = scripted.requests(0)[0]
    assert record.ok
    assert record.server == "scripted"
    assert request.startswith(b"HEAD / HTTP/1.1\r\n")
    assert b"\r\nX-Probe: yes\r\n" in request
    assert b"\r\nConnection: close\r\n" in request


async def test_https_probe_records_tls_time(anyio_backend: str, server_ssl_context: ssl.SSLContext) -> None:
    with CountingServer(tls=server_ssl_context) as tls_server:
        url_record, bare_record = await collect(
            [f"https://127.0.0.1:{tls_server.port}/", f"127.0.0.1:{tls_server.port}"], scheme="https", order="input"
        )
    for record in (url_record, bare_record):
        assert record.ok
        assert record.scheme == "https"
        assert record.title == "counted"
        assert record.tls_ms is not None
        assert record.attempts == 1


async def test_auto_scheme_switches_once_on_a_tls_answer_and_gives_one_record(anyio_backend: str) -> None:
    tls_alert = b"\x15\x03\x03\x00\x02\x02\x28"  # what a TLS server may answer to a plaintext request
    with ScriptedServer([ReadRequest(), Send(tls_alert), CloseAfterSending()], [CloseAfterSending()]) as scripted:
        records = await collect([scripted.address], scheme="auto", timeout=3)
        assert scripted.connections_accepted == 2
    (record,) = records
    assert record.url == f"https://{scripted.address}/"
    assert record.scheme == "https"
    assert record.attempts == 2
    assert record.error == "tls"


@pytest.mark.parametrize(
    "answer",
    [
        response(
            400,
            b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n</html>\r\n",
            reason="Bad Request",
            headers=[("Server", "nginx/1.22.1"), ("Content-Type", "text/html")],
            close=True,
        ),
        response(
            400,
            b"<p>Reason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n</p>",
            reason="Bad Request",
            headers=[("Content-Type", "text/html; charset=iso-8859-1")],
            close=True,
        ),
        b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
    ],
    ids=["nginx", "apache", "go"],
)
async def test_auto_scheme_switches_once_on_a_plain_http_to_https_port_answer(
    anyio_backend: str, answer: bytes
) -> None:
    """nginx, Apache and Go answer a plaintext request on their TLS port with a 400 that says so: the http guess
    is switched to https, once. (Here the https attempt meets a plain server that closes: its error is the
    record's, never the 400.)"""
    answering = [ReadRequest(), Send(answer), CloseAfterSending()]
    with ScriptedServer(answering, [CloseAfterSending()], answering) as scripted:
        records = await collect([scripted.address], scheme="auto", timeout=3)
        (named,) = await collect([f"http://{scripted.address}/"], scheme="auto", timeout=3)
        assert scripted.connections_accepted == 3
    (record,) = records
    assert (record.url, record.scheme, record.attempts) == (f"https://{scripted.address}/", "https", 2)
    assert record.error == "tls"
    assert (record.status_code, record.title, record.server) == (None, None, None)
    # A URL names its scheme: the 400 is the answer.
    assert (named.ok, named.status_code, named.attempts) == (True, 400, 1)


async def test_auto_scheme_tries_https_once_when_a_plaintext_request_gets_no_answer(
    anyio_backend: str, server_ssl_context: ssl.SSLContext
) -> None:
    # A TLS server on a port that does not say TLS closes on a plaintext request without a byte (Python's
    # ssl does): with scheme=auto that silence is worth one https attempt; with scheme=http it is the answer.
    with CountingServer(tls=server_ssl_context) as tls_server:
        (auto,) = await collect([f"127.0.0.1:{tls_server.port}"], scheme="auto", timeout=3)
        (plain,) = await collect([f"127.0.0.1:{tls_server.port}"], scheme="http", timeout=3)
    assert auto.ok
    assert auto.url == f"https://127.0.0.1:{tls_server.port}/"
    assert auto.attempts == 2
    assert auto.title == "counted"
    assert plain.error == "disconnected"
    assert plain.attempts == 1


async def test_auto_scheme_keeps_the_guess_and_its_error_when_https_fails_too(anyio_backend: str) -> None:
    # A plaintext server that closes every connection unanswered: the https attempt fails as well, and the
    # record is the http guess's: its URL, its error. A retry (disconnected is transient) goes to http again.
    with ScriptedServer([CloseAfterSending()], [CloseAfterSending()], [CloseAfterSending()]) as scripted:
        (record,) = await collect([scripted.address], scheme="auto", timeout=3, retries=1, backoff=0.01)
        assert scripted.connections_accepted == 3
    assert record.error == "disconnected"
    assert record.url == f"http://{scripted.address}/"
    assert record.scheme == "http"
    assert record.attempts == 3  # http, https once, http again


# -- stopping early ------------------------------------------------------------------------------------------


async def test_leaving_early_closes_every_socket(anyio_backend: str, silent_server: SilentServer, refused: int) -> None:
    baseline = open_fds()
    lines = [f"127.0.0.1:{refused}"] * 3 + [f"127.0.0.1:{silent_server.port}"] * 20
    started = time.monotonic()
    async with aclosing(probe_many(lines, concurrency=25, timeout=30)) as results:
        async for record in results:
            assert record.error == "refused"
            assert await settle(lambda: silent_server.open_connections == 20)
            break
    assert time.monotonic() - started < WAIT_S + 2.0  # nobody waited for the 30 s deadline
    assert await settle(lambda: silent_server.open_connections == 0)  # the server saw every socket close
    gc.collect()
    assert await settle(lambda: open_fds() == baseline)


async def test_cancelling_the_caller_closes_every_socket(anyio_backend: str, silent_server: SilentServer) -> None:
    baseline = open_fds()
    lines = [f"127.0.0.1:{silent_server.port}"] * 10
    records = []
    with anyio.move_on_after(0.5) as scope:
        async with aclosing(probe_many(lines, concurrency=10, timeout=30)) as results:
            async for record in results:
                records.append(record)
    assert scope.cancelled_caught
    assert records == []
    assert await settle(lambda: silent_server.open_connections == 0)
    gc.collect()
    assert await settle(lambda: open_fds() == baseline)


# -- memory ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_memory_does_not_grow_with_the_list(anyio_backend: str, refused: int) -> None:
    def lines(count: int) -> Iterator[str]:  # a generator: the list itself never exists
        for i in range(count):
            yield f"127.0.0.1:{refused}" if i % 100 == 0 else f"not a target {i}"

    # One run of 50,000 lines; the peak of traced memory when 10,000 records are out, and at the end. Were
    # anything kept per target (lines, jobs, records), the second would be about five times the first.
    await collect(lines(500), concurrency=50)  # imports, caches and the loop's own, outside the measurement
    peaks: dict[int, int] = {}
    records = 0
    gc.collect()
    tracemalloc.start()
    try:
        async with aclosing(probe_many(lines(50_000), concurrency=50, timeout=5)) as results:
            async for _ in results:
                records += 1
                if records in (10_000, 50_000):
                    peaks[records] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert records == 50_000
    assert peaks[50_000] < peaks[10_000] * 1.5, peaks


# -- DNS: facts in every record, --all-ips, transient failures retried ---------------------------------------

DNS_ZONE: Zone = {
    "web.test": [("CNAME", "origin.test", 60)],
    "origin.test": [("A", "127.0.0.1", 60), ("A", "127.0.0.2", 60)],
    "gone.test": [("A", "127.0.0.3", 60)],  # nothing listens on 127.0.0.3 at the port probed
    "broken.test": "SERVFAIL",
}


async def test_records_carry_the_dns_facts_of_names(anyio_backend: str, server: TargetServer) -> None:
    with zone_server(DNS_ZONE) as dns:
        lines = [f"web.test:{server.port}", "missing.test:80", f"127.0.0.1:{server.port}", "gone.test:9"]
        records = by_line(await collect(lines, resolvers=(dns.address,), timeout=5))
    web, missing, literal, gone = (records[i] for i in (1, 2, 3, 4))
    assert web.ok
    assert (web.a, web.aaaa, web.cname) == (["127.0.0.1", "127.0.0.2"], [], ["origin.test"])
    assert (web.resolver, web.dns_rcode) == (dns.address, None)
    assert web.ip in ("127.0.0.1", "127.0.0.2")
    assert web.dns_ms is not None
    assert (missing.error, missing.dns_rcode, missing.resolver) == ("dns", "NXDOMAIN", dns.address)
    assert missing.ip is None
    assert missing.attempts == 1
    assert (literal.a, literal.resolver, literal.dns_rcode, literal.ip) == (None, None, None, "127.0.0.1")
    assert gone.error == "refused"
    assert (gone.a, gone.dns_rcode) == (["127.0.0.3"], None)  # it resolved; the connect failed


async def test_all_ips_probes_every_address_of_a_name_with_one_record_each(anyio_backend: str) -> None:
    with running_in_thread("127.0.0.1") as one, zone_server(DNS_ZONE) as dns:
        # 127.0.0.2 at the same port: nothing there (refused) -- each address gets its own outcome.
        records = await collect([f"web.test:{one.port}", "missing.test"], resolvers=(dns.address,), all_ips=True)
    by_ip = {record.ip: record for record in records if record.input.startswith("web")}
    assert set(by_ip) == {"127.0.0.1", "127.0.0.2"}
    assert by_ip["127.0.0.1"].status_code == 200
    assert by_ip["127.0.0.2"].error == "refused"
    for record in by_ip.values():
        assert (record.line, record.a, record.cname) == (1, ["127.0.0.1", "127.0.0.2"], ["origin.test"])
    (missing,) = [record for record in records if record.input == "missing.test"]
    assert (missing.error, missing.dns_rcode) == ("dns", "NXDOMAIN")


async def test_transient_dns_failures_are_retried_nxdomain_never(anyio_backend: str) -> None:
    with zone_server(DNS_ZONE) as dns:
        config = ResolverConfig(nameservers=(Nameserver.parse(dns.address),), attempts=1)
        records = by_line(
            await collect(["broken.test", "missing.test"], resolver=config, retries=2, backoff=0.01, timeout=5)
        )
        assert dns.asked("broken.test", "A") == 3  # the first try and two retries, each asking again
        assert dns.asked("missing.test", "A") == 1
    assert (records[1].dns_rcode, records[1].attempts) == ("SERVFAIL", 3)
    assert (records[2].dns_rcode, records[2].attempts) == ("NXDOMAIN", 1)


@pytest.mark.parametrize("host", ["a" * 64 + ".test", ".".join(["abcdefghi"] * 26)])
async def test_a_name_too_long_for_dns_is_invalid_target_before_any_query(anyio_backend: str, host: str) -> None:
    with zone_server(DNS_ZONE) as dns:
        (record,) = await collect([host], resolvers=(dns.address,))
        assert dns.total() == 0
    assert record.error == "invalid_target"
    assert record.dns_rcode is None


@pytest.mark.parametrize("engine", ["auto", "reference"])
async def test_failed_probes_leave_no_reference_cycles(anyio_backend: str, engine: str, refused: int) -> None:
    # A failure kept in a local of a frame its own traceback holds is a reference cycle: one per failed target
    # (about fifty objects each) for the garbage collector, whose passes then cost every target CPU. (On asyncio
    # "auto" is the lean engine; on trio both are the reference.)
    import gc

    lines = [f"127.0.0.1:{refused}"] * 100
    gc.collect()
    gc.disable()
    try:
        records = await collect(lines, concurrency=10, timeout=5, engine=engine)
        cyclic = gc.collect()
    finally:
        gc.enable()
    assert [record.error for record in records] == ["refused"] * 100
    assert cyclic < 100, f"{cyclic} objects in reference cycles after 100 refused targets"
