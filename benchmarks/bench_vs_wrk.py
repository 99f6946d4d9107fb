#!/usr/bin/env python3
"""``aiotcp bench`` against wrk, side by side in one run, on loopback: requests/s and CPU per request.

Targets: nginx (one worker, started here from a generated config) when installed, and the built-in server
in its own process. Tools, alternated round by round so that machine noise hits them alike: ``wrk -t1``
(when installed), ``aiotcp bench`` with the httptools engine and with the h11 engine, and ``hey`` when
installed. Every run is bounded (``--seconds`` each). Prints a table per target and the ratio
``aiotcp bench (httptools) / wrk -t1`` per round, with the median -- the goal is >= 1.0.

    python benchmarks/bench_vs_wrk.py                      # 3 rounds x 5 s per tool per target
    python benchmarks/bench_vs_wrk.py --rounds 5 --seconds 5 --connections 50 --target nginx --json out.json
    python benchmarks/bench_vs_wrk.py --target nginx --no-h11 --urls 100   # also a mix of 100 URLs

``--urls N`` adds ``aiotcp bench --urls FILE`` with N URLs on the target (``/?n=0`` ... ``/?n=N-1``, which
nginx and the built-in server both answer like ``/``), and prints its rate over the single URL's per round.

CPU microseconds per request are the client process's user + system time divided by its requests (for
aiotcp, minus the CPU of starting Python and importing, measured once with a one-request run): less
sensitive to a noisy machine than requests/s, and what decides who wins when the client is the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_targets import Target, builtin_server, cpu_seconds_of_children, find_nginx, nginx


def _timed(command: list[str], timeout: float) -> tuple[str, float]:
    before = cpu_seconds_of_children()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    cpu = cpu_seconds_of_children() - before
    if completed.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({completed.returncode}): {completed.stderr.strip()[:500]}")
    return completed.stdout, cpu


def wrk(url: str, seconds: float, connections: int) -> tuple[float, int, float]:
    out, cpu = _timed(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url], seconds + 30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, requests, cpu


_startup_cpu: dict[str, float] = {}


def aiotcp_bench(engine: str, urls_file: str | None = None) -> Callable[[str, float, int], tuple[float, int, float]]:
    def run(url: str, seconds: float, connections: int) -> tuple[float, int, float]:
        base = [sys.executable, "-m", "aiotcp", "bench", url, "--engine", engine, "--json", "--no-progress"]
        key = engine
        if urls_file is not None:
            base += ["--urls", urls_file]
            key = f"{engine}-urls"
        if key not in _startup_cpu:
            # Python's start and imports are not load generation: measure them once (one request) and
            # subtract them, so CPU per request compares with wrk's.
            _startup_cpu[key] = min(_timed([*base, "-n", "1", "-c", "1"], 60)[1] for _ in range(2))
        out, cpu = _timed([*base, "-c", str(connections), "-d", f"{seconds:g}s"], seconds + 60)
        document = json.loads(out)
        if document["errors"]:
            raise RuntimeError(f"aiotcp bench saw errors: {document['errors']}")
        return float(document["rps"]), int(document["requests"]), max(0.0, cpu - _startup_cpu[key])

    return run


def hey(url: str, seconds: float, connections: int) -> tuple[float, int, float]:
    out, cpu = _timed(["hey", "-z", f"{seconds:g}s", "-c", str(connections), url], seconds + 30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = sum(int(count) for count in re.findall(r"\[\d{3}\]\s+(\d+) responses", out))
    return rps, requests, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per tool per round (5)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--target", choices=("both", "nginx", "builtin"), default="both")
    parser.add_argument("--no-h11", action="store_true", help="skip the (slower) h11 engine")
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    parser.add_argument("--urls", type=int, default=0, metavar="N", help="also aiotcp bench with N URLs (--urls)")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20 and 0 < args.seconds <= 60 and 0 <= args.urls <= 100_000):
        parser.error("--rounds 1-20, --seconds up to 60 and --urls up to 100,000: every run here is bounded")

    tools: dict[str, Callable[[str, float, int], tuple[float, int, float]]] = {}
    if shutil.which("wrk"):
        tools["wrk -t1"] = wrk
    tools["aiotcp bench (httptools)"] = aiotcp_bench("httptools")
    scratch = tempfile.TemporaryDirectory(prefix="aiotcp-bench-urls-")
    if args.urls:
        urls_file = os.path.join(scratch.name, "urls.txt")
        with open(urls_file, "w") as file:
            file.writelines(f"/?n={index}\n" for index in range(args.urls))
        tools[f"aiotcp bench --urls {args.urls}"] = aiotcp_bench("httptools", urls_file)
    if not args.no_h11:
        tools["aiotcp bench (h11)"] = aiotcp_bench("h11")
    if shutil.which("hey"):
        tools["hey"] = hey

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()};"
        f" Python {platform.python_version()}"
    )
    print(
        f"each run: {args.connections} keep-alive connections, {args.seconds:g} s, GET /;"
        f" {args.rounds} rounds, tools alternated"
    )
    report: dict[str, object] = {"connections": args.connections, "seconds": args.seconds, "targets": {}}
    nginx_binary = find_nginx()
    with ExitStack() as stack:
        stack.enter_context(scratch)
        targets: list[Target] = []
        if args.target in ("both", "nginx"):
            if nginx_binary:
                targets.append(stack.enter_context(nginx(nginx_binary)))
            else:
                print("nginx not found: skipping that target")
        if args.target in ("both", "builtin") or not targets:
            targets.append(stack.enter_context(builtin_server()))
        for target in targets:
            report["targets"][target.name] = _compare(target, tools, args)  # type: ignore[index]
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
    return 0


def _compare(
    target: Target, tools: dict[str, Callable[[str, float, int], tuple[float, int, float]]], args: argparse.Namespace
) -> dict[str, object]:
    print(f"\n== {target.name}: {target.describe} at {target.url}")
    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in tools}
    for round_index in range(args.rounds):
        order = list(tools) if round_index % 2 == 0 else list(reversed(tools))
        for name in order:
            results[name].append(tools[name](target.url, args.seconds, args.connections))
            time.sleep(0.5)  # let TIME_WAIT and the server settle between tools
        line = "  ".join(f"{name} {results[name][-1][0]:,.0f}" for name in tools)
        print(f"  round {round_index + 1}: {line}")
    print(f"  {'tool':<26}{'median req/s':>14}{'best req/s':>14}{'CPU µs/request':>16}")
    summary: dict[str, object] = {}
    for name, runs in results.items():
        median = statistics.median(rps for rps, _, _ in runs)
        best = max(rps for rps, _, _ in runs)
        cpu_us = statistics.median(cpu / requests * 1e6 for _, requests, cpu in runs if requests)
        summary[name] = {"rps": [rps for rps, _, _ in runs], "median_rps": median, "cpu_us_per_request": cpu_us}
        print(f"  {name:<26}{median:>14,.0f}{best:>14,.0f}{cpu_us:>16.2f}")
    if "wrk -t1" in results:
        ratios = [
            ours[0] / theirs[0]
            for ours, theirs in zip(results["aiotcp bench (httptools)"], results["wrk -t1"], strict=True)
        ]
        median_ratio = statistics.median(ratios)
        summary["ratio_httptools_to_wrk"] = {"per_round": ratios, "median": median_ratio}
        print(
            f"  aiotcp bench (httptools) / wrk -t1 per round: {', '.join(f'{r:.2f}' for r in ratios)};"
            f" median {median_ratio:.2f}"
        )
    mix = next((name for name in results if name.startswith("aiotcp bench --urls")), None)
    if mix is not None:
        ratios = [
            ours[0] / single[0] for ours, single in zip(results[mix], results["aiotcp bench (httptools)"], strict=True)
        ]
        median_ratio = statistics.median(ratios)
        summary["ratio_urls_to_single"] = {"per_round": ratios, "median": median_ratio}
        print(f"  {mix} / one URL per round: {', '.join(f'{r:.3f}' for r in ratios)}; median {median_ratio:.3f}")
    return summary


if __name__ == "__main__":
    sys.exit(main())
