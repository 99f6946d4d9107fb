"""Opening streams with anyio (DNS, TCP, TLS), timing each phase, and the raw TCP exchange.

This is the I/O boundary: every exception from anyio, the OS or ``ssl`` is mapped to an
:class:`~aiotcp.errors.AiotcpError` here, once per operation (connect, send, receive), and every wait is
bounded by the request's :class:`~aiotcp.config.Budget`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import select
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from .config import Budget, Timeouts
from .errors import (
    AiotcpError,
    ConnectionReset,
    DNSError,
    TLSError,
    map_connect_error,
    map_stream_error,
)
from .targets import Target, parse_target

__all__ = [
    "AnyioStream",
    "ConnectInfo",
    "ExchangeResult",
    "NetworkStream",
    "connect",
    "make_ssl_context",
    "tcp_exchange",
]

#: RFC 8305 "Connection Attempt Delay": how long one address gets before the next one races it.
HAPPY_EYEBALLS_DELAY = 0.25
READ_SIZE = 65536

Opener = Callable[[str, int], Awaitable["NetworkStream"]]


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)


def make_ssl_context(verify: bool | str | ssl.SSLContext = True) -> ssl.SSLContext:
    """A client context: ``True`` verifies against the system store, a path against that CA bundle,
    ``False`` verifies nothing (the ``--insecure`` of curl). A given context is used as is."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context() if verify is True else ssl.create_default_context(cafile=verify)
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(slots=True)
class ConnectInfo:
    """What connecting took and where it landed."""

    peer: tuple[str, int]
    dns_ms: float
    connect_ms: float
    tls_ms: float | None = None
    tls_version: str | None = None


