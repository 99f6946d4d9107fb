"""The DNS stage on loopback: names/s of the async resolver and of the system resolver, side by side in one run.

    python benchmarks/bench_dns.py                    # 100,000 names, 20 ms answers, 1 % never answered
    python benchmarks/bench_dns.py --names 20000 --system-names 3000 --concurrency 500

The server: a small DNS server in a process of its own (uvloop), on 127.0.0.2 port 53 (port 53 because the C
library's resolver cannot be told another port; the script needs root for that, and for the namespace below),
answering every query 20 ms after it arrives: ``A 127.0.0.1`` (TTL 300) for ``nNNN.bench``, NODATA for AAAA,
nothing at all for ``silent-NNN.bench`` (1 % of the names). It counts every query by name and type.

1. **async**: ``AsyncResolver`` (c-ares on uvloop; ``timeout`` 1 s, ``attempts`` 2) resolves the list with
   ``--concurrency`` lookups in flight. Every name must end in exactly one outcome: an answer for ``nNNN``, a
   ``DNSError`` with ``rcode`` TIMEOUT for ``silent-NNN``. RSS is sampled along the way (memory flat in the
   length of the list: the cache holds at most ``cache_size`` names).
2. **system**: ``anyio.getaddrinfo`` (glibc in anyio's thread pool, 40 threads) resolves the first
   ``--system-names`` names of the same list in a subprocess that runs in a mount namespace of its own
   (``unshare -m``), where a bind mount puts a resolv.conf naming only 127.0.0.2 (``timeout:1 attempts:2``,
   the async side's settings) over ``/etc/resolv.conf``: the machine's configuration is not touched, and
   no query can leave for the machine's nameservers. Without ``unshare`` or root this part is skipped.
3. **repeated**: 200 names, each asked 100 times in a shuffled list of 20,000, 500 in flight: the server
   must see each name once per type (cache and shared lookups), counted at the server.

Traffic stays on 127.0.0.0/8; every part is bounded in names and time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

HOST = "127.0.0.2"
PORT = 53
DELAY = 0.020
TTL = 300


# -- the server ---------------------------------------------------------------------------------------------


def _question(packet: bytes) -> tuple[str, int, int] | None:
    """(name, qtype, end of the question) of a query, or None if it is not one we answer."""
    if len(packet) < 17:
        return None
    labels = []
    offset = 12
    while offset < len(packet):
        length = packet[offset]
        if length == 0:
            offset += 1
            break
        if length > 63:
            return None
        labels.append(packet[offset + 1 : offset + 1 + length])
        offset += 1 + length
    if offset + 4 > len(packet):
        return None
    qtype = struct.unpack_from("!H", packet, offset)[0]
    return b".".join(labels).decode("ascii", "replace").lower(), qtype, offset + 4


def _serve(ready: Any, stop: Any, report: Any) -> None:
    counts: collections.Counter[tuple[str, int]] = collections.Counter()

    class Protocol(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.loop = asyncio.get_running_loop()

        def datagram_received(self, data: bytes, addr: Any) -> None:
            question = _question(data)
            if question is None:
                return
            name, qtype, end = question
            counts[(name, qtype)] += 1
            if name.startswith("silent-"):
                return
            # QR, opcode 0, AA, RD copied, RA; NOERROR. One question; for A one answer (a pointer to the name).
            flags = 0x8480 | (struct.unpack_from("!H", data, 2)[0] & 0x0100)
            if qtype == 1:
                header = data[:2] + struct.pack("!HHHHH", flags, 1, 1, 0, 0)
                answer = struct.pack("!HHHIH", 0xC00C, 1, 1, TTL, 4) + bytes((127, 0, 0, 1))
                reply = header + data[12:end] + answer
            else:
                reply = data[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + data[12:end]
            self.loop.call_later(DELAY, self.transport.sendto, reply, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(HOST, PORT))
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", socket.SO_RCVBUF), 16 << 20)
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUFFORCE", socket.SO_SNDBUF), 16 << 20)
        ready.set()
        await loop.run_in_executor(None, stop.wait)
        transport.close()
        most: dict[str, int] = {}
        for (_, qtype), count in counts.items():
            kind = {1: "A", 28: "AAAA"}.get(qtype, str(qtype))
            most[kind] = max(most.get(kind, 0), count)
        report.put(
            {
                "queries": sum(counts.values()),
                "names": len({name for name, _ in counts}),
                "max_per_name": most,
                "cpu_s": round(time.process_time(), 2),
            }
        )

    import uvloop

    uvloop.run(main())


class Server:
    """The DNS server process; ``reset()`` starts a fresh one (fresh counts)."""

    def __enter__(self) -> Server:
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop, self.report = context.Event(), context.Event(), context.Queue()
        self.process = context.Process(target=_serve, args=(self.ready, self.stop, self.report), daemon=True)
        self.process.start()
        if not self.ready.wait(30):
            raise RuntimeError("the DNS server did not start (port 53 needs root)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.counts = self.report.get(timeout=30)
        self.process.join(10)


# -- the clients --------------------------------------------------------------------------------------------


def names(count: int, silent_every: int = 100) -> list[str]:
    return [f"silent-{i}.bench" if i % silent_every == silent_every - 1 else f"n{i}.bench" for i in range(count)]


def rss_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def run_async(
    names: list[str], concurrency: int, cache_size: int = 10_000
) -> tuple[dict[str, Any], collections.Counter[str]]:
    import anyio

    from aiotcp.errors import DNSError
    from aiotcp.resolution import Nameserver, ResolverConfig
    from aiotcp.resolver import AsyncResolver

    config = ResolverConfig(
        nameservers=(Nameserver(HOST, PORT),), timeout=1.0, attempts=2, max_in_flight=4096, cache_size=cache_size
    )
    resolver = AsyncResolver(config)
    outcomes: collections.Counter[str] = collections.Counter()
    wrong: list[str] = []
    samples: list[tuple[int, float]] = []
    feed = iter(names)
    done = 0

    async def worker() -> None:
        nonlocal done
        for name in feed:
            try:
                resolution = await resolver.resolve(name)
                outcome = "ok" if resolution.a == ("127.0.0.1",) else "wrong answer"
            except DNSError as exc:
                outcome = exc.rcode or "?"
            outcomes[outcome] += 1
            expected = "TIMEOUT" if name.startswith("silent-") else "ok"
            if outcome != expected:
                wrong.append(f"{name}: {outcome}")
            done += 1
            if done % 10_000 == 0:
                samples.append((done, round(rss_mb(), 1)))

    started = time.perf_counter()
    cpu = time.process_time()
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    await resolver.aclose()
    summary = {
        "names": len(names),
        "elapsed_s": round(elapsed, 2),
        "names_per_s": round(len(names) / elapsed),
        "cpu_s": round(cpu, 2),
        "outcomes": dict(outcomes),
        "wrong": wrong[:10],
        "wrong_count": len(wrong),
        "queries_sent": resolver.queries,
        "shared_lookups": resolver.shared,
        "rss_mb_by_names": samples,
    }
    return summary, outcomes


def run_system_part(count: int, all_names: list[str]) -> dict[str, Any]:
    """The system resolver in a private mount namespace whose /etc/resolv.conf names only the loopback server."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return {"skipped": "needs root and unshare(1) to give glibc a resolv.conf of its own"}
    with tempfile.TemporaryDirectory() as directory:
        conf = os.path.join(directory, "resolv.conf")
        with open(conf, "w") as file:
            file.write(f"nameserver {HOST}\noptions timeout:1 attempts:2\n")
        listing = os.path.join(directory, "names.txt")
        with open(listing, "w") as file:
            file.write("\n".join(all_names[:count]))
        script = f"mount --bind {conf} /etc/resolv.conf && exec {sys.executable} {__file__} --system-child {listing}"
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, timeout=1800, check=False)
        if done.returncode != 0:
            return {"skipped": f"system part failed: {done.stderr.decode(errors='replace')[-300:]}"}
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result


