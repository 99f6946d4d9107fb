"""aiotcp on Dask: a LocalCluster of two worker processes on loopback gives the records of a single-process
run, streams them as chunks finish, and still gives one record per target when a worker is killed mid-chunk
(also with ``--resume``).

Every address here is on 127.0.0.0/8: the scheduler, the workers and their HTTP routes bind 127.0.0.1 and a
free port, without a dashboard; the targets are the built-in server, refused ports and unparsable lines.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from aiotcp.cli import main
from aiotcp.probe import Job, ProbeOptions, ProbeResult, probe_many
from aiotcp.probe.dask import (
    DaskError,
    DaskProbeError,
    DaskTarget,
    chunk_time_limit,
    connect,
    local_cluster_options,
    parse_dask_target,
    probe_jobs_on_dask,
    probe_on_dask,
)
from aiotcp.probe.journal import Journal
from aiotcp.serve import SilentServer, TargetServer, refused_port, running_in_thread

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

TIMING = ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "time_ms", "timestamp")
CLUSTER_TIMEOUT = 30.0


def _options() -> ProbeOptions:
    return ProbeOptions(timeout=5)


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields that differ between two runs of the same probe."""
    return {name: value for name, value in record.items() if name not in TIMING}


def keyed(results: list[ProbeResult]) -> dict[int, dict[str, Any]]:
    """Records by ``seq``; fails on a second record for a target."""
    records: dict[int, dict[str, Any]] = {}
    for result in results:
        assert result.seq not in records, f"two records for seq {result.seq}"
        records[result.seq] = comparable(result.as_dict())
    return records


def run_local(lines: list[str], **options: Any) -> dict[int, dict[str, Any]]:
    async def collect() -> list[ProbeResult]:
        return [result async for result in probe_many(lines, **options)]

    return keyed(anyio.run(collect))


def run_dask(client: Any, lines: Any, *, backend: str = "asyncio", **kwargs: Any) -> list[ProbeResult]:
    async def collect() -> list[ProbeResult]:
        return [result async for result in probe_on_dask(client, lines, **kwargs)]

    return anyio.run(collect, backend=backend)


# -- the cluster ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(**local_cluster_options(2)) as local_cluster:
        yield local_cluster


@pytest.fixture(scope="module")
def module_client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster, timeout=CLUSTER_TIMEOUT) as client:
        yield client


@pytest.fixture
def client(module_client: Any) -> Any:
    """The cluster's client, once both workers are up (one may be restarting after the kill test)."""
    module_client.wait_for_workers(2, timeout=CLUSTER_TIMEOUT)
    return module_client


@pytest.fixture(scope="module")
def mixed_list() -> Iterator[list[str]]:
    """Live targets (200, 404, redirects, a slow one), a refused port, a range half on the server and half
    refused, a TLS handshake against plaintext, unparsable lines, comments and blank lines: 12 records a
    round, ten rounds."""
    with running_in_thread() as server, refused_port() as dead:
        live = f"127.0.0.1:{server.port}"
        round_ = [
            "# a comment, then a blank line",
            "",
            live,
            f"http://{live}/status/404",
            f"http://{live}/redirect/2",
            f"http://{live}/delay/20",
            f"http://{live}/bytes/10",
            f"127.0.0.1:{dead}",
            f"127.0.0.0/30:{server.port}",  # 127.0.0.1 answers, 127.0.0.2 refuses
            f"https://{live}/",
            "not a target!",
            "http://[::1/",
            f"{live}/path-without-scheme",
        ]
        yield round_ * 10


