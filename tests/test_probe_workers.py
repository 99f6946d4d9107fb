"""``aiotcp probe --workers N``: processes on this machine, one output, the guarantees of a single process.

The command runs as it does for a user (a subprocess), against loopback servers started here.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aiotcp.probe import Job, sharding
from aiotcp.serve import SilentServer, TargetServer, running_in_thread, running_silent_in_thread
from aiotcp.targets import parse_spec

RUN_TIMEOUT_S = 60.0
UNTIMED = ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "time_ms", "timestamp")


def command(*args: str) -> list[str]:
    return [sys.executable, "-W", "error", "-m", "aiotcp", "probe", "-q", *args]


def probe(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        command(*args), input=stdin.encode() if stdin else None, capture_output=True, timeout=RUN_TIMEOUT_S
    )
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return done


def records(text: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.decode().splitlines()]


def normal(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((name, value) for name, value in record.items() if name not in UNTIMED)


@pytest.fixture
def server2() -> Iterator[TargetServer]:
    with running_in_thread("127.0.0.2") as server:
        yield server


@pytest.fixture
def targets(
    tmp_path: pathlib.Path, server: TargetServer, server2: TargetServer, silent_server: SilentServer, refused: int
) -> pathlib.Path:
    lines = ["# a list for two workers"]
    for i in range(60):
        lines.append(f"127.0.0.{1 + i % 2}:{(server, server2)[i % 2].port}")
        lines.append(f"127.0.0.1:{refused}")
        if i % 10 == 0:
            lines += [f"127.0.0.1:{silent_server.port}", f"not a target {i}", ""]
    lines += [f"127.0.0.0/30:{server.port}", f"{server.url}/status/503", f"localhost:{server2.port}"]
    path = tmp_path / "targets.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("order", ["completion", "input"])
def test_two_workers_write_the_records_of_one_process(targets: pathlib.Path, order: str) -> None:
    one = probe(str(targets), "-t", "1", "-c", "20", "--order", order)
    two = probe(str(targets), "-t", "1", "-c", "20", "--order", order, "--workers", "2")
    assert (one.returncode, two.returncode) == (0, 0), two.stderr.decode()
    single, split = records(one.stdout), records(two.stdout)
    assert sorted(map(normal, split)) == sorted(map(normal, single))
    assert len({(r["line"], r["input"], r["url"]) for r in split}) == len(split)  # each target once
    if order == "input":
        lines = [r["line"] for r in split]
        assert lines == sorted(lines)


def test_workers_read_stdin_and_combine_with_shards(targets: pathlib.Path) -> None:
    text = targets.read_text(encoding="utf-8")
    whole = records(probe("-", "-t", "1", stdin=text).stdout)
    parts = [records(probe("-", "-t", "1", "--shard", f"{i}/2", "-w", "2", stdin=text).stdout) for i in range(2)]
    assert sorted(map(normal, parts[0] + parts[1])) == sorted(map(normal, whole))
    assert parts[0]
    assert parts[1]


def test_a_jobs_records_reach_the_journal_in_a_row(targets: pathlib.Path, tmp_path: pathlib.Path) -> None:
    # With paths a job has several records; a worker sends them in one batch, so that the journal (which counts a
    # job done only once all its parts are on disk, in a row) gets them together whatever the other worker does.
    paths = ("--path", "/,/status/404,/bytes/10")
    journal = tmp_path / "journal.jsonl"
    one = probe(str(targets), "-t", "1", "-c", "20", *paths)
    two = probe(str(targets), "-t", "1", "-c", "20", *paths, "-w", "2", "--resume", str(journal))
    assert (one.returncode, two.returncode) == (0, 0), two.stderr.decode()
    assert sorted(map(normal, records(two.stdout))) == sorted(map(normal, records(one.stdout)))
    lines = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    runs: list[list[dict[str, Any]]] = []
    for line in lines:
        if runs and runs[-1][0]["seq"] == line["seq"]:
            runs[-1].append(line)
        else:
            runs.append([line])
    assert {len(run) for run in runs} >= {3}
    assert all(len(run) == run[0].get("parts", 1) for run in runs), [len(run) for run in runs]
    assert len({run[0]["seq"] for run in runs}) == len(runs)  # each job's records once, in one place
    again = probe(str(targets), "-t", "1", "-c", "20", *paths, "-w", "2", "--resume", str(journal))
    assert sorted(map(normal, records(again.stdout))) == sorted(map(normal, records(one.stdout)))


def test_the_summary_json_has_every_process(targets: pathlib.Path, tmp_path: pathlib.Path) -> None:
    summary = tmp_path / "summary.json"
    done = probe(str(targets), "-t", "1", "-c", "8", "-w", "2", "--summary-json", str(summary), "-o", os.devnull)
    assert done.returncode == 0, done.stderr.decode()
    figures = json.loads(summary.read_text())
    assert figures["schema"] == "aiotcp.probe-summary/1"
    assert figures["workers"] == 2
    assert figures["records"] == sum(figures["statuses"].values()) + sum(figures["errors"].values())
    assert figures["timeout_phases"] == {"timeout": {"read": 6}}
    load = figures["load"]
    assert (load["engine"], load["concurrency_requested"]) == ("lean", 8)
    assert 0 < load["concurrency_max"] <= 8
    assert set(load["loop_lag_ms"]) == {"p50", "p99", "max", "limit"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-w", "0"), "--workers"),
        (("-w", "two"), "--workers"),
        (("-w", "2", "--dask", "local:1"), "--workers and --dask"),
    ],
)
def test_bad_workers_are_usage_errors(targets: pathlib.Path, args: tuple[str, ...], message: str) -> None:
    done = probe(str(targets), *args)
    assert done.returncode == 2
    assert message in done.stderr.decode()
    assert done.stdout == b""


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes of ``pid`` (Linux: /proc)."""
    found = []
    for child in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = pathlib.Path(f"/proc/{child}/cmdline").read_bytes()
        if b"multiprocessing" in cmdline and b"spawn_main" in cmdline:
            found.append(int(child))
    return found


