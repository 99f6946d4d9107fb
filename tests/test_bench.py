"""Tests for aiotcp.bench, the load generator, against real loopback servers on port 0.

No timed performance assertions here (those numbers live in benchmarks/): the rate test checks that an
open-loop run holds a modest rate within a wide tolerance, which is about the schedule, not about speed.
"""

from __future__ import annotations

import io
import json
import random
import socket
import threading
from contextlib import ExitStack, suppress
from typing import Any

import pytest
from dns_server import zone_server
from helpers import settled

from aiotcp.bench import BenchConfig, BenchResult, run_bench
from aiotcp.bench import histogram as hist
from aiotcp.bench.config import available_engines, resolve_workers
from aiotcp.bench.engines import is_interim, run_worker
from aiotcp.bench.report import to_json, write_hdr_log, write_html, write_text
from aiotcp.cli import main as aiotcp_main
from aiotcp.errors import DNSError
from aiotcp.serve import TargetServer, running_in_thread

pytest.importorskip("hdrh")

ENGINES = available_engines()


def bench_main(argv: list[str]) -> int:
    """``aiotcp bench ARGS``, in this process."""
    return aiotcp_main(["bench", *argv])


def bench(server_url: str, path: str = "/", **options: Any) -> BenchResult:
    options.setdefault("connections", 5)
    options.setdefault("timeout", 5.0)
    if "requests" in options:
        options.setdefault("duration", 20.0)  # a cap: -n runs finish long before it
    return run_bench(BenchConfig(server_url + path, **options))


def assert_accounted(result: BenchResult) -> None:
    """Every attempt ended exactly one way (see aiotcp/bench/results.py)."""
    counters = result.counters
    assert counters.requests + counters.error_count + counters.in_flight == counters.attempts
    assert sum(counters.status.values()) == counters.requests
    assert result.latency.get_total_count() == counters.requests


# -- histograms ------------------------------------------------------------------------------------------


def test_histogram_merge_equals_one_histogram_of_all_samples() -> None:
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(6, 1.5)) for _ in range(30_000)]
    whole = hist.new_histogram()
    for value in samples:
        whole.record_value(value)
    parts = []
    for worker in range(3):
        recorder = hist.Recorder()
        for value in samples[worker::3]:
            recorder.add(value)
        parts.append(hist.encode(recorder.take()))
    merged = hist.merge(parts)
    assert merged.get_total_count() == whole.get_total_count() == len(samples)
    assert merged.get_max_value() == whole.get_max_value()
    assert merged.get_min_value() == whole.get_min_value()
    for percentile in (1, 25, 50, 75, 90, 99, 99.9, 99.99, 100):
        assert merged.get_value_at_percentile(percentile) == whole.get_value_at_percentile(percentile)
    assert merged.encode() == whole.encode()


def test_recorder_clamps_huge_values_and_keeps_buffer_bounded() -> None:
    recorder = hist.Recorder()
    recorder.add(hist.HIGHEST_US * 10)
    recorder.add(0)
    recorder.flush()
    assert recorder.buffer == []
    assert recorder.histogram.get_total_count() == 2
    assert recorder.histogram.values_are_equivalent(recorder.histogram.get_max_value(), hist.HIGHEST_US)
    assert "count=2" in repr(recorder)


def test_summaries_are_what_hdrhistogram_itself_says() -> None:
    # summary_ms and Sparse.summary_ms take shortcuts (tables per slot, the slots alone): the same numbers.
    rng = random.Random(11)
    for trial in range(25):
        samples = [
            int(rng.lognormvariate(rng.uniform(1, 12), rng.uniform(0.1, 2))) for _ in range(rng.randint(1, 3000))
        ]
        if trial % 5 == 0:
            samples.append(0)
        sparse = hist.Sparse()
        sparse.fold(samples)
        histogram = hist.new_histogram()
        for value in samples:
            histogram.record_value(min(value, hist.HIGHEST_US))
        expected = {
            name: histogram.get_value_at_percentile(percentile) / 1000.0 for name, percentile in hist.PERCENTILES
        }
        expected["max"] = histogram.get_max_value() / 1000.0
        expected["min"] = histogram.get_min_value() / 1000.0
        expected["mean"] = round(histogram.get_mean_value() / 1000.0, 3)
        assert hist.summary_ms(histogram) == expected
        assert sparse.summary_ms() == expected
        assert sparse.histogram().encode() == histogram.encode()
    assert hist.Sparse().summary_ms() == hist.summary_ms(hist.new_histogram())


# -- configuration ---------------------------------------------------------------------------------------