def test_cluster_listens_on_loopback_only(cluster: Any, client: Any) -> None:
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    listening = [
        conn.laddr
        for process in processes
        for conn in process.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 4  # scheduler, its HTTP routes, two nannies, two workers...
    assert all(address.ip == "127.0.0.1" for address in listening), listening
    assert all(worker.startswith("tcp://127.0.0.1:") for worker in client.nthreads())


# -- the same records as one process -------------------------------------------------------------------------


def test_records_equal_single_process(client: Any, mixed_list: list[str]) -> None:
    expected = run_local(mixed_list, timeout=5)
    with distributed.get_task_stream(client) as stream:
        results = run_dask(client, mixed_list, chunk_size=7, timeout=5)
    assert keyed(results) == expected
    assert len(expected) == 120
    chunk_workers = {task["worker"] for task in stream.data if "aiotcp-probe-" in str(task["key"])}
    assert len(chunk_workers) == 2, "both workers probed chunks"
    statuses = {record["status_code"] for record in expected.values()}
    errors = {record["error"] for record in expected.values()}
    assert {200, 302, 404} <= statuses
    assert {"refused", "invalid_target", "tls"} <= errors


def test_records_on_trio_and_in_input_order(client: Any, mixed_list: list[str]) -> None:
    expected = run_local(mixed_list, timeout=5)
    results = run_dask(client, mixed_list, backend="trio", chunk_size=5, timeout=5, order="input")
    assert [result.seq for result in results] == sorted(expected)
    assert keyed(results) == expected


def test_streams_without_reading_the_whole_input(client: Any) -> None:
    """Records come back while most of the input is unread: the client holds max_in_flight chunks."""
    with running_in_thread() as server:
        read = 0
        read_at_first_record: list[int] = []

        def lines() -> Iterator[str]:
            nonlocal read
            for i in range(400):
                read += 1
                yield f"http://127.0.0.1:{server.port}/?{i}"

        async def collect() -> int:
            count = 0
            async for _ in probe_on_dask(client, lines(), chunk_size=10, max_in_flight=2, timeout=5):
                if not read_at_first_record:
                    read_at_first_record.append(read)
                count += 1
            return count

        assert anyio.run(collect) == 400
        assert read_at_first_record[0] <= 3 * 10 + 1  # two chunks in flight, a third being cut


def test_skip_leaves_targets_out_before_shipping(client: Any, mixed_list: list[str]) -> None:
    expected = run_local(mixed_list, timeout=5)
    results = run_dask(client, mixed_list, chunk_size=8, timeout=5, skip=lambda seq: seq % 3 == 0)
    assert keyed(results) == {seq: record for seq, record in expected.items() if seq % 3 != 0}


def test_a_chunk_that_keeps_failing_raises(client: Any) -> None:
    broken = [Job(0, 1, "neither parsed nor invalid")]  # no spec and no preset record: the worker asserts

    async def collect() -> list[ProbeResult]:
        results = probe_jobs_on_dask(client, broken, _options(), retries=0)
        return [result async for result in results]

    with pytest.raises(DaskProbeError, match=r"chunk 0 \(1 targets, input lines 1-1\) failed .*AssertionError"):
        anyio.run(collect)


def test_a_chunk_with_no_result_long_past_its_time_is_stuck(client: Any, silent_server: SilentServer) -> None:
    # The chunk itself ends after its probe's 5 s deadline; told to give up on it after 0.5 s, the client
    # raises instead of waiting (what it does, later, for a chunk on a worker that hung).
    started = time.monotonic()
    with pytest.raises(DaskProbeError, match=r"chunk 0 \(1 targets, input lines 1-1\) is stuck"):
        run_dask(client, [f"127.0.0.1:{silent_server.port}"], timeout=5, stall_timeout=0.5)
    assert time.monotonic() - started < 4.5  # well before the probe's own deadline


def test_chunk_time_limit_is_the_longest_a_chunk_can_take() -> None:
    assert chunk_time_limit(ProbeOptions(concurrency=100, timeout=10), 1000) == 100  # 10 waves of 10 s
    assert chunk_time_limit(ProbeOptions(concurrency=100, timeout=10, per_host=4), 1000) == 2500  # one host
    assert chunk_time_limit(ProbeOptions(concurrency=100, timeout=10, rate=50), 1000) == 120  # + 20 s of rate


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"stall_timeout": 0}, "stall_timeout"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"concurrency": 0}, "concurrency"),
        ({"options": _options(), "timeout": 1}, "not both"),
    ],
)
def test_bad_arguments_raise_before_submitting(client: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_dask(client, ["127.0.0.1:1"], **kwargs)


def test_an_empty_list_gives_no_records(client: Any) -> None:
    assert run_dask(client, ["", "# nothing to probe"]) == []


def _aiotcp_tasks(client: Any) -> list[str]:
    def on_scheduler(dask_scheduler: Any) -> list[str]:
        return [str(key) for key in dask_scheduler.tasks if "aiotcp-probe-" in str(key)]

    tasks: list[str] = client.run_on_scheduler(on_scheduler)
    return tasks


def test_leaving_early_releases_the_chunks(client: Any) -> None:
    with running_in_thread() as server:
        lines = [f"http://127.0.0.1:{server.port}/delay/200?{i}" for i in range(200)]

        async def first_record() -> ProbeResult:
            async with aclosing(probe_on_dask(client, lines, chunk_size=10, concurrency=2, timeout=5)) as results:
                async for result in results:
                    return result
            raise AssertionError("no record")  # pragma: no cover

        assert anyio.run(first_record).status_code == 200
        deadline = time.monotonic() + 15.0
        while _aiotcp_tasks(client) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _aiotcp_tasks(client) == []
        assert server.connections_accepted < len(lines)


# -- a worker killed mid-chunk -------------------------------------------------------------------------------


def _kill_a_worker_mid_chunk(client: Any, server: TargetServer, after: int) -> Callable[[], int | None]:
    """Start a thread that SIGKILLs a worker process while it has a connection open to ``server`` (so its
    chunk is half done), once ``server`` has accepted ``after`` connections. Returns a join() that gives the
    killed pid (None if no worker was caught in time)."""
    pids: dict[str, int] = client.run(os.getpid)
    killed: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not killed:
            if server.connections_accepted >= after:
                for pid in pids.values():
                    try:
                        connections = psutil.Process(pid).net_connections(kind="tcp")
                    except psutil.NoSuchProcess:
                        continue
                    if any(
                        conn.raddr and conn.raddr.port == server.port and conn.status == psutil.CONN_ESTABLISHED
                        for conn in connections
                    ):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, name="worker-killer", daemon=True)
    thread.start()

    def join() -> int | None:
        thread.join(25.0)
        return killed[0] if killed else None

    return join


