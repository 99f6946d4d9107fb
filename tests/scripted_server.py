"""A scripted, misbehaving loopback server for tests: what it does on each connection is data.

    with ScriptedServer([ReadRequest(), Send(response(200, b"hi")), CloseAfterSending()]) as server:
        ...  # talk to server.url from any async backend (or none)
        assert server.connections_accepted == 1
        assert server.requests(0)[0].startswith(b"GET / HTTP/1.1")

Theory of operation
-------------------
The server runs on an asyncio event loop of its own in a daemon thread (as
:func:`aiotcp.serve.running_in_thread` does), so a test on asyncio, on trio or on no loop at all can talk
to it. Connection ``i`` (0-based, in accept order) plays ``scripts[i]``; connections past the last script
replay the last one. A script is a list of steps, run in order. Each step is a small frozen dataclass with
one ``async run(conn)`` method; :class:`_Conn` gives it the stream, the raw socket and the records. Adding a
misbehaviour means adding one such class -- the interpreter (:meth:`ScriptedServer._handle`) never changes.

The vocabulary::

    Send(data)                      write bytes (waiting while asyncio's write buffer is over its high-water
                                    mark, so a peer that stops reading stalls the script here)
    Trickle(data, bytes_per_second) write bytes slowly, in small pieces at an even pace
    Sleep(seconds)                  do nothing for a while (what arrives meanwhile is buffered, not consumed)
    Read(n)                         read at least n bytes, whatever they are (a ClientHello...)
    ReadToEnd()                     read until the peer's FIN (its half-close), keeping our side open
    ReadRequest()                   read one request: the head up to the blank line, then Content-Length
                                    bytes of body; it is recorded in requests(i)
    HalfClose()                     shutdown(SHUT_WR): send FIN after what was sent, keep the read side open
                                    (over TLS: on the raw socket, without a close_notify)
    CloseAfterSending()             a clean close: FIN after everything sent, read and drop input until the
                                    peer closes (at most LINGER_S), then close -- so no RST can destroy
                                    what was sent
    Reset()                         SO_LINGER {on, 0} then close: the peer gets RST, unsent bytes are dropped
    NeverRead()                     stop reading from the socket for good (the kernel buffers fill and the
                                    peer's writes stall) and hold the connection until the server stops
    Repeat(steps, times)            play ``steps`` up to ``times`` times (a keep-alive server)
    Dispatch(routes, times)         read a request and play the steps its path names, up to ``times`` times
                                    (a server whose next misbehaviour the client picks, for stateful tests)

A step ends the script early by raising :class:`ScriptEnded` (the peer closed or reset while we read or
wrote); the connection is then closed. When a script runs out without closing, the connection stays open,
reading and discarding, until the peer closes (then we close too) or the server stops -- so ``[]`` is a
server that accepts and never answers, and ``[ReadRequest()]`` one that reads a request and stays silent.

Modes:

* ``ScriptedServer(..., delivery="bytewise")`` (or ``"random"``, or a :class:`Delivery`): how ``Send`` puts
  its bytes on the wire. ``whole`` is one write per step; ``bytewise`` writes the first
  ``Delivery.split_bytes`` bytes of each connection one at a time; ``random`` cuts them at points drawn from
  a seeded RNG (``Delivery.seed`` plus the connection index, so a failing run can be replayed). Every
  accepted socket has TCP_NODELAY and each piece is followed by ``Delivery.pause`` seconds, so pieces really
  leave as separate segments and a reader mostly sees them one by one. Bytes past ``split_bytes`` go whole:
  splitting is about heads and the first bytes of bodies, and a 200 KiB head a byte at a time would only
  make the suite slow.
* ``ScriptedServer(..., tls=server_context)``: each accepted connection first completes the *server* side of
  a TLS handshake (``loop.connect_accepted_socket(..., ssl=context)``, bounded by ``HANDSHAKE_TIMEOUT_S``),
  then plays its script over TLS. (``asyncio.open_connection`` plus ``StreamWriter.start_tls`` would not do:
  ``start_tls`` on such a stream runs the *client* side of the handshake.) ``connections_accepted`` counts
  TCP accepts, ``handshake_failures`` the handshakes that failed. :func:`tls_server_context` builds the
  certificates a hostile TLS server presents (valid, expired, wrong name, self-signed, unknown CA).
* Plaintext on a TLS port and TLS on a plain port need no mode: point an ``https://`` URL at a plain
  server, or an ``http://`` URL at a TLS one.
* A TLS *tarpit* (TCP accepted, handshake never answered) is a plain server that sends nothing:
  ``ScriptedServer([])``.
* :class:`NeverAcceptServer`: a listening socket whose accept queue is full (``listen(0)`` plus a filler
  connection), so a SYN is never answered and connecting times out.

Records, readable from the test thread: ``connections_accepted``, ``open_connections``, ``peak_open``,
``accepted_at(i)``, ``received(i)`` (every byte read on connection i), ``requests(i)`` (the complete requests
read by ReadRequest on connection i), ``steps_started(i)``, ``script_done(i)`` and ``quiet(i)`` (how far
connection i got in its script; quiet: nothing more to send unasked), ``handshake_failures`` and ``errors``
(unexpected exceptions inside the server: a test may assert it is empty).

Every wait is bounded: steps by the server's lifetime (stopping cancels every connection), start and stop by
``THREAD_TIMEOUT_S``, lingering by ``LINGER_S``, handshakes by ``HANDSHAKE_TIMEOUT_S``. Connections are
accepted in a plain reader callback, so each accepted socket is owned (and closed at stop) from the moment
``accept()`` returns -- no ResourceWarning when a test ends while a connection is still being set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import itertools
import os
import random
import select
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal, cast

__all__ = [
    "TLS_VARIANTS",
    "CloseAfterSending",
    "Delivery",
    "DeliveryMode",
    "Dispatch",
    "HalfClose",
    "NeverAcceptServer",
    "NeverRead",
    "Read",
    "ReadRequest",
    "Repeat",
    "Reset",
    "ScriptEnded",
    "ScriptedServer",
    "Send",
    "Sleep",
    "Step",
    "Trickle",
    "response",
    "tls_server_context",
]

THREAD_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0
LINGER_S = 2.0
READ_SIZE = 65536
# A request head bigger than this is a test bug, not something to wait for.
MAX_REQUEST_HEAD = 1024 * 1024

DeliveryMode = Literal["whole", "bytewise", "random"]


@dataclass(frozen=True)
class Delivery:
    """How ``Send`` steps put their bytes on the wire (see "Modes" in the module docstring).

    ``split_bytes`` bounds how many bytes of each connection are split (the rest go whole); ``pause`` follows
    every piece; ``max_cuts`` bounds the random cut points per ``Send``.
    """

    mode: DeliveryMode = "whole"
    seed: int = 0
    split_bytes: int = 256
    pause: float = 0.001  # epoll counts in milliseconds: a shorter sleep costs as much
    max_cuts: int = 12

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "bytewise", "random"):
            raise ValueError(f"delivery mode must be whole, bytewise or random, got {self.mode!r}")
        if self.split_bytes < 0 or self.pause < 0 or self.max_cuts < 1:
            raise ValueError(f"bad delivery settings: {self!r}")

    def pieces(self, data: bytes, offset: int, rng: random.Random) -> list[bytes]:
        """``data`` cut as this mode cuts it, ``offset`` bytes into the connection's output."""
        room = max(0, min(len(data), self.split_bytes - offset))
        if self.mode == "whole" or room == 0:
            return [data] if data else []
        if self.mode == "bytewise":
            cuts = list(range(1, room + 1))
        else:
            cuts = sorted({rng.randint(1, room) for _ in range(rng.randint(1, self.max_cuts))})
        bounds = [0, *(cut for cut in cuts if cut < len(data)), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def response(
    status: int = 200,
    body: bytes = b"",
    *,
    reason: str = "OK",
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    content_length: int | None = None,
    close: bool = False,
) -> bytes:
    """An HTTP/1.1 response as bytes: status line, ``Content-Length`` (``content_length`` overrides the real
    length, to lie about it; ``-1`` leaves it out), ``headers`` as given (bytes pass through untouched, so a
    test can put anything on the wire), ``Connection: close`` if ``close``, and ``body``."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))]
    length = len(body) if content_length is None else content_length
    if length >= 0:
        lines.append(b"Content-Length: %d\r\n" % length)
    for name, value in headers:
        name_bytes = name if isinstance(name, bytes) else name.encode("latin-1")
        value_bytes = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name_bytes + b": " + value_bytes + b"\r\n")
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines) + body


class ScriptEnded(Exception):
    """Raised by a step when the connection cannot go on (the peer closed or reset it)."""


# --------------------------------------------------------------------------------------------------------
# One connection, as the steps see it.
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Record:
    accepted_at: float  # time.monotonic()
    received: bytearray = field(default_factory=bytearray)
    requests: list[bytes] = field(default_factory=list)
    steps_started: int = 0  # top-level steps of the script begun so far
    answered: int = 0  # requests Dispatch played the route of to its end
    finished_sending: bool = False  # FIN sent (CloseAfterSending lingers, reading, but sends nothing more)
    script_done: bool = False  # every step ran to its end (the connection now only discards input)
    closed: bool = False  # the server side of the connection is closed


class _Conn:
    """What a step works with: the stream pair, the raw socket and this connection's record."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: _Record,
        delivery: Delivery | None = None,
        index: int = 0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.record = record
        self.delivery = delivery or Delivery()
        self.rng = random.Random(self.delivery.seed * 1_000_003 + index)
        self.sent = 0  # bytes sent so far through send()

    @property
    def sock(self) -> socket.socket:
        return self.writer.get_extra_info("socket")  # type: ignore[no-any-return]

    async def read(self, n: int = READ_SIZE) -> bytes:
        """Up to n bytes; raises ScriptEnded at EOF or reset."""
        try:
            data = await self.reader.read(n)
        except (ConnectionError, ssl.SSLError) as exc:
            raise ScriptEnded(f"read failed: {exc!r}") from exc
        if not data:
            raise ScriptEnded("peer closed")
        self.record.received += data
        return data

    async def read_until(self, separator: bytes, limit: int) -> bytes:
        try:
            data = await self.reader.readuntil(separator)
        except asyncio.IncompleteReadError as exc:
            self.record.received += exc.partial
            raise ScriptEnded("peer closed mid-request") from exc
        except asyncio.LimitOverrunError as exc:
            raise ScriptEnded(f"request head over {limit} bytes") from exc
        except (ConnectionError, ssl.SSLError) as exc:
            raise ScriptEnded(f"read failed: {exc!r}") from exc
        self.record.received += data
        return data

    async def read_exactly(self, n: int) -> bytes:
        try:
            data = await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            self.record.received += exc.partial
            raise ScriptEnded("peer closed mid-body") from exc
        except (ConnectionError, ssl.SSLError) as exc:
            raise ScriptEnded(f"read failed: {exc!r}") from exc
        self.record.received += data
        return data

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError, RuntimeError) as exc:  # RuntimeError: transport closing
            raise ScriptEnded(f"write failed: {exc!r}") from exc

    async def send(self, data: bytes) -> None:
        """Write ``data`` as the server's delivery mode cuts it, pausing after each piece of a cut write."""
        pieces = self.delivery.pieces(data, self.sent, self.rng)
        self.sent += len(data)
        for piece in pieces:
            await self.write(piece)
            if len(pieces) > 1:
                await asyncio.sleep(self.delivery.pause)

    def abort(self) -> None:
        self.writer.transport.abort()


