"""Tests for the keep-alive pool (aiotcp.pool, through aiotcp.client): reuse, stale connections, limits,
eviction and cancellation, against real loopback servers -- and, at the end, ConnectionPool's own bookkeeping
driven directly on the memory stream (tests/memory_stream.py), where every ending is scripted exactly.

Scripted servers (tests/scripted_server.py) count the connections they accept, so "retried once on a new
connection" and "not reused" are checked where they happen: on the server.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest
from memory_stream import EOF, RESET, Item, Origin
from scripted_server import (
    CloseAfterSending,
    ReadRequest,
    Repeat,
    Reset,
    ScriptedServer,
    Send,
    Sleep,
    Step,
)

from aiotcp import AiotcpError, Client, Limits, Timeouts
from aiotcp.budget import Budget
from aiotcp.connection import BodyReader, ConnectionState, HTTPConnection
from aiotcp.errors import ConnectionRefused
from aiotcp.http11 import Request
from aiotcp.pool import ConnectionPool
from aiotcp.serve import TargetServer, running_in_thread

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
SECOND = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def keep_alive(body: bytes = b"ok", *, delay: float = 0.0, times: int = 100) -> list[Step]:
    """A script that answers up to ``times`` requests on one connection."""
    steps: list[Step] = [ReadRequest(), Sleep(delay), Send(ok(body))] if delay else [ReadRequest(), Send(ok(body))]
    return [Repeat(steps, times)]


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds: for state a server changes in its own thread (nothing to await)."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polling another thread's counters; bounded by fail_after
            await anyio.sleep(0.01)


# -- stale keep-alive: the server closed a pooled connection --------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("ending", [CloseAfterSending(), Reset()], ids=["fin", "rst"])
async def test_stale_connection_is_retried_once_on_a_fresh_one(
    anyio_backend: str, http: str, method: str, ending: Step
) -> None:
    # The server takes the second request and closes without a byte of response: the race every keep-alive
    # client loses sometimes (the server's idle timeout fired as our request was on its way).
    first = [ReadRequest(), Send(OK), ReadRequest(), ending]
    # The fresh connection answers as a server should: no body after the head of a reply to HEAD.
    fresh = keep_alive(b"second") if method == "GET" else [Repeat([ReadRequest(), Send(SECOND[:-6])], 10)]
    with ScriptedServer(first, fresh) as server:
        async with Client(http=http, timeout=Timeouts(total=5)) as client:
            assert (await client.get(f"{server.url}/one")).content == b"first"
            retried = await client.request(method, f"{server.url}/two")
            assert retried.status_code == 200
            assert retried.content == (b"second" if method == "GET" else b"")
            assert not retried.timings.reused  # the retry ran on the fresh connection
            assert retried.timings.connect_ms is not None
            assert (client.pool.opened, client.pool.open_connections) == (2, 1)
        assert server.connections_accepted == 2
        assert server.requests(0)[1].startswith(f"{method} /two ".encode())
        assert server.requests(1)[0].startswith(f"{method} /two ".encode())


async def test_stale_retry_happens_only_once(anyio_backend: str) -> None:
    first = [ReadRequest(), Send(OK), ReadRequest(), CloseAfterSending()]
    with ScriptedServer(first, [ReadRequest(), CloseAfterSending()]) as server:
        async with Client(timeout=Timeouts(total=5)) as client:
            await client.get(f"{server.url}/")
            with pytest.raises(AiotcpError) as caught:
                await client.get(f"{server.url}/again")
            assert caught.value.kind == "disconnected"
            assert caught.value.target == f"{server.url}/again"
            assert client.pool.open_connections == 0
        assert server.connections_accepted == 2  # the original and one retry, not more


@pytest.mark.parametrize(
    ("late", "kind"),
    [
        ([Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), Sleep(0.1), Reset()], "reset"),
        ([Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), CloseAfterSending()], "disconnected"),
        ([Send(b"HTTP/1.1 20"), CloseAfterSending()], "disconnected"),
    ],
    ids=["rst-mid-body", "fin-mid-body", "fin-mid-head"],
)
async def test_no_retry_after_response_bytes(anyio_backend: str, http: str, late: list[Step], kind: str) -> None:
    with ScriptedServer([ReadRequest(), Send(OK), ReadRequest(), *late]) as server:
        async with Client(http=http, timeout=Timeouts(total=5)) as client:
            await client.get(f"{server.url}/")
            with pytest.raises(AiotcpError) as caught:
                await client.get(f"{server.url}/")
            assert caught.value.kind == kind
        assert server.connections_accepted == 1


async def test_no_retry_for_post(anyio_backend: str) -> None:
    first = [ReadRequest(), Send(OK), ReadRequest(), CloseAfterSending()]
    with ScriptedServer(first, keep_alive()) as server:
        async with Client(timeout=Timeouts(total=5)) as client:
            await client.request("POST", f"{server.url}/", content=b"one")
            with pytest.raises(AiotcpError) as caught:
                await client.request("POST", f"{server.url}/", content=b"two")
            assert caught.value.kind == "disconnected"
        assert server.connections_accepted == 1  # a POST may have been acted on: never sent twice
        assert server.requests(0)[1].endswith(b"\r\n\r\ntwo")


async def test_idle_connection_closed_by_server_is_not_reused(anyio_backend: str, http: str) -> None:
    with ScriptedServer([ReadRequest(), Send(OK), CloseAfterSending()], keep_alive(b"second")) as server:
        async with Client(http=http, timeout=Timeouts(total=5)) as client:
            await client.get(f"{server.url}/")
            assert client.pool.idle_connections == 1
            await anyio.sleep(0.2)  # the server's FIN arrives while the connection sits in the pool
            response = await client.get(f"{server.url}/")
            assert response.content == b"second"
            assert not response.timings.reused
            assert client.pool.reused == 0
        assert server.connections_accepted == 2
        assert len(server.requests(0)) == 1  # nothing was sent on the closed connection


# -- what makes a connection unusable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        [ReadRequest(), Send(OK + b"garbage!")],
        [ReadRequest(), Send(OK), Sleep(0.05), Send(ok(b"forged"))],
    ],
    ids=["same-packet", "later-packet"],
)
async def test_leftover_bytes_after_a_response(anyio_backend: str, http: str, first: list[Step]) -> None:
    with ScriptedServer(first, keep_alive(b"second")) as server:
        async with Client(http=http, timeout=Timeouts(total=5)) as client:
            assert (await client.get(f"{server.url}/")).content == b"first"
            await anyio.sleep(0.15)  # the stray bytes have arrived either way
            response = await client.get(f"{server.url}/")
            assert response.content == b"second"  # never the garbage, never the forged response
            assert client.pool.reused == 0
        assert server.connections_accepted == 2


async def test_body_on_a_head_reply_makes_the_connection_unusable(anyio_backend: str, http: str) -> None:
    # A HEAD reply has no body whatever its Content-Length says; bytes after its head are not ours.
    with ScriptedServer([ReadRequest(), Send(ok(b"hello"))], keep_alive(b"second")) as server:
        async with Client(http=http, timeout=Timeouts(total=5)) as client:
            head = await client.head(f"{server.url}/")
            assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "5")
            await anyio.sleep(0.1)
            assert (await client.get(f"{server.url}/")).content == b"second"
        assert server.connections_accepted == 2


@pytest.mark.parametrize(
    ("failure", "late"),
    [
        ([Send(b"HTTP/1.1 OK\r\n\r\n")], False),  # protocol
        ([Sleep(0.3), Send(ok(b"late"))], True),  # read_timeout, then a late reply that must never be read
    ],
    ids=["protocol", "read_timeout"],
)
async def test_errored_connection_is_never_handed_out_again(
    anyio_backend: str, http: str, failure: list[Step], late: bool
) -> None:
    with ScriptedServer([ReadRequest(), Send(OK), ReadRequest(), *failure], keep_alive(b"fresh")) as server:
        async with Client(http=http, timeout=Timeouts(read=0.2, total=5)) as client:
            await client.get(f"{server.url}/")
            with pytest.raises(AiotcpError):
                await client.get(f"{server.url}/")
            assert (client.pool.open_connections, client.pool.idle_connections) == (0, 0)
            if late:
                await anyio.sleep(0.2)  # past the late reply
            for _ in range(3):
                assert (await client.get(f"{server.url}/")).content == b"fresh"
        assert server.connections_accepted == 2


async def test_keepalive_expiry(anyio_backend: str, server: TargetServer) -> None:
    async with Client(limits=Limits(keepalive_expiry=0.15)) as client:
        await client.get(f"{server.url}/")
        assert (await client.get(f"{server.url}/")).timings.reused  # within the expiry
        await anyio.sleep(0.25)
        after = await client.get(f"{server.url}/")
        assert not after.timings.reused
        assert client.pool.open_connections == 1
    assert server.connections_accepted == 2


async def test_keepalive_expiry_none_keeps_connections(anyio_backend: str, server: TargetServer) -> None:
    async with Client(limits=Limits(keepalive_expiry=None)) as client:
        await client.get(f"{server.url}/")
        await anyio.sleep(0.1)
        assert (await client.get(f"{server.url}/")).timings.reused
    assert server.connections_accepted == 1


# -- limits -----------------------------------------------------------------------------------------------


async def test_max_connections_under_concurrency(anyio_backend: str) -> None:
    limit = 3
    with ScriptedServer(keep_alive(delay=0.05)) as server:
        async with Client(limits=Limits(max_connections=limit), timeout=Timeouts(total=10)) as client:
            peak_in_pool = 0
            results: list[int] = []

            async def one() -> None:
                nonlocal peak_in_pool
                response = await client.get(f"{server.url}/")
                peak_in_pool = max(peak_in_pool, client.pool.open_connections)
                results.append(response.status_code)

            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(one)
            assert results == [200] * 20
            assert peak_in_pool <= limit
            assert client.pool.opened <= limit
            assert client.pool.open_connections == client.pool.idle_connections
        assert 1 <= server.peak_open <= limit
        assert server.connections_accepted <= limit
        assert not server.errors


async def test_max_per_host_under_concurrency(anyio_backend: str) -> None:
    per_host = 2
    with ScriptedServer(keep_alive(b"a", delay=0.05)) as one, ScriptedServer(keep_alive(b"b", delay=0.05)) as two:
        limits = Limits(max_connections=10, max_per_host=per_host)
        async with Client(limits=limits, timeout=Timeouts(total=10)) as client:
            bodies: list[bytes] = []

            async def get(url: str) -> None:
                bodies.append((await client.get(url)).content)

            async with anyio.create_task_group() as group:
                for n in range(20):
                    group.start_soon(get, f"{(one if n % 2 else two).url}/")
            assert sorted(bodies) == [b"a"] * 10 + [b"b"] * 10
            assert client.pool.opened <= 2 * per_host
        for server in (one, two):
            assert 1 <= server.peak_open <= per_host
            assert server.connections_accepted <= per_host


async def test_idle_connection_of_another_origin_is_evicted_at_the_total_limit(
    anyio_backend: str, server: TargetServer
) -> None:
    with running_in_thread() as other:
        async with Client(limits=Limits(max_connections=1)) as client:
            await client.get(f"{server.url}/")
            assert client.pool.idle_connections == 1
            await client.get(f"{other.url}/")  # no waiting: the idle connection to `server` makes room
            assert (client.pool.open_connections, client.pool.idle_connections) == (1, 1)
            assert client.pool.opened == 2
            await eventually(lambda: server.open_connections == 0)  # the server saw our FIN
            assert other.open_connections == 1


async def test_busy_connections_are_not_evicted(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client(limits=Limits(max_connections=1), timeout=Timeouts(pool=0.2, total=5)) as client:
        async with client.stream("GET", f"{shared_server.url}/bytes/1000000"):
            with pytest.raises(AiotcpError) as caught:
                await client.get(f"{shared_server.url}/")
            assert caught.value.kind == "pool_timeout"
            assert "waiting=0" in repr(client.pool)  # the timed-out waiter was removed
        assert (client.pool.open_connections, client.pool.idle_connections) == (0, 0)


# -- cancellation -----------------------------------------------------------------------------------------


async def test_cancelled_requests_leave_the_pool_consistent(anyio_backend: str, server: TargetServer) -> None:
    rng = random.Random(1234)
    paths = ["/", "/delay/20", "/bytes/200000", "/chunked/100000", "/delay/5", "/status/204"]
    async with Client(limits=Limits(max_connections=6), timeout=Timeouts(total=10)) as client:
        outcomes = {"cancelled": 0, "done": 0}

        async def one(path: str, after: float, streamed: bool) -> None:
            with anyio.move_on_after(after) as scope:
                if streamed:
                    async with client.stream("GET", f"{server.url}{path}") as response:
                        async for _ in response.stream():
                            pass
                else:
                    await client.get(f"{server.url}{path}")
            outcomes["cancelled" if scope.cancelled_caught else "done"] += 1

        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(one, rng.choice(paths), rng.uniform(0.0, 0.04), rng.random() < 0.5)
        assert outcomes["cancelled"] + outcomes["done"] == 50
        assert outcomes["cancelled"] > 0
        pool = client.pool
        assert pool.open_connections == pool.idle_connections
        assert "waiting=0" in repr(pool)
        for path in paths:
            response = await client.get(f"{server.url}{path}")
            assert response.status_code in (200, 204)
        async with anyio.create_task_group() as group:
            for path in paths * 3:
                group.start_soon(client.get, f"{server.url}{path}")
        assert pool.open_connections == pool.idle_connections <= 6
        # Every connection the pool let go of was really closed: the server sees only the ones it kept.
        await eventually(lambda: server.open_connections == pool.open_connections)


async def test_cancelled_pool_waiter_is_removed(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client(limits=Limits(max_connections=1)) as client:
        async with client.stream("GET", f"{shared_server.url}/bytes/1000000"):
            with anyio.move_on_after(0.1) as scope:
                await client.get(f"{shared_server.url}/")
            assert scope.cancelled_caught
            assert "waiting=0" in repr(client.pool)
        assert (await client.get(f"{shared_server.url}/")).status_code == 200


# -- state shown --------------------------------------------------------------------------------------------


async def test_pool_repr_shows_counts(anyio_backend: str, shared_server: TargetServer) -> None:
    async with Client() as client:
        assert repr(client.pool) == "<ConnectionPool open=0 idle=0 waiting=0 opened=0 reused=0 sweeping=False>"
        await client.get(f"{shared_server.url}/")
        await client.get(f"{shared_server.url}/")
        assert repr(client.pool) == "<ConnectionPool open=1 idle=1 waiting=0 opened=1 reused=1 sweeping=True>"
        async with client.stream("GET", f"{shared_server.url}/bytes/10"):
            # The sweeper ran meanwhile, found nothing idle and ended (the next connection given back starts one).
            assert re.fullmatch(
                r"<ConnectionPool open=1 idle=0 waiting=0 opened=1 reused=2 sweeping=False>", repr(client.pool)
            )
        # The body was not read: leaving the block closed the connection.
        assert repr(client.pool) == "<ConnectionPool open=0 idle=0 waiting=0 opened=1 reused=2 sweeping=False>"
        assert repr(client.pool) in repr(client)


# -- idle connections expire on time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"],
)
async def test_idle_connections_are_closed_when_they_expire_not_when_next_taken(anyio_backend: object) -> None:
    """A server counts idle connections against its own limit: one kept past its expiry holds a slot another
    client (or our next request) may be waiting for. The pool closes it on time, with no request to prompt it."""
    if isinstance(anyio_backend, tuple):
        pytest.importorskip("uvloop")
    with ScriptedServer(keep_alive()) as server:
        async with Client(limits=Limits(keepalive_expiry=0.2), timeout=Timeouts(total=5)) as client:
            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(client.get, f"{server.url}/")
            assert client.pool.idle_connections == 3
            assert server.open_connections == 3
            await eventually(lambda: server.open_connections == 0, timeout=2.0)  # closed by us: the server saw EOF
            assert (client.pool.open_connections, client.pool.idle_connections) == (0, 0)
            # The sweeper ends with the last idle connection: once its close returns, which may be a turn of the
            # scheduler after the server saw the EOF.
            await eventually(lambda: "sweeping=False" in repr(client.pool), timeout=2.0)
            # ... and starts again with the next connection given back.
            again = await client.get(f"{server.url}/")
            assert not again.timings.reused
            await eventually(lambda: server.open_connections == 0, timeout=2.0)
        assert server.connections_accepted == 4


async def test_a_connection_in_use_is_never_swept(anyio_backend: str) -> None:
    """The sweeper closes idle connections only: a request that outlives the expiry keeps its connection, and
    a connection reused more often than it expires stays open."""
    with ScriptedServer(keep_alive()) as quick, ScriptedServer(keep_alive(delay=0.6)) as slow:
        async with Client(limits=Limits(keepalive_expiry=0.2), timeout=Timeouts(total=5)) as client:
            await client.get(f"{quick.url}/")
            assert (await client.get(f"{slow.url}/")).content == b"ok"  # busy across the expiry of the quick one
            await eventually(lambda: quick.open_connections == 0)
            assert slow.open_connections == 1
            assert (client.pool.open_connections, client.pool.idle_connections) == (1, 1)
            for _ in range(4):  # reused every 0.1 s: never idle for 0.2 s, never swept
                await anyio.sleep(0.1)
                assert (await client.get(f"{slow.url}/again")).timings.reused
        assert (quick.connections_accepted, slow.connections_accepted) == (1, 1)


# -- bookkeeping, on the memory stream ------------------------------------------------------------------------
#
# ConnectionPool driven directly, its connections on memory peers (tests/memory_stream.py): every ending is
# scripted exactly and every count is checked at the moment it changes, without a socket.

MEMORY_URL = "http://origin.test/"


def pool_budget(pool: float | None = 5.0) -> Budget:
    return Budget.start(Timeouts(read=1, pool=pool, total=10))


async def read_response(pool: ConnectionPool, connection: HTTPConnection, budget: Budget | None = None) -> bytes:
    """One GET on ``connection``, its body read to the end and the connection handed back to ``pool``."""
    budget = budget or pool_budget()
    await connection.send_request(Request(b"GET", b"/", [(b"Host", b"origin.test")]), budget, MEMORY_URL)
    return await BodyReader(connection, budget, pool.give_back).read_all()


async def waiting(pool: ConnectionPool, count: int) -> None:
    await anyio.wait_all_tasks_blocked()
    assert f"waiting={count}" in repr(pool)


@pytest.mark.parametrize("arrival", [ok(b"forged"), EOF, RESET], ids=["stray-bytes", "fin", "rst"])
async def test_memory_pool_hands_out_an_idle_connection_only_while_it_is_safe(
    anyio_backend: str, http: str, arrival: Item
) -> None:
    origin = Origin(http=http)
    pool = ConnectionPool(Limits())
    first = await pool.acquire(origin.key, pool_budget(), origin.open)
    assert repr(pool).startswith("<ConnectionPool open=1 idle=0 waiting=0 opened=1 reused=0 ")  # then sweeping=...
    assert await read_response(pool, first) == b"hello"
    assert (first.is_idle(), pool.idle_connections) == (True, 1)
    assert await pool.acquire(origin.key, pool_budget(), origin.open) is first
    assert repr(pool).startswith("<ConnectionPool open=1 idle=0 waiting=0 opened=1 reused=1 ")  # then sweeping=...
    assert await read_response(pool, first) == b"hello"

    origin.peers[0].feed(arrival)  # while idle in the pool
    assert pool.take_idle(origin.key) is None  # unsafe: not handed out, left for acquire() to discard
    second = await pool.acquire(origin.key, pool_budget(), origin.open)
    assert second is not first
    assert first.is_closed()
    assert first.why_closed == "expired or unusable while idle"
    assert origin.peers[0].stream.closes == 1
    assert origin.peers[0].requests == origin.peers[0].requests[:2]  # nothing more was sent on it
    assert repr(pool).startswith("<ConnectionPool open=1 idle=0 waiting=0 opened=2 reused=1 ")  # then sweeping=...


async def test_memory_pool_closes_an_expired_idle_connection(anyio_backend: str) -> None:
    origin = Origin()
    pool = ConnectionPool(Limits(keepalive_expiry=1.0))
    first = await pool.acquire(origin.key, pool_budget(), origin.open)
    await read_response(pool, first)
    first.idle_since -= 0.5
    assert pool.take_idle(origin.key) is first  # not yet expired
    await read_response(pool, first)
    first.idle_since -= 1.5
    second = await pool.acquire(origin.key, pool_budget(), origin.open)
    assert second is not first
    assert first.is_closed()
    assert (pool.open_connections, pool.opened, pool.reused) == (1, 2, 1)


@pytest.mark.parametrize("ending", ["reset", "fin", "read_timeout", "cancelled"])
async def test_memory_pool_frees_the_slot_of_a_connection_that_fails_mid_body_exactly_once(
    anyio_backend: str, http: str, ending: str
) -> None:
    origin = Origin(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", http=http)
    pool = ConnectionPool(Limits(max_connections=1))
    budget = Budget.start(Timeouts(read=None if ending == "cancelled" else 0.05, total=10))
    connection = await pool.acquire(origin.key, budget, origin.open)
    await connection.send_request(Request(b"GET", b"/", [(b"Host", b"origin.test")]), budget, MEMORY_URL)
    reader = BodyReader(connection, budget, pool.give_back)
    waited: list[HTTPConnection] = []

    async def wait_for_a_slot() -> None:
        waited.append(await pool.acquire("other.test", pool_budget(), Origin("other.test").open))

    async with anyio.create_task_group() as group:
        group.start_soon(wait_for_a_slot)
        await waiting(pool, 1)  # the pool is full: the other origin waits for our slot
        if ending == "reset":
            origin.peers[0].reset()
        elif ending == "fin":
            origin.peers[0].close()
        if ending == "cancelled":
            with anyio.move_on_after(0.05) as scope:
                await reader.read_all()
            assert scope.cancelled_caught
        else:
            with pytest.raises(AiotcpError) as caught:
                await reader.read_all()
            assert caught.value.kind == {"fin": "disconnected"}.get(ending, ending)
    assert connection.is_closed()
    assert origin.peers[0].stream.closes == 1
    # The waiter got the freed slot; handing the failed connection back again changes nothing.
    assert len(waited) == 1
    assert repr(pool).startswith("<ConnectionPool open=1 idle=0 waiting=0 opened=2 reused=0 ")  # then sweeping=...
    await reader.aclose()
    await pool.release(connection, False)
    assert not pool.give_back(connection, True)
    assert repr(pool).startswith("<ConnectionPool open=1 idle=0 waiting=0 opened=2 reused=0 ")  # then sweeping=...
    await pool.release(waited[0], True)
    assert repr(pool).startswith("<ConnectionPool open=1 idle=1 waiting=0 opened=2 reused=0 ")  # then sweeping=...


async def test_memory_pool_per_host_limit_wakes_a_waiter_and_leaves_other_hosts_alone(anyio_backend: str) -> None:
    one, two = Origin("one.test"), Origin("two.test")
    pool = ConnectionPool(Limits(max_connections=10, max_per_host=1))
    first = await pool.acquire(one.key, pool_budget(), one.open)
    got: list[HTTPConnection] = []

    async def second_for_one() -> None:
        got.append(await pool.acquire(one.key, pool_budget(), one.open))

    async with anyio.create_task_group() as group:
        group.start_soon(second_for_one)
        await waiting(pool, 1)
        other = await pool.acquire(two.key, pool_budget(), two.open)  # another host: no wait
        assert (pool.open_connections, len(one.peers), len(two.peers)) == (2, 1, 1)
        await waiting(pool, 1)
        assert not pool.give_back(first, True)  # idle again: the waiter takes it
    assert got == [first]
    assert (pool.opened, pool.reused, pool.open_connections, pool.idle_connections) == (2, 1, 2, 0)
    await pool.release(other, True)
    await pool.release(first, True)
    assert repr(pool).startswith("<ConnectionPool open=2 idle=2 waiting=0 opened=2 reused=1 ")  # then sweeping=...


async def test_memory_pool_total_limit_holds_while_waiters_take_freed_slots(anyio_backend: str) -> None:
    pool = ConnectionPool(Limits(max_connections=2))
    peak = 0

    def counting(origin: Origin) -> Callable[[], Awaitable[HTTPConnection]]:
        async def open_connection() -> HTTPConnection:
            nonlocal peak
            peak = max(peak, pool.open_connections)  # the slot is counted before the opener runs
            return await origin.open()

        return open_connection

    origins = [Origin(f"o{n}.test") for n in range(6)]
    busy = [await pool.acquire(origin.key, pool_budget(), counting(origin)) for origin in origins[:2]]

    async def acquire(origin: Origin) -> None:
        busy.append(await pool.acquire(origin.key, pool_budget(), counting(origin)))

    async with anyio.create_task_group() as group:
        for origin in origins[2:]:
            group.start_soon(acquire, origin)
        await waiting(pool, 4)
        for still_waiting in (3, 2, 1, 0):
            await pool.release(busy.pop(0), False)  # each close lets exactly one waiter open
            await waiting(pool, still_waiting)
            assert (pool.open_connections, len(busy)) == (2, 2)
    assert peak == 2
    assert [len(origin.peers) for origin in origins] == [1] * 6  # every waiter got a slot (in no set order)
    assert repr(pool).startswith("<ConnectionPool open=2 idle=0 waiting=0 opened=6 reused=0 ")  # then sweeping=...


async def test_memory_pool_evicts_an_idle_connection_of_another_origin_at_the_total_limit(anyio_backend: str) -> None:
    one, two = Origin("one.test"), Origin("two.test")
    pool = ConnectionPool(Limits(max_connections=1))
    first = await pool.acquire(one.key, pool_budget(), one.open)
    assert await read_response(pool, first) == b"hello"
    with anyio.fail_after(1):  # no waiting: the idle connection makes room
        second = await pool.acquire(two.key, pool_budget(), two.open)
    assert first.is_closed()
    assert one.peers[0].stream.closes == 1
    assert (second.key, pool.open_connections, pool.idle_connections, pool.opened) == ("two.test", 1, 0, 2)


async def test_memory_pool_fresh_makes_room_by_closing_an_idle_connection_of_its_origin(anyio_backend: str) -> None:
    origin = Origin()
    pool = ConnectionPool(Limits(max_connections=1))
    first = await pool.acquire(origin.key, pool_budget(), origin.open)
    await read_response(pool, first)
    with anyio.fail_after(1):
        fresh = await pool.acquire(origin.key, pool_budget(), origin.open, fresh=True)
    assert fresh is not first
    assert first.is_closed()
    assert repr(pool).startswith("<ConnectionPool open=1 idle=0 waiting=0 opened=2 reused=0 ")  # then sweeping=...


async def test_memory_pool_wait_times_out_and_leaves_no_waiter(anyio_backend: str) -> None:
    origin = Origin()
    pool = ConnectionPool(Limits(max_connections=1))
    busy = await pool.acquire(origin.key, pool_budget(), origin.open)
    with pytest.raises(AiotcpError) as caught:
        await pool.acquire(origin.key, pool_budget(pool=0.05), origin.open)
    assert caught.value.kind == "pool_timeout"
    assert repr(pool).startswith("<ConnectionPool open=1 idle=0 waiting=0 opened=1 reused=0 ")  # then sweeping=...
    assert busy.state is ConnectionState.ACTIVE  # a busy connection is never evicted


@pytest.mark.parametrize("failure", ["cancelled", "refused"])
async def test_memory_pool_frees_the_slot_of_a_connection_that_never_opened(anyio_backend: str, failure: str) -> None:
    pool = ConnectionPool(Limits(max_connections=1))

    async def never_opens() -> HTTPConnection:
        if failure == "refused":
            await anyio.lowlevel.checkpoint()
            raise ConnectionRefused("connection refused (RST in answer to SYN)", target=MEMORY_URL)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    if failure == "refused":
        with pytest.raises(AiotcpError) as caught:
            await pool.acquire("origin.test", pool_budget(), never_opens)
        assert caught.value.kind == "refused"
    else:
        with anyio.move_on_after(0.05) as scope:
            await pool.acquire("origin.test", pool_budget(), never_opens)
        assert scope.cancelled_caught
    assert repr(pool).startswith("<ConnectionPool open=0 idle=0 waiting=0 opened=0 reused=0 ")  # then sweeping=...
    origin = Origin()
    with anyio.fail_after(1):  # the slot is free again
        await pool.acquire(origin.key, pool_budget(), origin.open)


async def test_memory_pool_aclose_closes_idle_connections_now_and_busy_ones_on_release(anyio_backend: str) -> None:
    origin = Origin()
    pool = ConnectionPool(Limits(max_connections=2))
    idle = await pool.acquire(origin.key, pool_budget(), origin.open)
    busy = await pool.acquire(origin.key, pool_budget(), origin.open)
    await read_response(pool, idle)
    await pool.aclose()
    assert pool.is_closed()
    assert idle.is_closed()
    assert not busy.is_closed()
    assert pool.give_back(busy, True)  # not kept: the caller must close it
    await busy.aclose()
    assert [peer.stream.closes for peer in origin.peers] == [1, 1]
    assert repr(pool).startswith("<ConnectionPool open=0 idle=0 waiting=0 opened=2 reused=0 ")  # then sweeping=...
    with pytest.raises(RuntimeError, match="the pool is closed"):
        await pool.acquire(origin.key, pool_budget(), origin.open)


async def test_memory_pool_closing_wakes_waiters_with_an_error(anyio_backend: str) -> None:
    origin = Origin()
    pool = ConnectionPool(Limits(max_connections=1))
    await pool.acquire(origin.key, pool_budget(), origin.open)
    errors: list[str] = []

    async def wait() -> None:
        try:
            await pool.acquire(origin.key, pool_budget(), origin.open)
        except RuntimeError as exc:
            errors.append(str(exc))

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await waiting(pool, 1)
        await pool.aclose()
    assert errors == ["the pool is closed"]
