"""What a probe run does with each target: :class:`ProbeOptions`, validated when built.

Every engine (the lean one, :mod:`.fast`, and the reference one, :mod:`.prober`) and every way of running
them (one process, ``--workers``, ``--shard``, Dask) reads the same options, so a record does not depend on
which of them made it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidTarget
from ..http11 import available_backends
from ..proxy import parse_proxy
from ..resolution import Nameserver, ResolverConfig, parse_nameservers
from ..targets import Target

__all__ = ["WINDOW_STALL_S", "Engine", "Order", "ProbeOptions", "Scheme"]

Scheme = Literal["http", "https", "auto"]
Order = Literal["completion", "input"]
#: ``lean``: :mod:`aiotcp.probe.fast` (asyncio, llhttp); ``reference``: the portable path through
#: :class:`aiotcp.Client` (asyncio or trio, h11 or llhttp); ``auto``: lean where it can run.
Engine = Literal["auto", "lean", "reference"]
#: With ``order="input"``: how long the next target may wait for room in the re-ordering window before
#: ``on_window_stall`` is told (both engines).
WINDOW_STALL_S = 1.0


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """What ``probe_many`` does with each target. See :func:`aiotcp.probe.probe_many` for each field.

    Raises ``ValueError`` naming the option when one is out of range.
    """

    method: str = "GET"
    concurrency: int = 100
    timeout: float = 10.0
    connect_timeout: float | None = None
    rate: float | None = None
    per_host: int | None = None
    retries: int = 0
    backoff: float = 0.25
    follow_redirects: bool = False
    max_redirects: int = 10
    headers: tuple[tuple[str, str], ...] = ()
    max_body: int = 64 * 1024
    order: Order = "completion"
    reorder_window: int | None = None
    scheme: Scheme = "auto"
    ports: tuple[int, ...] = ()
    verify: bool = False
    http: str = "auto"
    resolver: ResolverConfig | str = "auto"
    resolvers: tuple[Nameserver, ...] = ()
    all_ips: bool = False
    proxy: str | None = None
    paths: tuple[str, ...] = ()
    max_host_errors: int | None = None
    favicon: bool = False
    facts: bool = True
    ca: str | None = None
    keep_body: bool = False
    engine: Engine = "auto"

    def __post_init__(self) -> None:
        if self.paths:
            try:
                object.__setattr__(self, "paths", tuple(_DUMMY.with_path(path).path for path in self.paths))
            except InvalidTarget as exc:
                raise ValueError(exc.message) from None
        if self.max_host_errors is not None and self.max_host_errors < 1:
            raise ValueError(f"max_host_errors must be at least 1, got {self.max_host_errors!r}")
        if self.resolvers:
            object.__setattr__(self, "resolvers", parse_nameservers(self.resolvers))
        if not isinstance(self.resolver, ResolverConfig) and self.resolver not in ("auto", "system"):
            raise ValueError(f'resolver must be "auto", "system" or a ResolverConfig, got {self.resolver!r}')
        if self.resolver == "system" and self.resolvers:
            raise ValueError('resolvers need the async resolver, not resolver="system"')
        if self.proxy is not None:
            parse_proxy(self.proxy)  # InvalidTarget (a ValueError) names what is wrong
        if self.method.upper() not in ("GET", "HEAD"):
            raise ValueError(f"method must be GET or HEAD, got {self.method!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency!r}")
        for name in ("timeout", "connect_timeout", "rate", "backoff"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.per_host is not None and self.per_host < 1:
            raise ValueError(f"per_host must be at least 1, got {self.per_host!r}")
        if self.retries < 0 or self.max_body < 0:
            raise ValueError("retries and max_body must be >= 0")
        if self.order not in ("completion", "input"):
            raise ValueError(f"order must be 'completion' or 'input', got {self.order!r}")
        if self.scheme not in ("http", "https", "auto"):
            raise ValueError(f"scheme must be http, https or auto, got {self.scheme!r}")
        if self.reorder_window is not None and self.reorder_window < 1:
            raise ValueError(f"reorder_window must be at least 1, got {self.reorder_window!r}")
        if self.engine not in ("auto", "lean", "reference"):
            raise ValueError(f"engine must be auto, lean or reference, got {self.engine!r}")
        if self.engine == "lean" and self.backend != "httptools":
            raise ValueError("engine 'lean' parses with llhttp: it needs httptools and http 'auto' or 'httptools'")

    @property
    def window(self) -> int:
        """Records that may wait for an earlier one in ``order="input"``."""
        return self.reorder_window or max(4 * self.concurrency, 256)

    @property
    def backend(self) -> str:
        """The response parser: ``http``, with ``auto`` resolved to the fastest one installed."""
        return available_backends()[0] if self.http == "auto" else self.http

    @property
    def lean_direct(self) -> bool:
        """Whether the lean engine may make a plain-http attempt at an IP address on its own socket: not when
        redirects are followed (the client follows the chain) nor through a proxy (every connection goes
        through it). Without, the lean engine hands every attempt to the reference engine, so ``engine="auto"``
        runs the reference engine. (The one place that decides what the lean engine does not do itself.)"""
        return not self.follow_redirects and self.proxy is None


_DUMMY = Target("http", "127.0.0.1", 80)
