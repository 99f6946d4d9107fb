"""The stale keep-alive retry under the pool's limits: when the server closes a reused connection in answer
to a request, the request is retried once on a fresh connection -- even when another request, waiting for
the origin's only slot, took that slot in the meantime and has since put its connection back idle. (Found by
the stateful pool test: the retry refused the idle connection, as a retry must, but then waited for a slot
that only that idle connection held, until ``pool_timeout``.)
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from hostile_table import BY_NAME, SLACK, WARM
from scripted_server import CloseAfterSending, ReadRequest, Repeat, ScriptedServer, Send, Sleep, response

from aiotcp import AiotcpError, Client, Limits, Response

pytestmark = pytest.mark.anyio

ROW = BY_NAME["stale-retry-at-the-per-host-limit"]


@pytest.mark.parametrize("limits", [Limits(max_connections=1), Limits(max_connections=10, max_per_host=1)])
async def test_stale_retry_when_the_slot_was_taken_meanwhile(
    anyio_backend: str, limits: Limits, reliability: Any
) -> None:
    label = f"{ROW.name}[h11,whole,{anyio_backend}]"
    reliability.start(label)
    # Connection 0: the warm-up, then the stale keep-alive (FIN without a byte) after a pause that lets the
    # second request start and wait for the slot. Connection 1: a well-behaved keep-alive server.
    stale = [ReadRequest(), Send(WARM), ReadRequest(), Sleep(0.1), CloseAfterSending()]
    fresh = [Repeat([ReadRequest(), Send(response(200, b"fresh"))], 10)]
    with ScriptedServer(stale, fresh) as server:
        async with Client(limits=limits, timeout=ROW.timeouts) as client:
            assert (await client.get(f"{server.url}/warmup")).content == b"warm"
            results: dict[str, Response | AiotcpError] = {}

            async def get(name: str) -> None:
                try:
                    results[name] = await client.get(f"{server.url}/{name}")
                except AiotcpError as exc:
                    results[name] = exc

            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                group.start_soon(get, "stale")  # takes the pooled connection, which the server then closes
                await anyio.sleep(0.03)
                group.start_soon(get, "waiting")  # waits for the only slot
            elapsed = time.perf_counter() - started
            for name in ("stale", "waiting"):
                result = results[name]
                assert isinstance(result, Response), f"{name}: {result!r} ({client.pool!r})"
                assert result.content == b"fresh"
            assert elapsed <= ROW.deadline + SLACK, f"{elapsed:.3f}s"
    reliability.survive(label, elapsed - ROW.deadline)
