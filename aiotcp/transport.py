"""Connecting (DNS, TCP with happy eyeballs, TLS) with phase timings, and the raw TCP exchange.

Names resolve through a :class:`~aiotcp.resolver.Resolver` (the caller's, else the process's default); the
addresses it gives are raced, IPv6 and IPv4 alternating, and its facts travel in the stream's
:class:`~aiotcp.streams.ConnectInfo` (``resolution``) and on a connect error (``error.resolution``).

This is the I/O boundary: every exception from anyio, the OS or ``ssl`` is mapped to an
:class:`~aiotcp.errors.AiotcpError` (by :mod:`aiotcp.error_mapping`), once per operation, and every wait is
bounded by the request's :class:`~aiotcp.budget.Budget`. The stream a connect returns is an
:class:`~aiotcp.asyncio_transport.AsyncioStream` on asyncio and an :class:`~aiotcp.anyio_transport.AnyioStream`
elsewhere (trio).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import os
import ssl
import sys
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import anyio

from .anyio_transport import AnyioStream
from .asyncio_transport import AsyncioStream
from .budget import Budget
from .config import Timeouts
from .error_mapping import map_connect_error
from .errors import (
    AiotcpError,
    ConnectError,
    ConnectionRefused,
    ConnectionReset,
    DNSError,
    LocalError,
    NetworkError,
    ProxyConnectError,
    ProxyError,
    ProxyResolveError,
    TimedOut,
    TLSError,
)
from .proxy import Proxy
from .resolution import Resolution
from .resolver import Resolver, default_resolver
from .streams import READ_SIZE, ConnectInfo, NetworkStream
from .targets import Target, parse_target
from .tunnel import open_tunnel

__all__ = [
    "ExchangeResult",
    "ResolveOverrides",
    "TCPTransport",
    "Transport",
    "connect",
    "make_ssl_context",
    "tcp_exchange",
    "tcp_session",
]

#: RFC 8305 "Connection Attempt Delay": how long one address gets before the next one races it.
HAPPY_EYEBALLS_DELAY = 0.25
Opener = Callable[[str, int], Awaitable[NetworkStream]]
#: ``{(host, port): (address, ...)}``: where to connect instead of asking DNS (``Client(resolve=...)``).
ResolveOverrides = Mapping[tuple[str, int], Sequence[str]]


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)


def make_ssl_context(verify: bool | str | ssl.SSLContext = True) -> ssl.SSLContext:
    """A client context: ``True`` verifies against the system store, a path against that CA bundle,
    ``False`` verifies nothing (the ``--insecure`` of curl). A given context is used as is."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        # create_default_context() without its CA store: loading the system's certificates costs tens of
        # milliseconds, and nothing here would ever read them. (The same protocol, options and ciphers.)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])  # as when verifying: the handshake differs in nothing else
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:
            context.keylog_filename = keylog  # as create_default_context() does
        return context
    context = ssl.create_default_context() if verify is True else ssl.create_default_context(cafile=verify)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def _resolve(target: Target, resolver: Resolver | None) -> tuple[list[str], Resolution | None]:
    """The addresses to try, in happy-eyeballs order, and the DNS facts (None for an IP address)."""
    if target.is_ip:
        return [target.host], None
    resolution = await (resolver or default_resolver()).resolve(target.host)
    return resolution.addresses(), resolution


async def _connect_any(addresses: list[str], port: int, open_one: Opener) -> NetworkStream:
    """Happy eyeballs over already-resolved addresses: start the next attempt every 250 ms (or as soon as
    one fails); the first to connect wins and the others are closed.

    anyio's ``connect_tcp`` races addresses too, but only after resolving the name itself; we resolve first
    so that DNS time is measured on its own and a DNS failure is told apart from a refused connection.
    """
    if len(addresses) == 1:
        return await open_one(addresses[0], port)
    winner: NetworkStream | None = None
    failures: list[OSError] = []

    async def attempt(address: str, failed: anyio.Event) -> None:
        nonlocal winner
        try:
            stream = await open_one(address, port)
        except OSError as exc:
            failures.append(exc)
            failed.set()
            return
        if winner is None:
            winner = stream
            group.cancel_scope.cancel()
        else:
            await stream.aclose()

    try:
        async with anyio.create_task_group() as group:
            for address in addresses:
                failed = anyio.Event()
                group.start_soon(attempt, address, failed)
                with anyio.move_on_after(HAPPY_EYEBALLS_DELAY):
                    await failed.wait()
    except BaseException:
        # Cancelled from outside (the connect deadline, the caller) just as an attempt won: the winner is
        # not returned, so closing it is ours to do.
        if winner is not None:
            await winner.aclose()
        raise
    if winner is None:
        raise ExceptionGroup("every address failed", failures) if len(failures) > 1 else failures[0]
    return winner


