#!/usr/bin/env python3
"""The httptools engine's cost per response, in CPU instructions: canned responses fed to ``data_received``.

Requests/s on a shared 2-core machine swing by 20 % from one round to the next; instruction counts under
valgrind's callgrind do not (to a few instructions per response). This script builds one engine connection
on a fake transport (its ``write`` is a C-level ``deque.append``, so the fake costs next to nothing), puts
the run in its measured phase and feeds it N copies of an nginx response; every response completes one
request and makes the connection write the next, as on the wire. The buffered latencies are folded into
the histograms every 1,000 responses, as the ticker does at 20,000 requests/s, and handed over every 20,000,
as at the end of each interval. In the rate case every
send is due the moment the previous response arrives (on time, as in a run the server keeps up with).

    python benchmarks/bench_engine_callgrind.py                    # closed loop GET, one URL
    python benchmarks/bench_engine_callgrind.py --case all         # every case below, one line each
    python benchmarks/bench_engine_callgrind.py --case closed --python-only --responses 200000

Without ``--python-only`` it runs itself twice under ``valgrind --tool=callgrind`` (with 0 and with N
responses) and prints the difference divided by N: instructions per response, start-up and set-up excluded.
Run it with ``PYTHONPATH`` pointing at the tree to measure (two trees side by side give the before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections import deque

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 10:00:00 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: 5\r\nLast-Modified: Sun, 06 Dec 2026 09:00:00 GMT\r\n"
    b'Connection: keep-alive\r\nETag: "6570a2b0-5"\r\nAccept-Ranges: bytes\r\n\r\nhello'
)
HEAD_RESPONSE = RESPONSE[: -len(b"hello")]
CASES = ("closed", "head", "rate", "urls100")
FLUSH_EVERY = 1000  # a tick (50 ms) at 20,000 requests/s
INTERVAL_EVERY = 20_000  # an interval (1 s)


class FakeTransport:
    """What the engine calls on a transport; ``write`` is C code, so the fake adds no Python frame."""

    def __init__(self) -> None:
        self.write = deque(maxlen=1).append

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def _config(case: str, urls_file: str | None) -> object:
    from aiotcp.bench import BenchConfig

    options: dict[str, object] = {"connections": 1, "duration": 3600.0}
    if case == "head":
        options["method"] = "HEAD"
    if case == "rate":
        options["rate"] = 1e9  # every send is due at once: the open-loop path without waiting
    if case == "urls100":
        from aiotcp.bench.mix import load_urls

        options["endpoints"] = load_urls(urls_file or "")
    return BenchConfig("http://127.0.0.1:8080/", **options)


async def _feed(case: str, responses: int, urls_file: str | None) -> int:
    from aiotcp.bench.engine_httptools import _Conn, _Run
    from aiotcp.bench.engines import perf_counter

    plan = _config(case, urls_file).plans()[0]  # type: ignore[attr-defined]
    run = _Run(plan, lambda interval: None, lambda: False)
    run.begin(perf_counter())
    conn = _Conn(run, 0)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    data = HEAD_RESPONSE if case == "head" else RESPONSE
    received = conn.data_received
    flush = run.flush
    take = run.latency.take
    schedule = run.schedule
    for index in range(responses):
        if case == "rate":
            schedule[0] = perf_counter()  # the next send is due now: on time, not late
        received(data)
        if index % FLUSH_EVERY == 0:
            flush()
            if index % INTERVAL_EVERY == 0:
                take()
    take()
    return int(run.counters.requests)


def _python_only(case: str, responses: int, urls_file: str | None) -> None:
    done = asyncio.run(_feed(case, responses, urls_file))
    if done != responses:
        raise SystemExit(f"{case}: {done} responses counted, {responses} fed")


def _instructions(case: str, responses: int, urls_file: str | None) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        os.path.abspath(__file__),
        "--python-only",
        "--case",
        case,
        "--responses",
        str(responses),
    ]
    if urls_file:
        command += ["--urls-file", urls_file]
    # A fixed hash seed: dict and set layouts, and so the instruction counts, are the same from run to run.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    match = re.search(r"Collected : (\d+)", completed.stderr)
    if completed.returncode != 0 or match is None:
        raise SystemExit(f"valgrind failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=(*CASES, "all"), default="closed")
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--python-only", action="store_true", help="just feed the responses (what valgrind runs)")
    parser.add_argument("--urls-file", help=argparse.SUPPRESS)
    parser.add_argument("--urls", type=int, default=100, help="endpoints in the urls case (100)")
    args = parser.parse_args()
    if not 0 <= args.responses <= 10_000_000:
        parser.error("--responses from 0 to 10,000,000: every run here is bounded")
    cases = CASES if args.case == "all" else (args.case,)
    if args.python_only:
        _python_only(args.case, args.responses, args.urls_file)
        return 0
    with tempfile.TemporaryDirectory() as directory:
        urls_file = os.path.join(directory, "urls.txt")
        with open(urls_file, "w") as file:
            file.writelines(f"http://127.0.0.1:8080/item/{index}\n" for index in range(args.urls))
        for case in cases:
            try:
                base = _instructions(case, 0, urls_file)
            except SystemExit as exc:
                print(f"{case:<8} not measured: {exc}")
                continue
            loaded = _instructions(case, args.responses, urls_file)
            per_response = (loaded - base) / max(1, args.responses)
            print(f"{case:<8} {per_response:>10,.0f} instructions per response  ({args.responses:,} responses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
