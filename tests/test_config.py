"""Tests for aiotcp.config: Timeouts and Limits validate when built; a Budget says which clock ran out."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest

from aiotcp.budget import Budget, Phase
from aiotcp.config import Limits, Timeouts
from aiotcp.errors import (
    ConnectTimeout,
    DeadlineExceeded,
    PoolTimeout,
    ReadTimeout,
    TimedOut,
    WriteTimeout,
)

T = TypeVar("T")
PHASES: list[Phase] = ["pool", "connect", "write", "read"]
BAD_SECONDS = [0, -1, -0.5, math.nan, True, False, "5", [1]]


def run_async(func: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(func)


# -- Timeouts -----------------------------------------------------------------------------------------------


def test_timeouts_defaults() -> None:
    timeouts = Timeouts()
    assert (timeouts.connect, timeouts.read, timeouts.write, timeouts.pool, timeouts.total) == (5, 15, 15, 15, 120)


@pytest.mark.parametrize("field", ["connect", "read", "write", "pool", "total"])
@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_timeouts_reject_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^Timeouts\.{field} must be a positive number of seconds or None"):
        Timeouts(**{field: value})


@pytest.mark.parametrize("field", ["connect", "read", "write", "pool", "total"])
def test_timeouts_accept_none_and_positive_numbers(field: str) -> None:
    assert getattr(Timeouts(**{field: None}), field) is None
    assert getattr(Timeouts(**{field: 0.001}), field) == 0.001
    assert getattr(Timeouts(**{field: 3}), field) == 3


def test_timeouts_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Timeouts().read = 1  # type: ignore[misc]


def test_from_value() -> None:
    given = Timeouts(read=1)
    assert Timeouts.from_value(given) is given
    assert Timeouts.from_value(None) == Timeouts(connect=None, read=None, write=None, pool=None, total=None)
    assert Timeouts.from_value(2.5) == Timeouts(connect=2.5, read=2.5, write=2.5, pool=2.5, total=2.5)
    assert Timeouts.from_value(3) == Timeouts(connect=3, read=3, write=3, pool=3, total=3)


@pytest.mark.parametrize("value", [0, -1, math.nan, True])
def test_from_value_rejects_bad_numbers(value: Any) -> None:
    with pytest.raises(ValueError, match="must be a positive number"):
        Timeouts.from_value(value)


# -- Limits -------------------------------------------------------------------------------------------------


def test_limits_defaults() -> None:
    limits = Limits()
    assert limits.max_header_bytes == 64 * 1024
    assert limits.max_headers == 256
    assert limits.max_interim == 10
    assert limits.max_body_bytes == 256 * 1024 * 1024


@pytest.mark.parametrize("field", ["max_connections", "max_header_bytes", "max_headers", "max_interim"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5, "3", None])
def test_limits_reject_bad_counts_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^Limits\.{field} must be a positive integer"):
        Limits(**{field: value})


@pytest.mark.parametrize("value", [0, -2, True, 2.0, "2"])
def test_limits_reject_bad_max_per_host(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^Limits\.max_per_host must be a positive integer or None"):
        Limits(max_per_host=value)


@pytest.mark.parametrize("value", [-1, True, False, 1.0, "10"])
def test_limits_reject_bad_max_body_bytes(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^Limits\.max_body_bytes must be >= 0 or None"):
        Limits(max_body_bytes=value)


@pytest.mark.parametrize("value", [0, -1, math.nan, True])
def test_limits_reject_bad_keepalive_expiry(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^Limits\.keepalive_expiry must be a positive number"):
        Limits(keepalive_expiry=value)


def test_limits_accept_edges() -> None:
    limits = Limits(max_per_host=None, max_body_bytes=0, keepalive_expiry=None, max_header_bytes=1)
    assert (limits.max_per_host, limits.max_body_bytes, limits.keepalive_expiry) == (None, 0, None)
    assert Limits(max_body_bytes=None, max_per_host=1).max_body_bytes is None


# -- Budget -------------------------------------------------------------------------------------------------


def test_limit_without_a_deadline_is_the_phase_timeout() -> None:
    async def main() -> None:
        budget = Budget.start(Timeouts(connect=1, read=2, write=None, pool=4, total=None))
        assert budget.deadline is None
        assert [budget.limit(phase) for phase in PHASES] == [4, 1, math.inf, 2]

    run_async(main)


def test_limit_shrinks_with_the_deadline() -> None:
    async def main() -> None:
        budget = Budget.start(Timeouts(connect=None, read=5, write=None, pool=None, total=1.0))
        assert 0.9 < budget.limit("connect") <= 1.0  # no connect timeout: the deadline is the limit
        assert budget.limit("read") <= 1.0  # the smaller of the two
        await anyio.sleep(0.05)
        assert 0.5 < budget.limit("read") <= 0.95
        budget.deadline = anyio.current_time() - 1  # long past
        assert budget.limit("read") == 0.0  # never negative

    run_async(main)


def test_expired_is_the_phase_when_its_own_timeout_ran_out() -> None:
    expected: dict[Phase, type[TimedOut]] = {
        "pool": PoolTimeout,
        "connect": ConnectTimeout,
        "write": WriteTimeout,
        "read": ReadTimeout,
    }

    async def main() -> None:
        budget = Budget.start(Timeouts(connect=0.02, read=0.02, write=0.02, pool=0.02, total=30))
        for phase, cls in expected.items():
            with anyio.move_on_after(budget.limit(phase)) as scope:
                await anyio.sleep(1)
            assert scope.cancelled_caught
            error = budget.expired(phase, "example.test")
            assert type(error) is cls
            assert error.kind == f"{phase}_timeout"
            assert error.target == "example.test"
            assert "0.02s" in error.message

    run_async(main)


def test_expired_is_timeout_when_the_deadline_ran_out() -> None:
    async def main() -> None:
        budget = Budget.start(Timeouts(read=10, total=0.03))
        with anyio.move_on_after(budget.limit("read")) as scope:
            await anyio.sleep(1)
        assert scope.cancelled_caught
        error = budget.expired("read", "example.test")
        assert type(error) is DeadlineExceeded
        assert error.kind == "timeout"
        assert error.message == "total deadline of 0.03s exceeded"

    run_async(main)


def test_a_peer_trickling_bytes_hits_the_deadline_not_the_read_timeout() -> None:
    # Each wait is shorter than the read timeout; their sum is not shorter than the total.
    async def main() -> str:
        budget = Budget.start(Timeouts(read=0.05, total=0.06))
        for _ in range(100):
            with anyio.move_on_after(budget.limit("read")) as scope:
                await anyio.sleep(0.01)  # a byte arrives
            if scope.cancelled_caught:
                return budget.expired("read").kind
        raise AssertionError("the deadline never came")

    assert run_async(main) == "timeout"


def test_expired_for_a_phase_without_a_timeout_is_the_deadline() -> None:
    async def main() -> None:
        # The timer may fire a little early; with no read timeout, only the deadline can have run out.
        budget = Budget.start(Timeouts(read=None, total=5))
        assert budget.expired("read").kind == "timeout"
        budget = Budget(Timeouts(read=None, total=None), deadline=anyio.current_time() + 5)
        error = budget.expired("read")
        assert error.kind == "timeout"
        assert error.message == "total deadline exceeded"

    run_async(main)


def test_expired_with_time_left_is_the_phase() -> None:
    async def main() -> None:
        budget = Budget.start(Timeouts(connect=1, total=60))
        assert budget.expired("connect").kind == "connect_timeout"
        budget.deadline = anyio.current_time() + 0.0001  # within the slack of the deadline
        assert budget.expired("connect").kind == "timeout"
        no_deadline = Budget.start(Timeouts(total=None))
        assert no_deadline.expired("pool").kind == "pool_timeout"
        assert no_deadline.expired("pool").message == "no connection became free in the pool within 15s"

    run_async(main)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_budget_uses_the_running_loop_clock(backend: str) -> None:
    async def main() -> float:
        before = anyio.current_time()
        budget = Budget.start(Timeouts(total=2))
        assert budget.deadline is not None
        return budget.deadline - before

    assert 1.9 < anyio.run(main, backend=backend) <= 2.01