def test_plans_split_connections_requests_and_rate_exactly() -> None:
    config = BenchConfig("http://127.0.0.1:9/", connections=7, requests=1001, rate=700.0, workers=3)
    plans = config.plans()
    assert [plan.connections for plan in plans] == [3, 2, 2]
    assert sum(plan.requests or 0 for plan in plans) == 1001
    assert sum(plan.rate or 0 for plan in plans) == pytest.approx(700.0)
    phases = sorted(plan.phase(slot) for plan in plans for slot in range(plan.connections))
    assert phases == pytest.approx([i / 700.0 for i in range(7)])  # 7 slots evenly over one period
    assert b"Host: 127.0.0.1:9\r\n" in plans[0].request


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pipeline": 2, "keepalive": False}, "pipelining needs keep-alive"),
        ({"workers": 9, "connections": 2}, "must not exceed connections"),
        ({"duration": None}, "give a duration"),
        ({"rate": 0.0}, "rate must be a positive number"),
    ],
)
def test_config_rejects_bad_combinations(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BenchConfig("http://127.0.0.1:9/", **options)


def test_config_rejects_https_and_bad_headers() -> None:
    from aiotcp.errors import InvalidHeader, InvalidTarget

    with pytest.raises(InvalidTarget, match="only http"):
        BenchConfig("https://127.0.0.1/")
    with pytest.raises(InvalidHeader):
        BenchConfig("http://127.0.0.1/", headers=(("X-Bad", "a\r\nb"),))


def test_is_interim_skips_1xx_and_rejects_101() -> None:
    from aiotcp.errors import ProtocolError

    assert [is_interim(status) for status in (100, 103, 199, 200, 204, 404)] == [True, True, True, False, False, False]
    with pytest.raises(ProtocolError, match="unexpected 101 Switching Protocols"):
        is_interim(101)


def test_resolve_workers_auto_never_exceeds_connections() -> None:
    assert resolve_workers("auto", 1) == 1
    assert 1 <= resolve_workers("auto", 1000) <= 1000
    assert resolve_workers(4, 2) == 2


# -- counts against the server's own count ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("method", "path", "pipeline", "status"),
    [
        ("GET", "/", 1, 200),
        ("HEAD", "/bytes/100", 1, 200),
        ("GET", "/status/404", 1, 404),
        ("GET", "/chunked/3000", 3, 200),
        ("HEAD", "/", 4, 200),
    ],
)
def test_n_gives_exactly_n_and_matches_the_server(
    server: TargetServer, engine: str, method: str, path: str, pipeline: int, status: int
) -> None:
    result = bench(server.url, path, requests=301, engine=engine, method=method, pipeline=pipeline)
    counters = result.counters
    assert counters.requests == 301
    assert counters.attempts == 301
    assert counters.in_flight == 0
    assert counters.errors == {}
    assert counters.status == {status: 301}
    assert server.requests_served == 301
    assert counters.opened == 5 == server.connections_accepted
    assert_accounted(result)


def test_engines_count_identically_against_the_same_server(server: TargetServer) -> None:
    seen = []
    for engine in ENGINES:
        before = server.requests_served
        result = bench(server.url, "/status/503", requests=200, engine=engine, connections=3)
        counters = result.counters
        seen.append((counters.requests, counters.attempts, counters.status, counters.errors, counters.in_flight))
        assert server.requests_served - before == 200
    assert all(item == seen[0] for item in seen)


@pytest.mark.parametrize("engine", ENGINES)
def test_duration_run_matches_the_server_count(server: TargetServer, engine: str) -> None:
    result = bench(server.url, duration=0.5, engine=engine)
    counters = result.counters
    assert counters.requests > 0
    assert counters.errors == {}
    # In-flight requests at the end may or may not have been served; every response was.
    assert counters.requests <= server.requests_served <= counters.requests + counters.in_flight
    assert 0.5 <= result.duration_s < 1.5
    assert len(result.intervals) >= 1
    assert sum(interval.requests for interval in result.intervals) == counters.requests
    assert_accounted(result)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_keepalive_opens_a_connection_per_request(server: TargetServer, engine: str) -> None:
    result = bench(server.url, requests=40, keepalive=False, engine=engine, connections=4)
    counters = result.counters
    assert counters.requests == 40
    assert counters.errors == {}
    assert settled(lambda: server.connections_accepted == counters.opened), (server, counters)
    assert 40 <= counters.opened <= 44  # one per request, plus reconnects racing the end of the budget
    assert counters.closed_by_peer >= 40 - 4
    assert server.requests_served == 40


def test_warmup_is_not_counted(server: TargetServer) -> None:
    result = bench(server.url, requests=100, warmup=0.2)
    assert result.counters.requests == 100
    assert result.warmup_requests > 0
    assert server.requests_served == 100 + result.warmup_requests


def test_workers_merge_exactly(server: TargetServer) -> None:
    result = bench(server.url, requests=400, workers=2, connections=4)
    counters = result.counters
    assert counters.requests == 400 == server.requests_served
    assert result.latency.get_total_count() == 400
    assert sum(interval.requests for interval in result.intervals) == 400
    assert sum(hist.decode(interval.latency).get_total_count() for interval in result.intervals) == 400
    assert result.workers == 2


