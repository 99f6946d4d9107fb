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

The guards make the backends agree where their parsers would not:

- the head-size cap counts the same bytes: the final head must be complete within the first
  ``max_header_bytes`` bytes of the response (interim heads included), however the bytes were split;
- so does the cap on a chunked body's framing: a chunk-size line (extensions included) and the trailer
  section must each end within ``max_header_bytes`` bytes. :class:`_ChunkScan` follows the chunk framing
  just enough to count those bytes exactly, for both backends, whatever the split (the parsers' own bounds
  -- h11's on its receive buffer, ours on llhttp's silence -- hold only to within one feed);
- a peer that is plainly not speaking HTTP is rejected from its first bytes (instead of waiting for a line
  end that may never come), and so is what follows an interim (1xx) head when it cannot start another head;
- every head, interim or final, meets the same rules (:meth:`HTTP11Protocol._check_head`): HTTP/1.0 or 1.1,
  status >= 100, no 101, h11's Transfer-Encoding and Content-Length rules, none of NUL/CR/LF/VT/FF in a header
  value or the reason phrase;
- both read the same *quirks* -- deviations from RFC 9110/9112 that curl, browsers and h11 read and that can
  neither split a message nor make its length ambiguous (:data:`QUIRKS`: other control characters in a value
  or the reason phrase, bare LF line ends in the head, obs-fold, a Content-Length repeated with one value,
  HTTP/1.0, no reason phrase) -- and list them in :attr:`ResponseHead.quirks`. llhttp refuses three of them;
  a head it refuses for one of those is held until complete, rewritten the way h11 reads it and parsed again
  (:class:`HttptoolsProtocol`). The common response pays a count of its head's line ends (for ``bare_lf``),
  and on h11 a look at its raw head for obs-fold and repeated lengths, which h11 hides;
- keep-alive and the reason a connection is not reusable are decided once (:meth:`HTTP11Protocol._verdict`),
  and EOF is classified the same way;
- an error found in the middle of a chunk of bytes is raised only after the events parsed before it were
  returned, and once raised it is raised again by every later call.

Known differences, each a narrow class of malformed input on which both backends still end cleanly (events
or an :class:`~aiotcp.errors.AiotcpError`) but not the same way:

- chunk extensions: h11 takes any text after ";" up to CRLF, llhttp only ``;token[=token|quoted-string]``;
- a chunk size of more than 20 hex digits whose value fits in 64 bits (leading zeros): h11 rejects it;
- a bare LF ending a line of the trailer section: h11 accepts it, llhttp rejects it;
- a response both malformed and cut short may fail as ``protocol`` on llhttp (which sees the bad byte) and
  as ``disconnected`` on h11 (which waits for the line end that never comes);
- a head with a tolerated control character in a value and all 128 bytes 0x80-0xff (nothing is left to
  disguise the control character as for llhttp): h11 reads it, llhttp rejects it.
"""

from __future__ import annotations

import abc
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import h11

from .accelerators import httptools as _httptools
from .config import Limits
from .errors import (
    AiotcpError,
    Disconnected,
    InvalidHeader,
    InvalidTarget,
    NoResponse,
    ProtocolError,
    TooLarge,
)
from .text import quote_bytes

__all__ = [
    "Event",
    "H11Protocol",
    "HTTP11Protocol",
    "HttptoolsProtocol",
    "PlainResponseParser",
    "Request",
    "ResponseEnd",
    "ResponseHead",
    "available_backends",
    "make_protocol",
    "map_h11_error",
]

HeaderList = list[tuple[bytes, bytes]]

# RFC 9110 token and field-value grammar. Values may hold obs-text (0x80-0xff) but never CR, LF or NUL.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_REQUEST_TARGET = re.compile(rb"[\x21-\x7e]+")


# Header lines already validated. A client sends the same few headers with every request; checking them once
# instead of with every request is most of the cost of building one. Bounded: cleared when full.
_VALID_HEADERS: set[tuple[bytes, bytes]] = set()
_VALID_HEADERS_MAX = 4096


def _check_header(name: bytes, value: bytes) -> None:
    if not _TOKEN.fullmatch(name):
        raise InvalidHeader(f"invalid header name {quote_bytes(name)}")
    if not _FIELD_VALUE.fullmatch(value) or value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
        raise InvalidHeader(f"invalid value for header {name.decode('ascii')}: {quote_bytes(value)}")
    if name.lower() in (b"content-length", b"transfer-encoding"):
        # We frame the body ourselves; a user-supplied framing header would contradict it.
        raise InvalidHeader(f"header {name.decode('ascii')} is set by aiotcp from the body")
    if len(_VALID_HEADERS) >= _VALID_HEADERS_MAX:
        _VALID_HEADERS.clear()
    _VALID_HEADERS.add((name, value))


@dataclass(frozen=True, slots=True)
class Request:
    """One request as it goes on the wire. Validated when built, so a bad header never reaches a socket.

    ``headers`` must hold exactly one Host (HTTP/1.1 requires it, and h11 refuses to send a request without).
    Raises :class:`~aiotcp.errors.InvalidHeader` / :class:`~aiotcp.errors.InvalidTarget` naming the part.
    A Request is a value: its wire bytes and its h11 event are made once, so one Request can be sent again
    and again (the client keeps the ones it builds from its default headers); do not mutate ``headers``.
    """

    method: bytes
    target: bytes
    headers: HeaderList
    body: bytes = b""
    #: Whether the request carries ``Connection: close`` (then the connection ends with the response).
    close: bool = field(init=False, repr=False, compare=False)
    _wire: bytes | None = field(init=False, default=None, repr=False, compare=False)
    _h11_event: h11.Request | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.method):
            raise InvalidTarget(f"invalid method {quote_bytes(self.method)}")
        if self.method == b"CONNECT":
            # A tunnel is not a request/response exchange: h11 would hand the connection over, llhttp not.
            raise InvalidTarget("CONNECT is not supported")
        if not _REQUEST_TARGET.fullmatch(self.target):
            raise InvalidTarget(f"invalid request path {quote_bytes(self.target)}: control characters or spaces")
        hosts = 0
        for pair in self.headers:
            if pair not in _VALID_HEADERS:
                _check_header(*pair)
            hosts += pair[0].lower() == b"host"
        if hosts != 1:
            raise InvalidHeader(f"a request needs exactly one Host header, got {hosts}")
        object.__setattr__(self, "close", b"close" in _comma_values(self.headers, b"connection"))

    def encode(self) -> bytes:
        """The request head and body, framed with Content-Length when there is a body.

        Byte for byte what h11 writes for the same request: Host first, then the other headers in order.
        """
        if self._wire is not None:
            return self._wire
        lines = [b"%s %s HTTP/1.1\r\n" % (self.method, self.target)]
        headers = self.framed_headers()
        if headers[0][0].lower() == b"host":  # there is exactly one (validated): already in h11's order
            lines.extend(b"%s: %s\r\n" % pair for pair in headers)
        else:
            lines.extend(b"%s: %s\r\n" % pair for pair in headers if pair[0].lower() == b"host")
            lines.extend(b"%s: %s\r\n" % pair for pair in headers if pair[0].lower() != b"host")
        lines.append(b"\r\n")
        lines.append(self.body)
        wire = b"".join(lines)
        object.__setattr__(self, "_wire", wire)
        return wire

    def head(self) -> bytes:
        """The request line and headers as written on the wire, through the blank line that ends them."""
        wire = self.encode()
        return wire[: len(wire) - len(self.body)] if self.body else wire

    def as_h11(self) -> h11.Request:
        """The head as an h11 event (h11 validates it again when it is made: once per Request)."""
        if self._h11_event is None:
            event = h11.Request(method=self.method, target=self.target, headers=self.framed_headers())
            object.__setattr__(self, "_h11_event", event)
            return event
        return self._h11_event

    def framed_headers(self) -> HeaderList:
        """Headers as given, plus the Content-Length that frames the body (when there is one or it is needed)."""
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
    #: Deviations from RFC 9110/9112 that were accepted, in the order of :data:`QUIRKS`.
    quirks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseEnd:
    """The response is complete."""

    reusable: bool
    why_not_reusable: str | None = None


Event = ResponseHead | bytes | ResponseEnd

_HTTP_PREFIX: Final = b"HTTP/"
_NO_BODY_STATUS = (204, 304)
_VERSIONS = (b"1.0", b"1.1")
# Control characters (but HTAB) have no place in a header value or a reason phrase (RFC 9110 5.5, RFC 9112
# 4). NUL, CR and LF can split or smuggle a message, and VT and FF are whitespace to many parsers (h11 refuses
# them in values, Python's strip() and split() cut at them): those stay errors. The others (ESC, BEL, DEL...)
# carry no such risk, and curl, browsers and h11 take them: they are quirks (``ctl_in_header_value``,
# ``ctl_in_reason``), and llhttp, which refuses them in values, is fed them disguised (see _tolerated_head).
_CTL_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_CTL_BYTE = re.compile(rb"[\x00\n\r\x0b\x0c]")
_TOLERATED_CTL_BYTE = re.compile(rb"[\x01-\x08\x0e-\x1f\x7f]")
_FRAMING_NAME_LENGTHS = frozenset({len(b"transfer-encoding"), len(b"content-length"), len(b"connection")})
# Digits only, as h11 requires; at most 19 so that the value fits in llhttp's 64 bits and h11's 20 digits.
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,19}")
_H11_END: Final = h11.EndOfMessage()  # immutable: one for every request
_END_MARK: Final = ResponseEnd(True)  # queued when the parser finishes; the verdict is made when it is taken
_REUSABLE: Final = ResponseEnd(True)  # the usual verdict (events are values: one instance serves them all)


def map_h11_error(exc: h11.ProtocolError, target: str | None = None) -> AiotcpError:
    """Map h11's parse errors (here, where h11 parses). h11 hints 431 when its receive buffer outgrew our cap."""
    if exc.error_status_hint == 431:
        return TooLarge("response head, chunk header or trailers exceed max_header_bytes", target=target)
    # h11 quotes what it refused as Python shows bytes (b'...', bytearray(b'...')): keep only the quoted part.
    return ProtocolError(f"malformed response: {_BYTES_REPR.sub(_quoted_part, str(exc))}", target=target)


