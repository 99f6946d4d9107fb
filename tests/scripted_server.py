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
    ReadRequest()                   read one request: the head up to the blank line, then Content-Length
                                    bytes of body; it is recorded in requests(i)
    HalfClose()                     shutdown(SHUT_WR): send FIN, keep the read side open (plain TCP only)
    CloseAfterSending()             a clean close: FIN after everything sent, read and drop input until the
                                    peer closes (at most LINGER_S), then close -- so no RST can destroy
                                    what was sent
    Reset()                         SO_LINGER {on, 0} then close: the peer gets RST, unsent bytes are dropped
    NeverRead()                     stop reading from the socket for good (the kernel buffers fill and the
                                    peer's writes stall) and hold the connection until the server stops
    Repeat(steps, times)            play ``steps`` up to ``times`` times (a keep-alive server)

A step ends the script early by raising :class:`ScriptEnded` (the peer closed or reset while we read or
wrote); the connection is then closed. When a script runs out without closing, the connection stays open,
reading and discarding, until the peer closes (then we close too) or the server stops -- so ``[]`` is a
server that accepts and never answers, and ``[ReadRequest()]`` one that reads a request and stays silent.

Modes:

* ``ScriptedServer(..., tls=server_context)``: each accepted connection first completes a TLS handshake
  (bounded by ``HANDSHAKE_TIMEOUT_S``), then plays its script over TLS. ``connections_accepted`` counts TCP
  accepts, ``handshake_failures`` the handshakes that failed.
* A TLS *tarpit* (TCP accepted, handshake never answered) is a plain server that sends nothing:
  ``ScriptedServer([])``.
* :class:`NeverAcceptServer`: a listening socket whose accept queue is full (``listen(0)`` plus a filler
  connection), so a SYN is never answered and connecting times out.

Records, readable from the test thread: ``connections_accepted``, ``open_connections``, ``peak_open``,
``accepted_at(i)``, ``received(i)`` (every byte read on connection i), ``requests(i)`` (the complete requests
read by ReadRequest on connection i), ``handshake_failures`` and ``errors`` (unexpected exceptions inside the
server: a test may assert it is empty).

Every wait is bounded: steps by the server's lifetime (stopping cancels every connection), start and stop by
``THREAD_TIMEOUT_S``, lingering by ``LINGER_S``, handshakes by ``HANDSHAKE_TIMEOUT_S``. Connections are
accepted in a plain reader callback, so each accepted socket is owned (and closed at stop) from the moment
``accept()`` returns -- no ResourceWarning when a test ends while a connection is still being set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar

__all__ = [
    "CloseAfterSending",
    "HalfClose",
    "NeverAcceptServer",
    "NeverRead",
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
]

THREAD_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0
LINGER_S = 2.0
READ_SIZE = 65536
# A request head bigger than this is a test bug, not something to wait for.
MAX_REQUEST_HEAD = 1024 * 1024


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


class _Conn:
    """What a step works with: the stream pair, the raw socket and this connection's record."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: _Record) -> None:
        self.reader = reader
        self.writer = writer
        self.record = record

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
    data: bytes

    async def run(self, conn: _Conn) -> None:
        await conn.write(self.data)


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
class HalfClose(Step):
    """FIN now; the read side stays open. Plain TCP only (TLS has no half-close)."""

    async def run(self, conn: _Conn) -> None:
        try:
            await conn.writer.drain()
            conn.writer.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            raise ScriptEnded(f"half-close failed: {exc!r}") from exc


@dataclass(frozen=True)
class CloseAfterSending(Step):
    """Close cleanly: FIN after what was sent, drain input until the peer closes (at most LINGER_S), close.

    Closing a socket that still has unread input makes the kernel send RST instead of FIN, which may
    destroy the bytes just sent; lingering like this is what real servers do (nginx's lingering close).
    """

    async def run(self, conn: _Conn) -> None:
        writer = conn.writer
        with contextlib.suppress(ConnectionError, RuntimeError, ssl.SSLError):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
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
        conn.writer.transport.pause_reading()
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


# --------------------------------------------------------------------------------------------------------
# The server.
# --------------------------------------------------------------------------------------------------------


class ScriptedServer:
    """A loopback server playing one script per connection. Use as a context manager (starts a thread)."""

    def __init__(self, *scripts: Sequence[Step], host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        if not scripts:
            raise ValueError("give at least one script (a list of steps; [] accepts and stays silent)")
        for script in scripts:
            if isinstance(script, Step) or not all(isinstance(step, Step) for step in script):
                raise TypeError(f"a script is a list of steps, got {script!r}")
        self.scripts = [list(script) for script in scripts]
        self.host = host
        self.tls = tls
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
            f"<ScriptedServer {self.url} accepted={self.connections_accepted} open={self.open_connections}"
            f" peak={self.peak_open} errors={len(self.errors)}>"
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
            listener.bind((self.host, 0))
            listener.listen(128)
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
        for _ in range(128):  # at most a backlog's worth per wake-up; the next wake-up takes the rest
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the test should hear of it
                self.errors.append(exc)
                return
            sock.setblocking(False)
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
        if isinstance(exc, (ConnectionError, ssl.SSLError)):
            return  # what a misbehaving peer causes; the steps see it too
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
            conn = _Conn(reader, writer, self._records[index])
            for step in self.scripts[min(index, len(self.scripts) - 1)]:
                await step.run(conn)
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