def test_h11_engine_runs_on_trio(server: TargetServer) -> None:
    pytest.importorskip("trio")
    plan = BenchConfig(server.url + "/", connections=3, requests=50, engine="h11").plans()[0]
    result = run_worker(plan, lambda interval: None, lambda: False, backend="trio")
    assert result.counters.requests == 50
    assert result.loop == "trio"
    assert server.requests_served == 50


# -- open loop ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_rate_mode_holds_the_rate(server: TargetServer, engine: str) -> None:
    result = bench(server.url, rate=200.0, duration=1.5, connections=4, engine=engine)
    # An absolute schedule sends rate * duration requests whatever the timing noise; allow for a busy machine.
    assert 0.8 * 200 <= result.rps <= 1.1 * 200
    assert result.uncorrected is not None
    assert result.uncorrected.get_total_count() == result.counters.requests
    assert result.latency.get_max_value() >= result.uncorrected.get_max_value()
    assert_accounted(result)


@pytest.mark.parametrize("engine", ENGINES)
def test_rate_mode_corrects_for_a_stalling_server(server: TargetServer, engine: str) -> None:
    # Two connections and 50 ms per response can do 40 requests/s; asking for 100/s makes the schedule slip.
    result = bench(server.url, "/delay/50", rate=100.0, duration=1.0, connections=2, engine=engine)
    assert result.uncorrected is not None
    corrected = hist.summary_ms(result.latency)
    uncorrected = hist.summary_ms(result.uncorrected)
    for key in ("p50", "p90", "p99", "max"):
        assert corrected[key] >= uncorrected[key]  # type: ignore[operator]
    assert corrected["p90"] > 2 * uncorrected["p90"]  # type: ignore[operator]
    document = to_json(result)
    assert document["rate"]["shortfall"] is True
    assert document["latency_uncorrected_ms"]["p50"] == uncorrected["p50"]
    text = io.StringIO()
    write_text(result, text)
    assert "corrected" in text.getvalue()
    assert "warning: achieved" in text.getvalue()


# -- errors by kind -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_refused_is_counted_by_kind(refused: int, engine: str) -> None:
    result = bench(f"http://127.0.0.1:{refused}", requests=20, engine=engine, connections=2)
    counters = result.counters
    assert counters.requests == 0
    assert counters.errors == {"refused": 20}
    assert counters.failed == 20
    assert counters.opened == 0
    assert_accounted(result)


@pytest.mark.parametrize("engine", ENGINES)
def test_timeout_is_counted_by_kind(silent_server: Any, engine: str) -> None:
    result = bench(f"http://127.0.0.1:{silent_server.port}", requests=4, engine=engine, connections=2, timeout=0.2)
    assert result.counters.errors == {"timeout": 4}
    assert result.counters.requests == 0
    assert_accounted(result)


