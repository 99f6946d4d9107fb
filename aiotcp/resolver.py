"""Resolving names for :func:`aiotcp.transport.connect`: an async resolver with a cache, resolver lists, retries
and failover, and the system resolver.

Theory of operation
-------------------
:class:`AsyncResolver` resolves a name in this order, and returns (or raises with) a
:class:`~aiotcp.resolution.Resolution`, the DNS facts of the name:

1. an IP literal is its own answer; a name over 253 bytes or with a label over 63 is ``invalid_target``;
2. ``/etc/hosts``, then ``localhost`` and ``*.localhost`` as loopback (RFC 6761): never sent to DNS;
3. the cache (:class:`DNSCache`, bounded, TTLs respected, positive and negative), shared by every task and,
   for the default resolver, every client of the process;
4. a lookup already in flight for the same name: its result is shared, so concurrent lookups of one name
   send one pair of queries (if the task doing it is cancelled, a waiter takes over);
5. otherwise an A and an AAAA query, in parallel. Each goes to one resolver of the list (round robin over the
   healthy ones, within each resolver's ``max_in_flight`` and ``rate``); a timeout, SERVFAIL, REFUSED or
   malformed answer is retried on the next resolver after a doubling ``backoff``, up to ``attempts`` tries;
   NXDOMAIN and NODATA are final. A resolver whose recent queries all failed is set aside for a while.
   :func:`aiotcp.resolution.combine` turns the two outcomes into the facts.

The queries go out through a backend that speaks DNS on the wire. On asyncio (uvloop included) it is c-ares
(pycares), driven from the event loop's own readers and timers: no thread, no socket while idle, and c-ares
does the packet work (random IDs and source ports on connected sockets, so an answer with the wrong ID or from
another address is dropped; TCP when an answer comes back truncated). On trio it is dnspython's async query
functions (UDP with TCP fallback), which are slower per query but run on any backend anyio does. Where neither
library is installed the async resolver falls back to :class:`SystemResolver`.

:class:`SystemResolver` (``resolver="system"``) is the operating system's ``getaddrinfo`` in anyio's thread
pool: it honours nsswitch, the ``search`` list and mDNS, but costs a thread per lookup and tells less
(``NXDOMAIN`` stands for every "no such name or no address" the C library reports).

Every wait is bounded by the caller's deadline (``connect`` cancels a lookup at its connect timeout) and by
``timeout x attempts`` plus the back-off inside. A resolver serves one event loop per thread at a time (its
sockets and timers belong to that loop); its cache serves them all.
"""

from __future__ import annotations

import abc
import asyncio
import ipaddress
import socket
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal

import anyio

from .errors import DNSError, InvalidTarget
from .resolution import (
    HOSTS_PATH,
    RESOLV_CONF_PATH,
    TYPE_A,
    TYPE_AAAA,
    Answer,
    Nameserver,
    Outcome,
    QueryFailure,
    Record,
    Resolution,
    ResolverConfig,
    combine,
    name_problem,
    parse_hosts,
    parse_nameservers,
    parse_resolv_conf,
)

__all__ = [
    "AsyncResolver",
    "DNSCache",
    "Resolver",
    "ResolverLike",
    "SystemResolver",
    "default_resolver",
    "make_resolver",
    "shared_cache",
]

Backend = Literal["auto", "cares", "dnspython"]
# Answers a c-ares channel takes before its own query cache (which pycares cannot switch off, and which has no
# size limit) is flushed: ours is the cache that counts, c-ares's must not grow with the list.
_CARES_FLUSH_EVERY = 2048
_RECEIVE_BUFFER = 4 << 20  # (the kernel caps it at net.core.rmem_max)
_LOCALHOST = (("127.0.0.1",), ("::1",))


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)


