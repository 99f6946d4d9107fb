#!/usr/bin/env python3
"""The pool's share of the client request path: ``take_idle`` then ``give_back`` of one idle connection, the
bookkeeping every keep-alive request does, in nanoseconds per pair (no I/O: the connection's stream is an
in-memory stand-in with nothing pending).

Compare two checkouts side by side by running this script with each on ``PYTHONPATH``, alternated:

    for i in 1 2 3; do
        PYTHONPATH=/path/to/before python benchmarks/bench_pool.py
        PYTHONPATH=/path/to/after python benchmarks/bench_pool.py
    done

Bounded: ``--pairs`` (1,000,000) pairs per round, ``--rounds`` (5) rounds; prints the best and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiotcp
from aiotcp.budget import Budget
from aiotcp.config import Limits
from aiotcp.connection import HTTPConnection
from aiotcp.http11 import make_protocol
from aiotcp.pool import ConnectionPool
from aiotcp.streams import ConnectInfo


class _IdleStream:
    """What the pool asks of a stream: nothing pending, not closed."""

    target = "http://127.0.0.1:1/"
    info = ConnectInfo(peer=("127.0.0.1", 1), dns_ms=0.0, connect_ms=0.0)
    is_closed = False

    def has_pending_input(self) -> bool:
        return False

    async def aclose(self) -> None:
        self.is_closed = True


async def _round(pairs: int) -> float:
    pool = ConnectionPool(Limits())
    key = ("http", "127.0.0.1", 1, None)
    connection = HTTPConnection(_IdleStream(), make_protocol("h11"), key)  # type: ignore[arg-type]

    async def opener() -> HTTPConnection:
        return connection

    await pool.acquire(key, Budget.start(aiotcp.Timeouts()), opener)
    pool.give_back(connection, True)
    take, give = pool.take_idle, pool.give_back
    started = time.perf_counter_ns()
    for _ in range(pairs):
        give(take(key), True)  # type: ignore[arg-type]
    elapsed = time.perf_counter_ns() - started
    await pool.aclose()
    return elapsed / pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not (1 <= args.pairs <= 10_000_000 and 1 <= args.rounds <= 50):
        parser.error("--pairs 1-10,000,000, --rounds 1-50: every run here is bounded")
    results = [asyncio.run(_round(args.pairs)) for _ in range(args.rounds)]
    print(f"take_idle + give_back: best {min(results):.1f} ns, median {statistics.median(results):.1f} ns per pair")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