# --------------------------------------------------------------------------------------------------------
# Steps.
# --------------------------------------------------------------------------------------------------------


class Step:
    """One thing the server does on a connection. Subclasses are frozen dataclasses with ``run``.

    ``run`` raises :class:`ScriptEnded` when the connection cannot go on (the interpreter then closes it);
    any other exception is a bug in the step and lands in ``ScriptedServer.errors``.
    """

    async def run(self, conn: _Conn) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Send(Step):
    """Write ``data`` (whole, or cut as the server's :class:`Delivery` says)."""

    data: bytes

    async def run(self, conn: _Conn) -> None:
        await conn.send(self.data)


@dataclass(frozen=True)
class Trickle(Step):
    """Write ``data`` at about ``bytes_per_second``, in pieces of at least one byte every 50 ms or slower."""

    data: bytes
    bytes_per_second: float

    TICK: ClassVar[float] = 0.05

    def __post_init__(self) -> None:
        if not self.bytes_per_second > 0:
            raise ValueError(f"bytes_per_second must be positive, got {self.bytes_per_second!r}")

    async def run(self, conn: _Conn) -> None:
        piece = max(1, int(self.bytes_per_second * self.TICK))
        interval = piece / self.bytes_per_second
        for start in range(0, len(self.data), piece):
            await conn.write(self.data[start : start + piece])
            await asyncio.sleep(interval)


