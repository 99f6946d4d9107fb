"""What a bench run does (:class:`BenchConfig`), and each worker's share of it (:class:`WorkerPlan`).

Both are value objects that validate when built. A ``WorkerPlan`` is plain data (strings, numbers, bytes)
so that it pickles cheaply into a spawned worker process or a Dask task. Every request is encoded here,
once: a run of one URL sends ``WorkerPlan.request`` again and again; a mix (several endpoints, templates,
or bodies cycling) hands the workers each endpoint's :class:`~aiotcp.bench.mix.Wire` and a worker draws
from them with a :class:`~aiotcp.bench.mix.Picker`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

from .._version import __version__
from ..accelerators import httptools
from ..errors import InvalidTarget
from ..proxy import Proxy, parse_proxy
from ..resolution import Nameserver, parse_nameservers
from ..targets import Target, parse_target
from .mix import Endpoint, Order, Picker, Wire, body_parts, make_wire
from .stages import Stage
from .thresholds import Threshold

__all__ = [
    "DEFAULT_COUNT_CAP_S",
    "USER_AGENT",
    "BenchConfig",
    "Engine",
    "WorkerPlan",
    "available_engines",
    "resolve_engine",
    "resolve_workers",
]

Engine = Literal["httptools", "h11"]
_TOKEN_CHARS = frozenset("!#$%&'*+.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")
USER_AGENT = f"aiotcp-bench/{__version__}"
#: With ``-n`` and no ``-d``, a run still stops after this many seconds: every load loop is bounded.
DEFAULT_COUNT_CAP_S = 600.0


def available_engines() -> list[Engine]:
    """Engines that can run here, fastest first."""
    engines: list[Engine] = [] if httptools is None else ["httptools"]
    engines.append("h11")
    return engines


def resolve_engine(name: str) -> Engine:
    """``auto`` -> the fastest installed engine. Raises ``ValueError`` for an unknown or missing one."""
    engines = available_engines()
    if name == "auto":
        return engines[0]
    if name not in ("httptools", "h11"):
        raise ValueError(f"unknown engine {name!r}: choose auto, httptools or h11")
    if name not in engines:
        raise ValueError(f"engine {name!r} needs the {name} package: pip install {name}")
    return name


def resolve_workers(workers: int | Literal["auto"], connections: int) -> int:
    """``auto`` -> one worker per CPU, but never more workers than connections."""
    if workers == "auto":
        return max(1, min(os.cpu_count() or 1, connections))
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    return min(workers, connections)


def _split(total: int, parts: int, index: int) -> int:
    """Share ``index`` of ``total`` split into ``parts`` as evenly as integers allow (shares sum to total)."""
    return total // parts + (1 if index < total % parts else 0)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """One bench run. Validated when built.

    The host name is resolved once per run, by ``resolver`` (``"auto"`` or ``"system"``) asking
    ``resolvers`` (default: the system's), and every connection goes to that address.

    ``duration`` is the length of the measured run; with ``requests`` it is a cap (``None`` means
    :data:`DEFAULT_COUNT_CAP_S`). ``rate`` switches to open-loop mode: that many requests per second in total,
    on an absolute schedule. ``headers`` replace the defaults (Host, User-Agent, Accept) by name.

    The requests: ``method`` to ``url``, or a mix of ``endpoints`` (on ``url``'s origin) sent in ``order``;
    ``bodies`` (one for every request, or several sent in turn) go with every request whose method is not
    GET or HEAD. ``seed`` seeds the random orders and templates.

    Stages: ``rate_stages`` ramp the open-loop rate (instead of ``rate``), ``connection_stages`` the open
    connections of a closed loop (``connections`` becomes their largest target); the run lasts as long as
    its stages. ``thresholds`` are checked over the run, or over each stage with ``threshold_per_stage``.

    ``proxy``: an HTTP proxy gets the requests in absolute form (``GET http://host/path``, with
    ``Proxy-Authorization`` when the URL has credentials), over connections to the proxy the engines make as
    usual; a SOCKS proxy gets a tunnel per connection (:mod:`aiotcp.tunnel`), then the requests go through it.
    Either way the proxy's name is what is resolved once per run (and, for ``socks5``/``socks4``, the
    target's too, the proxy being given its address). ``unix_socket``: every connection to that Unix socket.

    Raises:
        InvalidTarget: for a malformed URL, a scheme other than http, an endpoint on another origin, or a
            bad header.
        ValueError: for out-of-range numbers and options that do not go together, naming the option.
    """

    url: str
    connections: int = 50
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 0.0
    rate: float | None = None
    workers: int = 1
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    keepalive: bool = True
    pipeline: int = 1
    timeout: float = 10.0
    engine: Engine = field(default_factory=lambda: available_engines()[0])  # the fastest one installed
    interval: float = 1.0
    resolver: str = "auto"
    resolvers: tuple[Nameserver, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    order: Order = "weighted"
    bodies: tuple[bytes, ...] = ()
    rate_stages: tuple[Stage, ...] = ()
    connection_stages: tuple[Stage, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    threshold_per_stage: bool = False
    seed: int = 0
    proxy: str | None = None
    unix_socket: str | None = None
    target: Target = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.resolvers:
            object.__setattr__(self, "resolvers", parse_nameservers(self.resolvers))
        if self.resolver not in ("auto", "system") or (self.resolver == "system" and self.resolvers):
            raise ValueError(f'resolver must be "auto" (with any resolvers) or "system", got {self.resolver!r}')
        target = parse_target(self.url)
        if target.scheme != "http":
            raise InvalidTarget(f"bench: only http:// URLs are supported, got {self.url!r}")
        object.__setattr__(self, "target", target)
        if self.proxy is not None and self.unix_socket is not None:
            raise ValueError("a proxy and a Unix socket exclude each other: drop --proxy or --unix-socket")
        if self.proxy is not None:
            parse_proxy(self.proxy)  # InvalidTarget naming what is wrong
        if not (self.method and set(self.method) <= _TOKEN_CHARS) or self.method == "CONNECT":
            raise ValueError(f"method must be an HTTP method (a token, not CONNECT), got {self.method!r}")
        if self.engine not in ("httptools", "h11"):
            raise ValueError(f"engine must be httptools or h11 (resolve 'auto' first), got {self.engine!r}")
        if self.engine not in available_engines():
            raise ValueError(f"engine {self.engine!r} needs the {self.engine} package: pip install {self.engine}")
        if self.order not in ("weighted", "random", "sequential"):
            raise ValueError(f"order must be weighted, random or sequential, got {self.order!r}")
        self._check_stages()
        for name in ("connections", "workers", "pipeline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.workers > self.connections:
            raise ValueError(f"workers ({self.workers}) must not exceed connections ({self.connections})")
        if self.requests is not None and (not isinstance(self.requests, int) or self.requests < 1):
            raise ValueError(f"requests must be a positive integer, got {self.requests!r}")
        if self.duration is None and self.requests is None:
            raise ValueError("give a duration, a request count, or both")
        for name in ("duration", "rate", "timeout", "interval"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < math.inf):
            raise ValueError(f"warmup must be zero or a positive number of seconds, got {self.warmup!r}")
        if not self.keepalive and self.pipeline > 1:
            raise ValueError("pipelining needs keep-alive: drop --pipeline or --no-keepalive")
        self._check_requests()

    def _check_stages(self) -> None:
        if self.rate_stages and self.connection_stages:
            raise ValueError("give rate stages or connection stages, not both")
        stages = self.rate_stages or self.connection_stages
        if not stages:
            return
        if self.rate_stages and self.rate is not None:
            raise ValueError("rate stages set the rate: drop the rate (start the stages with 0s:RATE to jump to it)")
        if self.requests is not None:
            raise ValueError("stages set the length of the run: drop the request count")
        if self.warmup:
            raise ValueError("stages do not take a warmup: make the first stage the ramp up")
        object.__setattr__(self, "duration", sum(stage.duration for stage in stages))
        if self.connection_stages:
            peak = max(stage.target for stage in self.connection_stages)
            if peak < 1:
                raise ValueError("connection stages must open at least one connection")
            object.__setattr__(self, "connections", int(peak))
        elif max(stage.target for stage in self.rate_stages) <= 0:
            raise ValueError("rate stages must send at least one request: give a stage a rate above 0")

    def _check_requests(self) -> None:
        """Encode every request once: the checks of the headers, methods, templates and bodies."""
        methods = {endpoint.method for endpoint in self.endpoints} or {self.method}
        for endpoint in self.endpoints:
            other = parse_target(endpoint.url)
            if other.origin != self.target.origin:
                where = f" (line {endpoint.line})" if endpoint.line else ""
                raise InvalidTarget(
                    f"bench: every URL must be on {self.target.scheme}://{self.target.authority}, the origin every"
                    f" connection goes to; {endpoint.url!r}{where} is not"
                )
        if self.bodies and methods <= {"GET", "HEAD"}:
            raise ValueError("a body goes with methods other than GET and HEAD: give one (-m POST, or in --urls)")
        if "HEAD" in methods and len(methods) > 1 and self.engine == "httptools" and self.pipeline > 1:
            raise ValueError(
                "a mix of HEAD and other methods needs --pipeline 1 with the httptools engine (or --engine h11)"
            )
        self.wires()  # validates the headers, methods and templates

    @property
    def mode(self) -> Literal["closed", "rate"]:
        """``closed``: each connection sends as soon as it has room; ``rate``: on the wrk2 schedule."""
        return "rate" if self.rate is not None or self.rate_stages else "closed"

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The rate or connection stages, whichever were given."""
        return self.rate_stages or self.connection_stages

    @property
    def time_limit(self) -> float:
        """Seconds after which the measured run stops, whatever is left."""
        if self.duration is not None:
            return float(self.duration)
        return DEFAULT_COUNT_CAP_S

    @property
    def mix(self) -> tuple[Endpoint, ...]:
        """The endpoints, one for a run of one URL."""
        return self.endpoints or (Endpoint(self.method, self.target.url),)

    @property
    def is_mix(self) -> bool:
        """Whether requests differ from one to the next (several endpoints, templates, or bodies in turn)."""
        mix = self.mix
        return len(mix) > 1 or mix[0].templated or len(self.bodies) > 1

    def _header_pairs(self) -> list[tuple[bytes, bytes]]:
        defaults = [("Host", self.target.authority), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
        given = {name.lower() for name, _ in self.headers}
        pairs = [pair for pair in defaults if pair[0].lower() not in given] + list(self.headers)
        if not self.keepalive:
            pairs = [pair for pair in pairs if pair[0].lower() != "connection"] + [("Connection", "close")]
        encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
        if self._forwarded and "proxy-authorization" not in given:  # -H Proxy-Authorization: replaces ours
            proxy = self.proxy_value
            assert proxy is not None
            authorization = proxy.authorization()
            if authorization is not None:
                encoded.append((b"Proxy-Authorization", authorization))
        return encoded

    def wires(self) -> tuple[Wire, ...]:
        """Every endpoint's request, encoded (see :class:`~aiotcp.bench.mix.Wire`); in absolute form
        (``GET http://host/path``) for an HTTP proxy to forward.

        Raises:
            InvalidTarget, InvalidHeader: for a request that cannot go on the wire.
            ValueError: for a template that does not parse.
        """
        headers = self._header_pairs()
        absolute = self._forwarded
        wires = []
        for endpoint in self.mix:
            target = parse_target(endpoint.url)
            carries_body = endpoint.method not in ("GET", "HEAD")
            wires.append(
                make_wire(endpoint.method, target.url if absolute else target.path, headers, carries_body=carries_body)
            )
        return tuple(wires)

    def request_bytes(self) -> bytes:
        """The request every connection sends, encoded once (a run of one URL; ``b""`` for a mix).

        Raises:
            InvalidHeader: for a header that cannot go on the wire.
        """
        if self.is_mix:
            return b""
        wire = self.wires()[0]
        if wire.body:
            return wire.fixed + body_parts(self.bodies)[0]
        return wire.fixed

    @property
    def proxy_value(self) -> Proxy | None:
        """:attr:`proxy` parsed (None without one)."""
        return None if self.proxy is None else parse_proxy(self.proxy)

    @property
    def _forwarded(self) -> bool:
        """Whether an HTTP proxy forwards the requests (they go in absolute form)."""
        proxy = self.proxy_value
        return proxy is not None and proxy.forwards(self.target)

    @property
    def connect_target(self) -> Target:
        """What connections go to: the proxy when there is one, else the URL's host and port."""
        proxy = self.proxy_value
        return self.target if proxy is None else proxy.target

    def _tunnel(self) -> tuple[str, str, int] | None:
        """``(proxy URL, target host, target port)`` when connections go through a SOCKS tunnel."""
        proxy = self.proxy_value
        if proxy is None or proxy.forwards(self.target):
            return None
        assert self.proxy is not None
        return (self.proxy, self.target.host, self.target.port)

    def plans(self) -> list[WorkerPlan]:
        """Each worker's share: connections, requests and rate split in proportion to connections."""
        plans = []
        first = 0
        request = self.request_bytes()
        wires = self.wires() if self.is_mix else ()
        mix = self.mix
        for index in range(self.workers):
            connections = _split(self.connections, self.workers, index)
            requests = None
            if self.requests is not None:
                # Split the count like the connections, so every worker finishes at about the same time.
                requests = (self.requests * (first + connections)) // self.connections - (
                    self.requests * first
                ) // self.connections
            plans.append(
                WorkerPlan(
                    index=index,
                    host=self.connect_target.host,
                    port=self.connect_target.port,
                    target=self.target.url,
                    request=request,
                    head=all(endpoint.method == "HEAD" for endpoint in mix),
                    connections=connections,
                    first_connection=first,
                    total_connections=self.connections,
                    requests=requests,
                    time_limit=self.time_limit,
                    warmup=float(self.warmup),
                    rate=None if self.rate is None else self.rate * connections / self.connections,
                    pipeline=self.pipeline,
                    keepalive=self.keepalive,
                    timeout=float(self.timeout),
                    interval=float(self.interval),
                    engine=self.engine,
                    unix_socket=self.unix_socket,
                    tunnel=self._tunnel(),
                    workers=self.workers,
                    wires=wires,
                    weights=tuple(endpoint.weight for endpoint in mix) if wires else (),
                    order=self.order,
                    bodies=self.bodies if wires else (),
                    seed=self.seed,
                    heads=tuple(endpoint.method == "HEAD" for endpoint in mix),
                    rate_stages=self.rate_stages,
                    connection_stages=self.connection_stages,
                )
            )
            first += connections
        return plans


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """One worker's share of a run; plain data for pickling into a worker process.

    ``host`` is what to connect to (an address once the parent has resolved the name); ``target`` is only
    for error messages. ``rate`` is this worker's share of the total rate, ``None`` in closed-loop mode
    (and with rate stages, whose ramp is the run's total: each worker sends its slots' turns of it).

    ``request`` is the request of a run of one URL; a mix leaves it empty and gives ``wires`` (with
    ``weights``, ``order`` and ``bodies``) for :meth:`picker`. ``heads[i]``: endpoint ``i`` is a HEAD
    (``head``: all of them are).
    """

    index: int
    host: str
    port: int
    target: str
    request: bytes
    head: bool
    connections: int
    first_connection: int
    total_connections: int
    requests: int | None
    time_limit: float
    warmup: float
    rate: float | None
    pipeline: int
    keepalive: bool
    timeout: float
    interval: float
    engine: Engine
    workers: int = 1
    wires: tuple[Wire, ...] = ()
    weights: tuple[float, ...] = ()
    order: Order = "weighted"
    bodies: tuple[bytes, ...] = ()
    seed: int = 0
    heads: tuple[bool, ...] = (False,)
    rate_stages: tuple[Stage, ...] = ()
    connection_stages: tuple[Stage, ...] = ()
    #: Every connection to this Unix socket instead of ``host``/``port``.
    unix_socket: str | None = None
    #: ``(proxy URL, target host, target port)``: each connection (to the proxy at ``host``/``port``) opens a
    #: tunnel to the target first (:func:`aiotcp.bench.engines.open_tunnel_on`).
    tunnel: tuple[str, str, int] | None = None

    def with_host(self, host: str, tunnel_host: str | None = None) -> WorkerPlan:
        """The same plan, connecting to ``host`` (the resolved address); ``tunnel_host``: the target's address
        for a tunnel whose proxy does not resolve names."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["host"] = host
        if tunnel_host is not None and self.tunnel is not None:
            values["tunnel"] = (self.tunnel[0], tunnel_host, self.tunnel[2])
        return WorkerPlan(**values)

    @property
    def is_mix(self) -> bool:
        return bool(self.wires)

    @property
    def open_loop(self) -> bool:
        return self.rate is not None or bool(self.rate_stages)

    def picker(self) -> Picker | None:
        """This worker's picker of requests (None for a run of one URL)."""
        if not self.wires:
            return None
        return Picker(
            self.wires, self.weights, self.order, self.bodies, worker=self.index, workers=self.workers, seed=self.seed
        )

    def phase(self, slot: int) -> float:
        """Offset of connection ``slot``'s schedule, in seconds: connections take turns evenly (wrk2)."""
        if self.rate is None:
            return 0.0
        per_connection_interval = self.connections / self.rate
        return per_connection_interval * (self.first_connection + slot) / self.total_connections