@pytest.fixture
def silent_in_both_shards() -> Iterator[list[str]]:
    """Silent targets whose keys fall in both shards of two: every target of one host and port goes to one
    worker, so a list with a single silent server would keep only one worker busy."""
    with contextlib.ExitStack() as stack:
        addresses: list[str] = []
        for _ in range(12):
            silent = stack.enter_context(running_silent_in_thread())
            addresses.append(f"127.0.0.1:{silent.port}")
            shards = {sharding.shard_of(Job(0, 1, a, parse_spec(a), parse_spec(a).port), 2) for a in addresses}
            if len(addresses) >= 2 and shards == {0, 1}:
                break
        assert shards == {0, 1}
        yield addresses


@pytest.mark.slow
@pytest.mark.skipif(not pathlib.Path("/proc/self/task").exists(), reason="needs /proc")
def test_a_worker_killed_mid_run_and_resume_give_each_target_once(
    tmp_path: pathlib.Path, server: TargetServer, silent_in_both_shards: list[str], refused: int
) -> None:
    silent = silent_in_both_shards
    lines = []
    for i in range(240):
        lines.append((f"127.0.0.1:{server.port}", f"127.0.0.1:{refused}", silent[i % len(silent)])[i % 3])
    path = tmp_path / "targets.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    journal, first, second = tmp_path / "run.journal", tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    # -t 3: the silent targets keep both workers busy for several seconds; the live and refused ones are
    # journaled in the first of them.
    args = (str(path), "-t", "3", "-c", "40", "-w", "2", "--resume", str(journal))

    run = subprocess.Popen(command(*args, "-o", str(first)), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:  # records journaled: the workers are at it
            workers = _workers_of(run.pid)
            if len(workers) == 2 and journal.exists() and journal.read_bytes().count(b"\n") > 1:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the workers did not get going")
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, stderr.decode()
    assert b"error: workers: worker " in stderr
    assert b"killed by signal 9" in stderr
    partial = records(first.read_bytes())
    assert 0 < len(partial) < len(lines)

    done = probe(*args, "-o", str(second))
    assert done.returncode == 0, done.stderr.decode()
    final = records(second.read_bytes())
    assert sorted(r["line"] for r in final) == list(range(1, len(lines) + 1))  # every target, once
    by_line = {r["line"]: r for r in final}
    for record in partial:  # what the first run wrote is what the journal gave back
        assert normal(by_line[record["line"]]) == normal(record)
    assert {r["error"] for r in final} == {None, "refused", "timeout"}
