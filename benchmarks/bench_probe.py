"""Probe throughput and memory on loopback: the workload of the probe issue, reproducible in one command.

    python benchmarks/bench_probe.py                 # 10,000 targets, 1 s timeout, 100 in flight
    python benchmarks/bench_probe.py --lines 1000000 --silent 0 --concurrency 200   # memory: 1M lines
    python benchmarks/bench_probe.py --baseline     # also a bare asyncio Protocol prober, for scale
    python benchmarks/bench_probe.py --probe-args=--no-facts   # without fingerprints (the cost of the facts)

The baseline does only what any prober must (connect, send ``GET /``, parse the status line with httptools,
close; refused and timed-out targets counted) with none of aiotcp's records, error mapping or limits: the
floor that the Python runtime and the event loop set on this machine.

The list: 60 % live targets spread over 50 hosts 127.0.0.1-127.0.0.50 (one built-in server per address, all
in one separate process, so the prober does not share a core's GIL with them), 39 % refused (127.0.2.x,
nothing listening) and 1 % silent (127.0.3.1, accepts and never answers). The prober runs as
``aiotcp probe`` in its own process; wall time and peak RSS are measured from outside (wait4's rusage).

Traffic stays on 127.0.0.0/8. Every run is bounded by the list length and the per-target timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any

LIVE_HOSTS = [f"127.0.0.{i}" for i in range(1, 51)]
SILENT_HOST = "127.0.3.1"


def _serve(port_queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    from aiotcp.serve import SilentServer, TargetServer

    async def main() -> None:
        first = TargetServer(LIVE_HOSTS[0], 0)
        await first.start()
        servers: list[TargetServer | SilentServer] = [first]
        for host in LIVE_HOSTS[1:]:
            server = TargetServer(host, first.port)
            await server.start()
            servers.append(server)
        silent = SilentServer(SILENT_HOST, 0)
        await silent.start()
        servers.append(silent)
        port_queue.put((first.port, silent.port))
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        for server in servers:
            await server.aclose()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


BASELINE = r"""
import asyncio, collections, sys, time
import httptools, uvloop

class Probe(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    def data_received(self, data):
        self.parser.feed_data(data)
    def on_message_complete(self):
        if not self.done.done():
            self.done.set_result(self.parser.get_status_code())
        self.transport.close()
    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result("disconnected")

async def probe(loop, host, port, timeout):
    done = loop.create_future()
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(lambda: Probe(done), host, port)
            try:
                return await done
            finally:
                transport.close()
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"

async def main(path, concurrency, timeout):
    loop = asyncio.get_running_loop()
    counts = collections.Counter()
    lines = (line.strip().rpartition(":") for line in open(path))
    async def worker():
        for host, _, port in lines:
            counts[await probe(loop, host, int(port), timeout)] += 1
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    print(sum(counts.values()), dict(counts))

uvloop.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def measure(command: list[str]) -> tuple[float, int, Any]:
    """Run ``command``; wall seconds, exit status and the child's rusage."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, status, usage


def write_list(path: str, lines: int, live_port: int, silent_port: int, silent_share: float) -> None:
    """60 % live, 1 % silent (or ``silent_share``), the rest refused; interleaved so every stretch of the
    list has the same mix."""
    silent_every = round(1 / silent_share) if silent_share > 0 else 0
    with open(path, "w") as file:
        for i in range(lines):
            if silent_every and i % silent_every == silent_every - 1:
                file.write(f"{SILENT_HOST}:{silent_port}\n")
            elif i % 5 < 3:  # 3 of 5 = 60 %
                file.write(f"{LIVE_HOSTS[i % len(LIVE_HOSTS)]}:{live_port}\n")
            else:
                file.write(f"127.0.2.{1 + i % 250}:{live_port}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--silent", type=float, default=0.01, help="share of silent targets (0.01)")
    parser.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="also run a bare asyncio Protocol prober")
    parser.add_argument("--probe-args", default="", help="more flags for aiotcp probe, e.g. --no-facts")
    args = parser.parse_args()

    ports: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(ports, stop), daemon=True)
    server.start()
    live_port, silent_port = ports.get(timeout=30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            targets = os.path.join(tmp, "targets.txt")
            write_list(targets, args.lines, live_port, silent_port, args.silent)
            print(
                f"# {args.lines:,} targets, concurrency {args.concurrency}, timeout {args.timeout:g}s, "
                f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus"
            )
            for run in range(1, args.runs + 1):
                out = os.path.join(tmp, "out.jsonl")
                command = [
                    sys.executable, "-m", "aiotcp", "probe", targets, "-q", "-o", out,
                    "-c", str(args.concurrency), "-t", str(args.timeout), "--http", args.http,
                    *shlex.split(args.probe_args),
                ]  # fmt: skip
                wall, status, usage = measure(command)
                if status != 0:
                    print(f"run {run}: aiotcp probe exited with status {status}", file=sys.stderr)
                    return 1
                kinds: collections.Counter[str] = collections.Counter()
                records = 0
                with open(out) as file:
                    for line in file:
                        record = json.loads(line)
                        kinds[record["error"] or str(record["status_code"])] += 1
                        records += 1
                rss_mb = usage.ru_maxrss / 1024
                print(
                    f"run {run}: {wall:.2f} s wall, {records / wall:,.0f} records/s, peak RSS {rss_mb:.1f} MB, "
                    f"cpu {usage.ru_utime + usage.ru_stime:.2f} s, records {records:,} {dict(kinds.most_common())}"
                )
                if records != args.lines:
                    print(f"records ({records}) != lines ({args.lines})", file=sys.stderr)
                    return 1
            if args.baseline:
                script = os.path.join(tmp, "baseline.py")
                with open(script, "w") as file:
                    file.write(BASELINE)
                for run in range(1, args.runs + 1):
                    command = [sys.executable, script, targets, str(args.concurrency), str(args.timeout)]
                    wall, status, usage = measure(command)
                    rss_mb = usage.ru_maxrss / 1024
                    print(
                        f"baseline {run}: {wall:.2f} s wall, {args.lines / wall:,.0f} targets/s, "
                        f"peak RSS {rss_mb:.1f} MB, cpu {usage.ru_utime + usage.ru_stime:.2f} s"
                    )
    finally:
        stop.set()
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