@dataclass(frozen=True)
class Sleep(Step):
    seconds: float

    async def run(self, conn: _Conn) -> None:
        await asyncio.sleep(self.seconds)


@dataclass(frozen=True)
class ReadRequest(Step):
    """Read one request (head, then a Content-Length body if any) and record it."""

    async def run(self, conn: _Conn) -> None:
        head = await conn.read_until(b"\r\n\r\n", MAX_REQUEST_HEAD)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await conn.read_exactly(length) if length else b""
        conn.record.requests.append(head + body)


@dataclass(frozen=True)
class Read(Step):
    """Read until at least ``n`` more bytes arrived (whatever they are: a ClientHello, half a request)."""

    n: int = 1

    async def run(self, conn: _Conn) -> None:
        got = 0
        for _ in range(self.n):  # each read returns at least one byte
            got += len(await conn.read(self.n - got))
            if got >= self.n:
                return


@dataclass(frozen=True)
class ReadToEnd(Step):
    """Read (and record) everything until the peer's FIN, keeping the write side open: a server that answers
    only once the client has said it will send no more (``nc -N``'s peer)."""

    async def run(self, conn: _Conn) -> None:
        while True:
            try:
                data = await conn.reader.read(READ_SIZE)
            except (ConnectionError, ssl.SSLError) as exc:
                raise ScriptEnded(f"read failed: {exc!r}") from exc
            if not data:
                return
            conn.record.received += data


