"""aiotcp bench for real workloads: request mixes, stages, thresholds, the self-check and ``compare``, against
real loopback servers on port 0 (the built-in one, and a counting server that answers any method).

No timed performance assertions: the stage test checks that a modest ramp holds each stage's rate within a
wide tolerance (the schedule, not speed), and ``compare`` is asked about a 5 ms delay, far above any noise.
"""

from __future__ import annotations

import io
import json
import math
import pathlib
import re
from collections import Counter
from typing import Any

import pytest
from counting_server import counting_server

from aiotcp.bench import BenchConfig, BenchResult, run_bench
from aiotcp.bench import histogram as hist
from aiotcp.bench.analysis import endpoint_stats, self_check, stage_stats, threshold_outcomes, warnings
from aiotcp.bench.compare import compare_runs, run_from_document
from aiotcp.bench.config import available_engines
from aiotcp.bench.mix import Endpoint, Picker, parse_urls
from aiotcp.bench.report import to_json, write_html, write_text
from aiotcp.bench.results import Counters, WorkerResult
from aiotcp.bench.stages import ConnectionRamp, RateRamp, Stage, parse_stages
from aiotcp.bench.thresholds import parse_threshold
from aiotcp.bench.workers import Merger, merge_results
from aiotcp.cli import main as aiotcp_main
from aiotcp.serve import TargetServer

pytest.importorskip("hdrh")

ENGINES = available_engines()


def bench(url: str, **options: Any) -> BenchResult:
    options.setdefault("connections", 4)
    options.setdefault("timeout", 5.0)
    if "requests" in options:
        options.setdefault("duration", 30.0)  # a cap: -n runs finish long before it
    return run_bench(BenchConfig(url, **options))


def assert_accounted(result: BenchResult) -> None:
    counters = result.counters
    assert counters.requests + counters.error_count + counters.in_flight == counters.attempts
    assert sum(counters.status.values()) == counters.requests
    assert result.latency.get_total_count() == counters.requests
    assert sum(sparse.total for sparse in result.keys.values()) == counters.requests


# -- the mix: parsing and picking -----------------------------------------------------------------------------


URLS = """\
# a comment, then a blank line

http://127.0.0.1:9/ 3
HEAD /head
post /items 2
DELETE http://127.0.0.1:9/items/{seq}
/search?q={rand:5-7}
"""


def test_urls_file_takes_methods_weights_paths_and_templates() -> None:
    endpoints = parse_urls(URLS, base="http://127.0.0.1:9/", method="GET")
    assert [(e.method, e.url, e.weight, e.line) for e in endpoints] == [
        ("GET", "http://127.0.0.1:9/", 3.0, 3),
        ("HEAD", "http://127.0.0.1:9/head", 1.0, 4),
        ("POST", "http://127.0.0.1:9/items", 2.0, 5),
        ("DELETE", "http://127.0.0.1:9/items/{seq}", 1.0, 6),
        ("GET", "http://127.0.0.1:9/search?q={rand:5-7}", 1.0, 7),
    ]
    assert [endpoint.templated for endpoint in endpoints] == [False, False, False, True, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/a\n", " line 1: a path ('/a') needs a URL on the command line"),
        ("http://127.0.0.1:9/ x\n", " line 1: not a weight: 'x'"),
        ("GET http://127.0.0.1:9/ 1 2\n", " line 1: write [METHOD] URL [WEIGHT]"),
        ("\n# nothing\n", ": no URL in the file"),
        ("http://127.0.0.1:9/ -1\n", " line 1: a weight must be a positive number"),
    ],
)
def test_urls_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"--urls f.txt{message}")):
        parse_urls(text, base=None, method="GET", source="--urls f.txt")


def test_endpoints_must_share_the_origin_every_connection_goes_to() -> None:
    from aiotcp.errors import InvalidTarget

    other = (Endpoint("GET", "http://127.0.0.2:9/"),)
    with pytest.raises(InvalidTarget, match=re.escape("every URL must be on http://127.0.0.1:9,")):
        BenchConfig("http://127.0.0.1:9/", endpoints=other)