_QUOTED = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""  # a Python string literal, escapes included
_BYTES_REPR = re.compile(rf"bytearray\(b{_QUOTED}\)|\bb{_QUOTED}")


def _quoted_part(match: re.Match[str]) -> str:
    return match.group(1) or match.group(2)


def _comma_values(headers: HeaderList, name: bytes) -> list[bytes]:
    """Every comma-separated element of the fields called ``name``, lowercased (h11's get_comma_header)."""
    out: list[bytes] = []
    for header_name, value in headers:
        if header_name.lower() == name:
            out.extend(item for item in (part.strip() for part in value.lower().split(b",")) if item)
    return out


@dataclass(slots=True)
class _Framing:
    """What a head's fields say about its body and connection (checked by ``_check_head``)."""

    chunked: bool = False  # Transfer-Encoding: chunked
    length: bool = False  # a Content-Length
    close: bool = False  # Connection: close


#: What :attr:`ResponseHead.quirks` may hold: the deviations from RFC 9110/9112 a response may carry and still be
#: read (as curl, browsers and h11 read it), because none can split a message or make its length ambiguous.
QUIRKS: Final = {
    "ctl_in_header_value": "a control character other than NUL, CR, LF, VT, FF (and HTAB) in a header value",
    "ctl_in_reason": "a control character other than NUL, CR, LF, VT, FF (and HTAB) in the reason phrase",
    "bare_lf": "a line of the head ends with LF alone instead of CRLF",
    "obs_fold": "a header value continued on the next line (obsolete line folding), unfolded with one space",
    "duplicate_content_length_equal": "Content-Length repeated or comma-listed with one value, read as one",
    "http10": "an HTTP/1.0 response",
    "no_reason": "the status line has no reason phrase",
}


def _add_quirk(quirks: list[str], quirk: str) -> None:
    if quirk not in quirks:
        quirks.append(quirk)


def _raw_head_quirks(log: bytes | bytearray, end: int, fields: int) -> list[str]:
    """The quirks that only the bytes of a head show, for h11, which reads them and hides them: ``bare_lf``,
    ``obs_fold`` and ``duplicate_content_length_equal``. The head is ``log[:end]`` (not copied: this runs for
    every response); ``fields``: how many fields h11 returned. h11 accepted the head, so every CR in it ends a
    line, and repeated lengths were equal."""
    quirks: list[str] = []
    lines = log.count(b"\n", 0, end)
    if lines != log.count(b"\r", 0, end):
        quirks.append("bare_lf")
    if lines != fields + 2:  # the status line, one line a field, the blank line: else folds or dropped repeats
        head = bytes(log[:end])
        if b"\n " in head or b"\n\t" in head:
            quirks.append("obs_fold")
        if head.lower().count(b"\ncontent-length:") > 1:
            quirks.append("duplicate_content_length_equal")
    # "5, 5", which h11 reads as "5": look at the field as sent (in its usual spellings first).
    at = log.find(b"\nContent-Length:", 0, end)
    if at < 0:
        at = log.find(b"\ncontent-length:", 0, end)
        if at < 0:
            at = bytes(log[:end]).lower().find(b"\ncontent-length:")
    if at >= 0 and log.find(b",", at, log.find(b"\n", at + 1, end)) >= 0:
        _add_quirk(quirks, "duplicate_content_length_equal")
    return quirks


_NO_FRAMING: Final = _Framing()  # what is known before a head: nothing (shared; _check_head makes a new one)
_HEX = re.compile(rb"[0-9A-Fa-f]+")