def _stream_class() -> type[NetworkStream]:
    """The fast asyncio stream when running on asyncio (uvloop included), anyio's everywhere else."""
    try:
        asyncio.get_running_loop()  # cheaper than asking sniffio, and the answer is the same
    except RuntimeError:
        return AnyioStream
    return AsyncioStream


def _opener() -> Opener:
    """What opens one TCP connection to an address: :meth:`NetworkStream.open` of :func:`_stream_class`."""
    return _stream_class().open


def _same_family(addresses: list[str], local_address: str) -> list[str]:
    """The addresses a socket bound to ``local_address`` can reach: IPv4 from IPv4, IPv6 from IPv6."""
    v6 = ":" in local_address
    return [address for address in addresses if (":" in address) == v6]


# What a failed connect was doing: resolving the target, reaching it, its TLS handshake; or the same for the
# proxy's hop: resolving the proxy's name, reaching it, the tunnel's handshake.
_Phase = Literal["dns", "tcp", "tls", "proxy_dns", "proxy_tcp", "proxy"]


async def connect(
    target: Target,
    budget: Budget,
    *,
    ssl_context: ssl.SSLContext | None = None,
    resolve: ResolveOverrides | None = None,
    resolver: Resolver | None = None,
    address: str | None = None,
    name: str | None = None,
    proxy: Proxy | None = None,
    uds: str | None = None,
    local_address: str | None = None,
) -> NetworkStream:
    """Resolve, connect (happy eyeballs) and, for https, handshake -- all within the connect timeout.

    ``resolver`` resolves the name (by default the process's :func:`~aiotcp.resolver.default_resolver`).
    Two ways skip DNS (the target's host still goes into the Host header, TLS SNI and certificate checks):
    ``address`` connects to that one address; ``resolve`` maps ``(host, port)`` to the addresses to connect to
    (curl's ``--resolve``; build it with :func:`aiotcp.targets.resolve_overrides`). ``name`` is what errors and
    the stream call the target (its URL by default).

    ``proxy``: connect to the proxy instead (its name resolved and pinned the same way), then, unless the
    proxy forwards requests (an HTTP proxy and an ``http://`` target), open a tunnel through it to the
    target (:func:`aiotcp.tunnel.open_tunnel`; for ``socks5``/``socks4`` the target's name is resolved here
    first, or ``address`` is used). ``uds``: connect to this Unix socket instead of any address (and no
    proxy). ``local_address``: the source address of the connection (only destinations of its family are
    tried).

    Raises ``dns`` (with the ``rcode``), ``refused``, ``unreachable``, ``connect_timeout`` (or ``timeout`` if
    the total deadline came first), ``tls``, ``local`` or, for the proxy's hop, ``proxy``
    (:class:`~aiotcp.errors.ProxyError`: :class:`~aiotcp.errors.ProxyResolveError`,
    :class:`~aiotcp.errors.ProxyConnectError`, :class:`~aiotcp.errors.ProxyTunnelRefused`).
    """
    name = name or target.url
    phase: _Phase = "dns"
    started = time.perf_counter()
    stream: NetworkStream | None = None
    resolution: Resolution | None = None
    with anyio.move_on_after(budget.limit("connect")) as scope:
        try:
            opener = _stream_class()
            tunnel = False
            if uds is not None:
                phase = "tcp"
                dns_ms = 0.0
                tcp_started = time.perf_counter()
                stream = await opener.open_unix(uds)
            else:
                host = target.host if address is None else address
                tunnel = proxy is not None and not proxy.forwards(target)
                if proxy is None or (tunnel and not proxy.resolves_names and not proxy.is_http):
                    # The target's addresses: to connect to, or for a socks5/socks4 proxy to be given.
                    if address is not None:
                        addresses, resolution = [address], None
                    elif resolve and (pinned := resolve.get((target.host, target.port))):
                        addresses, resolution = list(pinned), None
                    else:
                        addresses, resolution = await _resolve(target, resolver)
                    host = addresses[0] if proxy is None or proxy.scheme != "socks4" else _ipv4(addresses, name)
                if proxy is not None:
                    phase = "proxy_dns"
                    pinned = resolve.get((proxy.host, proxy.port)) if resolve else None
                    if pinned:
                        addresses = list(pinned)
                    else:
                        addresses, _ = await _resolve(proxy.target, resolver)
                dns_ms = _ms(started)
                phase = "tcp" if proxy is None else "proxy_tcp"
                tcp_started = time.perf_counter()
                port = target.port if proxy is None else proxy.port
                if local_address is not None:
                    addresses = _same_family(addresses, local_address)
                    if not addresses:
                        family = "IPv6" if ":" in local_address else "IPv4"
                        raise LocalError(f"no {family} address to connect to from local address {local_address}")
                    open_one: Opener = functools.partial(opener.open, local_address=local_address)
                else:
                    open_one = opener.open
                stream = await _connect_any(addresses, port, open_one)
            stream.target = name
            stream.info = ConnectInfo(
                peer=stream.peer(), dns_ms=dns_ms, connect_ms=_ms(tcp_started), resolution=resolution
            )
            if proxy is not None:
                stream.info.proxy = proxy.url
                if tunnel:
                    phase = "proxy"
                    proxy_started = time.perf_counter()
                    await _open_tunnel(stream, proxy, host, target.port, budget)
                    stream.info.proxy_connect_ms = _ms(proxy_started)
            if ssl_context is not None:
                phase = "tls"
                tls_started = time.perf_counter()
                stream.info.tls = await stream.start_tls(ssl_context, target.host)
                stream.info.tls_version = stream.info.tls.version
                stream.info.tls_ms = _ms(tls_started)
            return stream
        except BaseException as exc:
            if stream is not None:
                await stream.aclose()
            error = _connect_error(exc, name, phase, proxy, uds)
            if error is None:
                raise
            if isinstance(error, ConnectError) and resolution is not None and error.resolution is None:
                error.resolution = resolution  # the name resolved: its facts belong in the record
            try:
                raise error from (None if error is exc else exc)
            finally:
                # A local of this frame holding the error, whose traceback holds this frame, would be a
                # reference cycle per failed connect, left to the garbage collector.
                del error
    assert scope.cancelled_caught
    raise _connect_expired(budget, name, phase, resolution, proxy)


