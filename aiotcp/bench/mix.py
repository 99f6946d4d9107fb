"""A mix of requests: endpoints read from a file (``--urls``), the order they are sent in, and their bodies.

File format (``--urls FILE``), one endpoint per line; blank lines and lines starting with ``#`` are skipped::

    http://127.0.0.1:8080/                 # GET (or -m), weight 1
    POST http://127.0.0.1:8080/items 3     # a method, and a weight for --order weighted
    /search?q={rand:1-1000}                # a path: relative to the URL on the command line
    GET /items/{seq}

Every endpoint must be on one origin (scheme, host and port), the one every connection goes to. Templates
in a path: ``{seq}`` is a number unique to each request of the run (0, 1, 2, ... over every worker), and
``{rand:A-B}`` a random whole number from A to B; the rest of the request is encoded once.

Order (``--order``): ``weighted`` (the default) draws endpoints at random in proportion to their weights,
``random`` draws them uniformly, ``sequential`` sends them in file order, round and round. Each worker
draws a table of :data:`TABLE_SIZE` endpoints once (at least four per endpoint) from a seeded generator and
walks it in turn, so picking the next request costs an index, not a random draw.

Bodies: one for every request (``--body FILE``), or one per request cycling through the lines of a file
(``--body-lines FILE``). A body goes with every request whose method is not GET or HEAD, framed with
Content-Length; such a request without a body sends ``Content-Length: 0``.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin

from ..errors import InvalidTarget
from ..http11 import Request

__all__ = [
    "TABLE_SIZE",
    "Endpoint",
    "Order",
    "Picker",
    "Wire",
    "body_parts",
    "encode_endpoint",
    "load_urls",
    "make_wire",
    "parse_urls",
]

Order = Literal["weighted", "random", "sequential"]
#: Endpoints drawn per worker for the random orders (or four per endpoint, if more), then walked in turn.
TABLE_SIZE = 16384
#: Endpoints of a mix, at most (each has its latency histograms).
MAX_ENDPOINTS = 10_000
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TEMPLATE = re.compile(r"\{(seq|rand:(\d{1,15})-(\d{1,15}))\}")
_MARKER = b"/--aiotcp-target--"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One request of a mix: a method, an absolute URL (maybe with templates) and a weight.

    ``line`` is where it came from in a ``--urls`` file (0 when built in code).
    """

    method: str
    url: str
    weight: float = 1.0
    line: int = 0

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.method):
            raise ValueError(f"invalid method {self.method!r}")
        if self.method == "CONNECT":
            raise ValueError("CONNECT is not supported: a tunnel is not a request and its response")
        if not (isinstance(self.weight, (int, float)) and 0 < self.weight < float("inf")):
            raise ValueError(f"a weight must be a positive number, got {self.weight!r}")

    @property
    def label(self) -> str:
        """``METHOD URL``: how reports name the endpoint."""
        return f"{self.method} {self.url}"

    def short_label(self, origin: str) -> str:
        """``METHOD /path``: the label without ``origin`` (``http://host:port``), which every endpoint shares."""
        if self.url.startswith(origin):
            return f"{self.method} {self.url[len(origin) :] or '/'}"
        return self.label

    @property
    def templated(self) -> bool:
        return _TEMPLATE.search(self.url) is not None


def parse_urls(text: str, *, base: str | None, method: str, source: str = "--urls") -> tuple[Endpoint, ...]:
    """Endpoints from a ``--urls`` file's text (see the module docstring); ``method`` for lines without one.

    Raises ``ValueError`` naming ``source`` and the line for a line that does not parse, a relative path
    without ``base``, or a file with no endpoint.
    """
    endpoints = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        line_method = method
        weight = 1.0
        if len(fields) >= 2 and _TOKEN.fullmatch(fields[0]) and not fields[0].startswith(("/", "http")):
            line_method = fields[0].upper()
            fields = fields[1:]
        if len(fields) == 2:
            try:
                weight = float(fields[1])
            except ValueError:
                raise ValueError(f"{source} line {number}: not a weight: {fields[1]!r}") from None
        elif len(fields) != 1:
            raise ValueError(f"{source} line {number}: write [METHOD] URL [WEIGHT], got {line!r}")
        url = fields[0]
        if url.startswith("/"):
            if base is None:
                raise ValueError(f"{source} line {number}: a path ({url!r}) needs a URL on the command line")
            url = urljoin(base, url)
        try:
            endpoints.append(Endpoint(line_method, url, weight, number))
        except ValueError as exc:
            raise ValueError(f"{source} line {number}: {exc}") from None
        if len(endpoints) > MAX_ENDPOINTS:
            raise ValueError(f"{source}: more than {MAX_ENDPOINTS:,} endpoints")
    if not endpoints:
        raise ValueError(f"{source}: no URL in the file")
    return tuple(endpoints)