def system_child(listing: str) -> None:
    """Inside the namespace: getaddrinfo through anyio's thread pool, as aiotcp's resolver="system" does."""
    import anyio

    with open("/etc/resolv.conf") as file:
        assert file.read().startswith(f"nameserver {HOST}\n"), "not in the private namespace"
    with open(listing) as file:
        todo = file.read().split()

    async def main() -> dict[str, Any]:
        outcomes: collections.Counter[str] = collections.Counter()
        feed = iter(todo)

        async def worker() -> None:
            for name in feed:
                try:
                    await anyio.getaddrinfo(name, None, type=socket.SOCK_STREAM)
                    outcomes["ok"] += 1
                except socket.gaierror as exc:
                    outcomes[f"gaierror {exc.errno}"] += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(200):  # more than the 40 threads: the pool is the limit, as in aiotcp
                group.start_soon(worker)
        elapsed = time.perf_counter() - started
        return {
            "names": len(todo),
            "elapsed_s": round(elapsed, 2),
            "names_per_s": round(len(todo) / elapsed),
            "outcomes": dict(outcomes),
        }

    print(json.dumps(anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--system-names", type=int, default=5_000, help="names for the (slow) system part")
    parser.add_argument("--concurrency", type=int, default=500, help="lookups in flight (async part)")
    parser.add_argument("--system-child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.system_child:
        system_child(args.system_child)
        return
    import uvloop

    listing = names(args.names)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "server": f"{HOST}:{PORT}, answers after {DELAY * 1000:.0f} ms, 1 % never",
    }
    with Server() as server:
        async_summary, _ = uvloop.run(run_async(listing, args.concurrency))
    async_summary["server_queries"] = server.counts["queries"]
    async_summary["server_cpu_s"] = server.counts["cpu_s"]
    report["async"] = async_summary
    print(
        f"async:  {async_summary['names']:,} names in {async_summary['elapsed_s']} s = "
        f"{async_summary['names_per_s']:,} names/s (CPU: resolver {async_summary['cpu_s']} s, "
        f"server {async_summary['server_cpu_s']} s); outcomes {async_summary['outcomes']}; "
        f"wrong {async_summary['wrong_count']}; RSS by names {async_summary['rss_mb_by_names']}",
        flush=True,
    )

    with Server() as server:
        system = run_system_part(args.system_names, listing)
    report["system"] = system
    print(f"system: {system}", flush=True)

    repeated_names = [f"r{i}.bench" for i in range(200)] * 100
    random.Random(7).shuffle(repeated_names)
    with Server() as server:
        repeated, _ = uvloop.run(run_async(repeated_names, 500))
    repeated["server_queries"] = server.counts["queries"]
    repeated["server_names"] = server.counts["names"]
    repeated["server_max_queries_per_name"] = server.counts["max_per_name"]
    report["repeated"] = repeated
    print(
        f"repeated: {len(repeated_names):,} lookups of 200 names: the server got {repeated['server_queries']} "
        f"queries for {repeated['server_names']} names, at most {repeated['server_max_queries_per_name']} per "
        "name by type; "
        f"shared lookups {repeated['shared_lookups']}",
        flush=True,
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