def _with_facts(error: AiotcpError, resolution: Resolution | None) -> AiotcpError:
    """``error`` carrying the DNS facts of the name when it resolved: they belong in the record all the same."""
    if isinstance(error, ConnectError) and resolution is not None:
        error.resolution = resolution
    return error


def _connect_expired(
    budget: Budget, name: str, phase: _Phase, resolution: Resolution | None, proxy: Proxy | None
) -> AiotcpError:
    """The error of a connect that ran out of time, named by the phase (and the hop) it was in."""
    error: AiotcpError = budget.expired("connect", name)
    # The phase that was waiting when the deadline ran out (timeout_phase): a proxy's hops are its connect.
    error.timeout_phase = "tls" if phase == "tls" else "dns" if phase == "dns" else "connect"
    seconds = f"{budget.timeouts.connect:g}s"
    if phase == "tls" and error.kind == "connect_timeout":
        # TCP is up but the handshake went unanswered (a TLS tarpit, or plaintext service on this port).
        through = "" if proxy is None else f" (through proxy {proxy.url})"
        error = TLSError(f"TLS handshake not answered within {seconds}{through}", target=name, timeout_phase="tls")
    elif phase == "dns" and error.kind == "connect_timeout":
        error = DNSError(f"no DNS answer within {seconds}", target=name, rcode="TIMEOUT")
    elif proxy is not None and phase.startswith("proxy"):
        what = {
            "proxy_dns": f"no DNS answer for proxy {proxy.url}",
            "proxy_tcp": f"no answer to connect (SYN) from proxy {proxy.url}",
            "proxy": f"proxy {proxy.url} did not open the tunnel",
        }[phase]
        error.message = f"{what} within {seconds}" if error.kind == "connect_timeout" else f"{what}: {error.message}"
    return _with_facts(error, resolution)