class _ChunkScan:
    """Follows a chunked body just enough to measure its framing: the bytes of each chunk-size line and of the
    trailer section, exactly, however the body is split. Validation is the parser's job: on a size line this
    cannot read, it stops counting (the parser rejects that line anyway).

    ``scan(data)`` returns ``None``, or the offset in ``data`` after which the current size line or the trailer
    section exceeds ``cap`` bytes without having ended.
    """

    __slots__ = ("cap", "line", "off", "remaining", "size_line", "state")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.state: Literal["size", "data", "crlf", "trailer", "done"] = "size"
        self.line = 0  # bytes of the current size line, or of the trailer section, so far
        self.size_line = b""  # the first bytes of the current size line (enough to read the size)
        self.remaining = 0  # bytes of chunk data still to come
        self.off = False  # in the trailer section: the current line has content (it is not the blank one)

    def scan(self, data: bytes) -> int | None:
        position, end = 0, len(data)
        find, hex_match = data.find, _HEX.match
        for _ in range(end + 1):  # every pass consumes at least one byte, or returns
            if position >= end or self.state == "done":
                return None
            state = self.state
            if state == "data":
                take = min(self.remaining, end - position)
                self.remaining -= take
                position += take
                if not self.remaining:
                    self.state = "crlf"
                continue
            if state == "crlf":  # the CRLF after chunk data; anything else is the parser's to reject
                if data[position : position + 2] == b"\r\n":
                    position += 2
                else:
                    newline = find(b"\n", position)
                    if newline < 0:
                        return None
                    position = newline + 1
                self.state = "size"
                continue
            newline = find(b"\n", position)
            if state == "size" and not self.line and 0 <= newline < position + self.cap:
                # The common case, a whole size line in this piece: read it in place.
                match = hex_match(data, position, newline)
                position = newline + 1
                if match is None or len(match.group().lstrip(b"0")) > 16:
                    self.state = "done"  # unreadable or over 64 bits: the parser rejects it; we stop counting
                    return None
                self.remaining = int(match.group(), 16)
                self.state = "data" if self.remaining else "trailer"
                continue
            stop = end if newline < 0 else newline + 1
            if state == "size":
                crossing = self._count(position, stop)
                if crossing is not None:
                    return crossing
                if len(self.size_line) < 32:
                    self.size_line += data[position : min(stop, position + 32)]
                if newline >= 0:
                    self._size_line_ended()
                position = stop
            else:
                position = self._trailer(data, position, stop, newline)
                if position < 0:
                    return -position - 1
        return None  # pragma: no cover - the loop returns first

    def _count(self, position: int, stop: int) -> int | None:
        if self.line + (stop - position) > self.cap:
            return position + (self.cap - self.line)
        self.line += stop - position
        return None

    def _size_line_ended(self) -> None:
        match = _HEX.match(self.size_line)
        self.line = 0
        if match is None or len(match.group().lstrip(b"0")) > 16:
            self.state = "done"  # unreadable or over 64 bits: the parser rejects it; we stop counting
            return
        size = int(match.group(), 16)
        self.size_line = b""
        self.state = "data" if size else "trailer"
        self.remaining = size

    def _trailer(self, data: bytes, position: int, stop: int, newline: int) -> int:
        """Count a piece of the trailer section; the next position, or ``-(crossing + 1)``."""
        crossing = self._count(position, stop)
        if crossing is not None:
            return -(crossing + 1)
        content = data[position : stop if newline < 0 else newline]
        if content.rstrip(b"\r"):
            self.off = True
        if newline >= 0:
            if not self.off:
                self.state = "done"  # the blank line: the trailer section, and the body, ended
            self.off = False
        return stop