def test_worker_killed_mid_chunk_with_resume(client: Any, tmp_path: pathlib.Path) -> None:
    """A journal holds the first 4 records (a run that died); the rest is probed on Dask while a worker is
    killed mid-chunk. Its chunk runs again elsewhere, and the journal ends with every target exactly once."""
    with running_in_thread() as server:
        lines = [f"http://127.0.0.1:{server.port}/delay/300?{i}" for i in range(24)]
        expected = run_local(lines, timeout=10)
        accepted_before = server.connections_accepted
        path = str(tmp_path / "journal")
        key = {"input": "test", "ports": []}

        async def first_run() -> None:
            journal = Journal(path, key)
            async for result in probe_many(lines, timeout=10, skip=lambda seq: seq >= 4):
                journal.append(result.seq, result.as_dict())
            journal.close()

        anyio.run(first_run)
        journal = Journal(path, key)
        assert journal.recovered == 4
        join = _kill_a_worker_mid_chunk(client, server, after=accepted_before + 4 + 6)

        async def resumed_run() -> None:
            async for result in probe_on_dask(
                client, lines, chunk_size=4, concurrency=2, timeout=10, skip=journal.is_done
            ):
                journal.append(result.seq, result.as_dict())

        try:
            anyio.run(resumed_run)
        finally:
            journal.close()
        assert join() is not None, "no worker was caught mid-chunk"
        probed_now = server.connections_accepted - accepted_before
    assert probed_now > len(lines), "the killed worker's chunk was probed again"
    with open(path, encoding="utf-8") as file:
        file.readline()
        records = [json.loads(line) for line in file]
    seqs = [record.pop("seq") for record in records]
    assert sorted(seqs) == list(range(len(lines)))
    assert {seq: comparable(record) for seq, record in zip(seqs, records, strict=True)} == expected


# -- the command line ----------------------------------------------------------------------------------------


def _records(path: pathlib.Path) -> dict[int, dict[str, Any]]:
    """JSONL records by (line, input, url): the CLI's records carry no seq."""
    out: dict[Any, dict[str, Any]] = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        record = comparable(json.loads(text))
        key = (record["line"], record["port"], record["host"], record["url"], record["input"])
        assert key not in out, f"two records for {key}"
        out[key] = record
    return out


