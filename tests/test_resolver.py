"""The resolver against real DNS servers on loopback: dnslib's server answering from a zone, and a scripted
hostile one (tests/dns_server.py). Every resolver under test is given an explicit 127.0.0.1 address; the
default resolver (the machine's nameservers) is only asked for IP literals and names /etc/hosts answers.

Runs on asyncio (the c-ares backend) and trio (dnspython), and dnspython on asyncio where it matters.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator

import anyio
import pytest
from dns_server import HOSTILE, HostileDNS, RunningDNS, Zone, zone_server

import aiotcp
from aiotcp.errors import DNSError, InvalidTarget
from aiotcp.resolution import MAX_ADDRESSES, Nameserver, Resolution, ResolverConfig
from aiotcp.resolver import AsyncResolver, SystemResolver, default_resolver, make_resolver

pytestmark = pytest.mark.anyio

SLACK = 0.5  # a lookup may end this much after its deadline on a loaded machine
ZONE: Zone = {
    "host.test": [("A", "127.0.0.1", 300), ("AAAA", "::1", 300)],
    "v4.test": [("A", "127.0.0.2", 300)],
    "www.test": [("CNAME", "edge.test", 60)],
    "edge.test": [("CNAME", "host.test", 600)],
    "short.test": [("A", "127.0.0.3", 1)],
    "nodata.test": [("MX", "x", 300)],
    "broken.test": "SERVFAIL",
    **{f"n{i}.test": [("A", f"127.0.1.{i}", 300)] for i in range(1, 40)},
}


@pytest.fixture(scope="module")
def dns() -> Iterator[RunningDNS]:
    with zone_server(ZONE, negative_ttl=30) as server:
        yield server


@pytest.fixture
def fresh_dns() -> Iterator[RunningDNS]:
    """A server of this test's own, so its counts are this test's."""
    with zone_server(ZONE, negative_ttl=30) as server:
        yield server


def resolver_for(*servers: str, backend: str = "auto", **config: object) -> AsyncResolver:
    settings: dict[str, object] = {"timeout": 0.5, "attempts": 2, "backoff": 0.01, **config}
    return AsyncResolver(ResolverConfig(nameservers=servers, **settings), backend=backend)  # type: ignore[arg-type]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def fds_back_to(count: int) -> int:
    """Open descriptors once pycares's shutdown thread has closed a channel's sockets (it does so soon after
    close, in a thread of its own)."""
    for _ in range(40):
        if open_fds() <= count:
            break
        await anyio.sleep(0.05)
    return open_fds()


# -- answers ------------------------------------------------------------------------------------------------


async def test_a_name_resolves_to_both_families_with_the_resolver_named(anyio_backend: str, dns: RunningDNS) -> None:
    resolver = resolver_for(dns.address)
    try:
        resolution = await resolver.resolve("Host.TEST.")
    finally:
        await resolver.aclose()
    assert resolution.name == "host.test"
    assert (resolution.a, resolution.aaaa, resolution.cname) == (("127.0.0.1",), ("::1",), ())
    assert resolution.resolver == dns.address
    assert resolution.addresses() == ["::1", "127.0.0.1"]
    assert resolution.ttl == 300
    assert not resolution.cached
    assert resolution.dns_ms is not None
    assert resolution.dns_ms >= 0


async def test_a_cname_chain_is_followed_and_reported(anyio_backend: str, dns: RunningDNS) -> None:
    resolver = resolver_for(dns.address)
    try:
        resolution = await resolver.resolve("www.test")
    finally:
        await resolver.aclose()
    assert resolution.cname == ("edge.test", "host.test")
    assert resolution.a == ("127.0.0.1",)
    assert resolution.ttl == 60  # the chain's smallest TTL


@pytest.mark.parametrize(
    ("name", "rcode"),
    [("missing.test", "NXDOMAIN"), ("nodata.test", "NODATA"), ("broken.test", "SERVFAIL")],
)
async def test_failures_raise_dns_with_the_rcode_and_the_facts(
    anyio_backend: str, dns: RunningDNS, name: str, rcode: str
) -> None:
    resolver = resolver_for(dns.address)
    try:
        with pytest.raises(DNSError) as caught:
            await resolver.resolve(name)
    finally:
        await resolver.aclose()
    error = caught.value
    assert error.kind == "dns"
    assert error.rcode == rcode
    assert rcode in error.message
    assert isinstance(error.resolution, Resolution)
    assert error.resolution.resolver == dns.address


async def test_dnspython_on_asyncio_gives_the_same_facts(dns: RunningDNS) -> None:
    resolver = resolver_for(dns.address, backend="dnspython")
    try:
        resolution = await resolver.resolve("www.test")
        with pytest.raises(DNSError) as caught:
            await resolver.resolve("missing.test")
    finally:
        await resolver.aclose()
    assert resolution.cname == ("edge.test", "host.test")
    assert resolution.aaaa == ("::1",)
    assert caught.value.rcode == "NXDOMAIN"
    assert caught.value.resolution.ttl == 30  # type: ignore[attr-defined]  # the SOA's, which dnspython sees


async def test_ip_literals_and_hosts_names_never_reach_dns(anyio_backend: str, fresh_dns: RunningDNS) -> None:
    resolver = resolver_for(fresh_dns.address)
    try:
        assert (await resolver.resolve("127.0.0.5")).a == ("127.0.0.5",)
        assert (await resolver.resolve("::1")).aaaa == ("::1",)
        local = await resolver.resolve("localhost")
        assert "127.0.0.1" in local.a
        assert local.resolver == "hosts"
        assert (await resolver.resolve("api.localhost")).a == ("127.0.0.1",)  # RFC 6761
    finally:
        await resolver.aclose()
    assert fresh_dns.total() == 0


@pytest.mark.parametrize("name", ["a" * 64 + ".test", ".".join(["abcdefghi"] * 26), "a..test"])
async def test_a_name_dns_cannot_carry_is_invalid_target_before_any_query(
    anyio_backend: str, fresh_dns: RunningDNS, name: str
) -> None:
    resolver = resolver_for(fresh_dns.address)
    try:
        with pytest.raises(InvalidTarget) as caught:
            await resolver.resolve(name)
    finally:
        await resolver.aclose()
    assert caught.value.kind == "invalid_target"
    assert fresh_dns.total() == 0


# -- the cache and shared lookups ---------------------------------------------------------------------------


async def test_a_repeated_name_is_asked_once_per_ttl(anyio_backend: str, fresh_dns: RunningDNS) -> None:
    resolver = resolver_for(fresh_dns.address)
    try:
        for _ in range(5):
            assert (await resolver.resolve("host.test")).a == ("127.0.0.1",)
            with pytest.raises(DNSError):
                await resolver.resolve("missing.test")  # negative answers are cached too
        again = await resolver.resolve("host.test")
        assert again.cached
        await resolver.resolve("short.test")  # TTL 1 s
        await anyio.sleep(1.2)
        await resolver.resolve("short.test")
    finally:
        await resolver.aclose()
    assert fresh_dns.asked("host.test", "A") == 1
    assert fresh_dns.asked("host.test", "AAAA") == 1
    assert fresh_dns.asked("missing.test", "A") == 1
    assert fresh_dns.asked("short.test", "A") == 2  # expired, asked again
    assert resolver.cache.hits >= 9


async def test_failures_are_not_cached(anyio_backend: str, fresh_dns: RunningDNS) -> None:
    resolver = resolver_for(fresh_dns.address, attempts=1)
    try:
        for _ in range(2):
            with pytest.raises(DNSError):
                await resolver.resolve("broken.test")
    finally:
        await resolver.aclose()
    assert fresh_dns.asked("broken.test", "A") == 2


async def test_the_cache_is_bounded_least_recently_used_first(anyio_backend: str, fresh_dns: RunningDNS) -> None:
    resolver = resolver_for(fresh_dns.address, cache_size=3)
    try:
        for name in ("n1.test", "n2.test", "n3.test", "n1.test", "n4.test"):
            await resolver.resolve(name)
    finally:
        await resolver.aclose()
    assert len(resolver.cache) == 3
    assert resolver.cache.get("n1.test") is not None  # used again before n4 came: kept
    assert resolver.cache.get("n2.test") is None  # the least recently used when n4 came: evicted
    assert fresh_dns.asked("n1.test", "A") == 1


async def test_concurrent_lookups_of_one_name_share_one_query(anyio_backend: str) -> None:
    with zone_server(ZONE, delay=0.2) as slow:
        resolver = resolver_for(slow.address, timeout=2.0)
        results = []

        async def one() -> None:
            results.append(await resolver.resolve("host.test"))

        try:
            async with anyio.create_task_group() as group:
                for _ in range(50):
                    group.start_soon(one)
        finally:
            await resolver.aclose()
        assert slow.asked("host.test", "A") == 1
        assert slow.asked("host.test", "AAAA") == 1
    assert len(results) == 50
    assert all(result.a == ("127.0.0.1",) for result in results)
    assert resolver.shared == 49
    assert resolver.lookups == 1


async def test_a_waiter_takes_over_when_the_lookup_it_waits_for_is_cancelled(anyio_backend: str) -> None:
    with zone_server(ZONE, delay=0.3) as slow:
        resolver = resolver_for(slow.address, timeout=2.0)
        try:
            async with anyio.create_task_group() as group:
                leader_scope = anyio.CancelScope()

                async def leader() -> None:
                    with leader_scope:
                        await resolver.resolve("v4.test")

                group.start_soon(leader)
                await anyio.sleep(0.05)
                waiter_result = []

                async def waiter() -> None:
                    waiter_result.append(await resolver.resolve("v4.test"))

                group.start_soon(waiter)
                await anyio.sleep(0.05)
                leader_scope.cancel()
        finally:
            await resolver.aclose()
    assert waiter_result[0].a == ("127.0.0.2",)
    assert resolver.lookups == 2  # the cancelled one, and the waiter's own


async def test_the_default_cache_is_shared_by_clients_of_one_process(anyio_backend: str, fresh_dns: RunningDNS) -> None:
    for _ in range(3):
        async with aiotcp.Client(resolvers=[fresh_dns.address]) as client:
            assert isinstance(client.resolver, AsyncResolver)
            await client.resolver.resolve("n5.test")
    assert fresh_dns.asked("n5.test", "A") == 1


# -- resolver lists: failover, set aside, limits, pacing ----------------------------------------------------


async def test_servfail_everywhere_fails_over_and_sets_the_resolver_aside(anyio_backend: str, dns: RunningDNS) -> None:
    with HostileDNS() as hostile:
        resolver = resolver_for(hostile.address, dns.address, set_aside_after=2, set_aside_for=60.0)
        try:
            # servfail.test fails at the hostile resolver and does not exist at the good one: a failover to
            # the good one gives its final answer, NXDOMAIN, never the hostile SERVFAIL.
            for _ in range(4):
                resolver.cache.clear()
                with pytest.raises(DNSError) as caught:
                    await resolver.resolve("servfail.test")
                assert caught.value.rcode == "NXDOMAIN"
                assert caught.value.resolution.resolver == dns.address  # type: ignore[attr-defined]
            asked_before = hostile.asked("servfail.test")
            servers = resolver._state().servers
            assert servers[0].is_set_aside(time.monotonic())
            for _ in range(3):
                resolver.cache.clear()
                with pytest.raises(DNSError):
                    await resolver.resolve("servfail.test")
        finally:
            await resolver.aclose()
        assert 1 <= asked_before <= 4
        assert hostile.asked("servfail.test") == asked_before  # set aside: not asked again


async def test_retries_back_off_on_servfail_and_give_up_after_the_attempts(anyio_backend: str) -> None:
    with HostileDNS() as hostile:
        resolver = resolver_for(hostile.address, attempts=3)
        try:
            with pytest.raises(DNSError) as caught:
                await resolver.resolve("servfail.test")
        finally:
            await resolver.aclose()
        assert caught.value.rcode == "SERVFAIL"
        assert hostile.asked("servfail.test") == 6  # 3 attempts for A and for AAAA


async def test_in_flight_queries_per_resolver_are_limited(anyio_backend: str) -> None:
    with zone_server(ZONE, delay=0.1) as slow:
        resolver = resolver_for(slow.address, max_in_flight=2, timeout=3.0)
        in_flight = []
        try:
            async with anyio.create_task_group() as group:
                for i in range(1, 9):
                    group.start_soon(resolver.resolve, f"n{i}.test")
                for _ in range(20):
                    await anyio.sleep(0.02)
                    in_flight.append(resolver._state().servers[0].slots.in_use)
        finally:
            await resolver.aclose()
        assert max(in_flight) == 2
        assert slow.total() == 16


async def test_pacing_spreads_query_starts(anyio_backend: str, fresh_dns: RunningDNS) -> None:
    resolver = resolver_for(fresh_dns.address, rate=40.0)
    started = time.monotonic()
    try:
        async with anyio.create_task_group() as group:
            for i in range(1, 6):
                group.start_soon(resolver.resolve, f"n{i}.test")
    finally:
        await resolver.aclose()
    # 10 queries (5 pairs) at 40/s: the last pair may not start before 8/40 s (a lower bound the schedule
    # enforces; a loaded machine only makes it later).
    assert time.monotonic() - started >= 8 / 40 * 0.9
    assert fresh_dns.total() == 10


async def test_a_truncated_answer_is_asked_again_over_tcp_and_capped(anyio_backend: str) -> None:
    with HostileDNS() as hostile:
        resolver = resolver_for(hostile.address)
        try:
            resolution = await resolver.resolve("truncated.test")
        finally:
            await resolver.aclose()
    assert len(resolution.a) == MAX_ADDRESSES  # 200 came over TCP


# -- hostile DNS: every behaviour ends in the right rcode, in time, leaving nothing behind -------------------


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_dns_ends_in_the_right_rcode_within_the_deadline(anyio_backend: str, name: str) -> None:
    with HostileDNS() as hostile:
        fds = open_fds()
        tasks = len(asyncio.all_tasks()) if anyio_backend == "asyncio" else 0
        config = ResolverConfig(nameservers=(Nameserver.parse(hostile.address),), timeout=0.4, attempts=2)
        deadline = 3.0
        started = time.monotonic()
        records = [
            record
            async for record in aiotcp.probe_many(
                [f"http://{name}:9/"], timeout=deadline, resolver=config, resolvers=(hostile.address,)
            )
        ]
        elapsed = time.monotonic() - started
        backend = "c-ares" if anyio_backend == "asyncio" else "dnspython"
        expected = HOSTILE[name].expect(backend)
        (record,) = records
        if expected is None:
            assert record.dns_rcode is None
            assert record.a is not None
            assert len(record.a) >= 1
            assert record.error != "dns"
        else:
            assert (record.error, record.dns_rcode) == ("dns", expected), record.error_message
            assert record.ip is None
            # A lookup left unanswered is a timeout, and says in which phase; a negative answer is none.
            assert record.timeout_phase == ("dns" if expected == "TIMEOUT" else None)
        assert record.resolver == hostile.address
        assert elapsed < deadline + SLACK
        assert await fds_back_to(fds) <= fds
        if anyio_backend == "asyncio":
            assert len(asyncio.all_tasks()) == tasks


# -- the system resolver and the default -------------------------------------------------------------------


async def test_the_system_resolver_answers_hosts_names(anyio_backend: str) -> None:
    resolution = await SystemResolver().resolve("localhost")
    assert "127.0.0.1" in resolution.a
    assert resolution.resolver == "system"
    async with aiotcp.Client(resolver="system") as client:
        assert isinstance(client.resolver, SystemResolver)


async def test_the_system_resolver_maps_getaddrinfo_failures(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No name leaves the machine: getaddrinfo is replaced by one that fails as the C library does.
    async def failing(host: object, *args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr("aiotcp.resolver.anyio.getaddrinfo", failing)
    with pytest.raises(DNSError) as caught:
        await SystemResolver().resolve("no-such-host.invalid")
    assert caught.value.rcode == "NXDOMAIN"


async def test_the_default_resolver_answers_localhost_and_literals_from_hosts(anyio_backend: str) -> None:
    resolver = default_resolver()
    assert (await resolver.resolve("localhost")).resolver == "hosts"
    assert (await resolver.resolve("127.0.0.1")).a == ("127.0.0.1",)


def test_make_resolver_refuses_what_does_not_go_together() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        make_resolver(resolvers=["nope"])
    with pytest.raises(ValueError, match="system"):
        make_resolver("system", resolvers=["127.0.0.1"])
    with pytest.raises(ValueError, match="resolver must be"):
        make_resolver("fast")
    assert make_resolver() is default_resolver()
    given = SystemResolver()
    assert make_resolver(given) is given
    assert isinstance(make_resolver(ResolverConfig(), resolvers="127.0.0.1:5300"), AsyncResolver)
