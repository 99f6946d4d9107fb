"""The lean engine (aiotcp.probe.fast) against the reference engine, and the prober under its own overload.

* A mixed list -- live targets on two addresses and on ::1, refused, silent, invalid lines, a host name, a
  URL path, a chunked and a large body, bodies compressed though identity was asked for (gzip beyond
  max_body, deflate), responses with quirks (HTTP/1.0 without a reason, an escape in a header value, bare LF
  line ends), nginx's 400 to plaintext on a TLS port, TLS with and without a scheme, a TLS alert to plaintext,
  a server that resets twice -- gives the same records on both engines (timings by presence only), for several
  sets of options (HEAD, no body, redirects followed, retries, per-host and rate limits, paths, paths with
  max_host_errors, facts off, the body kept for matchers, favicon, all_ips).
* The request bytes are the client's.
* Deadlines measure the network: a CPU hog (a thread holding the GIL in long slices, or a second process
  pinned to the loop's core) makes no live loopback target time out; a stall of the loop extends the
  deadline of a probe that was waiting; the loop monitor measures lag and holds admission while it lags.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, aclosing
from typing import Any

import pytest
from scripted_server import CloseAfterSending, NeverAcceptServer, ReadRequest, Reset, ScriptedServer, Send, response

from aiotcp.client import Client
from aiotcp.probe import LoadReport, ProbeResult, probe_many
from aiotcp.probe.fast import _Requests
from aiotcp.probe.pacing import LoopMonitor
from aiotcp.serve import SilentServer, TargetServer, running_in_thread
from aiotcp.targets import parse_target

pytestmark = pytest.mark.anyio

pytest.importorskip("httptools")

# Timings differ run to run: compared by presence only (a field one engine fills and the other leaves null is a
# difference; dns_ms of an address is the reference's look at the address, the lean engine's 0).
UNTIMED = ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "time_ms", "timestamp")
TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"
WAIT_S = 10.0


def page(title: bytes) -> bytes:
    body = b"<html><head><title>" + title + b"</title></head></html>"
    return response(200, body, headers=[("Content-Type", "text/html; charset=utf-8")], close=True)


def serving(reply: bytes) -> list[Any]:
    return [ReadRequest(), Send(reply), CloseAfterSending()]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the lean engine's loop (trio runs the reference engine only)


@pytest.fixture
def server2() -> Iterator[TargetServer]:
    with running_in_thread("127.0.0.2") as server:
        yield server


@pytest.fixture
def server6() -> Iterator[TargetServer | None]:
    try:
        with running_in_thread("::1") as server:
            yield server
    except OSError:  # no IPv6 loopback here
        yield None


QUIRKY = [
    b"HTTP/1.0 200 \r\nContent-Type: text/html\r\nContent-Length: 30\r\n\r\n<title>no reason, 1.0</title>xx",
    b"HTTP/1.1 200 OK\r\nServer: evil\x1b[31mred\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    b"HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: 23\n\n<title>bare LF</title>\n",
]
PLAIN_TO_TLS = response(
    400,
    b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n</html>\r\n",
    reason="Bad Request",
    headers=[("Server", "nginx"), ("Content-Type", "text/html")],
    close=True,
)


@contextlib.contextmanager
def scripted(server_ssl_context: ssl.SSLContext) -> Iterator[dict[str, ScriptedServer]]:
    """The servers whose scripts are used up by a run (a run needs fresh ones). A server plays its last script
    for every connection after the others (so each path of a target gets it)."""
    with ExitStack() as stack:
        yield {
            **{f"quirky{i}": stack.enter_context(ScriptedServer(serving(reply))) for i, reply in enumerate(QUIRKY)},
            # http is the guess: the 400 says TLS was meant; the https attempt (a ClientHello) is closed on.
            "plain-to-tls": stack.enter_context(
                ScriptedServer(serving(PLAIN_TO_TLS), [ReadRequest(), CloseAfterSending()])
            ),
            "tls": stack.enter_context(ScriptedServer(serving(page(b"over TLS")), tls=server_ssl_context)),
            "alert": stack.enter_context(
                ScriptedServer([ReadRequest(), Send(TLS_ALERT), CloseAfterSending()], [CloseAfterSending()])
            ),
            "resets": stack.enter_context(
                ScriptedServer([ReadRequest(), Reset()], [ReadRequest(), Reset()], serving(page(b"third")))
            ),
            "chunked": stack.enter_context(
                ScriptedServer(serving(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
            ),
        }


def mixed_list(
    server: TargetServer,
    server2: TargetServer,
    server6: TargetServer | None,
    silent: SilentServer,
    refused: int,
    servers: dict[str, ScriptedServer],
) -> list[str]:
    lines = [
        "# a mixed list",
        f"127.0.0.1:{server.port}",
        f"127.0.0.2:{server2.port}",
        f"127.0.0.1:{refused}",
        f"127.0.0.1:{silent.port}",
        "not a target!",
        f"localhost:{server.port}",  # a name: the reference engine's attempt, inside a lean run
        f"http://127.0.0.1:{server.port}/status/503",
        f"http://127.0.0.1:{server.port}/redirect/2",
        f"http://127.0.0.1:{server.port}/bytes/200000",  # more than max_body
        f"https://{servers['tls'].address}/",
        servers["tls"].address,  # auto: the http guess gets no byte back, https is tried once
        servers["alert"].address,  # auto: a TLS alert to plaintext, switch to https
        servers["resets"].address,
        servers["chunked"].address,
        "",
        f"127.0.0.2/31:{server2.port}",
        f"http://127.0.0.1:{server.port}/gzip/200000",  # compressed though identity was asked: decoded, cut
        f"http://127.0.0.1:{server.port}/deflate/300",
        *(servers[f"quirky{i}"].address for i in range(len(QUIRKY))),
        servers["plain-to-tls"].address,
    ]
    if server6 is not None:
        lines.append(f"[::1]:{server6.port}")
    return lines


def normal(record: ProbeResult) -> dict[str, Any]:
    fields = record.as_dict()
    for name in UNTIMED:
        fields[name] = fields[name] is not None
    fields["body"] = record.body  # (kept for matchers only: None without keep_body)
    fields["parts"] = record.parts
    if record.redirects is not None:
        assert fields["redirects"] == record.redirects
    return fields


async def run(lines: list[str], **options: Any) -> list[dict[str, Any]]:
    async with aclosing(probe_many(lines, order="input", timeout=2.0, **options)) as results:
        return [normal(result) async for result in results]


OPTION_SETS = [
    pytest.param({}, id="defaults"),
    pytest.param({"method": "HEAD", "max_body": 0}, id="head-no-body"),
    pytest.param({"follow_redirects": True, "max_body": 100}, id="redirects"),
    pytest.param({"retries": 2, "backoff": 0.01}, id="retries"),
    pytest.param({"per_host": 1, "rate": 200.0, "concurrency": 4}, id="limits"),
    pytest.param({"paths": ("/", "/status/404", "/gzip/100", "/deflate/50")}, id="paths"),
    pytest.param({"paths": ("/", "/redirect/1", "/bytes/10"), "max_host_errors": 1}, id="max-host-errors"),
    pytest.param({"facts": False}, id="no-facts"),
    pytest.param({"keep_body": True, "max_body": 300}, id="keep-body"),
    pytest.param({"favicon": True}, id="favicon"),
    pytest.param({"all_ips": True}, id="all-ips"),
]


@pytest.mark.parametrize("options", OPTION_SETS)
async def test_a_mixed_list_gives_the_same_records_on_both_engines(
    anyio_backend: str,
    options: dict[str, Any],
    server: TargetServer,
    server2: TargetServer,
    server6: TargetServer | None,
    silent_server: SilentServer,
    refused: int,
    server_ssl_context: ssl.SSLContext,
) -> None:
    runs: dict[str, list[dict[str, Any]]] = {}
    for engine in ("lean", "reference"):
        with scripted(server_ssl_context) as servers:
            lines = mixed_list(server, server2, server6, silent_server, refused, servers)
            records = await run(lines, engine=engine, **options)
        # Each run has scripted servers of its own: their ports are not part of what is compared.
        ports = {str(s.port): name.upper() for name, s in servers.items()}
        runs[engine] = [_without_ports(record, ports) for record in records]
    lean, reference = runs["lean"], runs["reference"]
    assert len(lean) == len(reference)
    for a, b in zip(lean, reference, strict=True):
        assert a == b, f"\n lean      {a}\n reference {b}"
    kinds = {record["error"] for record in lean}
    assert {None, "refused", "invalid_target"} <= kinds, kinds
    quirks = {quirk for record in lean for quirk in record["quirks"] or ()}
    assert {"http10", "no_reason", "ctl_in_header_value", "bare_lf"} <= quirks, quirks
    if options.get("method") != "HEAD":
        assert "timeout" in kinds
        titles = {record["title"] for record in lean}
        assert {"over TLS", "no reason, 1.0", "bare LF"} <= titles, titles
        encodings = {record["content_encoding"] for record in lean}
        if "max_host_errors" not in options:  # (its paths ask for no compressed route)
            assert {"gzip", "deflate"} <= encodings, encodings
        if options.get("facts", True):
            assert all(r["body_sha256"] for r in lean if r["status_code"] is not None)
    if "max_host_errors" in options:
        assert "skipped" in kinds
    if options.get("favicon"):
        assert any(record["favicon_mmh3"] is not None for record in lean)
    if "paths" in options:
        assert any(record["parts"] == len(options["paths"]) for record in lean)


def _without_ports(record: dict[str, Any], ports: dict[str, str]) -> dict[str, Any]:
    out = dict(record)
    if str(out["port"]) in ports:
        out["port"] = ports[str(out["port"])]
    for name in ("input", "url", "favicon_url"):
        if out[name] is not None:
            out[name] = re.sub(r":(\d+)\b", lambda m: ":" + ports.get(m.group(1), m.group(1)), out[name])
    return out


@pytest.mark.parametrize("engine", ["lean", "reference"])
async def test_every_timeout_names_its_phase(
    anyio_backend: str, engine: str, silent_server: SilentServer, refused: int
) -> None:
    with NeverAcceptServer() as never:
        lines = [
            never.url,  # SYN never answered
            f"127.0.0.1:{silent_server.port}",  # accepts, never answers
            f"https://127.0.0.1:{silent_server.port}/",  # a TLS handshake never answered
            f"127.0.0.1:{refused}",  # not a timeout: no phase
        ]
        async with aclosing(
            probe_many(lines, order="input", timeout=0.6, connect_timeout=0.3, engine=engine)
        ) as results:
            records = [(r.error, r.timeout_phase) async for r in results]
    assert records == [("connect_timeout", "connect"), ("timeout", "read"), ("tls", "tls"), ("refused", None)]


async def test_the_lean_engine_leaves_no_reference_cycle_per_response(anyio_backend: str, server: TargetServer) -> None:
    # llhttp holds the callbacks of the parser that holds it: a cycle per response, left to the garbage collector
    # (whose passes cost every probe CPU), unless the reader lets go of it when the attempt ends.
    lines = [f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}/status/500"] * 50
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with aclosing(probe_many(lines, concurrency=10, timeout=5, engine="lean")) as results:
            records = [record async for record in results]
        gc.collect()
        cyclic = collections.Counter(type(item).__name__ for item in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert {record.status_code for record in records} == {200, 500}
    assert cyclic["PlainResponseParser"] == 0, cyclic
    assert cyclic["ResponseHead"] == 0, cyclic


async def test_lean_requests_are_the_clients_bytes(anyio_backend: str) -> None:
    for headers in ((), (("X-Probe", "yes"), ("User-Agent", "probe/1")), (("Host", "example.test"),)):
        client = Client(headers=[*headers, ("Connection", "close")], http="h11")
        for method in ("GET", "HEAD"):
            requests = _Requests(client, method)
            for url in ("http://127.0.0.1:8080/", "http://127.0.0.1/a?b=c", "http://[::1]:81/x", "http://10.0.0.1/"):
                target = parse_target(url)
                assert requests.wire(target) == client.build_request(method=method, target=target).encode()


# -- overload: deadlines measure the network ----------------------------------------------------------------


@pytest.fixture
def server_process() -> Iterator[int]:
    """The built-in server in a process of its own (a hog in ours must not slow the target down)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aiotcp", "serve", "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()  # "aiotcp serve: listening on http://127.0.0.1:PORT ..."
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, line
        yield int(match.group(1))
    finally:
        process.terminate()
        process.wait(WAIT_S)
        if process.stderr is not None:
            process.stderr.close()