class NetworkStream(abc.ABC):
    """An established connection. ``send``/``receive`` are bounded by a budget and raise only aiotcp errors.

    Two implementations: :class:`AnyioStream` (any backend anyio runs on) and, on asyncio,
    :class:`~aiotcp.asyncio_transport.AsyncioStream` (the fast path). :func:`connect` picks one.
    """

    target: str
    info: ConnectInfo

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        peer = f"{self.info.peer[0]}:{self.info.peer[1]}" if self.info.peer else "?"
        return f"<{type(self).__name__} {self.target} peer={peer} {state}>"

    @property
    @abc.abstractmethod
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` was called."""

    @abc.abstractmethod
    async def send(self, data: bytes, budget: Budget) -> None:
        """Write all of ``data``. Raises ``write_timeout``/``timeout``, ``reset`` or ``local``."""

    @abc.abstractmethod
    async def receive(self, budget: Budget, max_bytes: int = READ_SIZE) -> bytes:
        """The next chunk, or ``b""`` once the peer has closed (FIN). Raises like :meth:`send`."""

    @abc.abstractmethod
    def has_pending_input(self) -> bool:
        """Whether an idle connection has something to read: EOF, RST or stray bytes. Never blocks.

        A pooled connection in that state is not safe to reuse: the peer closed it, or the bytes would be
        taken for the next response.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close, never raising and never waiting long. Safe to call twice."""

    # -- used by connect() ----------------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    async def open(cls, address: str, port: int) -> NetworkStream:
        """Connect to an IP address. Raises ``OSError`` as the OS reports it; :func:`connect` maps it."""

    @abc.abstractmethod
    def peer(self) -> tuple[str, int]: ...

    @abc.abstractmethod
    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> str | None:
        """Handshake on this connection; return the TLS version. Raises ``ssl.SSLError``/``OSError``."""


class AnyioStream(NetworkStream):
    """A connection as an anyio byte stream: works on every backend anyio supports (asyncio, trio)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self.target = "?"
        self.info = ConnectInfo(peer=("", 0), dns_ms=0.0, connect_ms=0.0)
        self._closed = False
        self._socket: socket.socket | None = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        self._watch: InputWatch | None = None

    @classmethod
    async def open(cls, address: str, port: int) -> AnyioStream:
        stream = await anyio.connect_tcp(address, port)
        # Requests are written whole; Nagle would only hold back the last segment.
        stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(stream)

    def peer(self) -> tuple[str, int]:
        peer = self._stream.extra(anyio.abc.SocketAttribute.remote_address)
        return (str(peer[0]), int(peer[1]))

    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> str | None:
        self._stream = await TLSStream.wrap(
            self._stream,
            hostname=hostname,
            ssl_context=context,
            standard_compatible=False,  # HTTP/1.1 frames its own end; many servers skip close_notify
        )
        return self._stream.extra(TLSAttribute.tls_version)

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def send(self, data: bytes, budget: Budget) -> None:
        with anyio.move_on_after(budget.limit("write")) as scope:
            try:
                await self._stream.send(data)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
                raise map_stream_error(exc, self.target, phase="write") from exc
        if scope.cancelled_caught:
            raise budget.expired("write", self.target)

    async def receive(self, budget: Budget, max_bytes: int = READ_SIZE) -> bytes:
        with anyio.move_on_after(budget.limit("read")) as scope:
            try:
                return await self._stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
                raise map_stream_error(exc, self.target, phase="read") from exc
        assert scope.cancelled_caught
        raise budget.expired("read", self.target)

    def has_pending_input(self) -> bool:
        if self._closed:
            return True
        if isinstance(self._stream, TLSStream) and self._stream.extra(TLSAttribute.ssl_object).pending():
            return True
        if _buffered_by_anyio(self._stream):
            return True
        if self._socket is None:
            return False
        if self._watch is None:
            self._watch = InputWatch(self._socket)
        return self._watch.has_input()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(0.5) as scope:
                with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._stream.aclose()
            if scope.cancelled_caught:
                await anyio.aclose_forcefully(self._stream)


class InputWatch:
    """Answers "has the kernel something for us to read on this socket?" without blocking.

    That sees what arrived while the event loop was busy and has not read yet (bytes, FIN, RST). It uses
    poll(), not select(): select() cannot watch descriptors above FD_SETSIZE (1024), which a busy prober
    passes quickly; the poll object is made once per connection, so a check is one system call.
    """

    __slots__ = ("_poller",)

    def __init__(self, sock: Any) -> None:
        self._poller: select.poll | None = None
        try:
            fd = sock.fileno()
        except OSError:
            return
        if fd >= 0:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN | select.POLLPRI)

    def has_input(self) -> bool:
        if self._poller is None:
            return True  # no descriptor: closed
        try:
            return bool(self._poller.poll(0))  # POLLHUP and POLLERR are always reported too
        except OSError:
            return True


def _buffered_by_anyio(stream: anyio.abc.ByteStream) -> bool:
    """Whether anyio's asyncio backend holds received bytes, EOF or an error that we have not read yet.

    On asyncio, anyio reads the socket into a queue whenever a receive is pending; a chunk that arrived just
    after the end of a response can sit there, invisible to a peek at the socket. anyio has no public way
    to ask, so look at its stream protocol (and treat "cannot tell" as "nothing buffered": the socket peek
    still runs). On trio, anyio keeps no queue and the socket peek is exact.
    """
    inner: object = stream.transport_stream if isinstance(stream, TLSStream) else stream
    protocol = getattr(inner, "_protocol", None)
    read_event = getattr(protocol, "read_event", None)
    return bool(read_event is not None and read_event.is_set())


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
    return _asyncio_stream().open


@functools.cache
def _asyncio_stream() -> type[NetworkStream]:
    # Imported on first use: asyncio_transport builds on this module.
    from .asyncio_transport import AsyncioStream

    return AsyncioStream


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
    if phase == "tls" and error.kind == "connect_timeout":
        # TCP is up but the handshake went unanswered (a TLS tarpit, or plaintext service on this port).
        raise TLSError(f"TLS handshake not answered within {budget.timeouts.connect:g}s", target=name)
    if phase == "dns" and error.kind == "connect_timeout":
        raise DNSError(f"no DNS answer within {budget.timeouts.connect:g}s", target=name)
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
    budget = Timeouts(connect=connect_timeout or timeout, read=None, write=None, total=timeout).budget()
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
