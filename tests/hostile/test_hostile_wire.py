"""Every network row of the behaviour table (hostile_table.py), played against a scripted loopback server.

On asyncio: each row with both parsers (h11, httptools), its reply delivered whole, one byte at a time and
at seeded random split points. On trio: the rows marked ``trio`` (h11, delivered whole) -- the transport is
anyio's stream there, so those rows check the other I/O path. What is checked for each run is listed in
hostile_harness.py.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import parser_marks
from hostile_harness import DELIVERIES, play
from hostile_table import BEHAVIOURS

pytestmark = pytest.mark.anyio

ASYNCIO_RUNS = [
    pytest.param(row, parser, delivery, id=f"{row.name}-{parser}-{delivery}", marks=parser_marks(parser))
    for row in BEHAVIOURS
    for parser in ("h11", "httptools")
    for delivery in (DELIVERIES if row.splits else ("whole",))
]
TRIO_RUNS = [pytest.param(row, id=row.name) for row in BEHAVIOURS if row.trio]


@pytest.fixture(scope="module", autouse=True)
def frozen_heap() -> Iterator[None]:
    """Each run collects garbage twice (so that a leaked socket is counted, and warned about, in the run that
    leaked it); with the heap of a whole test session that costs tens of milliseconds a time. Freezing what
    exists before this module makes those collections look at this module's objects only."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(("row", "parser", "delivery"), ASYNCIO_RUNS)
async def test_behaviour(anyio_backend: str, row: Any, parser: str, delivery: str, reliability: Any) -> None:
    await play(row, parser, delivery, reliability, anyio_backend)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("row", TRIO_RUNS)
async def test_behaviour_on_trio(anyio_backend: str, row: Any, reliability: Any) -> None:
    await play(row, "h11", "whole", reliability, anyio_backend)
