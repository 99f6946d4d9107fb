"""An in-memory :class:`~aiotcp.streams.NetworkStream` whose far end a test scripts: the connection and the pool
driven without sockets, on asyncio and on trio.

    peer = Peer(answer=OK)              # answers every request with OK (without answer: silent)
    peer.reply(b"HTTP/1.1 20", EOF)     # ... except the next one: half a head, then FIN
    connection = HTTPConnection(peer.stream, make_protocol("h11"), key="origin")
    ...
    peer.feed(b"stray")                 # bytes that arrive now, asked for or not (stray bytes while idle)
    peer.close()                        # FIN, after whatever is queued before it
    peer.reset()                        # RST, after whatever is queued before it
    peer.stop_reading()                 # the client's writes wait, then fail with write_timeout
    assert peer.requests[0].startswith(b"GET / HTTP/1.1\r\n")    # one entry per send()

:class:`Origin` opens such connections for a pool (``pool.acquire(origin.key, budget, origin.open)``) and keeps
their peers (``origin.peers``).

Theory of operation
-------------------
The stream has an inbox: a queue of byte chunks that may end in one ending, :data:`EOF` (the peer's FIN) or
:data:`RESET` (its RST). ``receive`` takes the first chunk (at most ``max_bytes`` of it: a chunk fed is never
merged with the next, so a test controls the reads the client sees); at an ending it returns ``b""`` (EOF) or
raises ``reset`` (RST), and keeps doing so, as a socket does. With nothing queued it waits, bounded by the
budget's read limit, and then raises what the budget says (``read_timeout``, or ``timeout`` past the total
deadline). What the client writes is recorded, one entry per ``send`` (the connection writes a request in one
``send``); each ``send`` also releases the next reply the test queued with :meth:`Peer.reply`, or ``answer``
(unless the peer has already closed or reset: then nothing more arrives).

The errors are the real transports': each failure is built as the OS or anyio would report it (an
``ECONNRESET`` ``OSError``, anyio's ``ClosedResourceError``) and mapped by the same
:func:`aiotcp.error_mapping.map_stream_error`, so kinds and messages match a socket's. A write after the peer's
FIN succeeds, as it does on TCP (the stale keep-alive race: the request goes out, the reply is EOF); a write
after its RST fails with ``reset``. ``has_pending_input`` is true when anything is queued (bytes, EOF or RST)
or the stream was closed, as the socket peek of the real streams is. ``send`` and ``receive`` always pass a
cancellation point, as anyio's streams do; ``aclose`` marks the stream closed before its first (shielded)
await, the rule every stream follows, and counts in ``closes`` the calls that closed it. Reading or writing
after ``aclose`` fails with ``disconnected``, as on anyio's stream (the asyncio fast path reads ``b""`` then;
nothing in aiotcp reads a stream it closed).

What a socket shows and this does not: segments, windows, RST versus FIN timing in the kernel, descriptors.
Tests about those stay on loopback servers (tests/scripted_server.py).
"""

from __future__ import annotations

import enum
import errno
import os
import ssl
from collections import deque
from collections.abc import Hashable

import anyio
import anyio.lowlevel

from aiotcp.budget import Budget
from aiotcp.connection import HTTPConnection
from aiotcp.error_mapping import map_stream_error
from aiotcp.http11 import make_protocol
from aiotcp.streams import READ_SIZE, ConnectInfo, NetworkStream
from aiotcp.tlsfacts import TLSInfo

__all__ = ["EOF", "OK", "RESET", "Ending", "Item", "MemoryStream", "Origin", "Peer", "ok"]


class Ending(enum.Enum):
    """How the peer ends its side: the last item of an inbox."""

    EOF = "eof"  # FIN: receive() returns b"" from then on
    RESET = "reset"  # RST: receive() and send() raise kind "reset" from then on


EOF = Ending.EOF
RESET = Ending.RESET
Item = bytes | Ending


