"""DNS servers on loopback for the resolver tests: a real one (dnslib's server, answering from a zone as a
recursive resolver would) and a scripted hostile one (misbehaviour as data, one behaviour per name).

Both listen on 127.0.0.1, UDP and TCP on one port 0, in threads of their own, and count the queries they get,
so a test can say "each name was asked once". No test queries any other resolver.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# name -> records as (type, value, ttl), or an rcode name ("NXDOMAIN", "SERVFAIL", "REFUSED")
Zone = Mapping[str, "Sequence[tuple[str, str, int]] | str"]

SOA_RECORD = SOA("ns.test", "hostmaster.test", (1, 3600, 600, 86400, 30))
_QUIET = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


def _fold(name: object) -> str:
    return str(name).lower().rstrip(".")


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from ``zone`` as a recursive resolver does: CNAME chains followed inside the zone, NXDOMAIN with
    an SOA (TTL ``negative_ttl``) for names it does not know, NODATA for a type a name does not have."""

    def __init__(self, zone: Zone, *, delay: float = 0.0, negative_ttl: int = 30) -> None:
        self.zone = {_fold(name): value for name, value in zone.items()}
        self.delay = delay
        self.negative_ttl = negative_ttl
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        qname = _fold(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.counts[(qname, qtype)] += 1
        if self.delay:
            time.sleep(self.delay)
        reply = request.reply()
        owner = qname
        for _ in range(20):
            entry = self.zone.get(owner)
            if entry is None:
                reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(RR("test", QTYPE.SOA, rdata=SOA_RECORD, ttl=self.negative_ttl))
                return reply
            if isinstance(entry, str):
                reply.header.rcode = getattr(RCODE, entry)
                return reply
            cnames = [value for kind, value, _ in entry if kind == "CNAME"]
            for kind, value, ttl in entry:
                if kind == qtype or kind == "CNAME":
                    rdata = {"A": A, "AAAA": AAAA, "CNAME": CNAME}[kind](value)
                    reply.add_answer(RR(owner, getattr(QTYPE, kind), rdata=rdata, ttl=ttl))
            if not cnames:
                break
            owner = _fold(cnames[0])
        if not reply.rr:
            reply.add_auth(RR("test", QTYPE.SOA, rdata=SOA_RECORD, ttl=self.negative_ttl))
        return reply


@dataclass
class RunningDNS:
    """A DNS server that is running: where it listens and what it was asked."""

    host: str
    port: int
    counts: collections.Counter[tuple[str, str]]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def asked(self, name: str, qtype: str | None = None) -> int:
        """Queries received for ``name`` (of ``qtype``, or of any type)."""
        return sum(n for (qname, kind), n in list(self.counts.items()) if qname == name and qtype in (None, kind))

    def total(self) -> int:
        return sum(self.counts.values())


@contextlib.contextmanager
def zone_server(zone: Zone, *, delay: float = 0.0, negative_ttl: int = 30) -> Iterator[RunningDNS]:
    """dnslib's DNS server on 127.0.0.1 (UDP and TCP, one port), answering from ``zone``."""
    resolver = ZoneResolver(zone, delay=delay, negative_ttl=negative_ttl)
    for _ in range(20):
        udp = DNSServer(resolver, port=0, address="127.0.0.1", logger=_QUIET)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, port=port, address="127.0.0.1", logger=_QUIET, tcp=True)
        except OSError:  # the TCP port was taken: another UDP port
            udp.server.server_close()
            continue
        break
    else:  # pragma: no cover
        raise RuntimeError("no port free for UDP and TCP at once")
    udp.start_thread()
    tcp.start_thread()
    try:
        yield RunningDNS("127.0.0.1", port, resolver.counts)
    finally:
        for server in (udp, tcp):
            server.server.shutdown()
            server.server.server_close()