class HTTP11Protocol(abc.ABC):
    """The contract of the module docstring, with the guards both backends share.

    Subclasses implement ``_encode``, ``_feed``, ``_pull``, ``_has_leftover`` and ``_next_cycle``. A backend
    reports what its parser found through ``_on_interim``, ``_on_head``, ``_on_body``, ``_on_end`` and
    ``_fail`` (an error to raise once the events before it were taken).
    """

    backend: str = "abstract"
    #: Whether the backend's parser refuses a control character (but HTAB) in a header value by itself.
    _parser_checks_values = False

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._events: deque[Event] = deque()
        self._method = b"GET"
        self._request_close = False
        self._eof = False
        self.cycles = 0
        self._reset()

    def _reset(self) -> None:
        self._sent = False  # a request went out in this cycle
        self._received = 0  # bytes of this response so far
        self._head: ResponseHead | None = None
        self._framing = _NO_FRAMING  # replaced (never changed) when the head is read
        self._has_body = True
        self._close_delimited = False
        self._interim = 0
        self._head_bytes = 0  # bytes fed before the final head completed (bounded by max_header_bytes)
        self._body_bytes = 0
        self._ended = False
        self._reusable = False
        self._error: AiotcpError | None = None
        self._prefix = b""  # the first bytes of the response, until there are enough to say "HTTP/"
        self._garbage_first = False  # the first bytes of the response cannot start a status line
        self._chunks: _ChunkScan | None = None  # the framing of a chunked body, measured (see _ChunkScan)
        self._quirks: tuple[str, ...] = ()  # of the heads of this response so far (see QUIRKS)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} state={self._state()} cycles={self.cycles} body_bytes={self._body_bytes}>"

    def _state(self) -> str:
        if self._error is not None:
            return "failed"
        if self._ended:
            return "ended"
        if self._head is not None:
            return "body"
        return "head" if self._received else "idle"

    # -- public contract ------------------------------------------------------------------------------------

    def send_request(self, request: Request) -> bytes:
        """The bytes to write for ``request``. Raises ``RuntimeError`` if the previous request's response has not
        ended (and ``start_next_cycle()`` been called since)."""
        if self._sent:
            raise RuntimeError("send_request() before the previous response ended and start_next_cycle()")
        self._sent = True
        self._method = request.method
        self._request_close = request.close
        return self._encode(request)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means EOF.

        Raises the errors of :meth:`next_event` when no events are waiting (with events waiting, the error
        comes from ``next_event`` after them). Once raised, an error is raised again by every later call.
        """
        if self._error is not None:
            raise self._error
        try:
            if not data:
                self._eof = True
            else:
                self._received += len(data)
                if len(self._prefix) < len(_HTTP_PREFIX):
                    self._check_looks_like_http(data)
            self._feed_guarded(data)
        except AiotcpError as exc:
            self._fail(exc)
            raise
        if self._error is not None and not self._events:
            raise self._error

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more bytes are needed. Raises ``protocol``, ``too_large`` or
        ``disconnected`` errors (:mod:`aiotcp.errors`)."""
        if not self._events and self._error is None:
            try:
                self._pull()
            except AiotcpError as exc:
                self._fail(exc)
        if self._events:
            event = self._events.popleft()
            return self._verdict() if event is _END_MARK else event
        if self._error is not None:
            raise self._error
        if self._eof and not self._ended:
            error = self._early_eof()
            self._fail(error)
            raise error
        return None

    def start_next_cycle(self) -> None:
        """Ready for the next request on the same connection.

        Raises ``RuntimeError`` unless the last response ended with ``ResponseEnd(reusable=True)``.
        """
        if not (self._ended and self._reusable) or self._events:
            raise RuntimeError("start_next_cycle() needs a response that ended reusable")
        self._reset()
        self.cycles += 1
        self._next_cycle()

    @property
    def response_started(self) -> bool:
        """Whether any byte of the current response has arrived (a stale keep-alive has none)."""
        return self._received > 0

    @property
    def started_with_garbage(self) -> bool:
        """Whether the current response failed on its first bytes, which cannot start a status line: no byte of
        a valid response arrived (bytes a server sent after an earlier response, or not HTTP at all)."""
        return self._garbage_first

    # -- guards shared by both backends ---------------------------------------------------------------------

    def _check_looks_like_http(self, data: bytes) -> None:
        # An SSH banner or an HTTP/0.9 body may never send the line end a parser waits for: reject as soon
        # as the first bytes cannot start "HTTP/". The same holds for what follows an interim response.
        self._prefix += data[: len(_HTTP_PREFIX) - len(self._prefix)]
        if not _HTTP_PREFIX.startswith(self._prefix):
            self._garbage_first = not self._interim
            raise self._not_http(data)

    def _not_http(self, data: bytes) -> ProtocolError:
        after = f" after {self._interim} interim (1xx) response(s)" if self._interim else ""
        return ProtocolError(f"not an HTTP/1.x response{after}: starts with {quote_bytes(data[:24])}")

    def _feed_guarded(self, data: bytes) -> None:
        cap = self.limits.max_header_bytes
        rest = b""
        late: AiotcpError | None = None  # an error at the end of what is fed, raised after its events
        if self._chunks is not None and not self._ended and data:
            crossing = self._chunks.scan(data)
            if crossing is not None:
                data, late = data[:crossing], self._framing_too_large()
        elif self._head is None and not self._ended:
            # Never hand the parser more of an unfinished head than the cap: the head must end within the
            # first max_header_bytes bytes, however they were split. The rest is fed once the head is done.
            room = cap - self._head_bytes
            data, rest = data[:room], data[room:]
            self._head_bytes += len(data)
        if data:
            self._feed(data)
        if self._head is None and not self._ended and self._error is None and self._head_bytes >= cap:
            self._pull()  # h11 parses only when asked: let it find the end of the head in what it holds
            if self._head is None and not self._ended and self._error is None:
                raise TooLarge(f"response head exceeds max_header_bytes ({cap})")
        if rest and self._error is None:
            if self._chunks is not None and late is None:  # the head ended in the part fed above
                crossing = self._chunks.scan(rest)
                if crossing is not None:
                    rest, late = rest[:crossing], self._framing_too_large()
            self._feed(rest)
        if late is not None:
            self._fail(late)
        if self._eof and self._error is None:
            self._feed(b"")

    def _fail(self, error: AiotcpError) -> None:
        if self._error is None:
            self._error = error

    def _framing_too_large(self) -> TooLarge:
        return TooLarge(f"chunk-size line or trailer section exceeds max_header_bytes ({self.limits.max_header_bytes})")

    def _start_scan(self, after_head: bytes) -> None:
        """The head said chunked: measure the body's framing from here; ``after_head`` is what the backend
        already holds of the body (fed with the head)."""
        self._chunks = _ChunkScan(self.limits.max_header_bytes)
        if after_head and self._chunks.scan(after_head) is not None:
            self._fail(self._framing_too_large())

    def _check_head(
        self, status: int, reason: bytes, version: bytes, headers: HeaderList, fields: HeaderList | None
    ) -> _Framing:
        """The rules every head (interim or final) must meet, whichever parser read it; and its framing.

        ``fields``: the headers whose name has the length of a framing header's, when the backend set them
        aside while parsing (else every header is looked at).
        """
        if _CTL_BYTE.search(reason):
            if _BAD_CTL_BYTE.search(reason):
                raise ProtocolError(f"invalid character in the reason phrase {quote_bytes(reason)}")
            self._quirk("ctl_in_reason")
        if version not in _VERSIONS:
            raise ProtocolError(f"unsupported HTTP version {version.decode('ascii', 'replace')!r}")
        if status < 100:
            raise ProtocolError(f"invalid status code {status:03d}")
        if status == 101:
            raise ProtocolError("unexpected 101 Switching Protocols: no upgrade was requested")
        # One scan of all the values (TAB, allowed, joins them) instead of one per header: the hot path.
        if not self._parser_checks_values and _CTL_BYTE.search(b"\t".join([value for _, value in headers])):
            for name, value in headers:
                if _BAD_CTL_BYTE.search(value):
                    raise ProtocolError(
                        f"invalid character in the value of header {quote_bytes(name)}: {quote_bytes(value)}"
                    )
                if _CTL_BYTE.search(value):
                    self._quirk("ctl_in_header_value")
        framing = _Framing()
        for name, value in headers if fields is None else fields:
            if len(name) not in _FRAMING_NAME_LENGTHS:
                continue  # not one of the three names below: no need to lowercase it
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                if framing.chunked or value.lower() != b"chunked":
                    raise ProtocolError(f"unsupported Transfer-Encoding {quote_bytes(value)} (only one 'chunked')")
                framing.chunked = True
            elif lowered == b"content-length":
                if not _CONTENT_LENGTH.fullmatch(value):
                    raise ProtocolError(f"bad Content-Length {quote_bytes(value)}")
                framing.length = True
            elif (
                lowered == b"connection"
                and b"close" in value.lower()  # the cheap test first; then the exact one
                and b"close" in _comma_values([(name, value)], lowered)
            ):
                framing.close = True
        return framing

    def _quirk(self, quirk: str) -> None:
        if quirk not in self._quirks:
            self._quirks = (*self._quirks, quirk)

    def _on_interim(
        self, status: int, reason: bytes, version: bytes, headers: HeaderList, fields: HeaderList | None = None
    ) -> None:
        self._check_head(status, reason, version, headers, fields)
        self._interim += 1
        if self._interim > self.limits.max_interim:
            raise TooLarge(f"more than {self.limits.max_interim} interim (1xx) responses")

    def _on_head(self, head: ResponseHead, fields: HeaderList | None = None) -> None:
        if len(head.headers) > self.limits.max_headers:
            raise TooLarge(f"response has {len(head.headers)} headers, more than {self.limits.max_headers}")
        framing = self._check_head(head.status_code, head.reason, head.http_version, head.headers, fields)
        head.interim = self._interim
        if head.http_version == b"1.0":
            self._quirk("http10")
        if not head.reason:
            self._quirk("no_reason")
        if self._quirks:  # in the order of QUIRKS: the backends find them in different orders
            head.quirks = tuple(quirk for quirk in QUIRKS if quirk in self._quirks)
        self._head = head
        self._framing = framing
        self._has_body = self._method != b"HEAD" and head.status_code not in _NO_BODY_STATUS
        self._close_delimited = self._has_body and not (framing.chunked or framing.length)
        self._events.append(head)
        if self._has_body and framing.chunked:
            self._start_scan(self._held_after_head())

    def _on_body(self, data: bytes) -> None:
        self._body_bytes += len(data)
        cap = self.limits.max_body_bytes
        if cap is not None and self._body_bytes > cap:
            raise TooLarge(f"response body exceeds max_body_bytes ({cap})")
        self._events.append(data)

    def _on_end(self) -> None:
        self._ended = True
        self._events.append(_END_MARK)

    def _verdict(self) -> ResponseEnd:
        """Whether the connection may carry another request, and if not the first reason why (in this order)."""
        head = self._head
        assert head is not None
        why: str | None = None
        framing = self._framing
        if self._has_leftover():
            why = "unexpected bytes after the response"
        elif framing.chunked and framing.length:
            why = "Transfer-Encoding and Content-Length both present"
        elif self._close_delimited:
            why = "body was delimited by the connection closing"
        elif self._request_close:
            why = "the request asked to close the connection"
        elif framing.close:
            why = "server asked to close the connection"
        elif head.http_version != b"1.1":
            why = f"HTTP/{head.http_version.decode('ascii')} response: no keep-alive"
        elif self._eof:
            why = "server closed the connection"
        self._reusable = why is None
        return _REUSABLE if why is None else ResponseEnd(False, why)

    def _early_eof(self) -> Disconnected:
        if not self._received:
            return NoResponse("server closed the connection without sending a response (0 bytes received)")
        if self._head is None:
            return Disconnected(
                f"server closed the connection in the middle of the response head (after {self._received} bytes)"
            )
        return Disconnected(f"server closed the connection before the body was complete (got {self._body_bytes} bytes)")

    # -- backend hooks --------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _encode(self, request: Request) -> bytes:
        """The request's bytes, as this backend frames them."""

    @abc.abstractmethod
    def _feed(self, data: bytes) -> None:
        """Hand bytes to the parser (``b""``: EOF). Errors go to ``_fail`` or are raised."""

    def _pull(self) -> None:  # noqa: B027 - a default: push parsers (httptools) queue events from callbacks
        """Move parsed events into ``self._events``."""

    @abc.abstractmethod
    def _has_leftover(self) -> bool:
        """Whether bytes arrived beyond the end of the response."""

    def _held_after_head(self) -> bytes:
        """Bytes the parser was fed beyond the final head and has not parsed yet (when the head completes)."""
        return b""

    @abc.abstractmethod
    def _next_cycle(self) -> None:
        """Reset the parser for the next response on the same connection."""


