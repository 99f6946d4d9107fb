"""aiotcp.resolution: resolver addresses and settings, and what the answers of an A and an AAAA query mean --
every rule without a socket (the resolver tests, tests/test_resolver.py, send real queries)."""

from __future__ import annotations

import math

import pytest

from aiotcp.resolution import (
    CNAME,
    MAX_ADDRESSES,
    MAX_CHAIN,
    TYPE_A,
    TYPE_AAAA,
    Answer,
    Nameserver,
    QueryFailure,
    Record,
    Resolution,
    ResolverConfig,
    combine,
    follow_chain,
    name_problem,
    parse_hosts,
    parse_nameservers,
    parse_resolv_conf,
)

R = "127.0.0.1:53"
CONFIG = ResolverConfig(negative_ttl=60, max_ttl=3600)


def a(name: str, address: str, ttl: int = 300) -> Record:
    return Record(name, TYPE_A, ttl, address)


def aaaa(name: str, address: str, ttl: int = 300) -> Record:
    return Record(name, TYPE_AAAA, ttl, address)


def cname(name: str, target: str, ttl: int = 300) -> Record:
    return Record(name, CNAME, ttl, target)


def ok(*records: Record) -> Answer:
    return Answer("NOERROR", R, records)


# -- resolver addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("127.0.0.1", "127.0.0.1", 53, "127.0.0.1:53"),
        ("127.0.0.1:5353", "127.0.0.1", 5353, "127.0.0.1:5353"),
        (" 127.0.0.2:53 ", "127.0.0.2", 53, "127.0.0.2:53"),
        ("::1", "::1", 53, "[::1]:53"),
        ("[::1]:5300", "::1", 5300, "[::1]:5300"),
        ("[0:0::1]", "::1", 53, "[::1]:53"),
    ],
)
def test_a_resolver_is_an_address_and_a_port(text: str, host: str, port: int, shown: str) -> None:
    server = Nameserver.parse(text)
    assert (server.host, server.port, str(server)) == (host, port, shown)


@pytest.mark.parametrize(
    "text",
    ["", "dns.example", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "127.0.0.1:", "[::1", "[::1]x", "1.2.3"],
)
def test_a_bad_resolver_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="resolver") as caught:
        Nameserver.parse(text)
    assert repr(text) in str(caught.value) or text == ""


def test_resolver_lists_drop_duplicates_and_refuse_none() -> None:
    assert parse_nameservers("127.0.0.1,127.0.0.2:5353,127.0.0.1:53") == (
        Nameserver("127.0.0.1"),
        Nameserver("127.0.0.2", 5353),
    )
    with pytest.raises(ValueError, match="no resolver"):
        parse_nameservers([])
    with pytest.raises(ValueError, match="'nope'"):
        parse_nameservers("127.0.0.1,nope")


def test_config_validates_itself_and_takes_strings() -> None:
    assert ResolverConfig(nameservers=("127.0.0.1:5353",)).nameservers == (Nameserver("127.0.0.1", 5353),)  # type: ignore[arg-type]
    for bad in (
        {"timeout": 0},
        {"timeout": math.inf},
        {"attempts": 0},
        {"max_in_flight": 0},
        {"rate": -1.0},
        {"cache_size": -1},
        {"negative_ttl": math.nan},
        {"attempts": True},
    ):
        with pytest.raises(ValueError, match="ResolverConfig"):
            ResolverConfig(**bad)
    hash(ResolverConfig())  # a cache per config: it must be hashable


# -- one answer: the CNAME chain ----------------------------------------------------------------------------


def test_a_chain_is_followed_to_the_addresses_and_reported_in_order() -> None:
    records = [cname("www.test", "edge.test", 60), cname("edge.test", "host.test", 600), a("host.test", "192.0.2.1")]
    addresses, chain, ttl, problem = follow_chain("WWW.test.", records, TYPE_A)
    assert addresses == ["192.0.2.1"]
    assert chain == ["edge.test", "host.test"]
    assert ttl == 60  # the smallest TTL on the way
    assert problem is None


def test_records_for_another_name_are_not_the_answer() -> None:
    addresses, chain, ttl, problem = follow_chain("asked.test", [a("other.test", "192.0.2.1")], TYPE_A)
    assert (addresses, chain, ttl, problem) == ([], [], math.inf, None)


def test_a_cname_loop_and_an_endless_chain_are_problems_not_answers() -> None:
    loop = [cname("a.test", "b.test"), cname("b.test", "a.test"), a("a.test", "192.0.2.1")]
    addresses, _, _, problem = follow_chain("b.test", loop[:2], TYPE_A)
    assert addresses == []
    assert problem is not None
    assert "loop" in problem
    chain = [cname(f"h{i}.test", f"h{i + 1}.test") for i in range(MAX_CHAIN + 1)] + [
        a(f"h{MAX_CHAIN + 1}.test", "192.0.2.11")
    ]
    assert follow_chain("h0.test", chain, TYPE_A)[3] == f"CNAME chain longer than {MAX_CHAIN}"
    assert follow_chain("h1.test", chain, TYPE_A)[0] == ["192.0.2.11"]  # exactly MAX_CHAIN hops is fine


def test_addresses_are_checked_deduplicated_and_capped() -> None:
    records = [a("n.test", "192.0.2.1"), a("n.test", "192.0.2.1"), a("n.test", "not-an-ip"), a("n.test", "::1")]
    records += [a("n.test", f"10.0.{i // 250}.{i % 250}") for i in range(200)]
    addresses = follow_chain("n.test", records, TYPE_A)[0]
    assert addresses[0] == "192.0.2.1"
    assert "not-an-ip" not in addresses
    assert "::1" not in addresses
    assert len(addresses) == MAX_ADDRESSES
    assert follow_chain("n.test", [aaaa("n.test", "0:0::1"), aaaa("n.test", "127.0.0.1")], TYPE_AAAA)[0] == ["::1"]


