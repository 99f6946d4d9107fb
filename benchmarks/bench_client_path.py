#!/usr/bin/env python3
"""The client request path, CPU per request: two aiotcp trees side by side, or one tree direct and through proxies.

Each measurement is a child process that imports ``aiotcp`` from a given tree and sends ``--requests``
sequential ``GET /`` (whole body read) over one keep-alive connection of one ``Client`` (or, with ``--tasks N``,
from N tasks at once over N pooled connections) to the built-in server
(its own process), after a warm-up; it reports the child's own CPU time (user + system) per request, so the
server's and any proxy's CPU are not counted. Rows are alternated round by round and the medians printed,
with the ratio of each row to the first.

    # before/after: this tree against the base commit's (git archive BASE aiotcp | tar -x -C /tmp/base)
    python benchmarks/bench_client_path.py --tree new=. --tree base=/tmp/base --loop asyncio --loop uvloop --loop trio

    # the proxy goal: direct, through pproxy's HTTP proxy (http:// target: absolute-form requests) and SOCKS5
    python benchmarks/bench_client_path.py --proxies
    # ... and through proxies already running (squid, dante): --via squid=http://127.0.0.1:3128

Every run is bounded: ``--requests`` per child (default 20,000), each child under a 120 s timeout.
pproxy (PyPI) is started without uvloop (it fails at start where uvloop is importable).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pproxy started as the proxy tests start it (uvloop hidden from it): one launcher for both.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from bench_targets import builtin_server
from proxy_servers import pproxy

_CHILD = r"""
import asyncio, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import anyio
import aiotcp

url, loop, http, requests, proxy = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6] or None
tasks = int(sys.argv[7])

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

async def main():
    options = {"http": http}
    if proxy:
        options["proxy"] = proxy
    async with aiotcp.Client(**options) as client:
        async def loop_of(count):
            for _ in range(count):
                response = await client.get(url)
                assert response.status_code == 200

        async def run(count):
            async with anyio.create_task_group() as group:
                for _ in range(tasks):
                    group.start_soon(loop_of, count // tasks)

        await run(max(200 * tasks, requests // 10))
        start_cpu, start = cpu(), time.perf_counter()
        await run(requests)
        used, wall = cpu() - start_cpu, time.perf_counter() - start
        assert client.pool.opened == tasks, client.pool
    print(json.dumps({"cpu_us": used / requests * 1e6, "rps": requests / wall}))

if loop == "trio":
    anyio.run(main, backend="trio")
elif loop == "uvloop":
    anyio.run(main, backend_options={"use_uvloop": True})
else:
    anyio.run(main)
"""


def run_child(
    tree: str, url: str, loop: str, http: str, requests: int, proxy: str | None, tasks: int = 1
) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, os.path.abspath(tree), url, loop, http, str(requests), proxy or "", str(tasks)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed ({tree}, {loop}, {http}, proxy={proxy}):\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH", help="an aiotcp tree (repeat)")
    parser.add_argument("--loop", action="append", choices=("asyncio", "uvloop", "trio"), help="(repeat)")
    parser.add_argument("--http", action="append", choices=("h11", "httptools"), help="(repeat)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--tasks", type=int, default=1, help="concurrent tasks sharing the client's pool, one connection each (1)"
    )
    parser.add_argument("--proxies", action="store_true", help="direct vs HTTP proxy vs SOCKS5 (pproxy)")
    parser.add_argument(
        "--via", action="append", default=[], metavar="NAME=URL", help="also through this running proxy (repeat)"
    )
    args = parser.parse_args()
    trees = [item.split("=", 1) for item in args.tree] or [["this", "."]]
    loops = args.loop or ["uvloop"]
    parsers = args.http or ["httptools"]
    with ExitStack() as stack:
        target = stack.enter_context(builtin_server())
        routes: list[tuple[str, str | None]] = [("direct", None)]
        if args.proxies:
            proxy = stack.enter_context(pproxy())
            routes += [("http proxy", proxy.url("http")), ("socks5", proxy.url("socks5"))]
        routes += [(name, url) for name, url in (item.split("=", 1) for item in args.via)]
        rows = [(name, tree, route, via) for name, tree in trees for route, via in routes]
        for loop in loops:
            for http in parsers:
                samples: dict[str, list[dict[str, float]]] = {}
                for _ in range(args.rounds):
                    for name, tree, route, via in rows:
                        label = f"{name} {route}" if len(routes) > 1 else name
                        samples.setdefault(label, []).append(
                            run_child(tree, target.url, loop, http, args.requests, via, args.tasks)
                        )
                how = (
                    "on one keep-alive connection" if args.tasks == 1 else f"from {args.tasks} tasks, a connection each"
                )
                what = f"{args.requests} sequential GETs {how}, {args.rounds} rounds"
                print(f"\n{loop}, {http}, {what}")
                first = None
                for label, runs in samples.items():
                    cpu = statistics.median(run["cpu_us"] for run in runs)
                    rps = statistics.median(run["rps"] for run in runs)
                    first = first or cpu
                    each = ", ".join(f"{run['cpu_us']:.1f}" for run in runs)
                    print(f"  {label:<24} {cpu:7.2f} us CPU/request ({each})  {rps:8.0f} req/s  x{cpu / first:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