def load_urls(path: str, *, base: str | None = None, method: str = "GET") -> tuple[Endpoint, ...]:
    """:func:`parse_urls` of a file. Raises ``OSError`` and ``UnicodeDecodeError`` as ``open`` does."""
    with open(path, encoding="utf-8") as file:
        return parse_urls(file.read(), base=base, method=method, source=f"--urls {path}")


# -- encoding: once per run, in the parent ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wire:
    """One endpoint's request, encoded: plain data for the workers.

    Without templates, ``fixed`` is the whole request when the endpoint sends no body, and otherwise its
    head without the blank line (each body's ``Content-Length`` line, blank line and bytes follow it).
    With templates, ``fixed`` is empty and the request is ``before + target + after`` (and the body part),
    where the target is ``parts`` with each ``(low, high)`` replaced: ``(-1, -1)`` by ``{seq}``, else by a
    random number from low to high.
    """

    fixed: bytes
    before: bytes
    parts: tuple[bytes | tuple[int, int], ...]
    after: bytes
    body: bool
    head: bool


def _template_parts(path: str) -> tuple[bytes | tuple[int, int], ...]:
    parts: list[bytes | tuple[int, int]] = []
    position = 0
    for match in _TEMPLATE.finditer(path):
        parts.append(path[position : match.start()].encode("ascii"))
        if match.group(1) == "seq":
            parts.append((-1, -1))
        else:
            low, high = int(match.group(2)), int(match.group(3))
            if low > high:
                raise ValueError(f"{{rand:{low}-{high}}}: the low end is above the high end")
            parts.append((low, high))
        position = match.end()
    parts.append(path[position:].encode("ascii"))
    return tuple(part for part in parts if part != b"")


def encode_endpoint(
    method: str, target: bytes, headers: list[tuple[bytes, bytes]], *, carries_body: bool
) -> tuple[bytes, bytes | None]:
    """The request bytes (up to the body part when ``carries_body``), and ``None``; or, for a target with
    templates, the bytes before and after the target.

    Raises:
        InvalidTarget, InvalidHeader: for a method, target or header that cannot go on the wire.
    """
    templated = _TEMPLATE.search(target.decode("ascii")) is not None
    wire_target = _MARKER if templated else target
    request = Request(method.encode("ascii"), wire_target, headers, b"")
    encoded = request.encode()
    if carries_body:
        suffix = b"Content-Length: 0\r\n\r\n"
        if not encoded.endswith(suffix):  # pragma: no cover - framed_headers puts it last
            raise InvalidTarget(f"cannot frame a body for {method} {target!r}")
        encoded = encoded[: -len(suffix)]
    if not templated:
        return encoded, None
    before, _, after = encoded.partition(_MARKER)
    return before, after