# -- two answers: the facts ---------------------------------------------------------------------------------


def test_both_families_make_one_resolution_ordered_for_happy_eyeballs() -> None:
    resolution = combine(
        "n.test",
        ok(cname("n.test", "h.test", 100), a("h.test", "192.0.2.1"), a("h.test", "192.0.2.2")),
        ok(cname("n.test", "h.test", 100), aaaa("h.test", "2001:db8::1", 50)),
        CONFIG,
    )
    assert resolution.ok
    assert resolution.rcode is None
    assert resolution.a == ("192.0.2.1", "192.0.2.2")
    assert resolution.aaaa == ("2001:db8::1",)
    assert resolution.cname == ("h.test",)
    assert resolution.ttl == 50
    assert resolution.resolver == R
    assert resolution.addresses() == ["2001:db8::1", "192.0.2.1", "192.0.2.2"]


def test_one_family_is_enough_and_a_failed_one_does_not_matter_then() -> None:
    resolution = combine("n.test", ok(a("n.test", "192.0.2.1")), QueryFailure("TIMEOUT", R, "silent"), CONFIG)
    assert resolution.ok
    assert resolution.aaaa == ()


@pytest.mark.parametrize(
    ("a_outcome", "aaaa_outcome", "rcode"),
    [
        (Answer("NXDOMAIN", R), Answer("NXDOMAIN", R), "NXDOMAIN"),
        (Answer("NXDOMAIN", R), QueryFailure("TIMEOUT", R, "t"), "NXDOMAIN"),  # the name does not exist
        (Answer("NODATA", R), Answer("NODATA", R), "NODATA"),
        (ok(), ok(cname("n.test", "x.test")), "NODATA"),  # a chain to a name with no address
        (Answer("NODATA", R), QueryFailure("SERVFAIL", R, "s"), "SERVFAIL"),  # the A may exist
        (QueryFailure("TIMEOUT", R, "t"), QueryFailure("SERVFAIL", R, "s"), "TIMEOUT"),
        (QueryFailure("REFUSED", R, "r"), Answer("NODATA", R), "REFUSED"),
        (ok(cname("n.test", "m.test"), cname("m.test", "n.test")), Answer("NODATA", R), "SERVFAIL"),
    ],
)
def test_without_an_address_the_most_telling_outcome_is_the_rcode(
    a_outcome: Answer | QueryFailure, aaaa_outcome: Answer | QueryFailure, rcode: str
) -> None:
    resolution = combine("n.test", a_outcome, aaaa_outcome, CONFIG)
    assert resolution.rcode == rcode
    assert not resolution.ok
    assert resolution.addresses() == []
    assert resolution.message


def test_negative_answers_are_cached_for_the_soa_ttl_failures_not_at_all() -> None:
    soa = combine("n.test", Answer("NXDOMAIN", R, negative_ttl=7), Answer("NXDOMAIN", R, negative_ttl=9), CONFIG)
    assert soa.ttl == 7
    assert combine("n.test", Answer("NODATA", R), Answer("NODATA", R), CONFIG).ttl == CONFIG.negative_ttl
    assert combine("n.test", QueryFailure("TIMEOUT", R, "t"), Answer("NODATA", R), CONFIG).ttl == 0
    capped = ResolverConfig(max_ttl=10)
    assert combine("n.test", ok(a("n.test", "192.0.2.1", 86400)), Answer("NODATA", R), capped).ttl == 10


def test_describe_says_it_in_one_line() -> None:
    good = Resolution("n.test", a=("192.0.2.1",), cname=("h.test",), resolver=R)
    assert good.describe() == f"n.test -> 192.0.2.1 via h.test [{R}]"
    assert Resolution("n.test", rcode="NXDOMAIN", resolver=R).describe() == f"n.test: NXDOMAIN [{R}]"


# -- names and system files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a" * 63 + ".test", None),
        ("a" * 64 + ".test", "label longer than 63"),
        (".".join(["a" * 49] * 5), "longer than 253"),  # 249 characters: fine
        (".".join(["a" * 50] * 5) + ".ab", "longer than 253"),
        ("a..test", "empty label"),
        ("bücher.test", "not ASCII"),
        ("a b.test", "character"),
        ("_dmarc.test.", None),
    ],
)
def test_a_name_dns_cannot_carry_is_refused_before_any_query(name: str, problem: str | None) -> None:
    found = name_problem(name)
    if problem is None or (len(name.rstrip(".")) <= 253 and problem == "longer than 253"):
        assert found is None, found
    else:
        assert found is not None
        assert problem in found


def test_hosts_file_by_name_and_family() -> None:
    text = "# comment\n127.0.0.1 localhost Box\n::1 localhost ip6-localhost\nnot-an-ip x\n10.0.0.1\n127.0.0.2 box # x"
    table = parse_hosts(text)
    assert table["localhost"] == (("127.0.0.1",), ("::1",))
    assert table["box"] == (("127.0.0.1", "127.0.0.2"), ())
    assert "x" not in table


def test_resolv_conf_nameservers() -> None:
    text = "search corp.test\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:2\n"
    assert parse_resolv_conf(text) == (Nameserver("127.0.0.53"), Nameserver("::1"))
