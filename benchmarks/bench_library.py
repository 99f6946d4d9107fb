#!/usr/bin/env python3
"""Library clients side by side, one run: ``aiotcp.Client`` (h11 and httptools parsers), aiohttp and httpx.

Each client does ``GET /`` (reading the whole body) from 50 concurrent tasks over keep-alive connections
for ``--seconds`` on the same event loop kind (uvloop when installed), against one loopback target: nginx
(one worker, started here) when installed, else the built-in server in its own process. Clients are
alternated round by round; the script prints requests/s per client and the ratios the goals are stated
in:

    aiotcp (h11)       >= 1.0 x aiohttp
    aiotcp (httptools) >= 3 x aiohttp
    aiotcp             >= 30 x httpx

A "floor" row is not a client but the least an asyncio client can do per request (a bare protocol, one
future per request, no checks): the distance to it is a client's own overhead.

    python benchmarks/bench_library.py                     # 3 rounds x 3 s per client
    python benchmarks/bench_library.py --rounds 5 --seconds 5 --tasks 50 --target builtin
    python benchmarks/bench_library.py --kernel-share      # the floor, slowed down step by step

``--kernel-share`` runs only the floor, with a busy loop of 0, 600, 1,200, 2,400 and 4,800 steps added to every
request, and prints the user and system CPU time per request at each rate: how the kernel's share of a
request (mostly waking the server when it sleeps between requests) grows as a client gets slower.

Every run is bounded: each client stops issuing requests after ``--seconds`` and its in-flight requests
finish (or are cancelled) within a few seconds more. Peers come from the ``bench`` extra; a missing one
is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, ExitStack
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_targets import builtin_server, find_nginx, nginx

Get = Callable[[], Awaitable[int]]  # one GET, returns the body length
ClientFactory = Callable[[str, int], AbstractAsyncContextManager[Get]]

_DRAIN_S = 5.0


class _Aiotcp:
    def __init__(self, http: str) -> None:
        self.http = http

    def __call__(self, url: str, tasks: int) -> Any:
        import contextlib

        import aiotcp

        @contextlib.asynccontextmanager
        async def session() -> Any:
            limits = aiotcp.Limits(max_connections=tasks)
            async with aiotcp.Client(http=self.http, limits=limits, timeout=10) as client:

                async def get() -> int:
                    response = await client.get(url)
                    return len(response.content)

                yield get

        return session()


def _aiohttp(url: str, tasks: int) -> Any:
    import contextlib

    import aiohttp

    @contextlib.asynccontextmanager
    async def session() -> Any:
        connector = aiohttp.TCPConnector(limit=tasks)
        async with aiohttp.ClientSession(connector=connector) as client:

            async def get() -> int:
                async with client.get(url) as response:
                    return len(await response.read())

            yield get

    return session()


def _floor(url: str, tasks: int, busy_steps: int = 0) -> Any:
    """Not a client: the least any asyncio client has to do per GET, as a yardstick. One protocol per
    connection, llhttp parsing in ``data_received``, one future per request, a fixed request; no timeouts,
    no checks, no response object. What a real client spends above this is its own overhead.
    ``busy_steps``: a loop of that many steps after every response, standing in for a slower client."""
    import contextlib
    from urllib.parse import urlsplit

    import httptools

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    wire = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: */*\r\n\r\n".encode()

    class Bare(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.transport: Any = None
            self.done: asyncio.Future[int] | None = None
            self.body = bytearray()

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            if self.done is not None and not self.done.done():
                self.done.set_result(len(self.body))

    @contextlib.asynccontextmanager
    async def session() -> Any:
        loop = asyncio.get_running_loop()
        idle: list[Bare] = []
        opened: list[Bare] = []

        async def get() -> int:
            if idle:
                bare = idle.pop()
            else:
                _, bare = await loop.create_connection(Bare, host, port)
                opened.append(bare)
            bare.body.clear()
            bare.done = loop.create_future()
            bare.transport.write(wire)
            length = await bare.done
            for _ in range(busy_steps):
                pass
            idle.append(bare)
            return length

        try:
            yield get
        finally:
            for bare in opened:
                bare.transport.close()

    return session()


def _httpx(url: str, tasks: int) -> Any:
    import contextlib

    import httpx

    @contextlib.asynccontextmanager
    async def session() -> Any:
        limits = httpx.Limits(max_connections=tasks, max_keepalive_connections=tasks)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:

            async def get() -> int:
                response = await client.get(url)
                return len(response.content)

            yield get

    return session()


async def _measure(factory: ClientFactory, url: str, tasks: int, seconds: float) -> tuple[float, int, float, float]:
    """Requests/s, errors, and CPU and system-CPU µs per request (this process: the client alone, the target
    runs elsewhere) of ``tasks`` workers doing GET in a loop for ``seconds``."""
    done = 0
    errors = 0
    async with factory(url, tasks) as get:
        await get()  # warm the import paths and one connection
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:  # bounded by time
                try:
                    await get()
                    done += 1
                except Exception:
                    errors += 1
                    await asyncio.sleep(0.01)

        started = time.perf_counter()
        cpu_started = time.process_time()
        system_started = os.times().system
        workers = [asyncio.create_task(worker()) for _ in range(tasks)]
        _, pending = await asyncio.wait(workers, timeout=seconds + _DRAIN_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        system = os.times().system - system_started
    return done / elapsed, errors, cpu / max(done, 1) * 1e6, system / max(done, 1) * 1e6


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per client per round (3)")
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--target", choices=("auto", "nginx", "builtin"), default="auto")
    parser.add_argument("--kernel-share", action="store_true", help="only the floor, slowed down step by step")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20 and 0 < args.seconds <= 60 and 1 <= args.tasks <= 1000):
        parser.error("--rounds 1-20, --seconds up to 60, --tasks 1-1000: every run here is bounded")

    clients: dict[str, ClientFactory] = {"aiotcp (h11)": _Aiotcp("h11")}
    try:
        import httptools  # noqa: F401

        clients["aiotcp (httptools)"] = _Aiotcp("httptools")
    except ImportError:
        print("httptools not installed: skipping aiotcp (httptools)")
    for name, factory, module in (
        ("aiohttp", _aiohttp, "aiohttp"),
        ("httpx", _httpx, "httpx"),
        ("floor (bare protocol)", _floor, "httptools"),
    ):
        try:
            __import__(module)
        except ImportError:
            print(f"{module} not installed (pip install -e '.[bench]'): skipping")
        else:
            clients[name] = factory

    loop_factory = _loop_factory()
    loop_name = "uvloop" if loop_factory is not asyncio.new_event_loop else "asyncio"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()};"
        f" Python {platform.python_version()}, loop {loop_name}"
    )
    with ExitStack() as stack:
        binary = find_nginx()
        if args.target in ("auto", "nginx") and binary:
            target = stack.enter_context(nginx(binary))
        else:
            target = stack.enter_context(builtin_server())
        print(f"target: {target.describe} at {target.url}; {args.tasks} tasks, keep-alive, {args.seconds:g} s per run")
        if args.kernel_share:
            return _kernel_share(target.url, args, loop_factory)
        results: dict[str, list[float]] = {name: [] for name in clients}
        cpu_per_request: dict[str, list[float]] = {name: [] for name in clients}
        for round_index in range(args.rounds):
            order = list(clients) if round_index % 2 == 0 else list(reversed(clients))
            line = []
            for name in order:
                with asyncio.Runner(loop_factory=loop_factory) as runner:
                    rps, errors, cpu_us, _ = runner.run(_measure(clients[name], target.url, args.tasks, args.seconds))
                results[name].append(rps)
                cpu_per_request[name].append(cpu_us)
                line.append(f"{name} {rps:,.0f}" + (f" ({errors} errors)" if errors else ""))
            print(f"  round {round_index + 1}: " + "  ".join(line))
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"\n  {'client':<24}{'median req/s':>14}{'CPU µs/request':>16}")
    for name, value in medians.items():
        print(f"  {name:<24}{value:>14,.0f}{statistics.median(cpu_per_request[name]):>16.1f}")
    print()
    for ours in ("aiotcp (h11)", "aiotcp (httptools)"):
        for peer, goal in (("aiohttp", 1.0 if ours.endswith("(h11)") else 3.0), ("httpx", 30.0)):
            if ours in medians and peer in medians and medians[peer] > 0:
                ratio = medians[ours] / medians[peer]
                verdict = "meets" if ratio >= goal else "below"
                print(f"  {ours} / {peer}: {ratio:6.2f}x  (goal >= {goal:g}x: {verdict})")
    return 0


def _kernel_share(url: str, args: argparse.Namespace, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> int:
    try:
        import httptools  # noqa: F401 - the floor parses with it
    except ImportError:
        print("--kernel-share runs the floor, which needs httptools: pip install httptools")
        return 1
    print(f"\n  {'busy steps':>10}{'req/s':>10}{'user µs/req':>13}{'system µs/req':>15}")
    for steps in (0, 600, 1200, 2400, 4800):
        factory: ClientFactory = functools.partial(_floor, busy_steps=steps)
        runs = []
        for _ in range(args.rounds):
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runs.append(runner.run(_measure(factory, url, args.tasks, args.seconds)))
        rps, _, cpu_us, system_us = (statistics.median(values) for values in zip(*runs, strict=True))
        print(f"  {steps:>10}{rps:>10,.0f}{cpu_us - system_us:>13.1f}{system_us:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