class H11Protocol(HTTP11Protocol):
    """The reference backend: h11 frames the request and parses the response."""

    backend = "h11"

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        # In the head, our cap (in _feed_guarded) fires first; in a chunked body, _ChunkScan's. h11's own cap
        # (on what it holds unparsed) is the backstop.
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.limits.max_header_bytes)
        self._log: bytes | bytearray = b""  # what was fed since the last head ended: h11 hides some quirks

    def _encode(self, request: Request) -> bytes:
        try:
            head = self._conn.send(request.as_h11())
            tail = self._conn.send(h11.Data(data=request.body)) if request.body else b""
            end = self._conn.send(_H11_END)
        except h11.LocalProtocolError as exc:  # Request validated already; this is a belt to its braces
            raise InvalidHeader(f"request rejected by h11: {exc}") from exc
        return (head or b"") + (tail or b"") + (end or b"")

    def _feed(self, data: bytes) -> None:
        if self._head is None and data:
            # Kept for _head_bytes. Usually the whole head comes in one read: then this is that read, not a copy.
            if not self._log:
                self._log = data
            else:
                if isinstance(self._log, bytes):
                    self._log = bytearray(self._log)
                self._log += data
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
                if self._eof and exc.error_status_hint != 431:
                    raise self._early_eof() from exc
                raise map_h11_error(exc) from exc
            self._check_chunk_size(event)
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                self._raw_quirks(len(event.headers))
                self._on_interim(
                    event.status_code, bytes(event.reason), bytes(event.http_version), list(event.headers.raw_items())
                )
                # The next head's first bytes are judged like the first response's (h11 would wait for the line
                # end, then the blank line, that garbage after a 1xx may never send): those h11 holds now,
                # then those of the next feeds (receive_data), until there are enough to say "HTTP/".
                self._prefix = b""
                held = conn.trailing_data[0]
                if held:
                    self._check_looks_like_http(held)
            elif isinstance(event, h11.Response):
                self._raw_quirks(len(event.headers), final=True)
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
                self._on_end()
            elif isinstance(event, h11.ConnectionClosed):
                raise self._early_eof()

    def _raw_quirks(self, fields: int, *, final: bool = False) -> None:
        """The quirks of the head h11 just returned, from the bytes fed (less what h11 still holds); then
        forget those bytes."""
        log = self._log
        end = max(0, len(log) - len(getattr(self._conn, "_receive_buffer", b"")))
        for quirk in _raw_head_quirks(log, end, fields):
            self._quirk(quirk)
        self._log = b"" if final else log[end:]

    def _check_chunk_size(self, event: object) -> None:
        # h11 takes up to 20 hex digits of chunk size; llhttp rejects a size beyond 64 bits, and so do we.
        # h11 keeps the size on its reader, not in its events: read it there (the part not yet returned, plus
        # what this event returns of a chunk it starts), and skip the check if h11 moved it.
        remaining = getattr(getattr(self._conn, "_reader", None), "_bytes_in_chunk", 0)
        if isinstance(event, h11.Data) and event.chunk_start:
            remaining += len(event.data)
        if remaining > _MAX_CHUNK_SIZE:
            raise ProtocolError("chunk size does not fit in 64 bits")

    def _has_leftover(self) -> bool:
        return bool(self._conn.trailing_data[0])

    def _held_after_head(self) -> bytes:
        # h11 parses lazily: what followed the head in the feeds so far waits in its receive buffer.
        buffer = getattr(self._conn, "_receive_buffer", None)
        return bytes(buffer) if buffer is not None else b""

    def _next_cycle(self) -> None:
        self._log = b""
        self._conn.start_next_cycle()


_MAX_CHUNK_SIZE: Final = 2**64 - 1
_PLAIN_STATUS_PREFIXES: Final = (b"HTTP/1.1 ", b"HTTP/1.0 ")
_NO_BODY_STATUS_BYTES: Final = (b"204", b"304")


class _Rewind(Exception):
    """Raised by a callback to leave a speculative feed (see ``HttptoolsProtocol._feed_whole``)."""


_BLANK_LINE = re.compile(rb"\n\r?\n")  # how llhttp (with lenient_optional_cr_before_lf) ends a head

# llhttp's words for the errors that the quirks it refuses cause (whatever the split, it says the same).
_QUIRK_ERRORS: Final = frozenset(
    {
        "Invalid header value char",  # a control character in a value
        "Unexpected whitespace after header value",  # obs-fold
        "Duplicate Content-Length",
        "Invalid character in Content-Length",  # "5, 5"
    }
)
_BAD_CTL_IN_HEAD = re.compile(rb"[\x00\x0b\x0c]")  # never a quirk (see _CTL_BYTE); CR and LF llhttp judges
_OBS_FOLD = re.compile(rb"\r?\n[ \t]+")


@dataclass(slots=True)
class _Disguise:
    """Control characters of a head replaced, in order, by ``marker`` (a byte the head does not hold)."""

    marker: bytes
    originals: list[bytes]

    def undo(self, headers: HeaderList) -> tuple[HeaderList, HeaderList]:
        """``headers`` with their control characters back, and the ones among them that may frame the body."""
        originals = iter(self.originals)
        restored: HeaderList = []
        for name, value in headers:
            if self.marker in value:
                pieces = value.split(self.marker)
                value = pieces[0] + b"".join(next(originals, b"") + piece for piece in pieces[1:])
            restored.append((name, value))
        fields = [
            (name, value.lower() if name.lower() == b"transfer-encoding" else value)
            for name, value in restored
            if len(name) in _FRAMING_NAME_LENGTHS
        ]
        return restored, fields