@dataclass(frozen=True)
class HalfClose(Step):
    """FIN after what was sent; the read side stays open. Over TLS (which has no half-close) the FIN goes out on
    the raw socket without a close_notify, once every byte sent has left asyncio's buffers (a peer that reads
    slowly gets it all, then the FIN): the TCP event a server that drops TLS state produces."""

    async def run(self, conn: _Conn) -> None:
        try:
            await conn.writer.drain()
            if conn.writer.can_write_eof():
                conn.writer.write_eof()
            else:
                # The TLS transport's buffer, then the TCP transport's under it (asyncio keeps no public
                # handle on that one): a shutdown before they drain would cut the data short.
                raw = getattr(getattr(conn.writer.transport, "_ssl_protocol", None), "_transport", None)
                while conn.writer.transport.get_write_buffer_size() or (  # noqa: ASYNC110 - no event says "flushed"
                    raw is not None and raw.get_write_buffer_size()
                ):
                    await asyncio.sleep(0.001)  # bounded by the server's lifetime (stopping cancels the step)
                conn.sock.shutdown(socket.SHUT_WR)
        except (ConnectionError, RuntimeError, OSError) as exc:
            raise ScriptEnded(f"half-close failed: {exc!r}") from exc


@dataclass(frozen=True)
class CloseAfterSending(Step):
    """Close cleanly: FIN after what was sent, drain input until the peer closes (at most LINGER_S), close.

    Closing a socket that still has unread input makes the kernel send RST instead of FIN, which may
    destroy the bytes just sent; lingering like this is what real servers do (nginx's lingering close).
    """

    async def run(self, conn: _Conn) -> None:
        writer = conn.writer
        # OSError: ConnectionError and ssl.SSLError, and ENOTCONN from shutdown(SHUT_WR) once the peer has reset.
        with contextlib.suppress(OSError, RuntimeError):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
                conn.record.finished_sending = True
                with contextlib.suppress(ScriptEnded, TimeoutError):
                    async with asyncio.timeout(LINGER_S):
                        for _ in range(1_000_000):  # bounded by the timeout; the count is a backstop
                            await conn.read()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(LINGER_S):
                await writer.wait_closed()
        raise ScriptEnded("closed by the script")