# -- the hostile server -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """How the hostile server treats a query for one name, and the ``dns_rcode`` a client must end with.

    ``expected`` maps the resolver backend (``c-ares`` or ``dnspython``) to the rcode (None: resolves);
    ``"*"`` applies to both.
    """

    udp: str
    tcp: str = "answer"
    expected: Mapping[str, str | None] = field(default_factory=dict)
    why: str = ""

    def expect(self, backend: str) -> str | None:
        return self.expected.get(backend, self.expected.get("*"))


#: name -> behaviour. UDP actions: answer, silent, servfail, refused, garbage (the right ID, then junk),
#: wrong-id, wrong-source, other-question, other-owner, cname-loop, long-chain, truncate (TC bit, no records),
#: oversized (one datagram of 300 A records), nxdomain, nodata. TCP actions: answer (200 A records), silent,
#: garbage.
HOSTILE: dict[str, Behaviour] = {
    "silent.test": Behaviour("silent", expected={"*": "TIMEOUT"}, why="no answer at all"),
    "servfail.test": Behaviour("servfail", expected={"*": "SERVFAIL"}, why="SERVFAIL to everything"),
    "refused.test": Behaviour("refused", expected={"*": "REFUSED"}, why="REFUSED"),
    "garbage.test": Behaviour(
        "garbage",
        # c-ares reports the malformed answer; dnspython drops it and keeps waiting for a good one.
        expected={"c-ares": "SERVFAIL", "dnspython": "TIMEOUT"},
        why="the right query ID, then bytes that are not DNS",
    ),
    "wrong-id.test": Behaviour("wrong-id", expected={"*": "TIMEOUT"}, why="a good answer with another query ID"),
    "wrong-source.test": Behaviour(
        "wrong-source", expected={"*": "TIMEOUT"}, why="a good answer sent from another port"
    ),
    "other-question.test": Behaviour(
        "other-question", expected={"*": "TIMEOUT"}, why="an answer to a question about another name"
    ),
    "other-owner.test": Behaviour(
        "other-owner", expected={"*": "NODATA"}, why="the right question, answered with another name's records"
    ),
    "cname-loop.test": Behaviour("cname-loop", expected={"*": "SERVFAIL"}, why="a CNAME b, b CNAME a"),
    "long-chain.test": Behaviour("long-chain", expected={"*": "SERVFAIL"}, why="a chain of 40 CNAMEs"),
    "truncated.test": Behaviour(
        "truncate", "answer", expected={"*": None}, why="TC over UDP, then 200 A records over TCP"
    ),
    "truncated-silent.test": Behaviour(
        "truncate", "silent", expected={"*": "TIMEOUT"}, why="TC over UDP, then silence over TCP"
    ),
    "truncated-garbage.test": Behaviour(
        "truncate",
        "garbage",
        expected={"c-ares": "SERVFAIL", "dnspython": "SERVFAIL"},
        why="TC over UDP, then junk over TCP",
    ),
    "oversized.test": Behaviour(
        "oversized", expected={"*": None}, why="one 4.8 KB datagram of 300 A records, past the EDNS size"
    ),
    "nxdomain.test": Behaviour("nxdomain", expected={"*": "NXDOMAIN"}, why="NXDOMAIN"),
    "nodata.test": Behaviour("nodata", expected={"*": "NODATA"}, why="NOERROR and no record"),
}


def _many_a(reply: DNSRecord, owner: object, count: int) -> DNSRecord:
    for index in range(count):
        reply.add_answer(RR(owner, QTYPE.A, rdata=A(f"127.1.{index // 250}.{index % 250 + 1}"), ttl=60))
    return reply


def _garbage(query: bytes) -> bytes:
    return query[:2] + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00\xc0\xff\xff\xfe junk"


class HostileDNS:
    """The scripted server: each query is answered as :data:`HOSTILE` says for its name (``answer`` for a
    name it does not list: 127.0.0.1). UDP and TCP on one loopback port, a thread, bounded in every wait."""

    def __init__(self) -> None:
        for _ in range(20):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
            except OSError:  # a TCP socket (a client's ephemeral port) has it: another UDP port
                self.tcp.close()
                self.udp.close()
                continue
            break
        else:  # pragma: no cover
            raise RuntimeError("no port free for UDP and TCP at once")
        self.tcp.listen(64)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def asked(self, name: str) -> int:
        return sum(n for (qname, _), n in list(self.counts.items()) if qname == name)

    def __enter__(self) -> HostileDNS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in (self.udp, self.other, self.tcp, *self._held):
            sock.close()

    def _run(self) -> None:
        connections: dict[socket.socket, bytes] = {}
        while not self._stop.is_set():
            readable, _, _ = select.select([self.udp, self.tcp, *connections], [], [], 0.05)
            for sock in readable:
                if sock is self.udp:
                    data, peer = self.udp.recvfrom(65535)
                    self._udp(data, peer)
                elif sock is self.tcp:
                    conn, _ = self.tcp.accept()
                    connections[conn] = b""
                else:
                    chunk = sock.recv(65535)
                    if not chunk:
                        del connections[sock]
                        sock.close()
                        continue
                    buffer = connections[sock] + chunk
                    while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack("!H", buffer[:2])[0]:
                        size = struct.unpack("!H", buffer[:2])[0]
                        self._tcp(sock, buffer[2 : 2 + size])
                        buffer = buffer[2 + size :]
                    connections[sock] = buffer
        for conn in connections:
            conn.close()

    def _parse(self, data: bytes) -> tuple[DNSRecord, str, Behaviour]:
        request = DNSRecord.parse(data)
        name = _fold(request.q.qname)
        self.counts[(name, QTYPE[request.q.qtype])] += 1
        return request, name, HOSTILE.get(name, Behaviour("answer"))

    def _udp(self, data: bytes, peer: tuple[str, int]) -> None:
        try:
            request, _, behaviour = self._parse(data)
        except Exception:
            return
        action = behaviour.udp
        qname = request.q.qname
        reply = request.reply()
        if action == "silent":
            return
        if action == "garbage":
            self.udp.sendto(_garbage(data), peer)
            return
        if action in ("servfail", "refused", "nxdomain"):
            reply.header.rcode = {"servfail": RCODE.SERVFAIL, "refused": RCODE.REFUSED, "nxdomain": RCODE.NXDOMAIN}[
                action
            ]
        elif action == "nodata":
            pass
        elif action == "truncate":
            reply.header.tc = 1
        elif action == "oversized":
            _many_a(reply, qname, 300)
        elif action == "other-question":
            other = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=1), q=DNSRecord.question("x.test").q)
            other.add_answer(RR("x.test", QTYPE.A, rdata=A("127.0.0.9"), ttl=60))
            self.udp.sendto(other.pack(), peer)
            return
        elif action == "other-owner":
            reply.add_answer(RR("elsewhere.test", QTYPE.A, rdata=A("127.0.0.9"), ttl=60))
        elif action == "cname-loop":
            reply.add_answer(RR(qname, QTYPE.CNAME, rdata=CNAME("loop-b.test"), ttl=60))
            reply.add_answer(RR("loop-b.test", QTYPE.CNAME, rdata=CNAME(str(qname)), ttl=60))
        elif action == "long-chain":
            owner = str(qname)
            for index in range(40):
                reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(f"hop{index}.test"), ttl=60))
                owner = f"hop{index}.test"
            reply.add_answer(RR(owner, QTYPE.A, rdata=A("127.0.0.9"), ttl=60))
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=60))
        packet = reply.pack()
        if action == "wrong-id":
            packet = struct.pack("!H", request.header.id ^ 0x5A5A) + packet[2:]
        sender = self.other if action == "wrong-source" else self.udp
        sender.sendto(packet, peer)

    def _tcp(self, conn: socket.socket, data: bytes) -> None:
        try:
            request, _, behaviour = self._parse(data)
        except Exception:
            return
        if behaviour.tcp == "silent":
            self._held.append(conn)  # never answered, closed at the end
            return
        if behaviour.tcp == "garbage":
            packet = _garbage(data)
        else:
            reply = request.reply()
            if request.q.qtype == QTYPE.A:
                _many_a(reply, request.q.qname, 200)
            packet = reply.pack()
        with contextlib.suppress(OSError):
            conn.sendall(struct.pack("!H", len(packet)) + packet)
