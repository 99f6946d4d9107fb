"""A loopback HTTP/1.1 server that counts what it is asked: requests by (method, path) and body bytes by
method, for tests that hold a load generator's counts against the server's own.

The built-in server (``aiotcp.serve``) counts only its requests in all and answers 405 to methods other than
GET and HEAD; this one parses every request with h11 (the strict reference parser: a request framed wrong
is a test failure, not a miscount), answers ``200 ok`` to any method (no body to HEAD) and keeps the
connection open. It runs its own asyncio loop in a thread, on 127.0.0.1 and a free port, or on a Unix socket.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import h11

__all__ = ["CountingServer", "counting_server"]

_BODY = b"ok"


class _Connection(asyncio.Protocol):
    def __init__(self, server: CountingServer) -> None:
        self.server = server
        self.h11 = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.method = b""
        self.path = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1
        self.server.open.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.open.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._events()

    def eof_received(self) -> bool:
        self.h11.receive_data(b"")
        return False

    def _events(self) -> None:
        assert self.transport is not None
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self.server.protocol_errors.append(str(exc))
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                self.method, self.path = bytes(event.method), bytes(event.target)
            elif isinstance(event, h11.Data):
                self.server.body_bytes[self.method.decode()] += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.server.requests[(self.method.decode(), self.path.decode())] += 1
                headers = [("Content-Length", str(len(_BODY))), ("Content-Type", "text/plain")]
                out = self.h11.send(h11.Response(status_code=200, headers=headers))
                if self.method != b"HEAD":
                    out += self.h11.send(h11.Data(data=_BODY))
                out += self.h11.send(h11.EndOfMessage())
                self.transport.write(out)
                self.h11.start_next_cycle()


class CountingServer:
    """Counts requests by ``(method, path)`` (``requests``) and body bytes by method (``body_bytes``)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.body_bytes: Counter[str] = Counter()
        self.connections = 0
        self.protocol_errors: list[str] = []
        self.open: set[asyncio.Transport] = set()
        self.port = 0
        self.unix_socket: str | None = None

    def __repr__(self) -> str:
        where = f"unix_socket={self.unix_socket!r}" if self.unix_socket else f"port={self.port}"
        return f"<CountingServer {where} requests={sum(self.requests.values())}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def by_method(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (method, _), count in self.requests.items():
            counts[method] += count
        return counts


@contextmanager
def counting_server(unix_socket: str | None = None) -> Iterator[CountingServer]:
    """A :class:`CountingServer` on 127.0.0.1 (or on the Unix socket ``unix_socket``, a path that must not
    exist yet), in a thread of its own, until the block ends."""
    server = CountingServer()
    server.unix_socket = unix_socket
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stopping: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        if unix_socket is not None:
            listener = await loop.create_unix_server(lambda: _Connection(server), unix_socket)
        else:
            listener = await loop.create_server(lambda: _Connection(server), "127.0.0.1", 0)
            server.port = listener.sockets[0].getsockname()[1]
        started.set()
        await stopping.wait()
        listener.close()
        for transport in list(server.open):
            transport.abort()
        await listener.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the counting server did not start")
    try:
        yield server
    finally:
        assert stopping is not None
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()