def test_config_rejects_what_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="a body goes with methods other than GET and HEAD"):
        BenchConfig("http://127.0.0.1:9/", bodies=(b"x",))
    mixed = (Endpoint("GET", "http://127.0.0.1:9/"), Endpoint("HEAD", "http://127.0.0.1:9/"))
    with pytest.raises(ValueError, match="a mix of HEAD and other methods needs --pipeline 1"):
        BenchConfig("http://127.0.0.1:9/", endpoints=mixed, pipeline=2)
    BenchConfig("http://127.0.0.1:9/", endpoints=mixed, pipeline=2, engine="h11")  # h11 frames them itself
    with pytest.raises(ValueError, match="method must be an HTTP method"):
        BenchConfig("http://127.0.0.1:9/", method="GE T")


def _picker(order: str, **options: Any) -> Picker:
    endpoints = parse_urls(URLS, base="http://127.0.0.1:9/", method="GET")
    config = BenchConfig("http://127.0.0.1:9/", endpoints=endpoints, order=order, **options)  # type: ignore[arg-type]
    picker = config.plans()[0].picker()
    assert picker is not None
    return picker


def test_sequential_order_walks_the_file_and_templates_fill_in() -> None:
    picker = _picker("sequential", bodies=(b"one", b"two"))
    picked = [picker.next() for _ in range(10)]
    assert [index for index, _ in picked] == [0, 1, 2, 3, 4] * 2
    requests = [request for _, request in picked]
    assert requests[0].startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    assert requests[1].startswith(b"HEAD /head HTTP/1.1\r\n")
    assert requests[2].startswith(b"POST /items HTTP/1.1\r\n")
    assert requests[2].endswith(b"Content-Length: 3\r\n\r\none")  # bodies go to POST and DELETE, in turn
    assert requests[3].startswith(b"DELETE /items/0 HTTP/1.1\r\n")
    assert requests[3].endswith(b"Content-Length: 3\r\n\r\ntwo")
    assert requests[8].startswith(b"DELETE /items/1 HTTP/1.1\r\n")
    assert requests[7].endswith(b"\r\n\r\none")
    for request in (requests[4], requests[9]):
        assert request.split(b" ")[1] in (b"/search?q=5", b"/search?q=6", b"/search?q=7")
    assert picker.written_until(10) == sum(len(request) for request in requests)


def test_seq_is_unique_across_workers() -> None:
    config = BenchConfig(
        "http://127.0.0.1:9/",
        endpoints=(Endpoint("GET", "http://127.0.0.1:9/item/{seq}"),),
        workers=3,
        connections=3,
    )
    seen = []
    for plan in config.plans():
        picker = plan.picker()
        assert picker is not None
        seen += [picker.next()[1].split(b" ")[1] for _ in range(50)]
    assert len(set(seen)) == 150
    assert set(seen) == {b"/item/%d" % number for number in range(150)}


def test_weighted_order_follows_the_weights_and_random_ignores_them() -> None:
    picker = _picker("weighted")
    weighted = Counter(picker.next()[0] for _ in range(16384))
    assert weighted[0] / weighted[1] == pytest.approx(3.0, rel=0.1)
    assert weighted[2] / weighted[1] == pytest.approx(2.0, rel=0.1)
    picker = _picker("random")
    uniform = Counter(picker.next()[0] for _ in range(16384))
    assert max(uniform.values()) / min(uniform.values()) < 1.2


def test_the_fast_picker_counts_the_bytes_it_picked() -> None:
    endpoints = tuple(Endpoint("GET", f"http://127.0.0.1:9/{'x' * n}") for n in range(7))
    picker = BenchConfig("http://127.0.0.1:9/", endpoints=endpoints).plans()[0].picker()
    assert picker is not None
    picked = [picker.next()[1] for _ in range(40000)]  # more than one walk of its table
    for count in (0, 1, 777, 16384, 40000):
        assert picker.written_until(count) == sum(len(request) for request in picked[:count])


