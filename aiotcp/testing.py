"""Testing an application's HTTP code without sockets: :class:`MockTransport`, as ``Client(transport=...)``.

    def handler(request: aiotcp.testing.Request) -> aiotcp.testing.Response | bytes:
        if request.url.endswith("/users"):
            return aiotcp.testing.Response(200, json=[{"id": 1}])
        return aiotcp.testing.Response(404)

    async with aiotcp.Client(transport=aiotcp.testing.MockTransport(handler)) as client:
        assert (await client.get("http://api.test/users")).json() == [{"id": 1}]

The seam is the stream: the transport gives the client an in-memory :class:`~aiotcp.streams.NetworkStream`
instead of a socket, so everything above it runs as it does against a server -- the request is built,
validated and written as bytes; those bytes are parsed back (by h11, as a server would) into the
:class:`Request` the handler gets; what the handler returns is written back as bytes and read by the client's
own response parser, with its caps. A handler that returns raw bytes is a server that sends them (then
closes): a malformed response fails exactly as a server's would (``protocol``, ``too_large``...). A handler
may also raise an :class:`~aiotcp.errors.AiotcpError` (``aiotcp.ConnectionRefused(...)``) to fail the
connect, or the request, that way.

The handler may be a function or a coroutine function; it is called once per request, in order, and may keep
state (count calls, answer 503 then 200). Cookies, redirects, decoding, retries and the pool work as with a
server: a :class:`Response` with ``Connection: close`` (or raw bytes) ends its connection. No DNS, no TLS
and no proxy are involved (a proxy the client was given is ignored).

This module imports neither pytest nor anything of the test suite: applications use it in their own tests.
"""

from __future__ import annotations

import inspect
import json as jsonlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import h11

from .errors import ConnectionReset
from .response import Headers
from .streams import READ_SIZE, ConnectInfo, NetworkStream
from .tlsfacts import TLSInfo
from .transport import Transport

if TYPE_CHECKING:
    import ssl

    from .budget import Budget
    from .proxy import Proxy
    from .targets import Target

__all__ = ["Handler", "MockTransport", "Request", "Response"]

# An https target of a mock transport: no handshake happens, and no certificate is sent.
_MOCK_TLS = TLSInfo(version="mock", cipher=None, alpn=None)


@dataclass(slots=True)
class Request:
    """A request as the mock server received it: parsed from the bytes the client wrote."""

    method: str
    url: str
    #: The request target as written (a path, or the absolute URL a forwarding proxy would get).
    target: str
    headers: Headers
    content: bytes = b""

    def json(self) -> Any:
        return jsonlib.loads(self.content)


@dataclass(slots=True)
class Response:
    """A response for the handler to return: a status, headers and a body (``content``, or ``text`` in UTF-8,
    or ``json``). ``Content-Length`` is added unless the headers frame the body themselves."""

    status_code: int = 200
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = field(default_factory=list)
    content: bytes = b""
    text: str | None = None
    json: Any = None
    reason: str | None = None

    def encode(self, method: str) -> bytes:
        """The response as bytes on the wire (no body after a HEAD request, nor for 1xx, 204 and 304)."""
        headers = list(self.headers.items() if isinstance(self.headers, Mapping) else self.headers)
        body = self.content
        if self.text is not None:
            body = self.text.encode("utf-8")
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        elif self.json is not None:
            body = jsonlib.dumps(self.json).encode("utf-8")
            headers.append(("Content-Type", "application/json"))
        names = {name.lower() for name, _ in headers}
        no_body = self.status_code < 200 or self.status_code in (204, 304)
        if "content-length" not in names and "transfer-encoding" not in names and not no_body:
            headers.append(("Content-Length", str(len(body))))
        reason = self.reason
        if reason is None:
            try:
                reason = HTTPStatus(self.status_code).phrase
            except ValueError:
                reason = ""
        lines = [f"HTTP/1.1 {self.status_code} {reason}\r\n".encode("latin-1")]
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
        lines.append(b"\r\n")
        if method != "HEAD" and not no_body:
            lines.append(body)
        return b"".join(lines)


#: What a handler returns: a :class:`Response`, or the raw bytes a server would send (then the connection
#: closes).
Reply = Response | bytes
Handler = Callable[[Request], Reply | Awaitable[Reply]]