def test_cli_dask_matches_local_and_resumes(
    client: Any, cluster: Any, mixed_list: list[str], tmp_path: pathlib.Path
) -> None:
    targets = tmp_path / "targets.txt"
    port, dead = mixed_list[2].rpartition(":")[2], mixed_list[7].rpartition(":")[2]
    targets.write_text("\n".join([*mixed_list, "127.0.0.1"]) + "\n", encoding="utf-8")
    common = [str(targets), "-q", "-t", "5", "-p", f"{port},{dead}"]  # -p: for the line without a port
    assert main(["probe", *common, "-o", str(tmp_path / "local.jsonl")]) == 0
    expected = _records(tmp_path / "local.jsonl")
    assert len(expected) == 120 + 2

    address = cluster.scheduler_address
    assert main(["probe", *common, "--dask", address, "--chunk-size", "9", "-o", str(tmp_path / "d.jsonl")]) == 0
    assert _records(tmp_path / "d.jsonl") == expected

    # --resume: a journal cut short by a crash (header and 25 records), completed on the cluster.
    journal = tmp_path / "journal"
    assert main(["probe", *common, "--resume", str(journal), "-o", os.devnull]) == 0
    kept = journal.read_text(encoding="utf-8").splitlines(keepends=True)[: 1 + 25]
    journal.write_text("".join(kept), encoding="utf-8")
    out = tmp_path / "resumed.jsonl"
    resume = ["--resume", str(journal), "--dask", address, "--chunk-size", "9"]
    assert main(["probe", *common, *resume, "-o", str(out)]) == 0
    assert _records(out) == expected
    assert len(journal.read_text(encoding="utf-8").splitlines()) == 1 + len(expected)


def test_cli_dask_local_cluster(tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str]) -> None:
    with running_in_thread() as server:
        targets = tmp_path / "targets.txt"
        targets.write_text("".join(f"127.0.0.1:{server.port}\n" for _ in range(30)), encoding="utf-8")
        out = tmp_path / "out.jsonl"
        assert main(["probe", str(targets), "-o", str(out), "--dask", "local:1", "--chunk-size", "7"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(record["line"] for record in records) == list(range(1, 31))
    assert all(record["status_code"] == 200 for record in records)
    summary = capfd.readouterr().err.splitlines()  # the same table as a local run
    assert any("HTTP 200" in row and "30" in row for row in summary), summary
    assert any("total probed" in row and "30" in row for row in summary), summary


@pytest.mark.parametrize("value", ["local:0", "local:x", "local:", "tcp://a b"])
def test_cli_rejects_bad_dask_values(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", "-", "--dask", value])
    assert exit_info.value.code == 2
    assert "--dask" in capsys.readouterr().err


# -- pieces --------------------------------------------------------------------------------------------------


def test_parse_dask_target() -> None:
    assert parse_dask_target("local:3") == DaskTarget(workers=3)
    assert parse_dask_target("local") == DaskTarget(workers=os.cpu_count() or 1)
    assert parse_dask_target("tcp://192.0.2.5:8786") == DaskTarget(address="tcp://192.0.2.5:8786")
    assert str(parse_dask_target("local:2")) == "local:2"
    with pytest.raises(ValueError, match="not both"):
        DaskTarget(address="tcp://x:1", workers=1)
    with pytest.raises(ValueError, match="at least 1"):
        DaskTarget(workers=0)


def test_connect_to_nothing_fails_in_time() -> None:
    with refused_port() as port:
        started = time.monotonic()
        nowhere = DaskTarget(address=f"tcp://127.0.0.1:{port}")
        with pytest.raises(DaskError, match="cannot reach"), connect(nowhere, timeout=1):
            pass  # pragma: no cover
    assert time.monotonic() - started < 15


def test_aiotcp_imports_and_explains_without_dask(tmp_path: pathlib.Path) -> None:
    """The core install has no Dask: importing aiotcp (and the command) must not need it, and --dask says
    what to install."""
    script = """
import sys

class NoDask:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError(f"No module named {name!r} (hidden by the test)")
        return None

sys.meta_path.insert(0, NoDask())
import aiotcp, aiotcp.probe.dask, aiotcp.probe.sharding
from aiotcp.cli import main
assert "dask" not in sys.modules and "distributed" not in sys.modules
sys.exit(main(["probe", "-", "--dask", "local:1", "-q"]))
"""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'aiotcp[dask]'" in done.stderr
