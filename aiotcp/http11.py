"""Sans-IO HTTP/1.1 for one client connection: request bytes out, response events in. No ``await`` here.

Theory of operation
-------------------
A connection owns one :class:`HTTP11Protocol`. For each exchange the caller does::

    wire = protocol.send_request(request)        # bytes to write
    protocol.receive_data(chunk)                 # as bytes arrive; b"" means the peer closed (FIN)
    event = protocol.next_event()                # ResponseHead, bytes (body), ResponseEnd, or None

``next_event`` returns ``None`` when it needs more bytes, and raises an :class:`~aiotcp.errors.AiotcpError`
(``protocol``, ``too_large`` or ``disconnected``) when the bytes cannot become a response. Interim (1xx)
responses are counted and skipped. After :class:`ResponseEnd`, ``end.reusable`` says whether the connection
may carry another request: never when the peer asked to close, when the body was delimited by EOF, when
bytes arrived beyond the response, or when the framing was ambiguous (Transfer-Encoding together with
Content-Length). ``start_next_cycle()`` readies the protocol for the next request.

Two backends share that contract and the guards in :class:`HTTP11Protocol`:

- :class:`H11Protocol` (default) -- h11, strict, pure Python; the reference.
- :class:`HttptoolsProtocol` -- llhttp through httptools, for speed.

The guards make the backends agree where their parsers would not: the head-size cap counts the same bytes,
a peer that is plainly not speaking HTTP is rejected from its first bytes (instead of waiting for a line
end that may never come), and EOF is classified the same way.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

import h11

from .config import Limits
from .errors import Disconnected, InvalidHeader, InvalidTarget, ProtocolError, TooLarge, map_h11_error

__all__ = [
    "Event",
    "H11Protocol",
    "HTTP11Protocol",
    "HttptoolsProtocol",
    "Request",
    "ResponseEnd",
    "ResponseHead",
    "available_backends",
    "make_protocol",
]

HeaderList = list[tuple[bytes, bytes]]

# RFC 9110 token and field-value grammar. Values may hold obs-text (0x80-0xff) but never CR, LF or NUL.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_REQUEST_TARGET = re.compile(rb"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class Request:
    """One request as it goes on the wire. Validated when built, so a bad header never reaches a socket.

    Raises :class:`~aiotcp.errors.InvalidHeader` / :class:`~aiotcp.errors.InvalidTarget` naming the part.
    """

    method: bytes
    target: bytes
    headers: HeaderList
    body: bytes = b""

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.method):
            raise InvalidTarget(f"invalid method {self.method!r}")
        if not _REQUEST_TARGET.fullmatch(self.target):
            raise InvalidTarget(f"invalid request path {self.target!r}: control characters or spaces")
        for name, value in self.headers:
            if not _TOKEN.fullmatch(name):
                raise InvalidHeader(f"invalid header name {name!r}")
            if not _FIELD_VALUE.fullmatch(value) or value[:1] in b" \t" or value[-1:] in b" \t":
                raise InvalidHeader(f"invalid value for header {name.decode('ascii')}: {value!r}")
            if name.lower() in (b"content-length", b"transfer-encoding"):
                # We frame the body ourselves; a user-supplied framing header would contradict it.
                raise InvalidHeader(f"header {name.decode('ascii')} is set by aiotcp from the body")

    def encode(self) -> bytes:
        """The request head and body, framed with Content-Length when there is a body."""
        lines = [b"%s %s HTTP/1.1\r\n" % (self.method, self.target)]
        lines.extend(b"%s: %s\r\n" % pair for pair in self.headers)
        if self.body or self.method not in (b"GET", b"HEAD"):
            lines.append(b"Content-Length: %d\r\n" % len(self.body))
        lines.append(b"\r\n")
        lines.append(self.body)
        return b"".join(lines)

    def framed_headers(self) -> HeaderList:
        """Headers as sent, including the Content-Length that :meth:`encode` adds."""
        if self.body or self.method not in (b"GET", b"HEAD"):
            return [*self.headers, (b"Content-Length", b"%d" % len(self.body))]
        return self.headers


@dataclass(slots=True)
class ResponseHead:
    """Status line and headers of the final (non-1xx) response."""

    status_code: int
    reason: bytes
    http_version: bytes
    headers: HeaderList
    interim: int = 0  # how many 1xx responses came before this one


@dataclass(slots=True)
class ResponseEnd:
    """The response is complete."""

    reusable: bool
    why_not_reusable: str | None = None


Event = ResponseHead | bytes | ResponseEnd

_HTTP_PREFIX: Final = b"HTTP/"
_NO_BODY_STATUS = (204, 304)


class HTTP11Protocol:
    """The contract of the module docstring, with the guards both backends share.

    Subclasses implement ``_encode``, ``_feed``, ``_pull`` and ``_next_cycle``.
    """

    backend: str = "abstract"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._events: deque[Event] = deque()
        self._method = b"GET"
        self._seen_any = False
        self._head: ResponseHead | None = None
        self._interim = 0
        self._head_bytes = 0  # bytes fed since the last head completed (bounded by max_header_bytes)
        self._body_bytes = 0
        self._eof = False
        self._ended = False
        self._pending = b""  # bytes held back because they would push an unfinished head over the cap
        self._prefix = b""  # the first bytes of the response, until there are enough to say "HTTP/"
        self.cycles = 0

    def __repr__(self) -> str:
        state = "ended" if self._ended else "body" if self._head else "head" if self._seen_any else "idle"
        return f"<{type(self).__name__} state={state} cycles={self.cycles} body_bytes={self._body_bytes}>"

    # -- public contract ------------------------------------------------------------------------------------

    def send_request(self, request: Request) -> bytes:
        self._method = request.method
        return self._encode(request)

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        elif len(self._prefix) < len(_HTTP_PREFIX):
            self._seen_any = True
            self._check_looks_like_http(data)
        self._feed_guarded(data)

    def next_event(self) -> Event | None:
        if not self._events:
            self._pull()
            if not self._events and self._pending and self._head is not None:
                self._feed_guarded(b"")
                self._pull()
        if self._events:
            return self._events.popleft()
        if self._eof and not self._ended:
            raise self._early_eof()
        return None

    def start_next_cycle(self) -> None:
        """Ready for the next request on the same connection (only after a reusable ``ResponseEnd``)."""
        if not self._ended:
            raise RuntimeError("start_next_cycle() before the response ended")
        self._events.clear()
        self._seen_any = False
        self._head = None
        self._interim = 0
        self._head_bytes = 0
        self._body_bytes = 0
        self._ended = False
        self._pending = b""
        self._prefix = b""
        self.cycles += 1
        self._next_cycle()

    @property
    def response_started(self) -> bool:
        """Whether any byte of the current response has arrived (a stale keep-alive has none)."""
        return self._seen_any

    # -- guards shared by both backends ---------------------------------------------------------------------

    def _check_looks_like_http(self, data: bytes) -> None:
        # An SSH banner or an HTTP/0.9 body may never send the line end a parser waits for: reject as soon
        # as the first bytes cannot start "HTTP/".
        self._prefix += data[: len(_HTTP_PREFIX) - len(self._prefix)]
        if not _HTTP_PREFIX.startswith(self._prefix):
            raise ProtocolError(f"not an HTTP/1.x response: starts with {data[:24]!r}")

    def _feed_guarded(self, data: bytes) -> None:
        if self._head is None and not self._ended:
            # While the head is unfinished, never hand the parser more than the cap allows; the rest waits
            # in _pending until the head completes (next_event feeds it then).
            data = self._pending + data
            room = self.limits.max_header_bytes + 1 - self._head_bytes
            data, self._pending = data[:room], data[room:]
            self._head_bytes += len(data)
        if data:
            self._feed(data)
        if self._head is not None and self._pending:
            data, self._pending = self._pending, b""
            self._feed(data)
        if self._eof and not self._pending:
            self._feed(b"")
        if self._head is None and not self._ended and self._head_bytes > self.limits.max_header_bytes:
            raise TooLarge(f"response head exceeds max_header_bytes ({self.limits.max_header_bytes})")

    def _on_interim(self) -> None:
        self._interim += 1
        self._head_bytes = 0
        if self._interim > self.limits.max_interim:
            raise TooLarge(f"more than {self.limits.max_interim} interim (1xx) responses")

    def _on_head(self, head: ResponseHead) -> None:
        if len(head.headers) > self.limits.max_headers:
            raise TooLarge(f"response has {len(head.headers)} headers, more than {self.limits.max_headers}")
        head.interim = self._interim
        self._head = head
        self._events.append(head)

    def _on_body(self, data: bytes) -> None:
        self._body_bytes += len(data)
        cap = self.limits.max_body_bytes
        if cap is not None and self._body_bytes > cap:
            raise TooLarge(f"response body exceeds max_body_bytes ({cap})")
        self._events.append(data)

    def _on_end(self, reusable: bool, why_not: str | None) -> None:
        self._ended = True
        if reusable and self._eof:
            reusable, why_not = False, "server closed the connection"
        if reusable and self._head is not None and _ambiguous_framing(self._head.headers):
            reusable, why_not = False, "Transfer-Encoding and Content-Length both present"
        self._events.append(ResponseEnd(reusable, None if reusable else why_not))

    def _early_eof(self) -> Disconnected:
        if not self._seen_any:
            return Disconnected("server closed the connection without sending a response")
        if self._head is None:
            return Disconnected("server closed the connection in the middle of the response head")
        return Disconnected(f"server closed the connection before the body was complete (got {self._body_bytes} bytes)")

    # -- backend hooks --------------------------------------------------------------------------------------

    def _encode(self, request: Request) -> bytes:
        raise NotImplementedError  # pragma: no cover - abstract

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def _pull(self) -> None:
        """Move parsed events into ``self._events``."""

    def _next_cycle(self) -> None:
        raise NotImplementedError  # pragma: no cover - abstract


def _ambiguous_framing(headers: HeaderList) -> bool:
    has_te = has_cl = False
    for name, _ in headers:
        lowered = name.lower()
        has_te = has_te or lowered == b"transfer-encoding"
        has_cl = has_cl or lowered == b"content-length"
    return has_te and has_cl


class H11Protocol(HTTP11Protocol):
    """The reference backend: h11 frames the request and parses the response."""

    backend = "h11"

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        # h11's own cap is a second line of defence; ours (in _feed_guarded) is the one that fires first.
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.limits.max_header_bytes + 1)

    def _encode(self, request: Request) -> bytes:
        try:
            head = self._conn.send(
                h11.Request(method=request.method, target=request.target, headers=request.framed_headers())
            )
            tail = self._conn.send(h11.Data(data=request.body)) if request.body else b""
            end = self._conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:  # Request validated already; this is a belt to its braces
            raise InvalidHeader(f"request rejected by h11: {exc}") from exc
        return (head or b"") + (tail or b"") + (end or b"")

    def _feed(self, data: bytes) -> None:
        try:
            self._conn.receive_data(data)
        except RuntimeError as exc:  # data after EOF cannot happen through our transport
            raise ProtocolError(str(exc)) from exc

    def _pull(self) -> None:
        conn = self._conn
        while not self._events and not self._ended:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                # Events are drained before more bytes are fed, so an error that shows up once EOF was fed
                # is about the EOF itself: the response was cut short.
                if self._eof:
                    raise self._early_eof() from exc
                raise map_h11_error(exc) from exc
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    raise ProtocolError("unexpected 101 Switching Protocols: no upgrade was requested")
                self._on_interim()
            elif isinstance(event, h11.Response):
                self._on_head(
                    ResponseHead(
                        event.status_code,
                        bytes(event.reason),
                        bytes(event.http_version),
                        list(event.headers.raw_items()),
                    )
                )
            elif isinstance(event, h11.Data):
                self._on_body(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._finish()
            elif isinstance(event, h11.ConnectionClosed):
                raise self._early_eof()

    def _finish(self) -> None:
        conn = self._conn
        leftover, _closed = conn.trailing_data
        if leftover:
            self._on_end(False, f"{len(leftover)} unexpected bytes after the response")
        elif conn.their_state is not h11.DONE or conn.our_state is not h11.DONE:
            self._on_end(False, "server asked to close the connection")
        else:
            self._on_end(True, None)

    def _next_cycle(self) -> None:
        self._conn.start_next_cycle()


class HttptoolsProtocol(HTTP11Protocol):
    """The fast backend: llhttp (through httptools) parses; :meth:`Request.encode` frames the request."""

    backend = "httptools"

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        import httptools  # imported here: an optional accelerator

        self._httptools = httptools
        self._parser = self._new_parser()
        self._leftover = False  # bytes arrived after the response ended
        self._reset_message()

    def _new_parser(self) -> object:
        parser = self._httptools.HttpResponseParser(self)
        # Read Transfer-Encoding + Content-Length as chunked (as h11 does) instead of failing; such a
        # connection is never reused (see _on_end).
        parser.set_dangerous_leniencies(lenient_chunked_length=True)
        return parser

    def _reset_message(self) -> None:
        self._reason = bytearray()
        self._raw_headers: HeaderList = []
        self._close_delimited = False
        self._in_interim = False
        self._discarding = False  # a HEAD/204/304 head is done; anything after it is leftover

    def _encode(self, request: Request) -> bytes:
        return request.encode()

    def _feed(self, data: bytes) -> None:
        if not data:
            return  # EOF: llhttp has no finish call through httptools; next_event classifies it
        if self._ended:
            self._leftover = True
            return
        try:
            self._parser.feed_data(data)  # type: ignore[attr-defined]
        except self._httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, (TooLarge, ProtocolError)):
                raise context from None
            raise ProtocolError(f"malformed response: {exc}") from exc
        except self._httptools.HttpParserError as exc:
            if self._ended:  # garbage after a complete response: leftover, not a bad response
                self._leftover = True
                return
            raise ProtocolError(f"malformed response: {exc}") from exc

    # -- llhttp callbacks -----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._ended or self._discarding:
            self._leftover = True

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._discarding or self._ended:
            return
        parser = self._parser
        status = parser.get_status_code()  # type: ignore[attr-defined]
        version = parser.get_http_version().encode("ascii")  # type: ignore[attr-defined]
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("unexpected 101 Switching Protocols: no upgrade was requested")
            self._on_interim()
            self._reset_message()
            self._in_interim = True
            return
        self._on_head(ResponseHead(status, bytes(self._reason), version, self._raw_headers))
        if self._method == b"HEAD" or status in _NO_BODY_STATUS:
            # llhttp does not know the request method, so it may wait for a body a HEAD reply never has.
            self._discarding = True
            self._on_end(True, None)
            return
        self._close_delimited = _close_delimited(self._raw_headers)

    def on_body(self, body: bytes) -> None:
        if self._discarding or self._ended:
            self._leftover = True
            return
        self._on_body(body)

    def on_message_complete(self) -> None:
        if self._in_interim:
            self._in_interim = False
            return
        if self._discarding or self._ended:
            return
        keep_alive = self._parser.should_keep_alive()  # type: ignore[attr-defined]
        self._on_end(keep_alive, None if keep_alive else "server asked to close the connection")

    # -- cycle and EOF --------------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        if self._eof and not self._ended and self._head is not None and self._close_delimited:
            # A body with no framing ends at EOF; llhttp has no "finish" call through httptools.
            self._on_end(False, "body was delimited by the connection closing")
        event = super().next_event()
        if isinstance(event, ResponseEnd) and event.reusable and self._leftover:
            return ResponseEnd(False, "unexpected bytes after the response")
        return event

    def _next_cycle(self) -> None:
        if self._discarding or self._leftover:
            # The parser may be waiting for a HEAD body that never comes: start clean.
            self._parser = self._new_parser()
        self._leftover = False
        self._reset_message()


def _close_delimited(headers: HeaderList) -> bool:
    for name, _ in headers:
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            return False
    return True


Backend = Literal["h11", "httptools"]


def available_backends() -> list[str]:
    """Backends that can run here, fastest first."""
    backends = []
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the platform
        pass
    else:
        backends.append("httptools")
    backends.append("h11")
    return backends


def make_protocol(backend: str, limits: Limits | None = None) -> HTTP11Protocol:
    """A fresh protocol for one connection. Raises ``ValueError`` for an unknown or missing backend."""
    if backend == "h11":
        return H11Protocol(limits)
    if backend == "httptools":
        try:
            return HttptoolsProtocol(limits)
        except ImportError as exc:
            raise ValueError("http='httptools' needs the httptools package: pip install httptools") from exc
    raise ValueError(f"unknown HTTP backend {backend!r}: choose 'h11' or 'httptools'")