class Transport(abc.ABC):
    """How a :class:`~aiotcp.client.Client` opens its connections: ``Client(transport=...)``.

    The client asks for a :class:`~aiotcp.streams.NetworkStream` to a target and does the HTTP on it (request
    bytes out, response parsing in), so a transport decides only where bytes go: :class:`TCPTransport` (the
    default) over the network, :class:`aiotcp.testing.MockTransport` to a function of the test's.
    """

    @abc.abstractmethod
    async def connect(
        self,
        target: Target,
        budget: Budget,
        *,
        ssl_context: ssl.SSLContext | None = None,
        address: str | None = None,
        proxy: Proxy | None = None,
    ) -> NetworkStream:
        """A connection ready for requests to ``target`` (TLS done when ``ssl_context`` is given), made within
        ``budget``'s connect deadline. Raises :class:`~aiotcp.errors.AiotcpError` (the kinds of
        :func:`connect`)."""


class TCPTransport(Transport):
    """Connections over the network, made by :func:`connect`: DNS through ``resolver`` (pinned by ``resolve``),
    happy eyeballs, a proxy's hop, TLS; or to the Unix socket ``uds``; from ``local_address`` when given."""

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        resolve: ResolveOverrides | None = None,
        uds: str | None = None,
        local_address: str | None = None,
    ) -> None:
        self.resolver = resolver
        self.resolve = resolve
        self.uds = uds
        self.local_address = local_address

    def __repr__(self) -> str:
        where = f" uds={self.uds}" if self.uds else ""
        source = f" local_address={self.local_address}" if self.local_address else ""
        return f"<TCPTransport{where}{source}>"

    async def connect(
        self,
        target: Target,
        budget: Budget,
        *,
        ssl_context: ssl.SSLContext | None = None,
        address: str | None = None,
        proxy: Proxy | None = None,
    ) -> NetworkStream:
        return await connect(
            target,
            budget,
            ssl_context=ssl_context,
            resolve=self.resolve,
            resolver=self.resolver,
            address=address,
            proxy=proxy,
            uds=self.uds,
            local_address=self.local_address,
        )


def _ipv4(addresses: list[str], name: str) -> str:
    for address in addresses:
        if ":" not in address:
            return address
    raise ConnectError("a socks4 proxy needs an IPv4 address and the name has none (use socks4a)", target=name)


async def _open_tunnel(stream: NetworkStream, proxy: Proxy, host: str, port: int, budget: Budget) -> None:
    """The tunnel's handshake on ``stream``, bounded by the connect deadline only (``connect`` holds it): a
    proxy connecting to a slow target takes what the connect timeout allows, not the read timeout."""
    handshake = Budget(replace(budget.timeouts, read=None, write=None), budget.deadline, budget.clock)

    async def send(data: bytes) -> None:
        await stream.send(data, handshake)

    async def receive() -> bytes:
        return await stream.receive(handshake)

    await open_tunnel(proxy, host, port, send, receive)


