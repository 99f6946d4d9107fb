"""One HTTP/1.1 connection: a :class:`~aiotcp.streams.NetworkStream` plus its sans-IO protocol state.

Life cycle (the pool drives it)::

    ACTIVE --response ended, reusable--> IDLE --picked from the pool--> ACTIVE
    ACTIVE --error, cancellation, not reusable--> CLOSED
    IDLE   --expired, or readable while idle (peer closed / stray bytes)--> CLOSED

A connection goes back to IDLE only when its protocol said the response ended cleanly and nothing is left to
read; anything else closes it. That is the whole of "safe to reuse".
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from .budget import Budget
from .errors import AiotcpError
from .http11 import Event, HTTP11Protocol, Request, ResponseEnd, ResponseHead
from .streams import NetworkStream

__all__ = ["BodyReader", "ConnectionState", "HTTPConnection"]


class ConnectionState(enum.Enum):
    ACTIVE = "active"
    IDLE = "idle"
    CLOSED = "closed"


class HTTPConnection:
    """A connection to one origin, carrying one request at a time."""

    def __init__(self, stream: NetworkStream, protocol: HTTP11Protocol, key: object) -> None:
        self.stream = stream
        self.protocol = protocol
        self.key = key
        self.state = ConnectionState.ACTIVE
        self.requests = 0
        self.idle_since = 0.0
        self.first_byte_at: float | None = None  # time.perf_counter() of the current response's first byte
        self.why_closed: str | None = None

    def __repr__(self) -> str:
        return (
            f"<HTTPConnection {self.stream.target} state={self.state.value} requests={self.requests}"
            f" backend={self.protocol.backend}>"
        )

    def is_idle(self) -> bool:
        """Waiting in the pool for the next request."""
        return self.state is ConnectionState.IDLE

    def is_closed(self) -> bool:
        """Closed for good."""
        return self.state is ConnectionState.CLOSED

    def has_expired(self, now: float, keepalive_expiry: float | None) -> bool:
        """Idle for longer than ``keepalive_expiry`` seconds (``now`` from ``time.monotonic()``)."""
        return keepalive_expiry is not None and now - self.idle_since > keepalive_expiry

    def is_reused(self) -> bool:
        """Carried a request before the current one."""
        return self.requests > 1

    def is_safe_to_reuse(self) -> bool:
        """Idle with nothing to read: not closed by the peer, no stray bytes waiting."""
        return self.is_idle() and not self.stream.has_pending_input()

    def response_started(self) -> bool:
        """Whether any byte of the current response arrived (a stale keep-alive fails before that)."""
        return self.protocol.response_started

    def started_with_garbage(self) -> bool:
        """Whether the current response failed on first bytes that cannot start a status line (what a server
        sent after an earlier response on this connection, such as a body after a HEAD reply)."""
        return self.protocol.started_with_garbage

    # -- one exchange ---------------------------------------------------------------------------------------

    async def send_request(self, request: Request, budget: Budget, url: str) -> ResponseHead:
        """Write the request for ``url`` and read up to the end of the response head.

        Raises the transport's errors (``reset``, ``write_timeout``...) and the protocol's (``protocol``,
        ``too_large``, ``disconnected``), each naming ``url`` -- until the next request, errors on this
        connection are about this one, not the one it was opened for.
        """
        self.stream.target = url
        self.requests += 1
        self.first_byte_at = None
        if self.requests > 1:
            self.protocol.start_next_cycle()
        await self.stream.send(self.protocol.send_request(request), budget)
        event = await self.next_event(budget)
        if not isinstance(event, ResponseHead):  # pragma: no cover - the protocol yields the head first
            raise AssertionError(f"expected the response head, got {event!r}")
        return event

    async def next_event(self, budget: Budget) -> Event:
        """The next response event, reading from the network as needed."""
        protocol = self.protocol
        try:
            while True:
                event = protocol.next_event()
                if event is not None:
                    return event
                data = await self.stream.receive(budget)
                if data and self.first_byte_at is None:
                    self.first_byte_at = time.perf_counter()
                protocol.receive_data(data)
        except AiotcpError as exc:
            raise exc.for_target(self.stream.target) from exc.__cause__

    def mark_idle(self) -> None:
        self.state = ConnectionState.IDLE
        self.idle_since = time.monotonic()

    def mark_active(self) -> None:
        self.state = ConnectionState.ACTIVE

    async def aclose(self, why: str | None = None) -> None:
        """Close for good. Safe to call twice, never raises (callers shield it from cancellation)."""
        if self.stream.is_closed:
            self.state = ConnectionState.CLOSED
            return
        self.state = ConnectionState.CLOSED
        self.why_closed = self.why_closed or why
        await self.stream.aclose()


#: ``release(connection, reusable) -> must_close``: hands the connection back without waiting; True when the
#: caller has to close it.
Release = Callable[[HTTPConnection, bool], bool]


class BodyReader:
    """Iterates the body of one response, then hands the connection back through ``release``.

    ``release(connection, reusable)`` is called exactly once: after the last chunk with the protocol's verdict,
    or with ``False`` on error, cancellation or :meth:`aclose` before the end.
    """

    def __init__(self, connection: HTTPConnection, budget: Budget, release: Release) -> None:
        self._connection = connection
        self._budget = budget
        self._release: Release | None = release
        self.bytes_read = 0
        self.end: ResponseEnd | None = None
        self.consumed = False

    def __repr__(self) -> str:
        state = "done" if self._release is None else "reading"
        return f"<BodyReader {state} bytes_read={self.bytes_read} {self._connection!r}>"

    def __aiter__(self) -> BodyReader:
        self.consumed = True
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def read_all(self) -> bytes:
        """The rest of the body in one piece: one loop instead of an async iterator (a StopAsyncIteration
        per response)."""
        self.consumed = True
        chunks: list[bytes] = []
        while (chunk := await self._next_chunk()) is not None:
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _next_chunk(self) -> bytes | None:
        """The next piece of the body, or ``None`` after the end (the connection is handed back then)."""
        if self._release is None:
            return None
        connection = self._connection
        try:
            event = connection.protocol.next_event()  # usually parsed already: no coroutine for it
            if event is None:
                event = await connection.next_event(self._budget)
        except AiotcpError as exc:
            await self._finish(False)
            raise exc.for_target(connection.stream.target) from exc.__cause__
        except BaseException:
            await self._finish(False)
            raise
        if isinstance(event, bytes):
            self.bytes_read += len(event)
            return event
        if isinstance(event, ResponseEnd):
            self.end = event
            if not event.reusable:
                connection.why_closed = event.why_not_reusable
            await self._finish(event.reusable)
            return None
        await self._finish(False)  # pragma: no cover - a second head cannot follow a head
        raise AssertionError(f"unexpected event in body: {event!r}")

    @property
    def finished(self) -> bool:
        """Whether the connection was handed back (end of body, error or close)."""
        return self._release is None

    async def _finish(self, reusable: bool) -> None:
        release, self._release = self._release, None
        if release is not None and release(self._connection, reusable):
            # No shield needed here: the pool has already counted the connection out, and every stream's
            # aclose() starts the close before its first await (or shields itself).
            await self._connection.aclose("not reusable")

    async def aclose(self) -> None:
        """Stop reading. An unfinished body means the connection cannot be reused."""
        self.consumed = True
        await self._finish(False)
