"""Soak: a fan-out over 20,000 loopback targets, three rounds, in a child process with RLIMIT_NOFILE=256 and
concurrency 200 -- hangs, resets, trickles, huge heads, refused ports, answers and bad lines mixed.

The servers run here (threads, each on its own 127.0.x.y address); the prober runs in the child, which
reports per round: records out, lines seen once / twice / never, each record's kind against the kind its
target must give, the peak of open descriptors (sampled) and memory after the round (RSS and the number of
allocated blocks, after a collection). Checked: records out = lines in, no duplicate, no loss, every kind
as expected, no ``local`` (the limit fits), peak descriptors <= concurrency + a constant, memory flat from
the first round to the last, and the whole within the test timeout (no hang).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scripted_server import CloseAfterSending, ReadRequest, Reset, ScriptedServer, Send, Trickle, response

from aiotcp.serve import refused_port, running_in_thread, running_silent_in_thread

TARGETS = 20_000
ROUNDS = 3
CONCURRENCY = 200
NOFILE = 256
TIMEOUT = 1.0  # the per-target deadline: what a hang or a trickle costs
FD_SLACK = 32  # descriptors beyond one per probe: stdio, the event loop's own, the sampler
RUN_TIMEOUT_S = 55.0  # under the suite's 60 s per-test timeout

HUGE = b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"h" * (70 * 1024) + b"\r\n\r\n"
# One period of the mix: the kind each target class must give (ok: a response). Lines are dealt out in this
# order, round-robin, so every stretch of the input mixes every class.
MIX = [
    *["ok"] * 50,
    *["refused"] * 20,
    *["invalid_target"] * 10,
    *["reset"] * 8,
    *["too_large"] * 5,
    *["hang"] * 2,
    *["trickle"] * 2,
    *["ok2"] * 3,
]

CHILD = textwrap.dedent(
    """
    import collections, contextlib, gc, json, os, resource, sys, threading, time
    import anyio
    from aiotcp.probe import probe_many

    config = json.loads(sys.argv[1])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (config["nofile"], hard))
    MIX, where = config["mix"], config["where"]
    EXPECT = {"hang": "timeout", "trickle": "timeout", "ok": None, "ok2": None}

    def line(i):
        cls = MIX[i % len(MIX)]
        if cls == "invalid_target":
            return cls, f"127.0.0.1:{i % 7}0000{i}"  # a port out of range: a different bad line each time
        if cls == "refused":
            host, port = where["refused"][i % len(where["refused"])]
            return cls, f"{host}:{port}"
        host, port = where[cls]
        return cls, f"http://{host}:{port}/"

    def lines():  # a generator: the list itself never exists
        for i in range(config["targets"]):
            yield line(i)[1]

    peak = 0
    stop = threading.Event()

    def sample():
        global peak
        while not stop.wait(0.01):
            try:
                peak = max(peak, len(os.listdir("/proc/self/fd")) - 1)  # minus the listing's own
            except OSError:
                pass

    def rss_kib():
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    async def one_round():
        seen = bytearray(config["targets"])
        records = duplicates = 0
        kinds = collections.Counter()
        wrong = collections.Counter()
        examples = []
        options = dict(concurrency=config["concurrency"], timeout=config["timeout"], max_body=1024)
        async with contextlib.aclosing(probe_many(lines(), **options)) as results:
            async for record in results:
                records += 1
                index = record.line - 1
                if seen[index]:
                    duplicates += 1
                seen[index] = min(255, seen[index] + 1)
                kinds[record.error or "ok"] += 1
                cls = line(index)[0]
                expected = EXPECT.get(cls, cls)
                if record.error != expected or (expected is None and record.status_code != 200):
                    wrong[f"{cls}->{record.error}"] += 1
                    if len(examples) < 5:
                        examples.append([record.input, record.error, record.error_message])
        return {"records": records, "missing": seen.count(0), "duplicates": duplicates,
                "kinds": dict(kinds), "wrong": dict(wrong), "examples": examples}

    async def main():
        global peak
        rounds = []
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            for _ in range(config["rounds"]):
                peak = 0
                started = time.perf_counter()
                result = await one_round()
                result["seconds"] = round(time.perf_counter() - started, 2)
                result["peak_fds"] = peak
                gc.collect()
                result["rss_kib"] = rss_kib()
                result["blocks"] = sys.getallocatedblocks()
                rounds.append(result)
        finally:
            stop.set()
            sampler.join()
        print(json.dumps({"rounds": rounds, "fds_at_end": len(os.listdir("/proc/self/fd"))}))

    anyio.run(main, backend_options={"use_uvloop": config["uvloop"]})
    """
)


@contextlib.contextmanager
def servers() -> Iterator[dict[str, Any]]:
    """Every target class on an address of its own; refused ports spread over eight more."""
    with contextlib.ExitStack() as stack:
        where: dict[str, Any] = {}
        ok = stack.enter_context(running_in_thread("127.0.0.2"))
        ok2 = stack.enter_context(running_in_thread("127.0.1.2"))
        hang = stack.enter_context(running_silent_in_thread("127.0.0.3"))
        scripted = {
            "reset": ("127.0.0.4", [ReadRequest(), Reset()]),
            "too_large": ("127.0.0.6", [ReadRequest(), Send(HUGE), CloseAfterSending()]),
            "trickle": ("127.0.0.5", [ReadRequest(), Trickle(response(200, b"x" * 1000), bytes_per_second=10)]),
        }
        for cls, (host, script) in scripted.items():
            server = stack.enter_context(ScriptedServer(script, host=host, backlog=1024))
            where[cls] = (host, server.port)
        where["ok"], where["ok2"] = ("127.0.0.2", ok.port), ("127.0.1.2", ok2.port)
        where["hang"] = ("127.0.0.3", hang.port)
        refused_hosts = [f"127.0.8.{n}" for n in range(1, 9)]
        where["refused"] = [(host, stack.enter_context(refused_port(host))) for host in refused_hosts]
        yield where


@pytest.mark.slow
def test_soak_fan_out(reliability: Any) -> None:
    started = time.perf_counter()
    with servers() as where:
        config = {
            "targets": TARGETS,
            "rounds": ROUNDS,
            "concurrency": CONCURRENCY,
            "nofile": NOFILE,
            "timeout": TIMEOUT,
            "mix": MIX,
            "where": where,
            "uvloop": True,
        }
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", CHILD, json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    out = json.loads(done.stdout)
    rounds = out["rounds"]
    for result in rounds:
        assert result["records"] == TARGETS, result  # records out = lines in
        assert (result["missing"], result["duplicates"]) == (0, 0), result  # no loss, no duplicate
        assert result["wrong"] == {}, result  # every target gave its kind
        assert "local" not in result["kinds"], result
        assert result["peak_fds"] <= CONCURRENCY + FD_SLACK, result
    first, last = rounds[0], rounds[-1]
    assert last["blocks"] <= first["blocks"] * 1.05 + 2_000, rounds  # memory flat between rounds
    assert last["rss_kib"] <= first["rss_kib"] * 1.10 + 4_096, rounds
    reliability.soak = {
        "targets": f"{ROUNDS}x{TARGETS:,}",
        "records": sum(result["records"] for result in rounds),
        "lost": sum(result["missing"] for result in rounds),
        "duplicated": sum(result["duplicates"] for result in rounds),
        "wall": f"{wall:.1f} s",
        "rounds": "/".join(f"{result['seconds']:.1f}" for result in rounds) + " s",
        "peak fds": f"{max(result['peak_fds'] for result in rounds)} (concurrency {CONCURRENCY}, limit {NOFILE})",
        "rss": "/".join(f"{result['rss_kib'] / 1024:.1f}" for result in rounds) + " MiB",
        "allocated blocks": "/".join(f"{result['blocks']:,}" for result in rounds),
    }