class ResettingServer:
    """Answers the first request of each connection, then resets it (RST) when the second one arrives."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ResettingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with suppress(OSError):
                    self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096) or b"\r\n\r\n"
        conn.sendall(self.RESPONSE)
        conn.recv(4096)  # the second request
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@pytest.mark.parametrize("engine", ENGINES)
def test_reset_mid_run_is_counted_by_kind(engine: str) -> None:
    with ResettingServer() as server:
        result = bench(f"http://127.0.0.1:{server.port}", requests=20, engine=engine, connections=1)
    counters = result.counters
    assert set(counters.errors) == {"reset"}
    assert counters.requests + counters.errors["reset"] == 20
    assert counters.requests >= 5
    assert counters.reset == counters.errors["reset"]
    assert_accounted(result)


@pytest.mark.parametrize("engine", ENGINES)
def test_server_stopping_mid_run_is_counted_by_kind(engine: str) -> None:
    with ExitStack() as stack:
        server = stack.enter_context(running_in_thread())
        timer = threading.Timer(0.3, stack.close)
        timer.start()
        try:
            result = bench(server.url, duration=1.0, engine=engine, timeout=1.0)
        finally:
            timer.cancel()
            timer.join()
    counters = result.counters
    assert counters.requests > 0
    assert "refused" in counters.errors  # reconnecting after the server went away
    assert set(counters.errors) <= {"refused", "disconnected", "reset"}
    assert_accounted(result)


# -- output ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(shared_server: TargetServer) -> BenchResult:
    return bench(shared_server.url, rate=100.0, duration=1.2, connections=2)


def test_json_document_has_the_documented_fields(finished: BenchResult) -> None:
    document = json.loads(json.dumps(to_json(finished)))
    assert document["schema"] == "aiotcp.bench/2"
    for key in (
        "tool",
        "version",
        "python",
        "loop",
        "engine",
        "arguments",
        "requests",
        "duration_s",
        "rps",
        "bytes",
        "latency_ms",
        "latency_uncorrected_ms",
        "status",
        "errors",
        "connections",
        "in_flight",
        "intervals",
        "dns",
    ):
        assert key in document
    assert document["dns"] is None  # an IP address: nothing resolved
    assert set(document["latency_ms"]) == {"p50", "p75", "p90", "p99", "p99_9", "max", "min", "mean"}
    assert document["mode"] == "rate"
    assert document["arguments"]["rate"] == 100.0
    assert document["status"] == {"200": finished.counters.requests}


def test_hdr_log_reads_back_with_hdrhistogram(finished: BenchResult, tmp_path: Any) -> None:
    from hdrh.log import HistogramLogReader

    path = tmp_path / "run.hlog"
    with open(path, "w") as file:
        write_hdr_log(finished, file)
    reader = HistogramLogReader(str(path), hist.new_histogram())
    total = hist.new_histogram()
    uncorrected = hist.new_histogram()
    try:
        while True:
            interval = reader.get_next_interval_histogram()
            if interval is None:
                break
            (uncorrected if interval.get_tag() == "uncorrected" else total).add(interval)
    finally:
        reader.close()
    assert total.get_total_count() == finished.counters.requests
    assert uncorrected.get_total_count() == finished.counters.requests
    assert total.encode() == finished.latency.encode()


def test_html_report_is_self_contained(finished: BenchResult) -> None:
    page = io.StringIO()
    write_html(finished, page)
    text = page.getvalue()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<svg") == 3
    assert "uncorrected" in text
    assert "<script" not in text
    assert "http-equiv" not in text
    assert "src=" not in text  # nothing loaded from elsewhere


def test_cli_json_and_files(server: TargetServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log, page = tmp_path / "x.hlog", tmp_path / "x.html"
    code = bench_main([f"{server.url}/", "-n", "50", "-c", "2", "--json", "--hdr-log", str(log), "--report", str(page)])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["requests"] == 50 == server.requests_served
    assert log.read_text().startswith("#[Logged with aiotcp")
    assert "<svg" in page.read_text()


def test_cli_text_report(server: TargetServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main([f"{server.url}/status/201", "-n", "30", "-c", "3", "-m", "head", "--engine", "h11"]) == 0
    out = capsys.readouterr().out
    assert "requests     30 in" in out
    assert "status       201: 30" in out
    assert "engine h11" in out
    assert "in flight    0 at the end" in out


def test_cli_exit_codes(refused: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main([f"http://127.0.0.1:{refused}/", "-n", "3", "-c", "1"]) == 1
    assert "error: refused: " in capsys.readouterr().err
    assert bench_main(["http://127.0.0.1:9/", "--pipeline", "2", "--no-keepalive"]) == 2
    assert "pipelining needs keep-alive" in capsys.readouterr().err
    assert bench_main(["ftp://127.0.0.1/"]) == 2
    assert "error: invalid_target: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc_info:
        bench_main(["http://127.0.0.1:9/", "-d", "soon"])
    assert exc_info.value.code == 2


def test_demo_bench(server: TargetServer) -> None:
    from rich.console import Console

    from aiotcp.cli.demo import demo_bench

    console = Console(file=io.StringIO(), width=120)
    assert demo_bench(console, server, seconds=0.5) == 0
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "requests/s" in output
    assert "requests served" in output


def test_a_name_is_resolved_once_per_run_and_reported(shared_server: TargetServer) -> None:
    zone = {"bench.test": [("CNAME", "origin.test", 60)], "origin.test": [("A", "127.0.0.1", 60)]}
    with zone_server(zone) as dns:
        url = f"http://bench.test:{shared_server.port}"
        result = bench(url, requests=20, connections=2, resolvers=(dns.address,))
        assert dns.asked("bench.test", "A") == 1
    assert result.counters.requests == 20
    document = to_json(result)["dns"]
    assert document["name"] == "bench.test"
    assert document["address"] == "127.0.0.1"
    assert (document["a"], document["cname"], document["resolver"]) == (["127.0.0.1"], ["origin.test"], dns.address)
    out = io.StringIO()
    write_text(result, out)
    assert f"dns          bench.test via origin.test -> 127.0.0.1, resolved once by {dns.address}" in out.getvalue()


def test_a_name_that_does_not_resolve_ends_the_bench_with_its_rcode(shared_server: TargetServer) -> None:
    with zone_server({}) as dns, pytest.raises(DNSError) as caught:
        bench("http://missing.test:1", requests=1, resolvers=(dns.address,))
    assert caught.value.rcode == "NXDOMAIN"
    assert caught.value.target == "http://missing.test:1/"
