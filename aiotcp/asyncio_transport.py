"""The asyncio fast path of the transport: a connection as an ``asyncio.Protocol``, without anyio's stream
layer in the per-request hot path.

anyio opens streams portably (asyncio, uvloop, trio) and :mod:`aiotcp.transport` uses it everywhere else; on
asyncio, anyio's stream layer costs about as much per request as the rest of the client put together (a
cancel scope and an event per receive), which is what a prober or a load generator does all day. So on
asyncio the connection is a plain protocol: received bytes are appended to a buffer by ``data_received``,
``receive`` waits on one future with one timer handle, ``send`` writes to the transport and waits only when
flow control says so. Errors are mapped by the same functions in :mod:`aiotcp.errors`, so the kinds are the
same on every backend.

Cancellation from the caller (anyio cancel scopes cancel the asyncio task) interrupts the awaited future
like any other await.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
from collections import deque
from typing import cast

from .budget import Budget, Phase
from .error_mapping import map_stream_error
from .errors import ConnectionReset
from .streams import ConnectInfo, InputWatch, NetworkStream
from .tlsfacts import TLSInfo, tls_info

__all__ = ["AsyncioStream"]

# Pause reading from the socket while this much is received and not yet consumed.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader; records EOF and the error that ended the connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None  # TCP: TLS runs over it (start_tls), flow control on it
        self.tls = False  # TLS runs over this protocol (start_tls)
        self.buffer: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[bool] | None = None
        self.closed: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.closed = asyncio.get_running_loop().create_future()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():  # cancelled, or timed out in this loop iteration
                waiter.set_result(True)

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def resume_reading(self) -> None:
        """Resume what :meth:`data_received` paused: the TCP transport, under TLS too (see ``start_tls``)."""
        if self.transport is not None:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        # On plain TCP, keep the transport (a half-closed peer may still read the rest of a request): we close
        # it ourselves, once the response is handled. A TLS transport cannot stay half-open after
        # close_notify, and asyncio and uvloop log a warning for every True returned there.
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()


# A wait ends as timed out when the stream's timer fires this close to its due time (the loop's timers keep
# milliseconds: one may fire a hair early, and re-arming for less than a tick would only spin).
_TIMER_SLACK = 1e-3


class AsyncioStream(NetworkStream):
    """A connection (plain or TLS) as a protocol on the running asyncio loop."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.target = "?"
        self.info = ConnectInfo(peer=("", 0), dns_ms=0.0, connect_ms=0.0)
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._watch: InputWatch | None = None
        # One timer per stream, re-armed only when it fires (see _waiter): its handle, when it fires, and when
        # the current wait is due.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._due = math.inf
        self._unix_path: str | None = None

    @classmethod
    async def open(cls, address: str, port: int, *, local_address: str | None = None) -> AsyncioStream:
        """Connect to an IP address. Raises ``OSError`` as the loop reports it; ``connect`` maps it."""
        loop = asyncio.get_running_loop()
        if local_address is None:
            transport, protocol = await loop.create_connection(_Protocol, address, port)
        else:
            transport, protocol = await loop.create_connection(_Protocol, address, port, local_addr=(local_address, 0))
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio and uvloop set it already; say so rather than rely on it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(transport, protocol)

    @classmethod
    async def open_unix(cls, path: str) -> AsyncioStream:
        """Connect to a Unix domain socket. Raises ``OSError`` as the loop reports it."""
        transport, protocol = await asyncio.get_running_loop().create_unix_connection(_Protocol, path)
        stream = cls(transport, protocol)
        stream._unix_path = path
        return stream

    def peer(self) -> tuple[str, int]:
        if self._unix_path is not None:
            return (self._unix_path, 0)
        peer = self.transport.get_extra_info("peername")
        return (str(peer[0]), int(peer[1]))

    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> TLSInfo:
        # Before the handshake: a close_notify may reach the protocol before this coroutine resumes.
        self.protocol.tls = True
        try:
            transport = await self._loop.start_tls(self.transport, self.protocol, context, server_hostname=hostname)
        except BaseException:
            # start_tls moved the transport to its own TLS protocol: ours will never hear connection_lost,
            # so there is nothing for aclose() to wait for.
            self._closed = True
            self.transport.abort()
            raise
        if transport is None:  # pragma: no cover - only when the transport closed under us
            raise ConnectionResetError("connection closed during the TLS handshake")
        # Reading stays paused and resumed on the TCP transport (protocol.transport), not on this TLS one: uvloop
        # drops the TLS records it has not handed on to a paused TLS transport when the peer's FIN arrives (a
        # response with "Connection: close" loses its tail), while a paused TCP transport leaves the FIN in the
        # kernel.
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        return tls_info(ssl_object) if ssl_object is not None else TLSInfo(None, None, None)

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _waiter(self, budget: Budget, phase: Phase) -> asyncio.Future[bool]:
        """A future the protocol resolves with True when something happens, or the stream's timer with False
        once the budget for ``phase`` ran out. (A function, not a coroutine: one wait per response is the hot
        path, and a coroutine per wait costs as much as the wait.)

        A timer per wait (made, then cancelled, once per response) costs more than the rest of a wait: the
        stream keeps one timer and only moves the due time. When the timer fires before the current wait is
        due, it re-arms itself for that time; it is replaced only when a wait is due sooner than it fires.
        """
        loop = self._loop
        waiter: asyncio.Future[bool] = loop.create_future()
        self.protocol.waiter = waiter
        self._due = due = loop.time() + budget.limit(phase)
        if due < self._timer_at:
            self._arm(due)
        return waiter

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._timer_fired) if when != math.inf else None
        self._timer_at = when

    def _timer_fired(self) -> None:
        self._timer, self._timer_at = None, math.inf
        waiter, due = self.protocol.waiter, self._due
        if waiter is None or waiter.done() or due == math.inf:
            return  # nobody waits: the next wait arms the timer again
        if self._loop.time() >= due - _TIMER_SLACK:
            self.protocol.waiter = None
            waiter.set_result(False)
        else:
            self._arm(due)

    async def send(self, data: bytes, budget: Budget) -> None:
        """Write all of ``data``. Raises ``write_timeout``/``timeout``, ``reset`` or ``local``."""
        protocol = self.protocol
        if protocol.error is not None:
            raise map_stream_error(protocol.error, self.target, phase="write") from protocol.error
        if protocol.lost or self.transport.is_closing():
            raise ConnectionReset("connection closed before the request was written", target=self.target)
        self.transport.write(data)
        while protocol.writing_paused and not protocol.lost:
            if not await self._waiter(budget, "write"):
                raise budget.expired("write", self.target)
        if protocol.error is not None:
            raise map_stream_error(protocol.error, self.target, phase="write") from protocol.error
        if protocol.lost:
            raise ConnectionReset("connection lost while writing the request", target=self.target)

    async def receive(self, budget: Budget, max_bytes: int = 65536) -> bytes:
        """The next chunk, or ``b""`` once the peer has closed (FIN). Raises like :meth:`send`."""
        protocol = self.protocol
        if not protocol.buffer and not protocol.eof and not protocol.lost and not await self._waiter(budget, "read"):
            raise budget.expired("read", self.target)
        if protocol.buffer:
            chunk = protocol.buffer.popleft()
            if len(chunk) > max_bytes:
                protocol.buffer.appendleft(chunk[max_bytes:])
                chunk = chunk[:max_bytes]
            protocol.buffered -= len(chunk)
            if protocol.reading_paused and protocol.buffered < _LOW_WATER and not protocol.lost:
                protocol.reading_paused = False
                protocol.resume_reading()
            return chunk
        if protocol.error is not None:
            raise map_stream_error(protocol.error, self.target, phase="read") from protocol.error
        return b""  # EOF, or the connection was closed cleanly

    async def send_eof(self) -> bool:
        """Half-close (FIN after the write buffer drains); False on TLS, which cannot."""
        if not self.transport.can_write_eof():
            return False
        if self.protocol.error is not None:
            raise map_stream_error(self.protocol.error, self.target, phase="write") from self.protocol.error
        if self.protocol.lost or self.transport.is_closing():
            raise ConnectionReset("connection closed before our end of input", target=self.target)
        self.transport.write_eof()
        return True

    def has_pending_input(self) -> bool:
        """Whether anything arrived (bytes, EOF, an error) that nobody read. Never blocks."""
        protocol = self.protocol
        if protocol.buffer or protocol.eof or protocol.lost:
            return True
        # The loop reads the socket only when it polls: bytes or a FIN that came while it was busy elsewhere
        # are still in the kernel.
        if self._watch is None:
            sock = self.transport.get_extra_info("socket")
            if sock is None:
                return False
            self._watch = InputWatch(sock)
        return self._watch.has_input()

    async def aclose(self) -> None:
        """Close now. A TLS close_notify or unsent request bytes are not waited for: HTTP/1.1 frames its own
        end, and a peer that stopped reading must not hold our socket."""
        if self._closed:
            return
        self._closed = True
        self._arm(math.inf)
        transport = self.transport
        if not transport.is_closing():
            if transport.get_write_buffer_size() or transport.get_extra_info("sslcontext") is not None:
                transport.abort()
            else:
                transport.close()
        closed = self.protocol.closed
        if closed is not None and not closed.done():
            # connection_lost runs on the next loop iteration; wait for it so the descriptor is really gone
            # when aclose returns (callers count open files). Cancelling this wait is harmless: the
            # transport is already closing.
            await asyncio.shield(closed)