def ok(body: bytes = b"hello", *headers: bytes) -> bytes:
    """A 200 response with a Content-Length body (and ``headers``, whole lines without CRLF)."""
    extra = b"".join(header + b"\r\n" for header in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


OK = ok()


def _reset_error() -> OSError:
    return ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))


class Peer:
    """The far end of a :class:`MemoryStream`, as a test scripts it, and what the client wrote to it.

    ``answer``: the reply to every request for which no :meth:`reply` is queued (``None``: stay silent).
    """

    def __init__(
        self, *, answer: Item | list[Item] | None = None, address: tuple[str, int] = ("192.0.2.1", 80)
    ) -> None:
        self.answer: list[Item] = [] if answer is None else answer if isinstance(answer, list) else [answer]
        self.address = address
        self.requests: list[bytes] = []  # what each send() wrote
        self.tls_hostname: str | None = None
        self.half_closed = False  # the client sent FIN (send_eof)
        self._replies: deque[list[Item]] = deque()
        self._reading = True
        self.stream = MemoryStream(self)

    def __repr__(self) -> str:
        return f"<Peer {self.address[0]}:{self.address[1]} requests={len(self.requests)} {self.stream!r}>"

    @property
    def written(self) -> bytes:
        """Every byte the client wrote, in order."""
        return b"".join(self.requests)

    def feed(self, *items: Item) -> None:
        """Make ``items`` arrive now, in order: byte chunks (each read on its own, or in ``max_bytes`` pieces),
        then at most one ending. Raises ``RuntimeError`` after an ending: nothing arrives after FIN or RST."""
        self.stream._deliver(items)

    def close(self) -> None:
        """The peer closes its side (FIN): once the queued bytes are read, the client reads EOF."""
        self.feed(EOF)

    def reset(self) -> None:
        """The peer resets the connection (RST): once the queued bytes are read, reads fail with ``reset``;
        writes fail at once."""
        self.feed(RESET)

    def reply(self, *items: Item) -> None:
        """Queue a reply: ``items`` arrive when the client next writes (its next request), not before."""
        self._replies.append(list(items))

    def stop_reading(self) -> None:
        """The peer stops reading: the client's writes wait until its write budget runs out."""
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        self.stream._wake()

    def _request_written(self, data: bytes) -> None:
        self.requests.append(data)
        items = self._replies.popleft() if self._replies else self.answer
        if items and self.stream._ending() is None:  # a peer that closed or reset answers nothing more
            self.stream._deliver(items)