def _read_text(path: str) -> str:
    """A small system file's text, or ``""`` if it cannot be read (a resolver works without it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read(1 << 20)
    except OSError:
        return ""


def _literal(name: str) -> Resolution | None:
    if ":" not in name and not name[-1:].isdigit():
        return None  # a name (an IPv4 address ends in a digit): skip the parse and its exception
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None
    if address.version == 4:
        return Resolution(name=name, a=(address.compressed,), dns_ms=0.0)
    return Resolution(name=name, aaaa=(address.compressed,), dns_ms=0.0)


def _check_name(name: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise InvalidTarget(f"{name[:256]!r}: {problem}")


def _error(resolution: Resolution) -> DNSError:
    # No target: connect() fills in the URL; the message names what the resolver knows.
    return DNSError(
        f"name does not resolve ({resolution.rcode}): {resolution.message}",
        rcode=resolution.rcode,
        resolution=resolution,
    )


class Resolver(abc.ABC):
    """Turns a host name into addresses and the DNS facts of how. Used by :func:`aiotcp.transport.connect`."""

    @abc.abstractmethod
    async def resolve(self, name: str) -> Resolution:
        """The facts of ``name`` with at least one address.

        Raises ``DNSError`` (with ``rcode`` and ``resolution``) when it has none, ``InvalidTarget`` for a
        name that cannot be a DNS name (a label over 63 bytes, over 253 in all).
        """

    async def aclose(self) -> None:
        """Release sockets and timers. The resolver may be used again afterwards (it reopens what it needs)."""
        return None  # nothing held by default


class SystemResolver(Resolver):
    """``getaddrinfo`` in anyio's thread pool: the operating system's resolver (nsswitch, search list, mDNS)."""

    def __repr__(self) -> str:
        return "<SystemResolver getaddrinfo>"

    async def resolve(self, name: str) -> Resolution:
        literal = _literal(name)
        if literal is not None:
            return literal
        _check_name(name)
        started = time.perf_counter()
        try:
            infos = await anyio.getaddrinfo(name, None, type=socket.SOCK_STREAM, flags=socket.AI_CANONNAME)
        except socket.gaierror as exc:
            rcode = _GAI_RCODES.get(exc.errno or 0, "SERVFAIL")
            message = f"getaddrinfo: {exc.strerror or exc}"
            failed = Resolution(name=name, rcode=rcode, resolver="system", message=message, dns_ms=_ms(started))
            raise _error(failed) from exc
        except OSError as exc:
            message = f"getaddrinfo: {exc.strerror or exc}"
            raise _error(Resolution(name=name, rcode="SERVFAIL", resolver="system", message=message)) from exc
        a: list[str] = []
        aaaa: list[str] = []
        canonical = ""
        for family, _, _, canonname, sockaddr in infos:
            canonical = canonical or canonname
            bucket = a if family == socket.AF_INET else aaaa
            address = str(sockaddr[0])
            if address not in bucket:
                bucket.append(address)
        chain = (canonical.lower().rstrip("."),) if canonical and canonical.lower().rstrip(".") != name else ()
        return Resolution(name=name, a=tuple(a), aaaa=tuple(aaaa), cname=chain, resolver="system", dns_ms=_ms(started))


# getaddrinfo's codes -> rcode. glibc says EAI_NONAME for NXDOMAIN and for a name without addresses alike, and
# EAI_AGAIN for a timeout and for SERVFAIL alike: both transient, reported as the commoner cause.
_GAI_RCODES: dict[int, str] = {
    socket.EAI_NONAME: "NXDOMAIN",
    socket.EAI_AGAIN: "TIMEOUT",
    socket.EAI_FAIL: "SERVFAIL",
}
if hasattr(socket, "EAI_NODATA"):
    _GAI_RCODES[socket.EAI_NODATA] = "NODATA"


class DNSCache:
    """Resolutions by name, each until its TTL runs out; at most ``size`` names, the least recently used
    going first. Thread-safe (the default resolver's cache is shared by every loop of the process)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[float, Resolution]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"<DNSCache {len(self._entries)}/{self.size} names hits={self.hits} misses={self.misses}>"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Resolution | None:
        """The cached resolution of ``name`` if it has not expired."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._entries[name]
                self.misses += 1
                return None
            self._entries.move_to_end(name)
            self.hits += 1
            return entry[1]

    def put(self, resolution: Resolution) -> None:
        """Keep ``resolution`` for its ``ttl`` (not at all for a TTL of 0 or a cache of size 0)."""
        if resolution.ttl <= 0 or self.size <= 0:
            return
        expires = time.monotonic() + resolution.ttl
        with self._lock:
            self._entries[resolution.name] = (expires, resolution)
            self._entries.move_to_end(resolution.name)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# -- the wire: one query to one resolver --------------------------------------------------------------------


class _QueryBackend(abc.ABC):
    """Sends one query to one resolver and says how it ended; never raises for what the resolver does."""

    name: str

    @abc.abstractmethod
    async def query(self, server: Nameserver, name: str, rtypes: tuple[int, ...], timeout: float) -> list[Outcome]:
        """Ask ``server`` for ``name`` once per type in ``rtypes``, in parallel; the outcomes in that order."""

    def close(self) -> None:
        """Release every socket and timer (called from the loop's thread)."""
        return None  # nothing held by default


# c-ares status -> (rcode, what happened). Final answers (NXDOMAIN, NODATA) are Answers; the rest failures.
_CARES_FAILURES = {
    "ESERVFAIL": ("SERVFAIL", "resolver answered SERVFAIL"),
    "EREFUSED": ("REFUSED", "resolver refused the query (REFUSED)"),
    "ETIMEOUT": ("TIMEOUT", "no answer from the resolver within {timeout:g}s"),
    "ECONNREFUSED": ("REFUSED", "nothing listens on the resolver's port (connection refused)"),
    "EBADRESP": ("SERVFAIL", "malformed answer from the resolver"),
    "EFORMERR": ("SERVFAIL", "resolver could not parse the query (FORMERR)"),
    "ENOTIMP": ("SERVFAIL", "resolver does not implement the query (NOTIMP)"),
}


class _CaresChannel:
    """One c-ares channel, for one resolver, driven by the event loop: readers and writers for the sockets
    c-ares opens (it reports them through ``sock_state_cb``), one timer for its next timeout.

    c-ares retries, fails over and caches by itself; here it sends each query once (``tries=1``) to one
    server, and the resolver above decides what to do next. Its query cache is flushed every
    :data:`_CARES_FLUSH_EVERY` answers so that it stays small.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, server: Nameserver, timeout: float) -> None:
        import pycares

        self._pycares = pycares
        self._loop = loop
        self._thread = threading.get_ident()
        self._reading: set[int] = set()
        self._writing: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._pending = 0
        self._answers = 0
        self._closed = False
        this = weakref.ref(self)
        thread = self._thread

        def on_state(fd: int, readable: bool, writable: bool) -> None:
            # pycares destroys a closed channel in a thread of its own, which reports the sockets it closes
            # here too: by then the loop no longer watches them (close() removed them).
            channel = this()
            if channel is not None and threading.get_ident() == thread:
                channel._on_state(fd, readable, writable)

        self.channel = pycares.Channel(
            sock_state_cb=on_state,
            tries=1,
            timeout=timeout,
            servers=[str(server)],
            # Hundreds of answers can arrive at once (one per query in flight): the kernel's default buffer
            # of about 200 KB holds fewer small datagrams than that, and drops the rest -- as timeouts.
            socket_receive_buffer_size=_RECEIVE_BUFFER,
        )
        self._bad = pycares.ARES_SOCKET_BAD

    def query(self, name: str, rtype: int) -> asyncio.Future[tuple[Any, int | None]]:
        future: asyncio.Future[tuple[Any, int | None]] = self._loop.create_future()
        thread = self._thread

        def done(result: Any, status: int | None) -> None:
            self._pending -= 1
            if status is None:
                self._answers += 1
            if not future.done() and threading.get_ident() == thread:
                future.set_result((result, status))

        self.channel.query(name, rtype, callback=done)
        self._pending += 1
        return future

    def _on_state(self, fd: int, readable: bool, writable: bool) -> None:
        if readable and fd not in self._reading:
            self._loop.add_reader(fd, self._process, fd, self._bad)
            self._reading.add(fd)
        elif not readable and fd in self._reading:
            self._loop.remove_reader(fd)
            self._reading.discard(fd)
        if writable and fd not in self._writing:
            self._loop.add_writer(fd, self._process, self._bad, fd)
            self._writing.add(fd)
        elif not writable and fd in self._writing:
            self._loop.remove_writer(fd)
            self._writing.discard(fd)

    def _process(self, read_fd: int, write_fd: int) -> None:
        if self._closed:
            return
        self.channel.process_fd(read_fd, write_fd)
        self.arm()

    def _on_timer(self) -> None:
        self._timer = None
        self._process(self._bad, self._bad)

    def arm(self) -> None:
        """Wake at c-ares's next timeout while queries are pending; flush its cache every so many answers.

        A timer already set stays: every query has the same timeout, so one added later cannot be due earlier,
        and a wake-up for a query that has meanwhile been answered only costs a look at the clock.
        """
        if self._answers >= _CARES_FLUSH_EVERY:
            self._answers = 0
            # Flushes c-ares's query cache; the servers set above stay, and queries in flight go on.
            self.channel.reinit()
        if self._pending <= 0:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        elif self._timer is None:
            wait = self.channel.timeout()  # type: ignore[no-untyped-call]  # (pycares leaves it unannotated)
            self._timer = self._loop.call_later(max(wait, 0.001), self._on_timer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._loop.is_closed():
            for fd in self._reading:
                self._loop.remove_reader(fd)
            for fd in self._writing:
                self._loop.remove_writer(fd)
        self._reading.clear()
        self._writing.clear()
        if threading.get_ident() == self._thread and not self._loop.is_closed():
            self.channel.cancel()  # the callbacks run here, now, not in pycares's shutdown thread
        self.channel.close()


class _CaresBackend(_QueryBackend):
    name = "c-ares"

    def __init__(self) -> None:
        import pycares

        self._loop = asyncio.get_running_loop()
        self._channels: dict[Nameserver, _CaresChannel] = {}
        codes = {name: getattr(pycares.errno, name) for name in dir(pycares.errno) if name.startswith("ARES_E")}
        self._status = {code: name.removeprefix("ARES_") for name, code in codes.items() if isinstance(code, int)}
        self._enodata = pycares.errno.ARES_ENODATA
        self._enotfound = pycares.errno.ARES_ENOTFOUND

    def __repr__(self) -> str:
        return f"<c-ares backend channels={len(self._channels)}>"

    async def query(self, server: Nameserver, name: str, rtypes: tuple[int, ...], timeout: float) -> list[Outcome]:
        channel = self._channels.get(server)
        if channel is None:
            channel = self._channels[server] = _CaresChannel(self._loop, server, timeout)
        # Both queries go out at once and their futures are awaited in turn: no task per query.
        futures = [channel.query(name, rtype) for rtype in rtypes]
        channel.arm()
        label = str(server)
        outcomes: list[Outcome] = []
        try:
            for future in futures:
                result, status = await future
                outcomes.append(self._outcome(label, result, status, timeout))
        except BaseException:
            for future in futures:
                future.cancel()  # c-ares still ends the query (at its timeout); its callback is then a no-op
            raise
        return outcomes

    def _outcome(self, label: str, result: Any, status: int | None, timeout: float) -> Outcome:
        if status is None:
            records = tuple(
                Record(record.name, record.type, record.ttl, _cares_value(record.data))
                for record in result.answer
                if record.type in (TYPE_A, TYPE_AAAA, 5)
            )
            return Answer("NOERROR", label, records)
        if status == self._enotfound:
            return Answer("NXDOMAIN", label)
        if status == self._enodata:
            return Answer("NODATA", label)
        code = self._status.get(status, str(status))
        rcode, message = _CARES_FAILURES.get(code, ("SERVFAIL", f"c-ares: {code}"))
        return QueryFailure(rcode, label, f"{message.format(timeout=timeout)} [{label}]")

    def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.close()


def _cares_value(data: Any) -> str:
    value = getattr(data, "addr", None)
    if value is None:
        value = getattr(data, "cname", "")
    return str(value)


class _DnspythonBackend(_QueryBackend):
    """dnspython's async UDP query (TCP when the answer is truncated), one socket per query, any backend."""

    name = "dnspython"

    def __init__(self) -> None:
        import dns.asyncbackend
        import dns.asyncquery
        import dns.exception
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import sniffio

        self._dns = dns
        # dnspython remembers the first event loop library it sees for the whole process; ours is named.
        self._backend = dns.asyncbackend.get_backend(sniffio.current_async_library())

    def __repr__(self) -> str:
        return "<dnspython backend>"

    async def query(self, server: Nameserver, name: str, rtypes: tuple[int, ...], timeout: float) -> list[Outcome]:
        if len(rtypes) == 1:
            return [await self._query_one(server, name, rtypes[0], timeout)]
        outcomes: dict[int, Outcome] = {}

        async def ask(rtype: int) -> None:
            outcomes[rtype] = await self._query_one(server, name, rtype, timeout)

        async with anyio.create_task_group() as group:
            for rtype in rtypes[1:]:
                group.start_soon(ask, rtype)
            await ask(rtypes[0])
        return [outcomes[rtype] for rtype in rtypes]

    async def _query_one(self, server: Nameserver, name: str, rtype: int, timeout: float) -> Outcome:
        dns = self._dns
        label = str(server)
        request = dns.message.make_query(name, rtype, use_edns=0)
        try:
            # ignore_unexpected: drop datagrams from other addresses; ignore_errors: drop malformed ones and
            # answers that do not match the query (ID, question) -- keep waiting for the real one.
            answer, _ = await dns.asyncquery.udp_with_fallback(
                request,
                server.host,
                timeout=timeout,
                port=server.port,
                ignore_unexpected=True,
                ignore_errors=True,
                backend=self._backend,
            )
        except dns.exception.Timeout:
            return QueryFailure("TIMEOUT", label, f"no answer from the resolver within {timeout:g}s [{label}]")
        except ConnectionRefusedError:
            return QueryFailure("REFUSED", label, f"nothing listens on the resolver's port [{label}]")
        except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
            return QueryFailure("SERVFAIL", label, f"malformed answer from the resolver: {exc} [{label}]")
        rcode = answer.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return Answer("NXDOMAIN", label, negative_ttl=self._negative_ttl(answer))
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            if text == "REFUSED":
                return QueryFailure("REFUSED", label, f"resolver refused the query (REFUSED) [{label}]")
            return QueryFailure("SERVFAIL", label, f"resolver answered {text} [{label}]")
        records: list[Record] = []
        for rrset in answer.answer:
            if rrset.rdtype not in (TYPE_A, TYPE_AAAA, 5):
                continue
            owner = rrset.name.to_text(omit_final_dot=True)
            for rdata in rrset:
                value = rdata.target.to_text(omit_final_dot=True) if rrset.rdtype == 5 else rdata.address
                records.append(Record(owner, int(rrset.rdtype), int(rrset.ttl), str(value)))
        if not records:
            return Answer("NODATA", label, negative_ttl=self._negative_ttl(answer))
        return Answer("NOERROR", label, tuple(records))

    def _negative_ttl(self, answer: Any) -> float | None:
        for rrset in answer.authority:
            if rrset.rdtype == self._dns.rdatatype.SOA:
                return float(min(rrset.ttl, min(rdata.minimum for rdata in rrset)))
        return None


def _make_backend(choice: Backend) -> _QueryBackend | None:
    """The wire backend for the running event loop, or None when no DNS library for it is installed."""
    on_asyncio = True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        on_asyncio = False
    if choice in ("auto", "cares") and on_asyncio:
        try:
            return _CaresBackend()
        except ImportError:
            if choice == "cares":
                raise
    try:
        return _DnspythonBackend()
    except ImportError:
        return None


# -- the async resolver -------------------------------------------------------------------------------------


class _Slots:
    """At most ``limit`` queries in flight, first come first served. Taking a free slot does not yield to
    the event loop (anyio's Semaphore does, once per query: too much at thousands of queries a second).

    A slot given back is handed straight to the oldest waiter (it cannot be overtaken, no wake-up is lost); a
    waiter cancelled after the hand-off gives it back.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    def __repr__(self) -> str:
        return f"<slots {self.in_use}/{self.limit} waiting={len(self._waiters)}>"

    async def take(self, count: int) -> int:
        """Take ``count`` slots (at most ``limit``), waiting for them if need be; returns how many were taken."""
        count = min(count, self.limit)
        if not self._waiters and self.in_use + count <= self.limit:
            self.in_use += count
            return count
        event = anyio.Event()
        entry = (count, event)
        self._waiters.append(entry)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.give(count)
            else:
                self._waiters.remove(entry)
            raise
        return count

    def give(self, count: int) -> None:
        self.in_use -= count
        while self._waiters and self.in_use + self._waiters[0][0] <= self.limit:
            wanted, event = self._waiters.popleft()
            self.in_use += wanted
            event.set()


class _Server:
    """One resolver's state within one event loop: its in-flight slots, pacing and health."""

    def __init__(self, server: Nameserver, config: ResolverConfig) -> None:
        self.server = server
        self.label = str(server)
        self.slots = _Slots(config.max_in_flight)
        self.interval = 0.0 if config.rate is None else 1.0 / config.rate
        self.next_start = 0.0
        self.failures = 0  # consecutive
        self.set_aside_until = 0.0
        self.queries = 0

    def __repr__(self) -> str:
        return f"<resolver {self.label} queries={self.queries} failures={self.failures}>"

    def is_set_aside(self, now: float) -> bool:
        """Whether the resolver kept failing and its time out is not over."""
        return self.set_aside_until > now

    async def pace(self, queries: int) -> None:
        """Wait for this resolver's next start slot for ``queries`` queries (an absolute schedule: no burst
        after a stall)."""
        if not self.interval:
            return
        now = time.monotonic()
        start = max(now, self.next_start)
        self.next_start = start + self.interval * queries
        if start > now:
            await anyio.sleep(start - now)


class _Flight:
    """A lookup in flight: the waiters for the same name wait on ``done`` and share ``result``."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Resolution | None = None


class _LoopState:
    """What a resolver holds per event loop: the wire backend, per-resolver state and lookups in flight."""

    def __init__(self, token: object, backend: _QueryBackend | None, servers: list[_Server]) -> None:
        self.token = token
        self.backend = backend
        self.servers = servers
        self.flights: dict[str, _Flight] = {}
        self.turn = 0


def _loop_token() -> object:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return object()  # pragma: no cover - a backend anyio does not have


class AsyncResolver(Resolver):
    """The async resolver (see the module docstring). ``config`` is a :class:`ResolverConfig`; ``cache`` a
    :class:`DNSCache` to share (by default one of ``config.cache_size`` names of its own); ``backend``
    ``"auto"`` (c-ares on asyncio, dnspython elsewhere), ``"cares"`` or ``"dnspython"``.

    Counters for tests and reports: ``queries`` (sent), ``lookups`` (query pairs), ``shared`` (lookups that
    waited for one already in flight).
    """

    def __init__(
        self,
        config: ResolverConfig | None = None,
        *,
        cache: DNSCache | None = None,
        backend: Backend = "auto",
    ) -> None:
        self.config = config or ResolverConfig()
        self.cache = cache if cache is not None else DNSCache(self.config.cache_size)
        self.backend_choice: Backend = backend
        self._states = threading.local()
        self._hosts: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None
        self._nameservers: tuple[Nameserver, ...] | None = self.config.nameservers or None
        self._system = SystemResolver()
        self.queries = 0
        self.lookups = 0
        self.shared = 0

    def __repr__(self) -> str:
        servers = ",".join(str(s) for s in self._nameservers) if self._nameservers else "resolv.conf"
        state: _LoopState | None = getattr(self._states, "state", None)
        backend = state.backend.name if state is not None and state.backend is not None else "-"
        return (
            f"<AsyncResolver {servers} backend={backend} queries={self.queries} lookups={self.lookups}"
            f" shared={self.shared} {self.cache!r}>"
        )

    @property
    def nameservers(self) -> tuple[Nameserver, ...]:
        """The resolvers queried: the configured ones, else ``/etc/resolv.conf`` 's (read once)."""
        if self._nameservers is None:
            self._nameservers = parse_resolv_conf(_read_text(RESOLV_CONF_PATH))
        return self._nameservers

    def _hosts_table(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        if self._hosts is None:
            self._hosts = parse_hosts(_read_text(HOSTS_PATH)) if self.config.hosts else {}
        return self._hosts

    def _state(self) -> _LoopState:
        token = _loop_token()
        state: _LoopState | None = getattr(self._states, "state", None)
        if state is not None and state.token is token:
            return state
        if state is not None and state.backend is not None:
            state.backend.close()  # the previous loop of this thread is gone
        servers = [_Server(server, self.config) for server in self.nameservers]
        backend = _make_backend(self.backend_choice) if servers else None
        state = _LoopState(token, backend, servers)
        self._states.state = state
        return state

    async def aclose(self) -> None:
        state: _LoopState | None = getattr(self._states, "state", None)
        self._states.state = None
        if state is not None and state.backend is not None:
            state.backend.close()

    async def resolve(self, name: str) -> Resolution:
        started = time.perf_counter()
        literal = _literal(name)
        if literal is not None:
            return literal
        key = name.lower().rstrip(".")
        _check_name(key)
        local = self._local(key)
        if local is not None:
            return local
        cached = self.cache.get(key)
        if cached is not None:
            return self._returned(cached.looked_up(_ms(started), cached=True))
        state = self._state()
        if state.backend is None:  # no resolver configured, or no DNS library: the system resolver
            return await self._system.resolve(key)
        while True:
            flight = state.flights.get(key)
            if flight is None:
                flight = state.flights[key] = _Flight()
                try:
                    result = await self._lookup(state, key)
                    flight.result = result
                    self.cache.put(result)
                finally:
                    del state.flights[key]
                    flight.done.set()
                return self._returned(result.looked_up(_ms(started)))
            self.shared += 1
            await flight.done.wait()
            if flight.result is not None:
                return self._returned(flight.result.looked_up(_ms(started)))
            # The task doing the lookup was cancelled (its own deadline): this one does it instead.

    def _returned(self, resolution: Resolution) -> Resolution:
        if resolution.rcode is not None:
            raise _error(resolution)
        return resolution

    def _local(self, name: str) -> Resolution | None:
        """``/etc/hosts``, then ``localhost`` (RFC 6761): answers that never go to DNS."""
        entry = self._hosts_table().get(name)
        if entry is None and self.config.hosts and (name == "localhost" or name.endswith(".localhost")):
            entry = _LOCALHOST
        if entry is None or not (entry[0] or entry[1]):
            return None
        return Resolution(name=name, a=entry[0], aaaa=entry[1], resolver="hosts", dns_ms=0.0)

    async def _lookup(self, state: _LoopState, name: str) -> Resolution:
        """The A and AAAA queries, asked together; what failed is asked again, together, of the next resolver."""
        self.lookups += 1
        config = self.config
        backend = state.backend
        assert backend is not None
        outcomes: dict[int, Outcome] = {}
        pending: tuple[int, ...] = (TYPE_A, TYPE_AAAA)
        tried: list[_Server] = []
        for attempt in range(config.attempts):
            if attempt:
                await anyio.sleep(config.backoff * 2 ** (attempt - 1))
            server = self._pick(state, tried)
            tried.append(server)
            taken = await server.slots.take(len(pending))
            try:
                await server.pace(len(pending))
                server.queries += len(pending)
                self.queries += len(pending)
                answers = await backend.query(server.server, name, pending, config.timeout)
            finally:
                server.slots.give(taken)
            outcomes.update(zip(pending, answers, strict=True))
            pending = tuple(rtype for rtype in pending if isinstance(outcomes[rtype], QueryFailure))
            if len(pending) < len(answers):
                server.failures = 0
            else:
                server.failures += 1
                if server.failures >= config.set_aside_after:
                    server.set_aside_until = time.monotonic() + config.set_aside_for
            if not pending:
                break
        return combine(name, outcomes[TYPE_A], outcomes[TYPE_AAAA], self.config)

    def _pick(self, state: _LoopState, tried: list[_Server]) -> _Server:
        """The next resolver: round robin over those not set aside and not tried for this query yet."""
        now = time.monotonic()
        servers = state.servers
        count = len(servers)
        start = state.turn
        state.turn = (start + 1) % count
        for offset in range(count):
            server = servers[(start + offset) % count]
            if not server.is_set_aside(now) and server not in tried:
                return server
        for offset in range(count):  # every one tried or set aside: the one whose time out ends first
            server = servers[(start + offset) % count]
            if server not in tried:
                return server
        return min(servers, key=lambda server: server.set_aside_until)


# -- choosing a resolver ------------------------------------------------------------------------------------

#: What ``Client(resolver=...)`` takes: a resolver, a config for a new async one, ``"system"`` or ``"auto"``.
ResolverLike = Resolver | ResolverConfig | str | None

_default: AsyncResolver | None = None
_default_lock = threading.Lock()
_caches: OrderedDict[ResolverConfig, DNSCache] = OrderedDict()
_CACHES_KEPT = 16


def shared_cache(config: ResolverConfig) -> DNSCache:
    """The process's cache for resolvers made with ``config``: the clients of one process (the prober's
    workers, one Dask worker's chunks) that ask the same resolvers share what they learnt."""
    with _default_lock:
        cache = _caches.get(config)
        if cache is None:
            cache = _caches[config] = DNSCache(config.cache_size)
            while len(_caches) > _CACHES_KEPT:
                _caches.popitem(last=False)
        _caches.move_to_end(config)
        return cache


def default_resolver() -> AsyncResolver:
    """The process's resolver: the system's nameservers (``/etc/resolv.conf``), ``/etc/hosts``, one cache for
    every client that does not bring its own resolver."""
    global _default
    with _default_lock:
        if _default is None:
            _default = AsyncResolver()
        return _default


def make_resolver(
    resolver: ResolverLike = None,
    resolvers: str | Iterable[str | Nameserver] | None = None,
) -> Resolver:
    """The resolver for ``Client(resolver=..., resolvers=...)``.

    ``resolver``: a :class:`Resolver` (used as is), a :class:`ResolverConfig` (a new async resolver),
    ``"system"`` (getaddrinfo) or ``"auto"``/None (the async resolver: the process's default, or a new one
    for ``resolvers``). ``resolvers``: ``IP[:PORT]`` strings (or one comma-separated string) to query.

    Raises ``ValueError`` for a bad resolver address (naming it) or for ``resolvers`` with ``"system"``.
    """
    if isinstance(resolver, Resolver):
        if resolvers is not None:
            raise ValueError("give resolvers= or a Resolver object, not both")
        return resolver
    if isinstance(resolver, ResolverConfig):
        if resolvers is not None:
            resolver = replace(resolver, nameservers=parse_nameservers(resolvers))
        return AsyncResolver(resolver, cache=shared_cache(resolver))
    if resolver == "system":
        if resolvers is not None:
            raise ValueError('resolvers= needs the async resolver, not resolver="system"')
        return SystemResolver()
    if resolver not in (None, "auto"):
        raise ValueError(f'resolver must be a Resolver, a ResolverConfig, "auto" or "system", got {resolver!r}')
    if resolvers is None:
        return default_resolver()
    config = ResolverConfig(nameservers=parse_nameservers(resolvers))
    return AsyncResolver(config, cache=shared_cache(config))