def _connect_error(
    exc: BaseException, name: str, phase: _Phase, proxy: Proxy | None, uds: str | None
) -> AiotcpError | None:
    """The error a failed connect raises, naming the hop that failed; None to let ``exc`` through (cancellation,
    a bug)."""
    if isinstance(exc, AiotcpError):
        error = exc.for_target(name)  # the resolver knows the name, not the URL
    elif isinstance(exc, (OSError, anyio.BrokenResourceError, anyio.EndOfStream, ExceptionGroup)):
        error = map_connect_error(
            exc, name, phase="tls" if phase == "tls" else "dns" if phase.endswith("dns") else "tcp"
        )
    else:
        return None
    if isinstance(error, (LocalError, ProxyError, TimedOut)) or proxy is None:
        if uds is not None and isinstance(error, ConnectError) and not isinstance(error, TLSError):
            return ConnectionRefused(f"cannot connect to unix socket {uds}: {_reason(exc)}", target=name)
        if isinstance(error, TLSError) and proxy is not None:
            error.message = f"{error.message} (through proxy {proxy.url})"
        return error
    url = proxy.url
    if phase == "proxy_dns" and isinstance(error, DNSError):
        return ProxyResolveError(f"proxy {url}: its name does not resolve: {error.message}", target=name, proxy=url)
    if phase == "proxy_tcp":
        return ProxyConnectError(f"cannot connect to proxy {url}: {error.message}", target=name, proxy=url)
    if phase == "proxy" and isinstance(error, (NetworkError, ConnectError)):
        return ProxyError(f"proxy {url} failed during the handshake: {error.message}", target=name, proxy=url)
    if isinstance(error, TLSError):
        error.message = f"{error.message} (through proxy {url})"
    return error


def _reason(exc: BaseException) -> str:
    for item in (exc, exc.__cause__, exc.__context__):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    return str(exc) or type(exc).__name__


# --- raw exchange -----------------------------------------------------------------------------------------

#: How a raw exchange ended: ``eof`` the peer closed (FIN), ``reset`` (RST), ``limit`` ``max_bytes`` arrived,
#: ``timeout`` the deadline passed, ``linger`` the linger time after the end of our input passed.
Ending = Literal["eof", "reset", "limit", "timeout", "linger"]


@dataclass(slots=True)
class ExchangeResult:
    """What came back from a raw exchange and how the connection ended.

    ``data`` holds what was received for :func:`tcp_exchange`; :func:`tcp_session` hands it to its sink
    instead and leaves ``data`` empty. ``received`` counts the bytes either way.
    """

    target: str
    peer: tuple[str, int]
    sent: int
    data: bytes
    ended: Ending
    connect_ms: float
    tls_ms: float | None
    first_byte_ms: float | None
    total_ms: float
    received: int = 0
    half_closed: bool = False


async def tcp_exchange(
    target: str | Target,
    payload: bytes = b"",
    *,
    max_bytes: int = 1024 * 1024,
    timeout: float = 10.0,
    connect_timeout: float | None = None,
    tls: bool | None = None,
    verify: bool | str | ssl.SSLContext = True,
) -> ExchangeResult:
    """Connect, send ``payload``, then read until the peer closes, ``max_bytes`` arrive or ``timeout`` passes.

    ``target`` is ``host:port`` or a URL (``https://`` implies TLS unless ``tls`` says otherwise). Failing to
    connect raises (``refused``, ``connect_timeout``, ``dns``, ``tls``, ``local``...), naming the target as
    ``host:port``; once connected, the exchange never raises for what the peer does -- ``ended`` says how it
    stopped: ``eof`` (FIN), ``reset`` (RST), ``limit`` (``max_bytes`` reached) or ``timeout`` (the deadline
    passed). The connection is not half-closed after the payload (some servers take a FIN for a hang-up).
    """
    received = bytearray()
    result = await tcp_session(
        target,
        (payload,) if payload else (),
        received.extend,
        max_bytes=max_bytes,
        timeout=timeout,
        connect_timeout=connect_timeout,
        tls=tls,
        verify=verify,
        half_close=False,
    )
    result.data = bytes(received)
    return result


