#!/usr/bin/env python3
"""Decoding a gzip body: aiotcp.Client against aiohttp, on the same event loop (uvloop when installed), side by side.

A loopback server in its own process serves one pre-compressed body (``--size`` bytes of text, gzip level 6,
``Content-Encoding: gzip``) from memory. Each client fetches and decodes it ``--requests`` times over one
keep-alive connection; rounds alternate the clients, and the script prints the medians of wall time and of the
client process's CPU time per request, and the ratio aiotcp / aiohttp (the goal: at most 1.0).

    python benchmarks/bench_decoding.py                       # 10 MB decoded, 20 requests x 5 rounds
    python benchmarks/bench_decoding.py --size 10000000 --compressed-size   # 10 MB on the wire instead

Bounded: ``--requests`` per client per round, every child under a 300 s timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

_SERVER = r"""
import gzip, random, socket, sys, threading
size, on_wire = int(sys.argv[1]), sys.argv[2] == "1"
words = b"the client server request response header body connection proxy tunnel socket stream".split()
chooser = random.Random(7)
text = b" ".join(chooser.choice(words) for _ in range(size // 4))[:size]
body = gzip.compress(text, 6)
if on_wire:  # --compressed-size: grow the text until the body on the wire is `size` bytes
    text = text * (size // len(body) + 1)
    body = gzip.compress(text, 6)
head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], len(text), len(body), flush=True)

def serve(conn):
    with conn:
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                conn.sendall(head + body)

while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

_CHILD = r"""
import asyncio, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
client_name, url, requests, expected = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
try:
    import uvloop
    loop_factory = uvloop.new_event_loop
except ImportError:
    loop_factory = asyncio.new_event_loop

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

async def run_aiotcp():
    import aiotcp
    async with aiotcp.Client(http="httptools", limits=aiotcp.Limits(max_decompression_ratio=None)) as client:
        async def get():
            return len((await client.get(url)).content)
        return await measure(get)

async def run_aiohttp():
    import aiohttp
    async with aiohttp.ClientSession() as session:
        async def get():
            async with session.get(url) as response:
                return len(await response.read())
        return await measure(get)

async def measure(get):
    assert await get() == expected
    start_cpu, start = cpu(), time.perf_counter()
    for _ in range(requests):
        assert await get() == expected
    return (time.perf_counter() - start) / requests, (cpu() - start_cpu) / requests

with asyncio.Runner(loop_factory=loop_factory) as runner:
    wall, used = runner.run(run_aiotcp() if client_name == "aiotcp" else run_aiohttp())
print(json.dumps({"wall_ms": wall * 1000, "cpu_ms": used * 1000}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="decoded bytes (10 MB)")
    parser.add_argument("--compressed-size", action="store_true", help="--size is the gzip body's size instead")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(args.size), "1" if args.compressed_size else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port, decoded, on_wire = (int(part) for part in server.stdout.readline().split())
        url = f"http://127.0.0.1:{port}/"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        samples: dict[str, list[dict[str, float]]] = {"aiotcp": [], "aiohttp": []}
        for _ in range(args.rounds):
            for name in samples:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        _CHILD,
                        os.path.abspath(args.tree),
                        name,
                        url,
                        str(args.requests),
                        str(decoded),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{done.stderr}")
                samples[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"gzip body: {on_wire:,} bytes on the wire, {decoded:,} decoded; {args.requests} requests x {args.rounds}"
        )
        medians = {}
        for name, runs in samples.items():
            wall = statistics.median(run["wall_ms"] for run in runs)
            cpu = statistics.median(run["cpu_ms"] for run in runs)
            medians[name] = (wall, cpu)
            each = ", ".join(f"{run['wall_ms']:.1f}" for run in runs)
            print(f"  {name:<8} wall {wall:8.2f} ms/request ({each})  cpu {cpu:8.2f} ms/request")
        print(
            f"  aiotcp / aiohttp: wall x{medians['aiotcp'][0] / medians['aiohttp'][0]:.3f}, "
            f"cpu x{medians['aiotcp'][1] / medians['aiohttp'][1]:.3f}"
        )
    finally:
        server.kill()
        server.wait(10)
        time.sleep(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