class MockTransport(Transport):
    """Connections to ``handler`` instead of the network: ``Client(transport=MockTransport(handler))``.

    ``requests`` keeps every :class:`Request` handled, in order; ``connections`` counts the connections the
    client opened.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.connections = 0

    def __repr__(self) -> str:
        return f"<MockTransport connections={self.connections} requests={len(self.requests)}>"

    async def connect(
        self,
        target: Target,
        budget: Budget,
        *,
        ssl_context: ssl.SSLContext | None = None,
        address: str | None = None,
        proxy: Proxy | None = None,
    ) -> NetworkStream:
        await anyio.lowlevel.checkpoint()
        self.connections += 1
        stream = _MockStream(self, target)
        stream.target = target.url
        stream.info = ConnectInfo(peer=(address or target.host, target.port), dns_ms=0.0, connect_ms=0.0)
        if ssl_context is not None:
            stream.info.tls_ms, stream.info.tls, stream.info.tls_version = 0.0, _MOCK_TLS, _MOCK_TLS.version
        return stream

    async def handle(self, request: Request) -> Reply:
        """Call the handler (a coroutine function's result is awaited) and record the request."""
        self.requests.append(request)
        reply = self.handler(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if not isinstance(reply, (Response, bytes, bytearray)):
            raise TypeError(f"a MockTransport handler returns aiotcp.testing.Response or bytes, got {reply!r}")
        return reply


class _MockStream(NetworkStream):
    """The client's end of a mock connection: requests are parsed as they are written, and the handler's
    replies queued for :meth:`receive`."""

    def __init__(self, transport: MockTransport, target: Target) -> None:
        self._transport = transport
        self._origin = f"{target.scheme}://{target.authority}"
        self._server = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._body: list[bytes] = []
        self._inbox = bytearray()
        self._eof = False
        self._closed = False
        self._arrived = anyio.Event()

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def send(self, data: bytes, budget: Budget) -> None:
        await anyio.lowlevel.checkpoint()
        if self._closed or self._eof:
            raise ConnectionReset("the mock server closed the connection", target=self.target)
        self._server.receive_data(data)
        while True:
            try:
                event = self._server.next_event()
            except h11.RemoteProtocolError as exc:  # pragma: no cover - the client writes valid requests
                raise AssertionError(f"the client wrote a request h11 refuses: {exc}") from exc
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request, self._body = event, []
            elif isinstance(event, h11.Data):
                self._body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                await self._answer()

    async def _answer(self) -> None:
        event = self._request
        assert event is not None
        method = event.method.decode("ascii")
        target = event.target.decode("ascii")
        url = target if "://" in target else self._origin + target
        request = Request(method, url, target, Headers(list(event.headers.raw_items())), b"".join(self._body))
        try:
            reply = await self._transport.handle(request)
        except BaseException:
            self._eof = True  # whatever the handler raised, the client gets; the connection is done
            raise
        if isinstance(reply, Response):
            self._inbox += reply.encode(method)
            pairs = reply.headers.items() if isinstance(reply.headers, Mapping) else reply.headers
            closing = any(name.lower() == "connection" and "close" in value.lower() for name, value in pairs)
        else:
            self._inbox += reply
            closing = True  # raw bytes: a server that sends them, then closes
        if closing or any(name == b"connection" and b"close" in value.lower() for name, value in event.headers):
            self._eof = True
        else:
            # h11 reads the next request only once this one was answered: tell it the exchange is over.
            self._server.send(h11.Response(status_code=200, headers=[(b"Content-Length", b"0")]))
            self._server.send(h11.EndOfMessage())
            self._server.start_next_cycle()
        self._wake()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()

    async def receive(self, budget: Budget, max_bytes: int = READ_SIZE) -> bytes:
        if not self._inbox and not self._eof and not self._closed:
            with anyio.move_on_after(budget.limit("read")) as scope:
                await self._arrived.wait()
            if scope.cancelled_caught:
                raise budget.expired("read", self.target)
        else:
            await anyio.lowlevel.checkpoint()
        if not self._inbox:
            return b""
        chunk = bytes(self._inbox[:max_bytes])
        del self._inbox[:max_bytes]
        return chunk

    async def send_eof(self) -> bool:
        return False

    def has_pending_input(self) -> bool:
        return bool(self._inbox) or self._eof or self._closed

    async def aclose(self) -> None:
        self._closed = True

    @classmethod
    async def open(cls, address: str, port: int, *, local_address: str | None = None) -> NetworkStream:
        raise TypeError("mock streams are made by MockTransport.connect, not opened")

    def peer(self) -> tuple[str, int]:
        return self.info.peer

    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> TLSInfo:
        return _MOCK_TLS
