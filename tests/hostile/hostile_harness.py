"""Playing a row of the behaviour table (hostile_table.py) against a real loopback server, and checking it.

:func:`play` runs one row with one parser and one delivery mode on whatever backend the test runs on, and
checks everything the issue asks of a hostile behaviour: the outcome (kind, or a response and its body),
the time (``elapsed <= deadline + SLACK``), the pool (an errored connection is closed; a connection that
carried leftovers or a no-body reply with a body is never reused, and the next request is answered by a
fresh one), the server's view (how many connections it accepted, what arrived on each), open file
descriptors (equal before and after), warnings (the suite runs with warnings as errors, and ``gc.collect()``
here makes a leaked socket's ResourceWarning surface in the test that leaked it) and, for the size rows,
the tracemalloc peak.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import anyio
from hostile_table import FRESH, SLACK, Behaviour
from scripted_server import Delivery, NeverAcceptServer, ScriptedServer

from aiotcp import AiotcpError, Client

DELIVERIES = ("whole", "bytewise", "random")
WAIT_S = 5.0  # bound of every polling wait
#: Seeds of the random delivery: the row's, mixed with this (set AIOTCP_HOSTILE_SEED to vary them per run).
BASE_SEED = int(os.environ.get("AIOTCP_HOSTILE_SEED", "0"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def seed_for(row: Behaviour, parser: str) -> int:
    return BASE_SEED ^ zlib.crc32(f"{row.name}/{parser}".encode())


async def poll(predicate: Any, what: str, timeout: float = WAIT_S) -> None:
    """Wait (letting the event loop run) until ``predicate()`` holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.005)


async def wait_for_server(row: Behaviour, predicate: Any, what: str) -> None:
    """Wait until the server got somewhere; then let the event loop read what it sent -- unless the row is
    about a busy loop, in which case block it: the bytes are in the socket, unread by the loop."""
    if row.busy_loop:
        time.sleep(0.01)  # noqa: ASYNC251 - blocking the loop is the point
        deadline = time.monotonic() + WAIT_S
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.005)  # noqa: ASYNC251
        assert predicate(), f"timed out waiting for {what}"
        time.sleep(0.05)  # noqa: ASYNC251 - what the server sent reaches our socket
        return
    await poll(predicate, what)
    await anyio.sleep(0.02)


async def settle_fds(expected: int) -> int:
    """Open descriptors once they are back to ``expected`` (closing is asynchronous on the server's side)."""
    deadline = time.monotonic() + WAIT_S
    count = open_fds()
    while count != expected and time.monotonic() < deadline:
        gc.collect()
        await anyio.sleep(0.01)
        count = open_fds()
    return count


@contextlib.contextmanager
def serving(row: Behaviour, delivery: str, seed: int) -> Iterator[Any]:
    if not row.scripts:  # the one row without a script: nobody ever accepts
        with NeverAcceptServer() as server:
            yield server
        return
    with ScriptedServer(*row.scripts, delivery=Delivery(delivery, seed=seed)) as server:  # type: ignore[arg-type]
        yield server


async def play(row: Behaviour, parser: str, delivery: str, reliability: Any, backend: str) -> None:
    """Play ``row`` and check it (see the module docstring). Records the run in ``reliability``."""
    seed = seed_for(row, parser)
    label = f"{row.name}[{parser},{delivery},{backend}]"
    reliability.start(label)
    expected = row.expected(parser)
    gc.collect()
    fds_before = open_fds()
    with serving(row, delivery, seed) as server:

        def where() -> str:
            return f"{server!r} (seed {seed})"

        url = f"{server.url}/case"
        async with Client(http=parser, timeout=row.timeouts, limits=row.limits) as client:
            if row.warmup:
                warm = await client.get(f"{server.url}/warmup")
                assert warm.content == b"warm", where()
                # Let the server reach the step after its reply (it waits for our next request, or closes
                # the idle connection), and the event loop read whatever that sent.
                await wait_for_server(row, lambda: server.steps_started(0) >= 3, "the server to pass the warm-up")
            outcome, response, error = "ok", None, None
            tracing = row.memory_cap is not None
            if tracing:
                tracemalloc.start()
            started = time.perf_counter()
            try:
                response = await client.request(row.method, url)
            except AiotcpError as exc:
                outcome, error = exc.kind, exc
            finally:
                elapsed = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1] if tracing else 0
                if tracing:
                    tracemalloc.stop()
            assert outcome == expected, f"{label}: expected {expected}, got {error!r} {response!r} from {where()}"
            assert elapsed <= row.deadline + SLACK, f"{label}: {outcome} after {elapsed:.3f}s > {row.deadline}s"
            if row.memory_cap is not None:
                assert peak <= row.memory_cap, f"{label}: tracemalloc peak {peak} > {row.memory_cap}"
            if error is not None:
                assert error.target == url, repr(error)
                # An errored connection is closed, never pooled.
                assert (client.pool.open_connections, client.pool.idle_connections) == (0, 0), client.pool
            else:
                assert response is not None
                if row.body is not None:
                    assert response.content == row.body, f"{label}: {response.content[:80]!r} from {where()}"
                assert response.quirks == row.quirks, f"{label}: quirks {response.quirks} from {where()}"
                if row.fresh_after:
                    # Whatever the server sent after the response has arrived (and been read by the loop):
                    # the next request goes on a new connection and gets FRESH, never the leftover bytes.
                    await wait_for_server(row, lambda: server.script_done(0), "the server to finish misbehaving")
                    again = await client.get(f"{server.url}/again")
                    assert again.content == FRESH, f"{label}: next request answered by {again.content!r}"
                    assert not again.timings.reused, label
                    assert client.pool.reused == 0, client.pool
                    assert len(server.requests(0)) == 1, f"{label}: a request went on the tainted connection"
        if row.accepted is not None:
            assert server.connections_accepted == row.accepted, where()
        if isinstance(server, ScriptedServer):
            assert not server.errors, server.errors
    fds_after = await settle_fds(fds_before)
    assert fds_after == fds_before, f"{label}: {fds_before} descriptors open before, {fds_after} after"
    reliability.survive(label, elapsed - row.deadline)