def body_parts(bodies: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """What follows a body-carrying head: ``Content-Length: N``, the blank line, the body; one per body, or
    one empty body when there is none."""
    return tuple(b"Content-Length: %d\r\n\r\n%s" % (len(body), body) for body in bodies or (b"",))


def make_wire(method: str, path: str, headers: list[tuple[bytes, bytes]], *, carries_body: bool) -> Wire:
    """The :class:`Wire` of one endpoint (``path`` is its request target, maybe with templates).

    Raises:
        InvalidTarget, InvalidHeader: for a request that cannot go on the wire.
        ValueError: for a template that does not parse.
    """
    head = method == "HEAD"
    fixed, after = encode_endpoint(method, path.encode("ascii"), headers, carries_body=carries_body)
    if after is None:
        return Wire(fixed, b"", (), b"", carries_body, head)
    return Wire(b"", fixed, _template_parts(path), after, carries_body, head)


# -- picking: in each worker ----------------------------------------------------------------------------------


class Picker:
    """Which request a worker's connections send next, and its bytes.

    ``next()`` returns ``(endpoint, request)``: the endpoint's index (the engines file a response's latency
    under it and its status) and the request's bytes.
    """

    __slots__ = (
        "bodies",
        "body_count",
        "body_position",
        "choices",
        "cycle_bytes",
        "iterator",
        "position",
        "prefix",
        "random",
        "seq",
        "size",
        "table",
        "written",
    )

    def __init__(
        self,
        wires: tuple[Wire, ...],
        weights: tuple[float, ...],
        order: Order,
        bodies: tuple[bytes, ...],
        *,
        worker: int = 0,
        workers: int = 1,
        seed: int = 0,
    ) -> None:
        self.random = random.Random(seed * 7919 + worker)
        count = len(wires)
        if order == "sequential":
            table = list(range(count))
        else:
            size = max(TABLE_SIZE, 4 * count)
            chosen = None if order == "random" else list(weights)
            table = self.random.choices(range(count), weights=chosen, k=size)
        self.table = table
        self.size = len(table)
        self.position = 0
        #: Per endpoint: (index, wire) -- the wire's fixed bytes are used whole when nothing varies.
        self.choices = list(enumerate(wires))
        self.bodies = body_parts(bodies)
        self.body_count = len(self.bodies)
        self.body_position = 0
        self.seq = [worker, workers]  # the next {seq} of this worker, and the step between two
        #: ``next(iterator)``: the next request's endpoint and bytes. When no request varies (no template, no
        #: body in turn), a C iterator walks the table of requests: no Python frame per request.
        self.iterator: Iterator[tuple[int, bytes]] = iter(self._next, None)
        self.written = 0  # bytes of the requests picked so far (when ``next`` is the Python method)
        self.prefix: list[int] = []  # the C iterator's: bytes of the first i requests of the table
        self.cycle_bytes = 0
        if not any(wire.parts for wire in wires) and (len(self.bodies) == 1 or not any(w.body for w in wires)):
            tail = self.bodies[0]
            requests = [(index, wire.fixed + (tail if wire.body else b"")) for index, wire in enumerate(wires)]
            walk = [requests[index] for index in table]
            self.prefix = list(itertools.accumulate((len(request) for _, request in walk), initial=0))
            self.cycle_bytes = self.prefix[-1]
            self.iterator = itertools.cycle(walk)

    def __repr__(self) -> str:
        return f"<Picker endpoints={len(self.choices)} table={self.size} position={self.position}>"

    def next(self) -> tuple[int, bytes]:
        """The next request's endpoint and bytes (the engines call ``next(picker.iterator)``)."""
        return next(self.iterator)

    def written_until(self, picks: int) -> int:
        """Bytes of the first ``picks`` requests picked (the C iterator counts nothing: its walk is known),
        or of all picked so far (the Python method counts them as it goes)."""
        if not self.prefix:
            return self.written
        cycles, rest = divmod(picks, self.size)
        return cycles * self.cycle_bytes + self.prefix[rest]

    def _next(self) -> tuple[int, bytes] | None:
        position = self.position
        index, wire = self.choices[self.table[position]]
        position += 1
        self.position = 0 if position == self.size else position
        request = self._render(wire) if wire.parts else wire.fixed
        if wire.body:
            position = self.body_position
            request += self.bodies[position]
            position += 1
            self.body_position = 0 if position == self.body_count else position
        self.written += len(request)
        return index, request

    def _render(self, wire: Wire) -> bytes:
        pieces = [wire.before]
        for part in wire.parts:
            if isinstance(part, bytes):
                pieces.append(part)
            elif part[0] < 0:
                seq = self.seq
                pieces.append(b"%d" % seq[0])
                seq[0] += seq[1]
            else:
                pieces.append(b"%d" % self.random.randint(part[0], part[1]))
        pieces.append(wire.after)
        return b"".join(pieces)