# -- counts per URL and per method against the server's own ----------------------------------------------------


MIX = """\
GET /a 4
HEAD /b 2
POST /c 3
PUT /d/{seq}
DELETE /e?n={rand:1-3}
"""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workers", [1, 2])
def test_counts_per_url_and_method_match_the_server(engine: str, workers: int, tmp_path: pathlib.Path) -> None:
    bodies = (b"alpha", b"be", b"gamma-gamma")
    with counting_server() as server:
        endpoints = parse_urls(MIX, base=server.url, method="GET")
        result = bench(
            server.url,
            endpoints=endpoints,
            bodies=bodies,
            requests=600,
            engine=engine,
            workers=workers,
            order="weighted",
        )
        served = Counter(server.requests)
        body_bytes = Counter(server.body_bytes)
        assert server.protocol_errors == []
    counters = result.counters
    assert counters.requests == counters.attempts == 600
    assert counters.errors == {}
    assert_accounted(result)
    ours: Counter[tuple[str, str]] = Counter()
    by_method: Counter[str] = Counter()
    for stats in endpoint_stats(result):
        assert stats.status == ({200: stats.requests} if stats.requests else {})
        assert stats.histogram.get_total_count() == stats.requests
        by_method[stats.endpoint.method] += stats.requests
        ours[(stats.endpoint.method, stats.endpoint.url)] += stats.requests
    assert sum(ours.values()) == sum(served.values()) == 600
    theirs_by_method: Counter[str] = Counter()
    for (method, _), count in served.items():
        theirs_by_method[method] += count
    assert by_method == theirs_by_method
    # Fixed paths match one to one; the templated ones are many paths on the server's side.
    for method, path in (("GET", "/a"), ("HEAD", "/b"), ("POST", "/c")):
        assert ours[(method, server.url + path)] == served[(method, path)]
    assert ours[("PUT", server.url + "/d/{seq}")] == sum(n for (m, p), n in served.items() if p.startswith("/d/"))
    assert len([p for m, p in served if m == "PUT"]) == ours[("PUT", server.url + "/d/{seq}")]  # {seq}: unique
    assert {p for m, p in served if m == "DELETE"} <= {"/e?n=1", "/e?n=2", "/e?n=3"}
    # Every body went out whole: the server read as many bytes as were sent with its requests.
    with_body = by_method["POST"] + by_method["PUT"] + by_method["DELETE"]
    assert sum(body_bytes.values()) > 0
    assert sum(body_bytes.values()) <= with_body * max(len(body) for body in bodies)
    assert body_bytes["GET"] == body_bytes["HEAD"] == 0
    assert counters.bytes_written > 600 * 60  # every request line and its headers