def _tolerated_head(head: bytes) -> tuple[bytes, list[str], _Disguise | None] | None:
    """``head`` (complete, refused by llhttp) rewritten so that llhttp reads it as h11 does: folded lines unfolded
    with one space, repeated equal Content-Length fields made one, control characters in the fields disguised.
    With the quirks found; ``None`` when there was nothing to rewrite."""
    status_end = head.find(b"\n") + 1
    status, fields = head[:status_end], head[status_end:]
    quirks: list[str] = []
    if fields[:1] not in (b" ", b"\t") and _OBS_FOLD.search(fields):  # a fold of the status line h11 refuses too
        fields = _OBS_FOLD.sub(b" ", fields)
        quirks.append("obs_fold")
    lines = fields.split(b"\n")
    length: bytes | None = None
    kept: list[bytes] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if colon and name.lower() == b"content-length":
            values = {part.strip(b" \t\r") for part in value.split(b",")}
            if len(values) != 1 or (length is not None and values != {length}):
                return None  # conflicting lengths: an error, which llhttp reports
            if length is not None:
                _add_quirk(quirks, "duplicate_content_length_equal")
                continue  # the same length again
            length = values.pop()
            if b"," in value:
                _add_quirk(quirks, "duplicate_content_length_equal")
                line = b"Content-Length: " + length + (b"\r" if line.endswith(b"\r") else b"")
        kept.append(line)
    if "duplicate_content_length_equal" in quirks:
        fields = b"\n".join(kept)
    disguise: _Disguise | None = None
    if _TOLERATED_CTL_BYTE.search(fields):
        present = set(head)
        marker = next((byte for byte in range(0x80, 0x100) if byte not in present), None)
        if marker is not None:  # else a head holding all 128 of them: llhttp refuses it, with its own words
            disguise = _Disguise(bytes([marker]), _TOLERATED_CTL_BYTE.findall(fields))
            fields = _TOLERATED_CTL_BYTE.sub(disguise.marker, fields)
            quirks.append("ctl_in_header_value")
    return (status + fields, quirks, disguise) if quirks else None