@dataclass(frozen=True)
class Reset(Step):
    """Abort with SO_LINGER {on, 0}: the peer gets RST."""

    async def run(self, conn: _Conn) -> None:
        with contextlib.suppress(OSError):
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.abort()
        raise ScriptEnded("reset by the script")


@dataclass(frozen=True)
class NeverRead(Step):
    """Stop reading (the kernel buffers fill, the peer's writes stall) until the server stops."""

    async def run(self, conn: _Conn) -> None:
        # A StreamWriter's transport is typed as the write half; ours is a socket transport, which reads too.
        cast(asyncio.Transport, conn.writer.transport).pause_reading()
        await asyncio.Event().wait()  # ends when the server stops and cancels this connection


@dataclass(frozen=True)
class Repeat(Step):
    steps: tuple[Step, ...]
    times: int

    def __init__(self, steps: Iterable[Step], times: int) -> None:
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "times", times)

    async def run(self, conn: _Conn) -> None:
        for _ in range(self.times):
            for step in self.steps:
                await step.run(conn)


def _request_path(request: bytes) -> bytes:
    """The path of a request head (``GET /a?b HTTP/1.1`` gives ``/a``)."""
    parts = request.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].split(b"?", 1)[0] if len(parts) > 2 else b""


@dataclass(frozen=True)
class Dispatch(Step):
    """Read a request, then play the steps ``routes`` gives for its path (``default`` when no route matches);
    up to ``times`` requests. The client names each misbehaviour in the path it asks for."""

    routes: Mapping[bytes, tuple[Step, ...]]
    times: int
    default: tuple[Step, ...] = ()

    def __init__(self, routes: Mapping[bytes, Iterable[Step]], times: int, default: Iterable[Step] = ()) -> None:
        object.__setattr__(self, "routes", {path: tuple(steps) for path, steps in routes.items()})
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "default", tuple(default))

    def __hash__(self) -> int:
        return id(self)

    async def run(self, conn: _Conn) -> None:
        for _ in range(self.times):
            await ReadRequest().run(conn)
            for step in self.routes.get(_request_path(conn.record.requests[-1]), self.default):
                await step.run(conn)
            conn.record.answered += 1


# --------------------------------------------------------------------------------------------------------
# TLS certificates a hostile server presents.
# --------------------------------------------------------------------------------------------------------

#: The certificates :func:`tls_server_context` can present, and what a verifying client makes of each.
TLS_VARIANTS: dict[str, str] = {
    "valid": "issued by the test CA for localhost, 127.0.0.1 and ::1",
    "expired": "issued by the test CA, expired a day ago",
    "not-yet-valid": "issued by the test CA, valid from tomorrow",
    "wrong-name": "issued by the test CA for other.example only",
    "self-signed": "a leaf certificate signed by its own key",
    "unknown-ca": "issued for 127.0.0.1 by a CA nobody trusts",
}