class MemoryStream(NetworkStream):
    """The client's end: a :class:`~aiotcp.streams.NetworkStream` whose peer is a :class:`Peer`."""

    def __init__(self, peer: Peer) -> None:
        self.remote = peer
        self.target = "?"
        self.info = ConnectInfo(peer=peer.address, dns_ms=0.0, connect_ms=0.0)
        self.closes = 0  # aclose() calls that closed the stream (more than one would be a bug in the caller)
        self._inbox: deque[Item] = deque()
        self._closed = False
        self._changed: anyio.Event | None = None

    # -- the peer's side ----------------------------------------------------------------------------------

    def _ending(self) -> Ending | None:
        last = self._inbox[-1] if self._inbox else None
        return last if isinstance(last, Ending) else None

    def _deliver(self, items: tuple[Item, ...] | list[Item]) -> None:
        for item in items:
            if self._ending() is not None:
                raise RuntimeError(f"{self.remote!r}: nothing arrives after {self._ending()}")
            if item:  # an empty chunk is no segment at all
                self._inbox.append(item)
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def _wait_for_change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    # -- NetworkStream -------------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def send(self, data: bytes, budget: Budget) -> None:
        """Record ``data`` as one request and release the next reply. Raises ``reset`` after the peer's RST,
        ``write_timeout``/``timeout`` while the peer does not read, ``disconnected`` after :meth:`aclose`."""
        with anyio.move_on_after(budget.limit("write")) as scope:
            await anyio.lowlevel.checkpoint()
            while not self._closed and self._ending() is not RESET and not self.remote._reading:
                await self._wait_for_change()
        self._check_writable()
        if scope.cancelled_caught:
            raise budget.expired("write", self.target)
        self.remote._request_written(bytes(data))

    async def send_eof(self) -> bool:
        """Half-close: the peer sees the end of what we write (``peer.half_closed``). Raises like :meth:`send`
        after the peer's RST or :meth:`aclose`."""
        await anyio.lowlevel.checkpoint()
        self._check_writable()
        self.remote.half_closed = True
        return True

    def _check_writable(self) -> None:
        """Raise as a write does after :meth:`aclose` (``disconnected``) or the peer's RST (``reset``)."""
        if self._closed:
            closed = anyio.ClosedResourceError()
            raise map_stream_error(closed, self.target, phase="write") from closed
        if self._ending() is RESET:
            cause = _reset_error()
            raise map_stream_error(cause, self.target, phase="write") from cause

    async def receive(self, budget: Budget, max_bytes: int = READ_SIZE) -> bytes:
        """The next chunk, ``b""`` at EOF. Raises ``reset`` at RST, ``read_timeout``/``timeout`` when nothing
        arrives in time, ``disconnected`` after :meth:`aclose`."""
        with anyio.move_on_after(budget.limit("read")) as scope:
            await anyio.lowlevel.checkpoint()
            while not self._inbox and not self._closed:
                await self._wait_for_change()
        if self._closed:
            closed = anyio.ClosedResourceError()
            raise map_stream_error(closed, self.target, phase="read") from closed
        if scope.cancelled_caught:
            raise budget.expired("read", self.target)
        item = self._inbox[0]
        if item is EOF:
            return b""
        if item is RESET:
            cause = _reset_error()
            raise map_stream_error(cause, self.target, phase="read") from cause
        assert isinstance(item, bytes)
        if len(item) > max_bytes:
            self._inbox[0] = item[max_bytes:]
            return item[:max_bytes]
        self._inbox.popleft()
        return item

    def has_pending_input(self) -> bool:
        return self._closed or bool(self._inbox)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.closes += 1
        self._wake()
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()

    @classmethod
    async def open(cls, address: str, port: int, *, local_address: str | None = None) -> MemoryStream:
        """A stream to a fresh, silent :class:`Peer` at ``address``:``port`` (``stream.remote``)."""
        await anyio.lowlevel.checkpoint()
        return Peer(address=(address, port)).stream

    def peer(self) -> tuple[str, int]:
        return self.remote.address

    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> TLSInfo:
        """No handshake: records ``hostname`` and says TLSv1.3; raises ``ConnectionResetError`` after RST."""
        await anyio.lowlevel.checkpoint()
        if self._ending() is RESET:
            raise _reset_error()
        self.remote.tls_hostname = hostname
        return TLSInfo("TLSv1.3", None, None)


class Origin:
    """Opens memory connections for a :class:`~aiotcp.pool.ConnectionPool` and keeps their peers.

    ``origin.open`` is an ``opener`` for ``pool.acquire(key, budget, origin.open)``: each call makes a
    :class:`Peer` that answers every request with ``answer`` and returns an
    :class:`~aiotcp.connection.HTTPConnection` on it, keyed ``key``.
    """

    def __init__(self, key: Hashable = "origin.test", *, answer: Item | list[Item] | None = OK, http: str = "h11"):
        self.key = key
        self.answer = answer
        self.http = http
        self.peers: list[Peer] = []

    def __repr__(self) -> str:
        return f"<Origin {self.key!r} opened={len(self.peers)}>"

    async def open(self) -> HTTPConnection:
        await anyio.lowlevel.checkpoint()
        peer = Peer(answer=self.answer, address=(f"192.0.2.{len(self.peers) + 1}", 80))
        peer.stream.target = f"http://{self.key}/"
        self.peers.append(peer)
        return HTTPConnection(peer.stream, make_protocol(self.http), self.key)