class HttptoolsProtocol(HTTP11Protocol):
    """The fast backend: llhttp (through httptools) parses; :meth:`Request.encode` frames the request.

    llhttp runs its callbacks inside ``feed_data``; an error they raise, or llhttp's own, is kept (``_fail``)
    and raised after the events parsed before it.
    """

    backend = "httptools"
    _parser_checks_values = True  # llhttp's header-value rule is the one _check_head holds h11 to

    def __init__(self, limits: Limits | None = None) -> None:
        if _httptools is None:
            raise ImportError("httptools is not installed")
        super().__init__(limits)
        self._httptools = _httptools
        self._parser = self._new_parser()
        self._leftover = False  # bytes arrived after the response ended
        self._speculating = False  # in _feed_whole
        self._lenient = False  # the parser takes a bare LF ending a line (see _new_parser)
        self._stall = 0  # bytes fed since the body last made progress (see _feed)
        self._progress = False
        self._reset_message()

    def _new_parser(self, *, lenient: bool = False) -> object:
        parser = self._httptools.HttpResponseParser(self)
        # Leniencies that make llhttp read what h11 reads: Transfer-Encoding + Content-Length as chunked
        # (never reused, see _verdict); whitespace after a chunk size; with ``lenient``, a bare LF ending a line
        # (see _set_lenient). Not lenient_headers: it would let a CR end a line and a continuation line start
        # the headers, which h11 refuses.
        parser.set_dangerous_leniencies(
            lenient_chunked_length=True,
            lenient_spaces_after_chunk_size=True,
            lenient_optional_cr_before_lf=lenient,
        )
        self._lenient = lenient
        return parser

    def _set_lenient(self, lenient: bool) -> None:
        """Whether a bare LF may end a line. A head fed the careful way may have them (h11 reads them: the
        ``bare_lf`` quirk, found in the bytes kept); a chunked body may not (h11 wants CRLF there); a head fed
        whole, speculatively, may not either, so that one with a bare LF goes the careful way, where it is seen
        -- the usual head pays nothing to be checked for one."""
        if lenient != self._lenient:
            self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=lenient)  # type: ignore[attr-defined]
            self._lenient = lenient

    def _reset_message(self) -> None:
        self._reason = bytearray()
        self._raw_headers: HeaderList = []
        self._fields: HeaderList = []  # the headers that may frame the message (see _check_head)
        self._restart = False  # an interim head ended: continue with a fresh parser
        self._log: bytes | bytearray = b""  # the bytes of this head so far, fed the careful way
        self._held: bytearray | None = None  # a head llhttp refused for a quirk, held until it is complete
        self._disguise: _Disguise | None = None  # how the head now being parsed was rewritten for llhttp
        self._tail = b""  # the last bytes fed of an unfinished head (a blank line may span two feeds)
        self._next_prefix: bytes | None = None  # the first bytes after an interim head, until there are 5

    def _encode(self, request: Request) -> bytes:
        return request.encode()

    def _feed(self, data: bytes) -> None:
        if not data:
            # EOF: llhttp has no finish call through httptools. A body with no framing ends here; any other
            # unfinished response is classified by next_event.
            if self._head is not None and not self._ended and self._close_delimited:
                self._on_end()
            return
        self._progress = False
        scanned = self._chunks is not None  # the body's framing was measured before this feed (_feed_guarded)
        view = memoryview(data)
        start = 0
        # While the head is unfinished, feed up to each blank line, so we know where each head ends: llhttp
        # would read a body after a 1xx other than 100/102/103 (h11 never does; we restart the parser
        # instead), and a reply that ends with its head (HEAD, 204, 304) must see what follows as leftover,
        # while llhttp may go on reading the body the headers announced, silently for chunk-size lines.
        while start < len(data) and self._head is None and self._error is None:
            end = self._next_blank_line(data, start)
            if self._next_prefix is not None and len(self._next_prefix) < len(_HTTP_PREFIX):
                # After an interim head the fresh parser would skip blank lines, or take "RTSP/" or "ICE/";
                # h11 takes none of them.
                self._next_prefix += data[start:end][: len(_HTTP_PREFIX) - len(self._next_prefix)]
                if not _HTTP_PREFIX.startswith(self._next_prefix):
                    self._fail(self._not_http(data[start:end]))
                    break
            if self._held is not None:
                self._hold(data[start:end])
            else:
                self._log_head(view[start:end])
                if not self._lenient:
                    self._set_lenient(True)
                self._parse(view[start:end])
                if self._error is not None and self._head is None and self._may_be_quirk(self._error):
                    self._error = None
                    self._held = bytearray()
                    self._hold(self._log)
            self._keep_tail(data[max(start, end - 2) : end])
            start = end
            if self._restart:
                self._parser = self._new_parser()
                self._next_prefix = b""
                self._tail = b""
                self._restart = False
        late: AiotcpError | None = None
        if not scanned and self._chunks is not None and self._error is None:
            # The head ended in this feed: measure the framing of the body that follows it here.
            crossing = self._chunks.scan(data[start:])
            if crossing is not None:
                data, late = data[: start + crossing], self._framing_too_large()
                view = memoryview(data)
        if data[-1:] in (b"\r", b"\n") and not self._ended:
            # llhttp skips CR and LF between messages without a callback (any other byte starts a message or
            # fails), so a CR or LF after the end of a response could go unseen. Hold the last one back: if
            # the response ends before it, _parse calls it leftover.
            self._parse(view[start:-1])
            self._parse(view[-1:] if start < len(data) else view[:0])
        else:
            self._parse(view[start:])
        if late is not None:
            self._fail(late)
        self._count_stall(len(data))

    def _count_stall(self, fed: int) -> None:
        if self._head is not None and not self._ended and self._error is None:
            # llhttp (through httptools) buffers a trailer field until it ends, and says nothing while it reads
            # a chunk-size line. _ChunkScan bounds both exactly; this is the backstop for what it stops
            # following: the bytes fed without progress (body, a chunk header, a chunk's end), counted per feed,
            # so bounded by the cap plus one feed.
            self._stall = 0 if self._progress else self._stall + fed
            if self._stall > self.limits.max_header_bytes:
                self._fail(
                    TooLarge(f"chunk header or trailers exceed max_header_bytes ({self.limits.max_header_bytes})")
                )

    # -- the common case in one feed ------------------------------------------------------------------------
    #
    # Feeding up to each blank line (above) is needed only for heads llhttp must not read past: interim ones,
    # those of replies without a body, and chunked ones (whose framing is measured before llhttp reads it).
    # The usual response -- a final status with a Content-Length, all in the first read -- is fed whole
    # instead, speculatively: on any surprise (a chunked head, any error) the feed is undone and done again
    # the careful way, so what comes out is exactly what the careful way gives. The per-read guards of
    # receive_data cannot fire on such a read (it starts "HTTP/1.x", it is shorter than the head cap, nothing
    # came before it), so it skips them too.

    def receive_data(self, data: bytes) -> None:
        if (
            not self._received
            and 12 < len(data) < self.limits.max_header_bytes
            and self._plain_response_start(data)
            and self._feed_whole(data)
        ):
            return
        super().receive_data(data)

    def _plain_response_start(self, data: bytes) -> bool:
        """Whether the response starts with a final status that has a body (2xx-5xx but 204 and 304), to a
        request other than HEAD: the heads that need no blank-line split unless chunked."""
        return (
            data[:9] in _PLAIN_STATUS_PREFIXES
            and 0x32 <= data[9] <= 0x35  # "2".."5"
            and data[9:12] not in _NO_BODY_STATUS_BYTES
            and self._method != b"HEAD"
        )

    def _feed_whole(self, data: bytes) -> bool:
        """Feed the first read of a response in one go. False when it was undone (then feed it carefully)."""
        self._received = self._head_bytes = len(data)
        self._prefix = _HTTP_PREFIX
        self._speculating = True
        try:
            if data[-1:] in (b"\r", b"\n"):  # the last CR or LF is held back, as in the careful way
                view = memoryview(data)
                self._parse(view[:-1])
                self._parse(view[-1:])
            else:
                self._parse(data)
        finally:
            self._speculating = False
        if self._error is None:
            if self._head is None:  # the head goes on in the next read, where the careful way takes over
                self._keep_tail(data[-2:])
                self._log_head(data)
            return True
        self._rewind()
        return False

    def _rewind(self) -> None:
        """Back to the state before a speculative feed: a fresh cycle whose request went out."""
        self._reset()
        self._sent = True
        self._events.clear()
        self._parser = self._new_parser()
        self._leftover = False
        self._stall = 0
        self._reset_message()

    # -- quirks llhttp refuses ------------------------------------------------------------------------------
    #
    # llhttp refuses three quirks that h11 reads (see QUIRKS): a control character in a header value, obs-fold
    # and a repeated equal Content-Length. When llhttp refuses a head with one of the errors they cause, the
    # head is held until its blank line, rewritten the way h11 reads it (_tolerated_head) and fed to a fresh
    # parser; the values are given back their control characters once parsed. llhttp reports the first error
    # in the bytes whatever the split, so whether a head is held does not depend on the split either. What
    # the rewrite does not cure, llhttp refuses again.

    def _may_be_quirk(self, error: AiotcpError) -> bool:
        cause = error.__cause__
        return (
            isinstance(cause, self._httptools.HttpParserError)
            and str(cause) in _QUIRK_ERRORS
            and not _BAD_CTL_IN_HEAD.search(self._log)
        )

    def _hold(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        assert held is not None
        held += data
        if _BAD_CTL_IN_HEAD.search(data):
            self._fail(ProtocolError(f"invalid character in the response head: {quote_bytes(bytes(held[-64:]))}"))
            return
        if not (held.endswith(b"\n\n") or held.endswith(b"\n\r\n")):
            return  # the head goes on
        head = bytes(held)
        self._held = None
        self._log = b""
        # Parsed again from its first byte, by a fresh parser: forget what the one that refused it reported.
        self._parser = self._new_parser(lenient=True)
        self._reason = bytearray()
        self._raw_headers = []
        self._fields = []
        if head.count(b"\n") != head.count(b"\r\n"):
            self._quirk("bare_lf")
        tolerated = _tolerated_head(head)
        if tolerated is None:
            self._parse(head)  # nothing to cure: llhttp refuses it again, with its own words
            return
        rewritten, quirks, self._disguise = tolerated
        for quirk in quirks:
            self._quirk(quirk)
        self._parse(rewritten)

    def _log_head(self, data: bytes | memoryview) -> None:
        if not self._log:
            self._log = bytes(data)
        else:
            if isinstance(self._log, bytes):
                self._log = bytearray(self._log)
            self._log += data

    def _keep_tail(self, fed: bytes) -> None:
        """Remember the last two bytes fed of an unfinished head, across feeds however short (a blank line
        may begin two feeds back: "\n" | "\r" | "\n")."""
        self._tail = fed if len(fed) >= 2 else (self._tail + fed)[-2:]

    def _next_blank_line(self, data: bytes, start: int) -> int:
        """Where the first blank line from ``start`` ends (a head can end only there), else ``len(data)``."""
        if start == 0 and self._tail:  # one that began in the last feed
            joined = self._tail + data[:2]
            match = _BLANK_LINE.search(joined)
            if match and match.end() > len(self._tail):
                return match.end() - len(self._tail)
        match = _BLANK_LINE.search(data, start)
        return match.end() if match else len(data)

    def _parse(self, data: memoryview | bytes) -> None:
        if not data or self._error is not None:
            return
        if self._ended:
            self._leftover = True
            return
        httptools = self._httptools
        try:
            self._parser.feed_data(data)  # type: ignore[attr-defined]
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, AiotcpError):
                self._fail(context)
            else:  # _Rewind (the error is dropped with the rest of the feed); nothing else is raised by callbacks
                self._fail(_chained(ProtocolError(f"malformed response: {exc}"), exc))
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._ended:  # garbage (or an upgrade) after a complete response: leftover, not a bad response
                self._leftover = True
            else:
                self._fail(_chained(ProtocolError(f"malformed response: {exc}"), exc))

    # -- llhttp callbacks -----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._ended:
            self._leftover = True

    def on_status(self, status: bytes) -> None:
        if self._head is None and not self._ended:
            self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        # After the head: trailer fields, dropped as h11 does (and never added to the head already returned).
        if self._head is None and not self._ended:
            value = value.strip(b" \t")  # llhttp keeps trailing whitespace; h11 strips it
            if len(name) in _FRAMING_NAME_LENGTHS:
                if len(name) == 17 and name.lower() == b"transfer-encoding":
                    value = value.lower()  # as h11 reports it
                self._fields.append((name, value))
            self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._ended or self._head is not None:
            return
        if self._disguise is not None:
            self._raw_headers, self._fields = self._disguise.undo(self._raw_headers)
            self._disguise = None
        if self._log and self._log.count(b"\n") != self._log.count(b"\r\n"):  # a head fed the careful way
            self._quirk("bare_lf")
        parser = self._parser
        status = parser.get_status_code()  # type: ignore[attr-defined]
        version = parser.get_http_version().encode("ascii")  # type: ignore[attr-defined]
        if 100 <= status < 200:
            self._on_interim(status, bytes(self._reason), version, self._raw_headers, self._fields)
            self._reset_message()
            self._restart = True
            return
        self._on_head(ResponseHead(status, bytes(self._reason), version, self._raw_headers), self._fields)
        self._progress = True
        if self._framing.chunked:
            if self._speculating:
                raise _Rewind  # the chunk framing must be measured before llhttp reads it: the careful way
            # h11 wants CRLF ending the lines of a chunked body. (Other bodies have no lines.)
            self._set_lenient(False)
        if not self._has_body:
            # llhttp does not know the request method, so it may wait for a body a HEAD reply never has.
            self._on_end()

    def on_body(self, body: bytes) -> None:
        if self._ended:
            self._leftover = True
            return
        self._progress = True
        self._on_body(body)

    def on_chunk_header(self) -> None:
        self._progress = True

    def on_chunk_complete(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        if not self._ended and not self._restart:
            self._on_end()

    # -- cycle ----------------------------------------------------------------------------------------------

    def _has_leftover(self) -> bool:
        return self._leftover

    def _next_cycle(self) -> None:
        if self._method == b"HEAD":
            # Start clean: after a HEAD reply llhttp may still wait for the body the headers announced.
            self._parser = self._new_parser()
        elif self._lenient:
            self._set_lenient(False)  # the next head may be fed whole
        self._leftover = False
        self._stall = 0
        self._reset_message()


class PlainResponseParser:
    """llhttp alone, for the response most servers send to a GET: vouches for it, or says it cannot.

    For an engine that cannot afford :class:`HttptoolsProtocol` on every response (the prober's lean engine,
    one response per connection): it feeds the reads here and, the moment :meth:`feed` returns False, replays
    every read so far into a fresh :class:`HttptoolsProtocol` and goes on with that. So whatever comes out of
    this parser is what :class:`HttptoolsProtocol` would have given, and anything else is HttptoolsProtocol's
    verdict itself (tests/test_plain_response.py checks both on the hostile corpus and at hypothesis splits).

    It vouches only for this shape: the first read holds the whole final head, shorter than
    ``max_header_bytes``, of an HTTP/1.0 or 1.1 response with a status of 200-599 but 204 and 304, to a GET
    (so a body follows, and no interim response, upgrade or HEAD rule applies); llhttp finds no error; at most
    ``max_headers`` fields, no Transfer-Encoding, at most one Content-Length of 1-19 digits, and a reason
    phrase without control characters. On such a head HttptoolsProtocol's only other work is on the verdict of
    reuse (which a one-shot connection does not need) and its quirks, which can only be ``http10`` and
    ``no_reason`` (set here the same way): its events are this head, the body bytes as llhttp gives them, and
    the end. Bytes after the end are ignored (leftover).
    EOF before the end (``feed(b"")``) is not vouched for: the error message is HttptoolsProtocol's to give.
    """

    __slots__ = ("_checked", "_parser", "_reason", "_vouched", "body", "complete", "head", "headers")

    def __init__(self) -> None:
        if _httptools is None:
            raise ImportError("httptools is not installed")
        self._parser: Any = _httptools.HttpResponseParser(self)
        self._reason = b""
        self.headers: HeaderList = []
        #: The head, once vouched for.
        self.head: ResponseHead | None = None
        #: The body bytes so far.
        self.body = bytearray()
        #: Whether the response ended.
        self.complete = False
        self._vouched = True
        self._checked = False  # the head was held to the rules above

    def __repr__(self) -> str:
        state = "complete" if self.complete else "body" if self.head is not None else "head"
        return f"<PlainResponseParser {state} vouched={self._vouched} body_bytes={len(self.body)}>"

    def close(self) -> None:
        """Let go of llhttp, which holds this parser's callbacks: a reference cycle per response otherwise, left
        to the garbage collector (whose passes cost every probe CPU). Feed nothing after."""
        self._parser = None
        self._vouched = False

    def feed(self, data: bytes, limits: Limits) -> bool:
        """Feed one read (``b""``: EOF). False when this parser cannot vouch for the response (then replay
        every read into :class:`HttptoolsProtocol`); True when :attr:`head`, :attr:`body` and
        :attr:`complete` are what it would give so far."""
        if not self._vouched:
            return False
        if self.complete:
            return True
        if (
            self.head is None
            and not (
                12 < len(data) < limits.max_header_bytes
                and data[:9] in _PLAIN_STATUS_PREFIXES
                and 0x32 <= data[9] <= 0x35  # "2".."5"
                and data[9:12] not in _NO_BODY_STATUS_BYTES
            )
        ):
            self._vouched = False
            return False
        if not data:  # EOF before the end
            self._vouched = False
            return False
        try:
            self._parser.feed_data(data)
        except Exception:  # llhttp's errors, an upgrade, a callback's: HttptoolsProtocol tells them apart
            if not self.complete:  # (after the end: leftover, as HttptoolsProtocol has it)
                self._vouched = False
        if self.head is None:  # the head did not end in the first read
            self._vouched = False
        return self._vouched and self._check(limits)

    def _check(self, limits: Limits) -> bool:
        head = self.head
        if head is None or self._checked:
            return True
        self._checked = True
        lengths = 0
        for name, value in head.headers:
            if len(name) == 17 and name.lower() == b"transfer-encoding":
                self._vouched = False
            elif len(name) == 14 and name.lower() == b"content-length":
                lengths += 1
                if not _CONTENT_LENGTH.fullmatch(value):
                    self._vouched = False
        # A control character in the reason phrase is an error or a quirk (ctl_in_reason): HttptoolsProtocol's
        # to tell apart.
        if lengths > 1 or len(head.headers) > limits.max_headers or _CTL_BYTE.search(head.reason):
            self._vouched = False
        # The quirks such a head can have (llhttp refuses the others here: a bare LF, obs-fold, a control
        # character in a value, a repeated Content-Length), in the order of QUIRKS, as HttptoolsProtocol lists them.
        if head.http_version == b"1.0":
            head.quirks = ("http10", "no_reason") if not head.reason else ("http10",)
        elif not head.reason:
            head.quirks = ("no_reason",)
        return self._vouched

    # -- llhttp callbacks -----------------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        if self.head is None:
            self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head is None:
            self.headers.append((name, value.strip(b" \t")))  # llhttp keeps trailing whitespace; h11 strips it

    def on_headers_complete(self) -> None:
        if self.head is None:
            parser = self._parser
            version = parser.get_http_version().encode("ascii")
            self.head = ResponseHead(parser.get_status_code(), self._reason, version, self.headers)

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def _chained(error: AiotcpError, cause: BaseException) -> AiotcpError:
    error.__cause__ = cause
    return error


Backend = Literal["h11", "httptools"]


def available_backends() -> list[str]:
    """Backends that can run here, fastest first."""
    backends = [] if _httptools is None else ["httptools"]
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