def tls_server_context(ca: Any, variant: str = "valid") -> ssl.SSLContext:
    """A server context presenting the certificate ``variant`` (a key of :data:`TLS_VARIANTS`), made with
    ``ca`` (a ``trustme.CA``, the one the client trusts). Everything is generated locally."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    names = ("localhost", "127.0.0.1", "::1")
    if variant == "valid":
        ca.issue_cert(*names).configure_cert(context)
    elif variant == "expired":
        ca.issue_cert(*names, not_before=now - 30 * day, not_after=now - day).configure_cert(context)
    elif variant == "not-yet-valid":
        ca.issue_cert(*names, not_before=now + day, not_after=now + 30 * day).configure_cert(context)
    elif variant == "wrong-name":
        ca.issue_cert("other.example").configure_cert(context)
    elif variant == "unknown-ca":
        type(ca)().issue_cert(*names).configure_cert(context)
    elif variant == "self-signed":
        cert_pem, key_pem = _self_signed(names, now)
        _load_chain(context, cert_pem, key_pem)
    else:
        raise ValueError(f"unknown TLS variant {variant!r}: choose one of {sorted(TLS_VARIANTS)}")
    return context


def _self_signed(names: Sequence[str], now: datetime.datetime) -> tuple[bytes, bytes]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed.test")])
    alt: list[x509.GeneralName] = []
    for item in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(item)))
        except ValueError:
            alt.append(x509.DNSName(item))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # load_cert_chain reads files only: write both to a private temporary directory, removed at once.
    with tempfile.TemporaryDirectory() as directory:
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        with open(cert_path, "wb") as file:
            file.write(cert_pem)
        with open(key_path, "wb") as file:
            file.write(key_pem)
        context.load_cert_chain(cert_path, key_path)


# --------------------------------------------------------------------------------------------------------
# The server.
# --------------------------------------------------------------------------------------------------------


class ScriptedServer:
    """A loopback server playing one script per connection. Use as a context manager (starts a thread)."""

    def __init__(
        self,
        *scripts: Sequence[Step],
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        delivery: Delivery | DeliveryMode = "whole",
        seed: int = 0,
        backlog: int = 128,
        receive_buffer: int | None = None,
    ) -> None:
        if not scripts:
            raise ValueError("give at least one script (a list of steps; [] accepts and stays silent)")
        for script in scripts:
            if isinstance(script, Step) or not all(isinstance(step, Step) for step in script):
                raise TypeError(f"a script is a list of steps, got {script!r}")
        self.scripts = [list(script) for script in scripts]
        self.host = host
        self.tls = tls
        self.delivery = delivery if isinstance(delivery, Delivery) else Delivery(delivery, seed=seed)
        self.backlog = backlog
        # SO_RCVBUF for accepted connections (set on the listener, so the window is small from the SYN on): a
        # server that stops reading then holds little, and a client's writes stall after its own buffer.
        self.receive_buffer = receive_buffer
        self.port = 0
        self.connections_accepted = 0
        self.open_connections = 0
        self.peak_open = 0
        self.handshake_failures = 0
        self.errors: list[BaseException] = []
        self._records: list[_Record] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._startup_error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"<ScriptedServer {self.url} delivery={self.delivery.mode} seed={self.delivery.seed}"
            f" accepted={self.connections_accepted} open={self.open_connections} peak={self.peak_open}"
            f" errors={len(self.errors)}>"
        )

    # -- what tests read --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http(s)://HOST:PORT`` (``https`` for a TLS server), IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def received(self, index: int) -> bytes:
        """Every byte read on connection ``index`` so far."""
        return bytes(self._records[index].received)

    def accepted_at(self, index: int) -> float:
        """When connection ``index`` was accepted, in ``time.monotonic()`` seconds."""
        return self._records[index].accepted_at

    def requests(self, index: int) -> list[bytes]:
        """The complete requests ReadRequest read on connection ``index``."""
        return list(self._records[index].requests)

    def steps_started(self, index: int) -> int:
        """How many top-level steps of its script connection ``index`` has begun (0 if not accepted yet)."""
        return self._records[index].steps_started if index < len(self._records) else 0

    def quiet(self, index: int) -> bool:
        """Whether connection ``index`` has nothing more to send unasked: closed, done with its script, or (in
        a Dispatch) done with the route of every request it read."""
        if index >= len(self._records):
            return True
        record = self._records[index]
        return record.closed or record.script_done or record.finished_sending or record.answered == len(record.requests)

    def script_done(self, index: int) -> bool:
        """Whether connection ``index`` ran every step of its script to the end (or was closed)."""
        if index >= len(self._records):
            return False
        return self._records[index].script_done or self._records[index].closed

    def wait_until(self, predicate: Callable[[ScriptedServer], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate(self)`` from the test thread for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.01)
        return predicate(self)

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._run, name=f"scripted-server {self.host}", daemon=True)
        self._thread.start()
        if not self._ready.wait(THREAD_TIMEOUT_S):
            self._shutdown()
            raise RuntimeError("scripted server did not start in time")
        if self._startup_error is not None:
            self._thread.join(THREAD_TIMEOUT_S)
            raise self._startup_error
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(THREAD_TIMEOUT_S)
            if self._thread.is_alive():
                raise RuntimeError(f"{self!r} did not stop in time")

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
                runner.run(self._main())
        except BaseException as exc:
            self._startup_error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_error)
        self._loop = loop
        self._stop = asyncio.Event()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.receive_buffer is not None:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            listener.bind((self.host, 0))
            listener.listen(self.backlog)
            listener.setblocking(False)
            self.port = listener.getsockname()[1]
            loop.add_reader(listener.fileno(), self._accept_ready, listener)
            try:
                self._ready.set()
                await self._stop.wait()
            finally:
                # Accepting in a plain callback (not loop.create_server or sock_accept) makes every accepted
                # socket ours the moment accept() returns: a stop racing an accept cannot lose one unclosed.
                loop.remove_reader(listener.fileno())
                tasks = list(self._tasks)
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.wait(tasks, timeout=THREAD_TIMEOUT_S / 2)
                for sock in self._sockets:
                    sock.close()  # a no-op for the ones their transports closed
                for _ in range(3):
                    await asyncio.sleep(0)  # let aborted transports run their connection_lost

    def _accept_ready(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.backlog):  # at most a backlog's worth per wake-up; the next wake-up takes the rest
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the test should hear of it
                self.errors.append(exc)
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # each write of a split Send is a segment of its own
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets.append(sock)
            index = self.connections_accepted
            self._records.append(_Record(accepted_at=time.monotonic()))
            self.connections_accepted += 1
            self.open_connections += 1
            self.peak_open = max(self.peak_open, self.open_connections)
            task = loop.create_task(self._handle(sock, index))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ConnectionError, ssl.SSLError)) or (
            isinstance(exc, OSError) and exc.errno == errno.ENOTCONN
        ):
            # What a misbehaving peer causes (ENOTCONN: asyncio's deferred shutdown(SHUT_WR) of a write_eof,
            # after the peer's RST); the steps see it too.
            return
        self.errors.append(exc if isinstance(exc, BaseException) else RuntimeError(str(context.get("message"))))

    # -- one connection ---------------------------------------------------------------------------------

    async def _handle(self, sock: socket.socket, index: int) -> None:
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        try:
            reader = asyncio.StreamReader(limit=MAX_REQUEST_HEAD)
            protocol = asyncio.StreamReaderProtocol(reader)
            try:
                # With ssl, this is the server side of the handshake (open_connection/start_tls would act
                # as a client on an accepted socket).
                handshake_timeout = HANDSHAKE_TIMEOUT_S if self.tls else None
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=self.tls, ssl_handshake_timeout=handshake_timeout
                )
            except (OSError, ssl.SSLError, TimeoutError):
                if self.tls is None:
                    raise ScriptEnded("connection lost before it was set up") from None
                self.handshake_failures += 1
                raise ScriptEnded("TLS handshake failed") from None
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            conn = _Conn(reader, writer, self._records[index], self.delivery, index)
            record = self._records[index]
            for step in self.scripts[min(index, len(self.scripts) - 1)]:
                record.steps_started += 1
                await step.run(conn)
            record.script_done = True
            for _ in range(1_000_000):  # script done: discard input until the peer closes (or we stop)
                await conn.read()
        except ScriptEnded:
            pass
        except asyncio.CancelledError:
            pass  # the server is stopping
        except Exception as exc:  # a bug in a step: make it visible to the test
            self.errors.append(exc)
        finally:
            self.open_connections -= 1
            self._records[index].closed = True
            if writer is None:
                sock.close()  # open_connection did not get to wrap it
            elif not writer.transport.is_closing():
                writer.transport.abort()


class NeverAcceptServer:
    """A listening port whose accept queue is full: a SYN to it is never answered (connect times out).

    ``listen(0)`` leaves room for one completed connection in the accept queue; a filler connection takes
    it, and nothing ever accepts. Synchronous: no thread, no loop.
    """

    connections_accepted = 0

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> NeverAcceptServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener = listener
        try:
            listener.bind((self.host, self.port))
            listener.listen(0)
            self.port = listener.getsockname()[1]
            for _ in range(16):  # the queue holds one or two; 16 is a backstop
                filler = socket.socket(family, socket.SOCK_STREAM)
                filler.setblocking(False)
                filler.connect_ex((self.host, self.port))
                _, writable, _ = select.select([], [filler], [], 0.2)
                if not writable:  # this SYN went unanswered: the queue is full
                    filler.close()
                    break
                self._fillers.append(filler)
            else:
                raise RuntimeError("could not fill the accept queue")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
