"""aiotcp bench on Dask: a LocalCluster of two worker processes on loopback, each running one share of the
run from one agreed instant, their intervals streamed back and merged exactly; and a worker killed mid-run
is reported, its requests up to its last interval counted.

Every address here is on 127.0.0.0/8: the scheduler, the workers and their HTTP routes bind 127.0.0.1 and a
free port, without a dashboard; the target is the built-in server.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cli_runner import run_cli
from proxy_servers import pproxy

from aiotcp.bench import BenchConfig
from aiotcp.bench import histogram as hist
from aiotcp.bench.analysis import warnings
from aiotcp.bench.dask import run_bench_on_dask
from aiotcp.bench.report import to_json
from aiotcp.cli import main as aiotcp_main
from aiotcp.cluster import connect, parse_dask_target
from aiotcp.serve import TargetServer

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with connect(parse_dask_target("local:2")) as dask_client:
        yield dask_client


def test_local_2_merges_the_workers_exactly(client: Any, server: TargetServer) -> None:
    config = BenchConfig(server.url + "/", connections=6, duration=1.5, interval=0.25, timeout=5.0)
    result = run_bench_on_dask(config, client)
    workers = result.worker_results
    assert result.workers == 2
    assert [worker.index for worker in workers] == [0, 1]
    assert result.lost == []
    assert len({worker.where for worker in workers}) == 2  # two Dask workers, one share each
    assert all(worker.where.startswith("tcp://127.0.0.1:") for worker in workers)
    # One merged histogram, equal to the merge of the workers' own (which each built from its intervals,
    # while the run's came through the stream of intervals): nothing lost on the way, nothing counted twice.
    own = hist.merge(worker.latency for worker in workers)
    assert result.latency.encode() == own.encode()
    counters = result.counters
    assert counters.requests == sum(worker.counters.requests for worker in workers) > 0
    assert counters.requests == result.latency.get_total_count()
    assert counters.requests == sum(interval.requests for interval in result.intervals)
    assert counters.requests <= server.requests_served <= counters.requests + counters.in_flight
    assert counters.opened == server.connections_accepted == 6
    # The workers started together: each measured the same intervals, each about the run's length.
    assert all(abs(worker.duration_s - 1.5) < 0.5 for worker in workers)
    assert result.intervals[0].index == 0
    document = to_json(result)
    assert [(w["index"], w["state"]) for w in document["workers"]] == [(0, "finished"), (1, "finished")]
    assert document["where"].startswith("tcp://127.0.0.1:")


def test_local_2_splits_the_rate(client: Any, server: TargetServer) -> None:
    config = BenchConfig(server.url + "/", connections=4, duration=1.5, rate=200.0, interval=0.25)
    result = run_bench_on_dask(config, client)
    assert 0.8 * 200 <= result.rps <= 1.1 * 200
    shares = [worker.counters.requests for worker in result.worker_results]
    assert abs(shares[0] - shares[1]) <= 0.2 * max(shares)  # each worker sends its half of the schedule
    assert result.uncorrected is not None
    assert result.uncorrected.get_total_count() == result.counters.requests


def test_the_cli_runs_on_dask(server: TargetServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", server.url + "/", "-c", "4", "-d", "1s", "--dask", "local:2", "--json", "--no-progress"]
    assert aiotcp_main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["arguments"]["workers"] == 2
    assert len(document["workers"]) == 2
    assert document["requests"] == sum(worker["requests"] for worker in document["workers"])
    assert aiotcp_main(["bench", server.url + "/", "--dask", "local:2", "-w", "2"]) == 2
    assert "--workers and --dask" in capsys.readouterr().err


def test_the_cli_on_dask_through_a_proxy_prints_only_its_report(server: TargetServer) -> None:
    # Each worker opens its own tunnels (the plan carries the proxy); stderr stays empty: no log of the
    # scheduler's (which --dask local:W runs in the command's process), no traceback.
    with pproxy(auth="user:pass") as guarded:
        done = run_cli(
            *("bench", server.url + "/", "-c", "4", "-n", "400", "-x", guarded.url("socks5"), "--dask", "local:2"),
            *("--json", "--no-progress"),
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    document = json.loads(done.stdout)
    assert (document["requests"], document["status"], document["errors"]) == (400, {"200": 400}, {})
    assert [worker["requests"] for worker in document["workers"]] == [200, 200]
    assert document["arguments"]["proxy"] == f"socks5://127.0.0.1:{guarded.port}"


def _kill_a_worker(server: TargetServer, loaded_s: float) -> tuple[threading.Thread, list[int]]:
    """SIGKILL a worker process that holds a connection to ``server``, ``loaded_s`` seconds after the server
    answered its first request (the load has begun, and each worker has sent intervals)."""
    killed: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 60.0
        while server.requests_served == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(loaded_s)
        while time.monotonic() < deadline and not killed:
            for process in psutil.Process().children(recursive=True):
                try:
                    connections = process.net_connections(kind="tcp")
                except psutil.NoSuchProcess:
                    continue
                if any(c.raddr and c.raddr.port == server.port for c in connections):
                    os.kill(process.pid, signal.SIGKILL)
                    killed.append(process.pid)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, name="bench-worker-killer", daemon=True)
    thread.start()
    return thread, killed


def test_a_worker_killed_mid_run_is_reported_and_its_intervals_counted(server: TargetServer) -> None:
    with connect(parse_dask_target("local:2")) as dask_client:
        config = BenchConfig(server.url + "/", connections=4, duration=4.0, interval=0.25, timeout=2.0)
        thread, killed = _kill_a_worker(server, loaded_s=1.5)
        result = run_bench_on_dask(config, dask_client)
        thread.join(10)
    assert len(killed) == 1, "no worker was caught with a connection open"
    assert len(result.lost) == 1
    lost = result.lost[0]
    assert "left the cluster" in lost.reason
    assert lost.requests > 0  # it sent intervals before it died
    assert 0 < lost.until_s < 4.0
    assert [worker.index for worker in result.worker_results] == [1 - lost.index]
    survivor = result.worker_results[0]
    # Counted: the survivor's whole run and the lost worker's intervals, exactly those.
    assert result.counters.requests == survivor.counters.requests + lost.requests
    assert result.counters.requests == sum(interval.requests for interval in result.intervals)
    assert result.latency.get_total_count() == result.counters.requests
    assert result.counters.requests <= server.requests_served  # what it served after its last interval is lost
    said = warnings(result)
    assert any(f"worker {lost.index}" in warning and "was lost" in warning for warning in said)
    document = to_json(result)
    assert [w["state"] for w in document["workers"]].count("lost") == 1