@contextlib.contextmanager
def gil_hog() -> Iterator[None]:
    """A thread that always wants the GIL: each time the loop lets go of it (every system call of a lean probe),
    the loop waits a switch interval (Python's 5 ms) to have it back -- about 20 ms per target, so the list is
    short. Probes wait on each other's waits far beyond their deadline: the stall credit must absorb it."""
    stop = threading.Event()
    deadline = time.monotonic() + 60.0

    def spin() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            sum(range(1000))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(WAIT_S)
        sys.setswitchinterval(interval)


@contextlib.contextmanager
def core_hog() -> Iterator[None]:
    """A second process busy on the one core this process is pinned to."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this system")
    mine = os.sched_getaffinity(0)
    core = min(mine)
    hog = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"]
    )
    try:
        os.sched_setaffinity(0, {core})
        os.sched_setaffinity(hog.pid, {core})
        yield
    finally:
        os.sched_setaffinity(0, mine)
        hog.kill()
        hog.wait(WAIT_S)


@pytest.mark.slow
@pytest.mark.parametrize("hog", [gil_hog, core_hog], ids=["gil-thread", "process-on-our-core"])
async def test_a_cpu_hog_makes_no_live_target_time_out(anyio_backend: str, hog: Any, server_process: int) -> None:
    lines = [f"127.0.0.1:{server_process}"] * 300  # the reference engine times some out here
    report = LoadReport()
    with hog():
        async with aclosing(probe_many(lines, timeout=0.5, concurrency=600, report=report)) as results:
            records = [result async for result in results]
    assert len(records) == len(lines)
    assert {(r.error, r.status_code) for r in records} == {(None, 200)}, {r.error for r in records}
    assert report.engine == "lean"
    assert report.ticks > 0


async def test_a_stall_of_the_loop_extends_the_deadline_of_a_waiting_probe(anyio_backend: str) -> None:
    # A SYN never answered, a 0.5 s deadline, and the loop stalled for 0.6 s meanwhile: the stall was ours, so
    # the probe waits the network's 0.5 s on top of it (and the record says so).
    report = LoadReport()
    with NeverAcceptServer() as never:
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, time.sleep, 0.6)
        async with aclosing(probe_many([never.url], timeout=0.5, report=report)) as results:
            (record,) = [result async for result in results]
    assert (record.error, record.timeout_phase) == ("timeout", "connect")
    assert record.time_ms is not None
    assert record.time_ms >= 900, record.time_ms  # 0.5 s of network time + most of the 0.6 s stall
    assert report.stalled_s >= 0.4, report


async def test_the_monitor_caps_concurrency_while_the_loop_lags(anyio_backend: str) -> None:
    report = LoadReport()
    grown = []
    in_flight = [0]
    monitor = LoopMonitor(1.0, 1000, report, lambda: in_flight[0], lambda: grown.append(monitor.cap))
    loop = asyncio.get_running_loop()
    monitor.start(loop)
    try:
        await asyncio.sleep(0.05)
        assert monitor.cap == 1000
        in_flight[0] = 700
        time.sleep(0.3)  # noqa: ASYNC251 - a stalled loop: 300 ms late, over the 100 ms limit
        await asyncio.sleep(0.001)
        assert monitor.cap == 750  # the first tick after the stall: down by a quarter
        for _ in range(100):  # 100 ticks on time
            if monitor.cap == 1000:
                break
            await asyncio.sleep(0.02)
        assert monitor.cap == 1000  # on time again: back up to -c, a sixteenth a tick
        assert grown
        assert grown == sorted(grown)
        for _ in range(40):  # a stall that never ends: the cap stops at the floor, probes still start
            time.sleep(0.11)  # noqa: ASYNC251
            await asyncio.sleep(0)
        assert monitor.cap == 64
    finally:
        monitor.stop()
    assert report.held_ticks >= 20
    assert report.lag_percentile(100) >= 250
    assert report.in_flight_max == 700
    assert report.stalled_s >= 0.2
    assert report.as_dict()["loop_lag_ms"]["limit"] == 100.0


def test_load_reports_merge_over_processes() -> None:
    one, two = LoadReport(engine="lean", concurrency=50), LoadReport(engine="lean", concurrency=50)
    for lag in (0.001, 0.002, 0.003, 0.2):
        one.record(lag, 10, held=lag > 0.1)
        two.record(lag, 30, held=False)
    one.merge(two)
    assert (one.engine, one.concurrency, one.processes, one.ticks, one.held_ticks) == ("lean", 100, 2, 8, 1)
    assert one.mean_in_flight == 40.0  # 10 and 30 side by side
    assert one.lag_percentile(50) == 2.0
    assert one.lag_percentile(99) == 200.0
    assert not one.prober_bound or one.held_share > 0.05


@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
async def test_a_timer_reads_what_the_kernel_holds_before_it_judges(
    anyio_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On uvloop the timers of an iteration run before its I/O: after a stall, a deadline would fire before the
    # answer that came meanwhile is read. Stall credit off, to see the other defence alone: the timer reads
    # the socket first.
    pytest.importorskip("uvloop")
    monkeypatch.setattr(LoopMonitor, "stalled_now", lambda self: 0.0)
    loop = asyncio.get_running_loop()
    stall, trigger = socket.socketpair()

    # The server answers after 0.1 s, in the middle of a 0.5 s stall of our loop. The stall is an I/O callback,
    # so the iteration after it starts with its timers: the 0.3 s deadline's before the read of the answer.
    def stall_the_loop() -> None:
        stall.recv(1)
        time.sleep(0.5)  # the point: our loop stalled, in a callback

    loop.add_reader(stall.fileno(), stall_the_loop)
    try:
        with running_in_thread() as server:
            loop.call_later(0.05, trigger.send, b"!")
            async with aclosing(probe_many([f"{server.url}/delay/100"], timeout=0.3)) as results:
                (record,) = [result async for result in results]
    finally:
        loop.remove_reader(stall.fileno())
        stall.close()
        trigger.close()
    assert (record.error, record.status_code) == (None, 200)  # answered at 0.1 s, read at 0.55 s


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_lean_engine_asked_for_on_trio_is_refused_and_auto_runs_the_reference(
    anyio_backend: str, server: TargetServer
) -> None:
    with pytest.raises(ValueError, match="engine 'lean' runs on an asyncio event loop"):
        async with aclosing(probe_many([f"127.0.0.1:{server.port}"], engine="lean")) as results:
            await results.__anext__()
    report = LoadReport()
    async with aclosing(probe_many([f"127.0.0.1:{server.port}"], report=report)) as results:
        (record,) = [result async for result in results]
    assert (record.status_code, report.engine) == (200, "reference")


def test_a_run_that_starts_probes_as_fast_as_it_can_is_prober_bound() -> None:
    from aiotcp.cli.probe import Stats, _summary

    report = LoadReport(engine="lean", concurrency=10_000)
    for _ in range(100):  # one second of ticks, 8 probes in flight, the feeder always stopping after a batch
        report.record(0.002, 8, held=False)
    report.launch_yields = 300
    assert report.start_bound
    assert report.prober_bound
    assert report.as_dict()["start_bound"] is True
    caption = str(_summary(Stats(), report, 1).caption)
    assert "started probes as fast as its CPU allowed" in caption
    assert "8 probes in flight on average, not 10,000" in caption

    report.launch_waits = 400  # it waited for room more often: the concurrency was the limit
    assert not report.prober_bound
    assert _summary(Stats(), report, 1).caption is None
