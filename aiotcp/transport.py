"""Connecting (DNS, TCP with happy eyeballs, TLS) with phase timings, and the raw TCP exchange.

This is the I/O boundary: every exception from anyio, the OS or ``ssl`` is mapped to an
:class:`~aiotcp.errors.AiotcpError` (by :mod:`aiotcp.error_mapping`), once per operation, and every wait is
bounded by the request's :class:`~aiotcp.budget.Budget`. The stream a connect returns is an
:class:`~aiotcp.asyncio_transport.AsyncioStream` on asyncio and an :class:`~aiotcp.anyio_transport.AnyioStream`
elsewhere (trio).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio

from .anyio_transport import AnyioStream
from .asyncio_transport import AsyncioStream
from .budget import Budget
from .config import Timeouts
from .error_mapping import map_connect_error
from .errors import AiotcpError, ConnectionReset, DNSError, TLSError
from .streams import READ_SIZE, ConnectInfo, NetworkStream
from .targets import Target, parse_target

__all__ = [
    "ExchangeResult",
    "connect",
    "make_ssl_context",
    "tcp_exchange",
]

#: RFC 8305 "Connection Attempt Delay": how long one address gets before the next one races it.
HAPPY_EYEBALLS_DELAY = 0.25
Opener = Callable[[str, int], Awaitable[NetworkStream]]


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
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:
            context.keylog_filename = keylog  # as create_default_context() does
        return context
    context = ssl.create_default_context() if verify is True else ssl.create_default_context(cafile=verify)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _interleave(infos: list[tuple[int, str]]) -> list[str]:
    """RFC 8305 order: alternate address families, starting with the resolver's first."""
    by_family: dict[int, list[str]] = {}
    for family, address in infos:
        bucket = by_family.setdefault(family, [])
        if address not in bucket:
            bucket.append(address)
    queues = list(by_family.values())
    ordered: list[str] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


async def _resolve(target: Target) -> list[str]:
    host, port = target.host, target.port
    if target.is_ip:
        return [host]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _interleave([(int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in infos])


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


def _opener() -> Opener:
    """The fast asyncio stream when running on asyncio (uvloop included), anyio's everywhere else."""
    try:
        asyncio.get_running_loop()  # cheaper than asking sniffio, and the answer is the same
    except RuntimeError:
        return AnyioStream.open
    return AsyncioStream.open


async def connect(
    target: Target,
    budget: Budget,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> NetworkStream:
    """Resolve, connect (happy eyeballs) and, for https, handshake -- all within the connect timeout.

    Raises ``dns``, ``refused``, ``unreachable``, ``connect_timeout`` (or ``timeout`` if the total deadline
    came first), ``tls`` or ``local``.
    """
    name = target.url
    phase: Literal["dns", "tcp", "tls"] = "dns"
    started = time.perf_counter()
    stream: NetworkStream | None = None
    with anyio.move_on_after(budget.limit("connect")) as scope:
        try:
            addresses = await _resolve(target)
            dns_ms = _ms(started)
            phase = "tcp"
            tcp_started = time.perf_counter()
            stream = await _connect_any(addresses, target.port, _opener())
            stream.target = name
            stream.info = ConnectInfo(peer=stream.peer(), dns_ms=dns_ms, connect_ms=_ms(tcp_started))
            if ssl_context is not None:
                phase = "tls"
                tls_started = time.perf_counter()
                stream.info.tls_version = await stream.start_tls(ssl_context, target.host)
                stream.info.tls_ms = _ms(tls_started)
            return stream
        except BaseException as exc:
            if stream is not None:
                await stream.aclose()
            if isinstance(exc, (OSError, anyio.BrokenResourceError, anyio.EndOfStream, ExceptionGroup)):
                raise map_connect_error(exc, name, phase=phase) from exc
            raise
    assert scope.cancelled_caught
    error = budget.expired("connect", name)
    waiting = "connect" if phase == "tcp" else phase  # the phase of the connect that ran out (timeout_phase)
    if phase == "tls" and error.kind == "connect_timeout":
        # TCP is up but the handshake went unanswered (a TLS tarpit, or plaintext service on this port).
        raise TLSError(
            f"TLS handshake not answered within {budget.timeouts.connect:g}s", target=name, timeout_phase=waiting
        )
    if phase == "dns" and error.kind == "connect_timeout":
        raise DNSError(f"no DNS answer within {budget.timeouts.connect:g}s", target=name, timeout_phase=waiting)
    error.timeout_phase = waiting
    raise error


# --- raw exchange -----------------------------------------------------------------------------------------

Ending = Literal["eof", "reset", "limit", "timeout"]


@dataclass(slots=True)
class ExchangeResult:
    """What came back from a raw exchange and how the connection ended."""

    target: str
    peer: tuple[str, int]
    sent: int
    data: bytes
    ended: Ending
    connect_ms: float
    tls_ms: float | None
    first_byte_ms: float | None
    total_ms: float


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
    connect raises (``refused``, ``connect_timeout``, ``dns``, ``tls``, ``local``...); once connected, the
    exchange never raises for what the peer does -- ``ended`` says how it stopped: ``eof`` (FIN),
    ``reset`` (RST), ``limit`` (``max_bytes`` reached) or ``timeout`` (the deadline passed).
    """
    if not isinstance(target, Target):
        target = parse_target(target)
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes!r}")
    use_tls = target.scheme == "https" if tls is None else tls
    budget = Budget.start(Timeouts(connect=connect_timeout or timeout, read=None, write=None, total=timeout))
    started = time.perf_counter()
    stream = await connect(target, budget, ssl_context=make_ssl_context(verify) if use_tls else None)
    received = bytearray()
    first_byte_ms: float | None = None
    ended: Ending = "eof"
    try:
        try:
            if payload:
                await stream.send(payload, budget)
            while len(received) < max_bytes:
                chunk = await stream.receive(budget, min(READ_SIZE, max_bytes - len(received)))
                if not chunk:
                    break
                if first_byte_ms is None:
                    first_byte_ms = _ms(started)
                received += chunk
            else:
                ended = "limit"
        except ConnectionReset:
            ended = "reset"
        except AiotcpError as exc:
            if exc.kind not in ("timeout", "read_timeout", "write_timeout"):
                raise
            ended = "timeout"
    finally:
        await stream.aclose()
    return ExchangeResult(
        target=stream.target,
        peer=stream.info.peer,
        sent=len(payload),
        data=bytes(received),
        ended=ended,
        connect_ms=stream.info.connect_ms,
        tls_ms=stream.info.tls_ms,
        first_byte_ms=first_byte_ms,
        total_ms=_ms(started),
    )