def test_the_cli_reads_urls_and_body_lines(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("GET /x\nPOST /y\n")
    lines = tmp_path / "bodies.txt"
    lines.write_text("first\nsecond\n\nthird\n")
    with counting_server() as server:
        argv = ["bench", server.url, "--urls", str(urls), "--body-lines", str(lines), "-n", "100", "-c", "2"]
        code = aiotcp_main([*argv, "--order", "sequential", "--json", "--no-progress"])
        served = Counter(server.requests)
        body_bytes = Counter(server.body_bytes)
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert served == {("GET", "/x"): 50, ("POST", "/y"): 50}
    assert body_bytes["POST"] == 50 // 3 * 16 + len("first") + len("second")  # 50 bodies of the 3 lines, in turn
    assert [(e["method"], e["requests"]) for e in document["endpoints"]] == [("GET", 50), ("POST", 50)]
    assert document["arguments"]["endpoints"][1] == {"method": "POST", "url": server.url + "/y", "weight": 1.0}


# -- stages --------------------------------------------------------------------------------------------------


def test_stages_parse_and_ramp() -> None:
    stages = parse_stages("10s:1000,30s:5000, 500ms:0")
    assert stages == (Stage(10.0, 1000.0), Stage(30.0, 5000.0), Stage(0.5, 0.0))
    for text, message in (("10s", "not a stage"), ("0s:10", "last no time"), ("10x:5", "not a stage")):
        with pytest.raises(ValueError, match=message):
            parse_stages(text)
    with pytest.raises(ValueError, match="whole number of connections"):
        parse_stages("1s:2.5", integer=True)
    ramp = RateRamp((Stage(2.0, 100.0), Stage(2.0, 100.0), Stage(0.0, 300.0), Stage(1.0, 300.0)))
    assert ramp.total == pytest.approx(100 + 200 + 300)
    assert ramp.value_at(1.0) == pytest.approx(50.0)
    assert ramp.value_at(4.5) == pytest.approx(300.0)
    # N(t) is the integral of the rate: the k-th request is due when k requests were due before it.
    for k in (0, 1, 50, 99, 100, 150, 299, 300, 450, 599):
        t = ramp.due(k)
        due_before = sum(ramp.value_at(i / 10000) / 10000 for i in range(int(t * 10000)))
        assert due_before == pytest.approx(k, abs=1.0)
    assert ramp.due(600) == math.inf
    flat = RateRamp((Stage(0.0, 200.0), Stage(5.0, 200.0)))
    assert [flat.due(k) for k in (0, 1, 7)] == pytest.approx([0.0, 0.005, 0.035])  # wrk2's k / rate


def test_connection_ramp_deals_slots_to_workers_in_turn() -> None:
    ramp = ConnectionRamp((Stage(1.0, 10.0), Stage(1.0, 0.0)))
    assert [ramp.count_at(t) for t in (0.0, 0.5, 1.0, 1.5, 2.0)] == [0, 5, 10, 5, 0]
    shares = [ConnectionRamp.local_count(5, worker, 3, 4) for worker in range(3)]
    assert shares == [2, 2, 1]
    assert sum(ConnectionRamp.local_count(10, worker, 3, 4) for worker in range(3)) == 10


@pytest.mark.parametrize("engine", ENGINES)
def test_a_rate_ramp_holds_each_stage_rate(server: TargetServer, engine: str) -> None:
    stages = (Stage(0.0, 100.0), Stage(1.0, 100.0), Stage(0.0, 300.0), Stage(1.0, 300.0))
    result = bench(server.url + "/", rate_stages=stages, connections=6, interval=0.25, engine=engine)
    assert result.config.duration == 2.0
    measured = stage_stats(result)
    # Zero-length stages (the jumps) measure nothing; the two plateaus hold their rates (the schedule is absolute).
    assert [stage.requests for stage in measured][0::2] == [0, 0]
    assert 0.8 * 100 <= measured[1].rps <= 1.2 * 100
    assert 0.8 * 300 <= measured[3].rps <= 1.2 * 300
    assert all(interval.stage in (1, 3) for interval in result.intervals)
    assert sum(stage.requests for stage in measured) == result.counters.requests
    assert_accounted(result)
    document = to_json(result)
    assert [stage["target_to"] for stage in document["stages"]] == [100.0, 100.0, 300.0, 300.0]
    assert document["arguments"]["stages"]["of"] == "rate"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_connection_ramp_opens_and_retires_connections(server: TargetServer, engine: str) -> None:
    stages = (Stage(0.0, 2.0), Stage(0.6, 2.0), Stage(0.0, 5.0), Stage(0.6, 5.0), Stage(0.0, 1.0), Stage(0.6, 1.0))
    result = bench(server.url + "/delay/20", connection_stages=stages, interval=0.2, engine=engine)
    counters = result.counters
    assert result.config.connections == 5
    assert counters.errors == {}
    assert counters.opened == server.connections_accepted == 5  # 2, then 3 more; retired ones are not reopened
    assert counters.closed_by_peer == 0  # we closed the retired ones, the server did not
    measured = stage_stats(result)
    # Each connection does about one request per 20 ms: the stage rates follow the connections (2, 5, 1).
    assert measured[3].rps > 1.5 * measured[1].rps
    assert measured[5].rps < 0.6 * measured[3].rps
    assert_accounted(result)


# -- thresholds ---------------------------------------------------------------------------------------------


def test_thresholds_parse_with_their_units() -> None:
    assert parse_threshold("p99<20ms").limit == 20.0
    assert parse_threshold("p99.9 <= 1.5s").limit == 1500.0
    assert parse_threshold("p99_9<800us").metric == "p99.9"
    assert parse_threshold("max<3").limit == 3.0
    errors = parse_threshold("errors<0.1%")
    assert (errors.metric, errors.limit, errors.percent) == ("errors", 0.1, True)
    assert parse_threshold("errors<10").percent is False
    assert parse_threshold("rps>10000").op == ">"
    for text in ("p99", "p99<", "p101<1ms", "rps>5ms", "errors<5ms", "p99<5%", "latency<1ms", "p0<1ms"):
        with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
            parse_threshold(text)


def test_a_breached_threshold_exits_3_and_a_met_one_0(
    server: TargetServer, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    base = [f"{server.url}/", "-n", "200", "-c", "2", "--no-progress"]
    assert aiotcp_main(["bench", *base, "--threshold", "p99<10s", "--threshold", "errors<1%"]) == 0
    out = capsys.readouterr().out
    assert "thresholds   p99<10s over the run: " in out
    assert "errors<1% over the run: 0%, met" in out
    assert aiotcp_main(["bench", *base, "--threshold", "p99<10s", "--threshold", "rps>100000000", "--json"]) == 3
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["thresholds_breached"] == 1
    assert [(t["threshold"], t["ok"]) for t in document["thresholds"]] == [("p99<10s", True), ("rps>100000000", False)]
    assert "error: threshold rps>100000000 breached over the run" in captured.err
    assert aiotcp_main(["bench", *base, "--threshold", "max<1us"]) == 3
    assert "max<1us over the run: " in capsys.readouterr().out


def test_a_malformed_threshold_is_a_usage_error_before_any_load(
    server: TargetServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for threshold in ("p99<<1ms", "p99<1parsec", "speed>1"):
        with pytest.raises(SystemExit) as exited:
            aiotcp_main(["bench", f"{server.url}/", "-n", "10", "--threshold", threshold])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: usage: argument --threshold: not a threshold")
        assert err.count("\n") == 1
    assert aiotcp_main(["bench", f"{server.url}/", "-d", "1s", "--threshold-per-stage"]) == 2
    assert "--threshold-per-stage needs --stages" in capsys.readouterr().err
    assert server.requests_served == 0


def test_thresholds_per_stage(server: TargetServer) -> None:
    stages = (Stage(0.0, 50.0), Stage(0.6, 50.0), Stage(0.0, 150.0), Stage(0.6, 150.0))
    config = BenchConfig(
        server.url + "/",
        rate_stages=stages,
        connections=4,
        interval=0.2,
        thresholds=(parse_threshold("rps>90"),),
        threshold_per_stage=True,
    )
    outcomes = threshold_outcomes(run_bench(config))
    assert [outcome.stage for outcome in outcomes] == [0, 1, 2, 3]
    assert [outcome.ok for outcome in outcomes] == [False, False, False, True]  # only the 150/s plateau


# -- the self-check -------------------------------------------------------------------------------------------


def test_the_self_check_is_in_the_json(server: TargetServer) -> None:
    result = bench(server.url + "/delay/2", rate=200.0, duration=1.0, connections=2)
    check = to_json(result)["self_check"]
    assert set(check["loop_lag_ms"]) == {"p50", "p90", "p99", "max"}
    assert check["loop_lag_ms"]["p50"] is not None
    assert check["cpu_s"] > 0
    assert check["cpu_us_per_request"] > 0
    late = check["late_sends"]
    assert late["threshold_ms"] == 1.0
    assert late["sends"] == result.counters.attempts
    assert 0 <= late["count"] <= late["sends"]
    assert to_json(bench(server.url + "/", requests=50))["self_check"]["late_sends"] is None  # closed loop


def _worker_result(cpu_s: float, duration_s: float, lag_us: int) -> WorkerResult:
    lag = hist.new_histogram()
    for _ in range(100):
        lag.record_value(lag_us)
    counters = Counters(attempts=1000, requests=1000, status={200: 1000})
    return WorkerResult(0, counters, "", None, duration_s, 0, "uvloop", "httptools", cpu_s, hist.encode(lag))


@pytest.mark.parametrize(
    ("cpu_s", "lag_us", "limited"),
    [(0.3, 200, []), (0.97, 200, ["used 97% of a CPU core"]), (0.3, 25_000, ["event loop ran 25.0 ms late"])],
)
def test_a_generator_that_limited_the_run_is_said_so(cpu_s: float, lag_us: int, limited: list[str]) -> None:
    config = BenchConfig("http://127.0.0.1:9/", duration=1.0)
    merger = Merger(1, None)
    result = merge_results(config, [_worker_result(cpu_s, 1.0, lag_us)], merger, 0.0, False)
    check = self_check(result)
    assert check.cpu_us_per_request == pytest.approx(cpu_s / 1000 * 1e6)
    assert len(check.limited_by) == len(limited)
    for reason, expected in zip(check.limited_by, limited, strict=True):
        assert expected in reason
    said = [warning for warning in warnings(result) if "load generator" in warning]
    assert bool(said) == bool(limited)
    text, page = io.StringIO(), io.StringIO()
    write_text(result, text)
    write_html(result, page)
    document = to_json(result)
    assert document["self_check"]["generator_limited"] == bool(limited)
    for output in (text.getvalue(), page.getvalue(), json.dumps(document["warnings"])):
        assert ("the load generator, not the server, may have limited this run" in output) == bool(limited)
    # Under a second, a run is mostly its start: nothing is judged.
    short = merge_results(config, [_worker_result(cpu_s * 0.5, 0.5, lag_us)], Merger(1, None), 0.0, False)
    assert self_check(short).limited_by == []


# -- the JSON keeps every interval's histogram, as HdrHistogram tools read it ---------------------------------


def test_interval_histograms_add_up_to_the_run(shared_server: TargetServer) -> None:
    result = bench(shared_server.url + "/", duration=1.0, interval=0.2)
    document = json.loads(json.dumps(to_json(result)))
    assert document["schema"] == "aiotcp.bench/2"
    total = hist.new_histogram()
    for record in document["intervals"]:
        interval = hist.decode(record["histogram"])
        assert interval.get_total_count() == record["requests"]
        total.add(interval)
    assert total.encode() == hist.decode(document["histogram"]).encode() == result.latency.encode()
    assert document["status_classes"]["2xx"]["requests"] == result.counters.requests


# -- compare ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(
    tmp_path_factory: pytest.TempPathFactory, shared_server: TargetServer
) -> tuple[pathlib.Path, pathlib.Path]:
    """A run against ``/`` and one against ``/delay/5`` (5 ms more per response), as JSON files."""
    directory = tmp_path_factory.mktemp("compare")
    paths = []
    for name, path in (("fast", "/"), ("slow", "/delay/5")):
        result = bench(shared_server.url + path, duration=1.2, interval=0.1, connections=4)
        file = directory / f"{name}.json"
        file.write_text(json.dumps(to_json(result)))
        paths.append(file)
    return paths[0], paths[1]


def _load(path: pathlib.Path) -> Any:
    return run_from_document(json.loads(path.read_text()), path.name)


def test_compare_of_a_run_with_itself_says_no_difference(two_runs: tuple[pathlib.Path, pathlib.Path]) -> None:
    fast = _load(two_runs[0])
    comparison = compare_runs(fast, fast)
    assert comparison.verdict == "no difference"
    for delta in comparison.deltas:
        assert delta.verdict == "no difference"
        assert delta.change in (0.0, None)


def test_compare_with_a_5ms_delay_says_worse(two_runs: tuple[pathlib.Path, pathlib.Path]) -> None:
    fast, slow = _load(two_runs[0]), _load(two_runs[1])
    comparison = compare_runs(fast, slow)
    assert comparison.verdict == "worse"
    by_metric = {delta.metric: delta for delta in comparison.deltas}
    assert by_metric["p50"].verdict == "worse"
    assert by_metric["p50"].b - by_metric["p50"].a >= 4.5  # type: ignore[operator]
    assert by_metric["p50"].low is not None
    assert by_metric["p50"].low > 0.5  # the whole interval is far above the noise
    assert by_metric["rps"].verdict == "worse"  # 4 connections, 5 ms each: far fewer requests/s
    assert compare_runs(slow, fast).verdict == "better"


def test_compare_command_fails_if_worse_and_draws_both_runs(
    two_runs: tuple[pathlib.Path, pathlib.Path], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fast, slow = (str(path) for path in two_runs)
    page = tmp_path / "compare.html"
    assert aiotcp_main(["bench", "compare", fast, fast, "--fail-if-worse", "5"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "verdict: no difference"
    assert aiotcp_main(["bench", "compare", fast, slow, "--fail-if-worse", "5%", "--report", str(page)]) == 3
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("verdict: worse (p50 +")
    assert aiotcp_main(["bench", "compare", fast, slow]) == 0  # no --fail-if-worse: a report, not a gate
    capsys.readouterr()
    assert aiotcp_main(["bench", "compare", fast, slow, "--json", "--fail-if-worse", "1000000"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "worse"
    assert document["worse_by_pct"] > 100
    text = page.read_text()
    assert text.count("<svg") == 3
    percentile = text[text.index("<svg") : text.index("</svg>")]
    assert percentile.count("<path") == 2  # both runs' curves on one plot
    assert "A: fast.json" in percentile
    assert "B: slow.json" in percentile


def test_compare_refuses_what_it_cannot_compare(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "aiotcp.bench/1", "intervals": []}))
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    for argv, message in (
        ([str(old), str(old)], "schema aiotcp.bench/1 keeps no interval histograms"),
        ([str(junk), str(old)], "not JSON"),
        ([str(tmp_path / "missing.json"), str(old)], "cannot read"),
    ):
        assert aiotcp_main(["bench", "compare", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert err.count("\n") == 1
    for argv, message in (
        ([str(old)], "the following arguments are required"),
        ([str(old), str(old), "--fail-if-worse", "x"], "not a percentage"),
    ):
        with pytest.raises(SystemExit) as exited:
            aiotcp_main(["bench", "compare", *argv])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert message in err
        assert err.count("\n") == 1


def test_random_orders_are_reproducible_with_a_seed() -> None:
    first = _picker("weighted", seed=5)
    second = _picker("weighted", seed=5)
    other = _picker("weighted", seed=6)
    draws = [first.next()[0] for _ in range(200)]
    assert draws == [second.next()[0] for _ in range(200)]
    assert draws != [other.next()[0] for _ in range(200)]


def test_the_text_report_fits_120_columns(tmp_path: pathlib.Path) -> None:
    # The longest header: stages, pipelining, bodies in turn, several workers, an endpoint table.
    endpoints = tuple(Endpoint("POST", f"http://127.0.0.1:9/{'segment/' * 12}{index}") for index in range(3))
    config = BenchConfig(
        "http://127.0.0.1:9/",
        endpoints=endpoints,
        bodies=(b"a", b"b", b"c"),
        rate_stages=(Stage(10.0, 1000.0), Stage(30.0, 5000.0), Stage(10.0, 0.0), Stage(5.0, 12345.0)),
        connections=1000,
        workers=16,
        pipeline=4,
        thresholds=(parse_threshold("p99.9<50ms"), parse_threshold("errors<0.1%")),
    )
    lost = merge_results(config, [], Merger(16, None), 0.0, False)
    out = io.StringIO()
    write_text(lost, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "aiotcp bench 3 endpoints on http://127.0.0.1:9 (weighted order)"
    assert lines[1].startswith("  stages 10s:1000,30s:5000,10s:0,5s:12345 (rate), 1000 connections, open loop,")
    assert all(len(line) <= 120 for line in lines), [line for line in lines if len(line) > 120]
