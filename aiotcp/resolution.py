"""DNS as values: resolver addresses and settings, the answers a resolver gives, and what they mean.

Nothing here does I/O; :mod:`aiotcp.resolver` sends the queries and calls these functions on what comes back,
so every rule below is tested without a socket.

Theory of operation
-------------------
A name is resolved by two queries, A and AAAA, each sent to one resolver (:class:`Nameserver`) and retried on
others (:mod:`aiotcp.resolver` decides). A query ends in an :class:`Answer` (the resolver said something
final: records, NXDOMAIN or NODATA) or a :class:`QueryFailure` (SERVFAIL, REFUSED, no usable answer in time).
:func:`combine` turns the two outcomes into one :class:`Resolution`, the facts a probe record carries:

- the answer records are untrusted input: only records owned by the name asked for, or by a name its CNAME
  chain leads to, count (:func:`follow_chain`); a chain that loops or runs past :data:`MAX_CHAIN` is a
  SERVFAIL; at most :data:`MAX_ADDRESSES` addresses per family are kept, each checked to be one;
- any address at all is a success (``rcode`` None); otherwise NXDOMAIN if either query said the name does not
  exist, else the first failure (SERVFAIL, REFUSED or TIMEOUT: the missing family may exist), else NODATA;
- how long the outcome may be cached (:attr:`Resolution.ttl`): positive answers for the smallest TTL of the
  records used, negative ones for the SOA's (RFC 2308) or :attr:`ResolverConfig.negative_ttl` when the
  answer carried none, both capped by :attr:`ResolverConfig.max_ttl`; failures are not cached.

``dns_rcode`` in a probe record is one of :data:`RCODES`: ``NXDOMAIN`` and ``NODATA`` are final (never retried),
``SERVFAIL`` and ``TIMEOUT`` are transient (:data:`TRANSIENT_RCODES`), ``REFUSED`` is the resolver's policy
(or nothing listening on its port).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CNAME",
    "HOSTS_PATH",
    "MAX_ADDRESSES",
    "MAX_CHAIN",
    "RCODES",
    "RESOLV_CONF_PATH",
    "TRANSIENT_RCODES",
    "TYPE_A",
    "TYPE_AAAA",
    "Answer",
    "Nameserver",
    "QueryFailure",
    "Record",
    "Resolution",
    "ResolverConfig",
    "combine",
    "follow_chain",
    "name_problem",
    "parse_hosts",
    "parse_nameservers",
    "parse_resolv_conf",
]

TYPE_A: Final = 1
CNAME: Final = 5
TYPE_AAAA: Final = 28

#: Every ``dns_rcode`` a failed resolution reports.
RCODES: Final = ("NXDOMAIN", "NODATA", "SERVFAIL", "REFUSED", "TIMEOUT")
#: Worth asking again (the probe's ``--retries``): the next resolver, or the same one later, may answer.
TRANSIENT_RCODES: Final = frozenset({"SERVFAIL", "TIMEOUT"})
#: Addresses kept per family: an oversized answer cannot make a record (or the cache) grow without bound.
MAX_ADDRESSES: Final = 32
#: CNAME hops followed before the chain counts as broken (resolvers give up at about 8-16).
MAX_CHAIN: Final = 16


# -- resolvers and their settings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Nameserver:
    """A DNS resolver to query: an IP address (v4 or v6) and a UDP/TCP port. Validated when built."""

    host: str
    port: int = 53

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"resolver address {self.host!r} is not an IP address") from None
        if "%" in self.host:
            raise ValueError(f"resolver address {self.host!r}: a scoped IPv6 address is not supported")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"resolver port must be 1-65535, got {self.port!r} for {self.host!r}")
        object.__setattr__(self, "host", address.compressed)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Nameserver:
        """``IP``, ``IP:PORT``, ``IPv6`` or ``[IPv6]:PORT``. Raises ``ValueError`` quoting the text."""
        raw = text.strip()
        host, port = raw, "53"
        if raw.startswith("["):
            host, sep, rest = raw[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"invalid resolver {text!r}: use IP, IP:PORT or [IPv6]:PORT")
            port = rest[1:] if rest else "53"
        elif raw.count(":") == 1:
            host, _, port = raw.partition(":")
        if not (port.isascii() and port.isdigit()) or len(port) > 5:
            raise ValueError(f"invalid resolver {text!r}: the port must be a number 1-65535")
        try:
            return cls(host, int(port))
        except ValueError as exc:
            raise ValueError(f"invalid resolver {text!r}: {exc}") from None


def parse_nameservers(items: str | Iterable[str | Nameserver]) -> tuple[Nameserver, ...]:
    """Resolvers from ``"IP[:PORT],IP[:PORT]"`` or from an iterable of strings or :class:`Nameserver` s.

    Duplicates are dropped (the first stays). Raises ``ValueError`` naming the bad entry, or for none at all.
    """
    parts = items.split(",") if isinstance(items, str) else items
    found: list[Nameserver] = []
    for part in parts:
        server = part if isinstance(part, Nameserver) else Nameserver.parse(part)
        if server not in found:
            found.append(server)
    if not found:
        raise ValueError("no resolver given")
    return tuple(found)


def _check_number(name: str, value: float | int | None, *, minimum: float, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < minimum:
        raise ValueError(f"ResolverConfig.{name} must be a number >= {minimum:g}, got {value!r}")
    if math.isinf(value):
        raise ValueError(f"ResolverConfig.{name} must be finite, got {value!r}")


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """How the async resolver queries. A value object, validated when built.

    - ``nameservers``: resolvers to ask (:class:`Nameserver` s, or strings ``IP[:PORT]``); empty means the
      ``nameserver`` lines of ``/etc/resolv.conf`` (its ``search`` list is not applied: names are queried as
      given).
    - ``timeout``: seconds one query waits for one resolver; ``attempts``: resolvers tried per query (a retry
      goes to the next healthy one, after ``backoff`` seconds doubled at each retry).
    - ``max_in_flight`` queries per resolver at once, ``rate`` queries started per second per resolver
      (``None``: no pacing).
    - A resolver whose last ``set_aside_after`` queries all failed (timeout, SERVFAIL, refused, a malformed
      answer) is set aside for ``set_aside_for`` seconds: queries go to the others while there are others.
    - The cache: ``cache_size`` names, positive answers kept for their TTL, negative ones for their SOA's
      (or ``negative_ttl`` when none came with the answer), never longer than ``max_ttl``.
    - ``hosts``: answer from ``/etc/hosts`` (and ``localhost`` from loopback, RFC 6761) before asking DNS.
    """

    nameservers: tuple[Nameserver, ...] = ()
    timeout: float = 2.0
    attempts: int = 3
    backoff: float = 0.05
    max_in_flight: int = 256
    rate: float | None = None
    set_aside_after: int = 8
    set_aside_for: float = 30.0
    cache_size: int = 10_000
    negative_ttl: float = 60.0
    max_ttl: float = 3600.0
    hosts: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.nameservers, tuple) or not all(isinstance(s, Nameserver) for s in self.nameservers):
            servers = self.nameservers
            object.__setattr__(self, "nameservers", parse_nameservers(servers) if servers else ())
        _check_number("timeout", self.timeout, minimum=0.001)
        _check_number("backoff", self.backoff, minimum=0.0)
        _check_number("rate", self.rate, minimum=0.001, allow_none=True)
        _check_number("set_aside_for", self.set_aside_for, minimum=0.0)
        _check_number("negative_ttl", self.negative_ttl, minimum=0.0)
        _check_number("max_ttl", self.max_ttl, minimum=0.0)
        for name in ("attempts", "max_in_flight", "set_aside_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ResolverConfig.{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.cache_size, bool) or not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise ValueError(f"ResolverConfig.cache_size must be a whole number >= 0, got {self.cache_size!r}")


# -- what a query gives back ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One answer record as the resolver sent it: owner name, type, TTL and value (an address or a name)."""

    name: str
    type: int
    ttl: int
    value: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A final answer to one query: ``NOERROR`` with its answer ``records``, ``NXDOMAIN`` or ``NODATA``.

    ``negative_ttl`` is the SOA's TTL (RFC 2308: the smaller of its TTL and MINIMUM) when the backend saw one.
    """

    rcode: str
    resolver: str
    records: tuple[Record, ...] = ()
    negative_ttl: float | None = None


@dataclass(frozen=True, slots=True)
class QueryFailure:
    """No final answer from ``resolver``: ``rcode`` SERVFAIL, REFUSED or TIMEOUT, and a sentence why."""

    rcode: str
    resolver: str
    message: str


Outcome = Answer | QueryFailure


@dataclass(frozen=True, slots=True)
class Resolution:
    """The DNS facts of one name: what it resolved to, through which CNAMEs, from which resolver.

    ``rcode`` is None when the name has at least one address, else one of :data:`RCODES`. ``resolver`` is the
    resolver that answered (``IP:PORT``), ``"hosts"`` for ``/etc/hosts``, ``"system"`` for getaddrinfo.
    ``ttl`` is how long it may be cached (0: not at all); ``dns_ms`` and ``cached`` describe one lookup of it.
    """

    name: str
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cname: tuple[str, ...] = ()
    rcode: str | None = None
    resolver: str | None = None
    message: str | None = None
    ttl: float = 0.0
    dns_ms: float | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        """Whether the name resolved to at least one address."""
        return self.rcode is None

    def looked_up(self, dns_ms: float, *, cached: bool = False) -> Resolution:
        """This resolution as one lookup returned it: how long that took, and whether from the cache.
        (Built directly: ``dataclasses.replace`` costs several times more, once per name.)"""
        return Resolution(
            self.name,
            self.a,
            self.aaaa,
            self.cname,
            self.rcode,
            self.resolver,
            self.message,
            self.ttl,
            dns_ms,
            cached,
        )

    def addresses(self) -> list[str]:
        """Every address, in the order happy eyeballs tries them: IPv6 and IPv4 alternating, IPv6 first
        (RFC 8305)."""
        ordered: list[str] = []
        for index in range(max(len(self.a), len(self.aaaa))):
            if index < len(self.aaaa):
                ordered.append(self.aaaa[index])
            if index < len(self.a):
                ordered.append(self.a[index])
        return ordered

    def describe(self) -> str:
        """One line for people: ``name -> addresses (via chain) [resolver]`` or the failure."""
        via = f" via {' -> '.join(self.cname)}" if self.cname else ""
        source = f" [{self.resolver}]" if self.resolver else ""
        if self.rcode is not None:
            return f"{self.name}{via}: {self.rcode}{source}"
        return f"{self.name} -> {', '.join(self.addresses())}{via}{source}"


def _fold(name: str) -> str:
    return name.lower().rstrip(".")


_DOTTED_QUAD = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


def _address(value: str, family: int) -> str | None:
    if family == 4:  # the common case, checked without building an address object
        return value if _DOTTED_QUAD.fullmatch(value) is not None else None
    try:
        parsed = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return parsed.compressed


def follow_chain(name: str, records: Sequence[Record], rtype: int) -> tuple[list[str], list[str], float, str | None]:
    """The addresses of type ``rtype`` that ``name`` leads to in ``records``, through its CNAMEs.

    Returns ``(addresses, chain, ttl, problem)``: ``chain`` is the CNAME targets in order, ``ttl`` the smallest
    TTL of the records used (``math.inf`` if none), ``problem`` a sentence when the chain loops or is longer
    than :data:`MAX_CHAIN` (then there are no addresses). Records for other names (an answer "for another
    name"), of other types, or whose value is not an address of the family are ignored.
    """
    owner = _fold(name)
    cnames: dict[str, Record] = {}
    owned: dict[str, list[Record]] = {}
    for record in records:
        key = _fold(record.name)
        if record.type == CNAME:
            cnames.setdefault(key, record)  # two CNAMEs for one owner is invalid: the first stands
        elif record.type == rtype:
            owned.setdefault(key, []).append(record)
    chain: list[str] = []
    seen = {owner}
    ttl = math.inf
    while owner not in owned and owner in cnames:
        record = cnames[owner]
        target = _fold(record.value)
        ttl = min(ttl, record.ttl)
        if target in seen:
            return [], chain, ttl, f"CNAME loop: {' -> '.join([_fold(name), *chain, target])}"
        if len(chain) >= MAX_CHAIN:
            return [], chain, ttl, f"CNAME chain longer than {MAX_CHAIN}"
        chain.append(target)
        seen.add(target)
        owner = target
    family = 4 if rtype == TYPE_A else 6
    addresses: list[str] = []
    for record in owned.get(owner, ()):
        address = _address(record.value, family)
        if address is not None and address not in addresses:
            addresses.append(address)
            ttl = min(ttl, record.ttl)
            if len(addresses) >= MAX_ADDRESSES:
                break
    return addresses, chain, ttl, None


def combine(name: str, a: Outcome, aaaa: Outcome, config: ResolverConfig) -> Resolution:
    """One :class:`Resolution` from the outcomes of the A and the AAAA query (see the module docstring)."""
    found: dict[int, list[str]] = {TYPE_A: [], TYPE_AAAA: []}
    chain: list[str] = []
    ttl = math.inf
    failures: list[QueryFailure] = []
    negatives: list[Answer] = []
    resolver: str | None = None
    for rtype, outcome in ((TYPE_A, a), (TYPE_AAAA, aaaa)):
        if isinstance(outcome, QueryFailure):
            failures.append(outcome)
            continue
        resolver = resolver or outcome.resolver
        if outcome.rcode != "NOERROR":
            negatives.append(outcome)
            continue
        addresses, hops, record_ttl, problem = follow_chain(name, outcome.records, rtype)
        if problem is not None:
            failures.append(QueryFailure("SERVFAIL", outcome.resolver, problem))
            continue
        chain = chain or hops
        found[rtype] = addresses
        if addresses:
            ttl = min(ttl, record_ttl)
        else:
            negatives.append(Answer("NODATA", outcome.resolver, negative_ttl=outcome.negative_ttl))
    if found[TYPE_A] or found[TYPE_AAAA]:
        return Resolution(
            name=name,
            a=tuple(found[TYPE_A]),
            aaaa=tuple(found[TYPE_AAAA]),
            cname=tuple(chain),
            resolver=resolver,
            ttl=min(ttl, config.max_ttl),
        )
    nxdomain = next((answer for answer in negatives if answer.rcode == "NXDOMAIN"), None)
    if nxdomain is None and not failures:
        nxdomain = negatives[0]  # both NODATA
    if nxdomain is not None:
        known = [answer.negative_ttl for answer in negatives if answer.negative_ttl is not None]
        negative_ttl = min(known) if known else config.negative_ttl
        rcode = nxdomain.rcode
        message = "the name does not exist" if rcode == "NXDOMAIN" else "the name has no A or AAAA record"
        return Resolution(
            name=name,
            cname=tuple(chain),
            rcode=rcode,
            resolver=nxdomain.resolver,
            message=f"{message} [{nxdomain.resolver}]",
            ttl=min(negative_ttl, config.max_ttl),
        )
    failure = failures[0]
    return Resolution(
        name=name,
        cname=tuple(chain),
        rcode=failure.rcode,
        resolver=failure.resolver,
        message=failure.message,
    )


# -- names, /etc/hosts and /etc/resolv.conf -----------------------------------------------------------------

_LABEL_TEXT = re.compile(r"[A-Za-z0-9_-]{1,63}")
_NAME_TEXT = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be asked for (a label over 63 bytes, over 253 in all, an empty label...), or None."""
    if len(name) <= 253 and _NAME_TEXT.fullmatch(name) is not None:
        return None  # the common case, in one match
    folded = name.rstrip(".") if name != "." else name
    if not folded:
        return "empty host name"
    if not folded.isascii():
        return "host name is not ASCII (give it as IDNA A-labels)"
    if len(folded) > 253:
        return "host name is longer than 253 characters"
    for label in folded.split("."):
        if not label:
            return "empty label in host name"
        if len(label) > 63:
            return "host name label longer than 63 characters"
        if _LABEL_TEXT.fullmatch(label) is None:
            return f"label {label!r} has a character DNS names do not use"
    return None


def parse_hosts(text: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """``/etc/hosts``: lowercased name -> (IPv4 addresses, IPv6 addresses), in file order. Bad lines skipped."""
    table: dict[str, tuple[list[str], list[str]]] = {}
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0].partition("%")[0])
        except ValueError:
            continue
        for name in fields[1:]:
            v4, v6 = table.setdefault(_fold(name), ([], []))
            bucket = v4 if address.version == 4 else v6
            if address.compressed not in bucket:
                bucket.append(address.compressed)
    return {name: (tuple(v4), tuple(v6)) for name, (v4, v6) in table.items()}


def parse_resolv_conf(text: str) -> tuple[Nameserver, ...]:
    """The ``nameserver`` lines of ``/etc/resolv.conf`` (port 53; a scoped IPv6 address or bad line skipped)."""
    found: list[Nameserver] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                server = Nameserver(fields[1])
            except ValueError:
                continue
            if server not in found:
                found.append(server)
    return tuple(found)


HOSTS_PATH: Final = "/etc/hosts"
RESOLV_CONF_PATH: Final = "/etc/resolv.conf"