def _exchange_name(target: Target) -> str:
    """A raw target is ``host:port`` (IPv6 in brackets), never a URL: nothing HTTP is involved."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


async def tcp_session(
    target: str | Target,
    source: AsyncIterable[bytes] | Iterable[bytes],
    sink: Callable[[bytes], object],
    *,
    max_bytes: int | None = None,
    timeout: float | None = 10.0,
    connect_timeout: float | None = None,
    linger: float | None = None,
    half_close: bool = True,
    tls: bool | None = None,
    verify: bool | str | ssl.SSLContext = True,
) -> ExchangeResult:
    """A two-way raw exchange, as ``nc`` does it: send what ``source`` yields while handing what arrives to
    ``sink`` (called with each chunk as it comes), both at once.

    When ``source`` ends, the connection is half-closed (FIN, ``nc -N``; not on TLS, which cannot) unless
    ``half_close`` is False, and reading goes on until the peer closes, ``max_bytes`` arrive, ``timeout``
    (the deadline for the whole session; ``None``: none) passes or, with ``linger``, that many seconds after
    the end of ``source`` (``nc -q``). A peer that closes ends the session even while ``source`` has more.

    Raises like :func:`tcp_exchange` for connect failures; an exception from ``source`` or ``sink`` (a
    closed pipe) is raised as it is, after the connection is closed. ``ended`` says how the session stopped.
    """
    if not isinstance(target, Target):
        target = parse_target(target)
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes!r}")
    if linger is not None and linger < 0:
        raise ValueError(f"linger must be >= 0 seconds, got {linger!r}")
    use_tls = target.scheme == "https" if tls is None else tls
    budget = Budget.start(Timeouts(connect=connect_timeout or timeout, read=None, write=None, total=timeout))
    started = time.perf_counter()
    stream = await connect(
        target, budget, ssl_context=make_ssl_context(verify) if use_tls else None, name=_exchange_name(target)
    )
    state = _Session(started)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(state.send_all, stream, budget, source, half_close, linger, group.cancel_scope)
            group.start_soon(state.receive_all, stream, budget, sink, max_bytes, group.cancel_scope)
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
    if state.failure is not None:
        raise state.failure
    return ExchangeResult(
        target=stream.target,
        peer=stream.info.peer,
        sent=state.sent,
        data=b"",
        ended=state.ended,
        connect_ms=stream.info.connect_ms,
        tls_ms=stream.info.tls_ms,
        first_byte_ms=state.first_byte_ms,
        total_ms=_ms(started),
        received=state.received,
        half_closed=state.half_closed,
    )


class _Session:
    """The two halves of :func:`tcp_session` and what they share. Each half catches its own errors and ends
    the session through the cancel scope, so the caller sees one outcome instead of an exception group."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.sent = 0
        self.received = 0
        self.first_byte_ms: float | None = None
        self.ended: Ending = "eof"
        self.half_closed = False
        self.failure: BaseException | None = None

    def stop(self, ended: Ending, scope: anyio.CancelScope, failure: BaseException | None = None) -> None:
        if not scope.cancel_called:  # the first outcome is the one reported
            self.ended = ended
            self.failure = failure
            scope.cancel()

    def stop_on_error(self, exc: Exception, scope: anyio.CancelScope) -> None:
        if isinstance(exc, ConnectionReset):
            self.stop("reset", scope)
        elif isinstance(exc, AiotcpError) and exc.kind in ("timeout", "read_timeout", "write_timeout"):
            self.stop("timeout", scope)
        else:
            self.stop("eof", scope, exc)

    async def send_all(
        self,
        stream: NetworkStream,
        budget: Budget,
        source: AsyncIterable[bytes] | Iterable[bytes],
        half_close: bool,
        linger: float | None,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            if isinstance(source, AsyncIterable):
                async for chunk in source:
                    await stream.send(chunk, budget)
                    self.sent += len(chunk)
            else:
                for chunk in source:
                    await stream.send(chunk, budget)
                    self.sent += len(chunk)
            if half_close:
                self.half_closed = await stream.send_eof()
        except Exception as exc:
            self.stop_on_error(exc, scope)
            return
        if linger is not None:
            await anyio.sleep(linger)
            self.stop("linger", scope)

    async def receive_all(
        self,
        stream: NetworkStream,
        budget: Budget,
        sink: Callable[[bytes], object],
        max_bytes: int | None,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            while max_bytes is None or self.received < max_bytes:
                size = READ_SIZE if max_bytes is None else min(READ_SIZE, max_bytes - self.received)
                chunk = await stream.receive(budget, size)
                if not chunk:
                    self.stop("eof", scope)
                    return
                if self.first_byte_ms is None:
                    self.first_byte_ms = _ms(self.started)
                self.received += len(chunk)
                sink(chunk)
            self.stop("limit", scope)
        except Exception as exc:
            self.stop_on_error(exc, scope)
