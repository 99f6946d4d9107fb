"""The built-in loopback target server: ``aiotcp serve``, ``aiotcp demo``, the test fixtures, and the load
generator's target when nginx is missing.

Theory of operation
-------------------
Each accepted connection is an :class:`asyncio.Protocol` (no streams: one Python call per read is what
makes it fast). Its parser -- ``httptools`` when importable, else ``h11`` -- turns bytes into complete
requests; :func:`_route` turns a request into a :class:`_Reply` without any I/O; the connection writes the
reply. Replies are plain bytes built once and cached per (method, target, connection mode), so the hot path
for ``GET /`` is: parse, one dict lookup, one ``transport.write``.

Ordering. Replies leave in request order. A reply that can be written at once (no delay, body inline) is
written straight from the parser callback *only* when nothing is queued ahead of it and the transport is
not paused; otherwise it joins the connection's queue, which one task per connection drains in order
(sleeping for ``/delay``, streaming large bodies under flow control). So ``/delay/100`` followed by ``/``
in one pipelined write answers ``/delay`` first.

Back-pressure. Reading pauses while the transport's write buffer is above its high-water mark or when
``_MAX_QUEUED`` replies wait, so a client that pipelines without reading cannot grow our memory beyond one
read's worth of queued replies plus one inline body.

Closing. ``Connection: close``, HTTP/1.0 without keep-alive, ``/close`` and a malformed request each
produce a reply marked ``close``: once it is submitted the connection ignores further input, and once it
is written we send FIN and discard input until the client closes too (at most ``_LINGER_S``), because
closing a socket with unread input would make the kernel answer with RST and destroy an unread reply. EOF
from the client while replies are still queued keeps the write side open until they are written.

Counters. ``requests_served`` counts replies whose last byte has been handed to ``transport.write``;
``connections_accepted`` counts ``connection_made`` calls. Both change only on the event-loop thread.

No ``Date`` header: RFC 9110 section 6.6.1 asks origin servers with a clock to send one, but it would have to
be formatted (or at least re-cached every second) and spliced into every response, which rules out serving
pre-built bytes. This server exists to be a fast, predictable target for aiotcp's client; nothing here
caches or validates responses by date, so we deliberately omit it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gzip
import ipaddress
import json
import random
import socket
import sys
import threading
import urllib.parse
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from typing import Any, Literal, TypeVar, cast

import h11

from ._version import __version__
from .accelerators import httptools
from .accelerators import uvloop as _uvloop

__all__ = [
    "MAX_BYTES",
    "MAX_COMPRESSED_BYTES",
    "MAX_DELAY_MS",
    "NotLoopback",
    "ParserName",
    "SilentServer",
    "TargetServer",
    "refused_port",
    "running_in_thread",
    "running_silent_in_thread",
    "serve_forever",
]

ParserName = Literal["auto", "httptools", "h11"]

#: Largest N accepted by ``/bytes/N`` and ``/chunked/N``.
MAX_BYTES = 100_000_000
#: Largest MS accepted by ``/delay/MS``.
MAX_DELAY_MS = 60_000

# Request line plus headers larger than this get a 400; it bounds what a parser buffers for one request.
_MAX_HEAD = 64 * 1024
# Bodies up to this size are built into the reply bytes (and cached); larger ones are streamed.
_INLINE_MAX = 64 * 1024
# Replies queued behind a delayed or streamed one before the connection stops reading.
_MAX_QUEUED = 64
# Cache bounds, per server: targets come from clients, so neither may grow without limit.
_CACHE_MAX_ENTRIES = 1024
_CACHE_MAX_BYTES = 8 * 1024 * 1024
# After the last reply of a closing connection: how long to keep discarding input before closing.
_LINGER_S = 2.0
# How long aclose() lets connections flush before aborting them.
_CLOSE_GRACE_S = 2.0
# Bounded waits of running_in_thread().
_THREAD_START_TIMEOUT_S = 10.0
_THREAD_STOP_TIMEOUT_S = 10.0

# Connection modes: bit 0 = close after this reply, bit 1 = the request was not HTTP/1.1.
_KEEP_11 = 0
_CLOSE_11 = 1
_KEEP_10 = 2
_CLOSE_10 = 3
_CLOSE_BIT = 1
_HTTP10_BIT = 2

_SERVER_HEADER = f"Server: aiotcp-serve/{__version__}\r\n".encode("ascii")
_CONNECTION_HEADER = {
    _KEEP_11: b"",  # HTTP/1.1 is persistent by default
    _CLOSE_11: b"Connection: close\r\n",
    _KEEP_10: b"Connection: keep-alive\r\n",  # an HTTP/1.0 client needs to hear that we kept it open
    _CLOSE_10: b"Connection: close\r\n",
}

_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_OCTETS = "application/octet-stream"
_JSON = "application/json"
_ALLOW = (("Allow", "GET, HEAD"),)

_INDEX_BODY = (
    b"<!DOCTYPE html>\n"
    b'<html><head><meta charset="utf-8"><title>aiotcp test server</title></head>\n'
    b"<body><h1>aiotcp test server</h1>\n"
    b"<p>Routes: / /bytes/N /chunked/N /delay/MS /status/CODE /redirect/N /redirect-to?url=URL"
    b" /headers /close /gzip/N /deflate/N /br/N /zstd/N /cookies /cookies/set?NAME=VALUE /anything</p>"
    b"</body></html>\n"
)
_CLOSE_BODY = b"closing the connection\n"

_FILL = b"x"
_BLOCK = _FILL * 65536
_CHUNK_SIZE = 1000
_CHUNK = b"%x\r\n" % _CHUNK_SIZE + _FILL * _CHUNK_SIZE + b"\r\n"
_CHUNKS_PER_PIECE = 64
_CHUNK_PIECE = _CHUNK * _CHUNKS_PER_PIECE


# --------------------------------------------------------------------------------------------------------
# Sans-IO core: request -> reply bytes. No await below this line until the protocol classes.
# --------------------------------------------------------------------------------------------------------


class _Reply:
    """One response: bytes to write at once, optionally after a delay and followed by a streamed body."""

    __slots__ = ("cacheable", "chunked", "close", "data", "delay", "immediate", "status", "stream_size")

    def __init__(
        self,
        status: int,
        data: bytes,
        *,
        close: bool,
        delay: float = 0.0,
        stream_size: int = 0,
        chunked: bool = False,
        cacheable: bool = False,
    ) -> None:
        self.status = status
        self.data = data  # status line + headers (+ the whole body unless stream_size)
        self.close = close
        self.delay = delay
        self.stream_size = stream_size  # body bytes to stream after data, under flow control
        self.chunked = chunked
        self.cacheable = cacheable
        # Precomputed: checked for every request on the hot path.
        self.immediate = delay == 0 and stream_size == 0

    def __repr__(self) -> str:
        return (
            f"<_Reply {self.status} {len(self.data)} bytes close={self.close} delay={self.delay}"
            f" stream_size={self.stream_size}>"
        )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _head(status: int, mode: int, headers: Sequence[tuple[str, str]], *, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}\r\n".encode("ascii"), _SERVER_HEADER]
    lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
    lines.append(b"Connection: close\r\n" if close else _CONNECTION_HEADER[mode])
    lines.append(b"\r\n")
    return b"".join(lines)


def _simple(
    method: bytes,
    status: int,
    mode: int,
    body: bytes,
    *,
    content_type: str = _TEXT,
    extra: Sequence[tuple[str, str]] = (),
    close: bool = False,
    delay: float = 0.0,
    cacheable: bool = False,
) -> _Reply:
    close = close or bool(mode & _CLOSE_BIT)
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    head = _head(status, mode, headers, close=close)
    data = head if method == b"HEAD" else head + body
    return _Reply(status, data, close=close, delay=delay, cacheable=cacheable)


def _error(method: bytes, status: int, mode: int, detail: str, **kwargs: Any) -> _Reply:
    body = f"{status} {_reason(status)}: {detail}\n".encode()
    return _simple(method, status, mode, body, **kwargs)


def _body_pieces(size: int, chunked: bool) -> Iterator[bytes]:
    """Yield the body of ``/bytes/size`` (or, chunked, of ``/chunked/size`` incl. the last chunk)."""
    if not chunked:
        full, rest = divmod(size, len(_BLOCK))
        for _ in range(full):
            yield _BLOCK
        if rest:
            yield _BLOCK[:rest]
        return
    full, rest = divmod(size, _CHUNK_SIZE * _CHUNKS_PER_PIECE)
    for _ in range(full):
        yield _CHUNK_PIECE
    chunks, last = divmod(rest, _CHUNK_SIZE)
    tail = _CHUNK * chunks
    if last:
        tail += b"%x\r\n" % last + _FILL * last + b"\r\n"
    yield tail + b"0\r\n\r\n"


def _payload(method: bytes, mode: int, size: int, *, chunked: bool) -> _Reply:
    # RFC 9112 section 6.1: never send chunked to an HTTP/1.0 recipient; it gets a Content-Length instead.
    chunked = chunked and not mode & _HTTP10_BIT
    close = bool(mode & _CLOSE_BIT)
    framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(size))
    head = _head(200, mode, [("Content-Type", _OCTETS), framing], close=close)
    if method == b"HEAD":
        return _Reply(200, head, close=close, cacheable=True)
    if size <= _INLINE_MAX:
        body = b"".join(_body_pieces(size, chunked))
        return _Reply(200, head + body, close=close, cacheable=True)
    return _Reply(200, head, close=close, stream_size=size, chunked=chunked)


def _number(arg: bytes) -> int | None:
    return int(arg) if 0 < len(arg) <= 12 and arg.isdigit() else None


def _origin_form(target: bytes) -> bytes | None:
    """``/path?query`` from an origin-form or absolute-form target; None for any other form."""
    if target[:1] == b"/":
        return target
    lowered = target[:8].lower()
    if lowered.startswith((b"http://", b"https://")):
        after_scheme = target.index(b"//") + 2
        slash = target.find(b"/", after_scheme)
        question = target.find(b"?", after_scheme)
        if slash == -1 or (question != -1 and question < slash):
            return b"/" + (target[question:] if question != -1 else b"")
        return target[slash:]
    return None


def _headers_json(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    seen: dict[str, list[str]] = {}
    for name, value in headers:
        seen.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return json.dumps(seen).encode("ascii")


def _redirect(method: bytes, mode: int, location: str, *, cacheable: bool) -> _Reply:
    return _simple(method, 302, mode, b"", extra=(("Location", location),), cacheable=cacheable)


def _route(
    method: bytes, target: bytes, mode: int, headers: Sequence[tuple[bytes, bytes]], body: bytes = b""
) -> _Reply:
    """The reply to one well-formed request. Pure: the same inputs give the same bytes."""
    origin = _origin_form(target)
    if method != b"GET" and method != b"HEAD":
        if origin is not None and origin.partition(b"?")[0] == b"/anything":
            return _anything(method, mode, origin, headers, body)
        return _error(method, 405, mode, "only GET and HEAD are served (and any method on /anything)", extra=_ALLOW)
    if origin is None:
        return _error(method, 400, mode, "the request target must be a path or an http:// URL")
    path, _, query = origin.partition(b"?")
    if path == b"/":
        return _simple(method, 200, mode, _INDEX_BODY, content_type=_HTML, cacheable=True)
    name, slash, arg = path[1:].partition(b"/")
    if not slash:
        if name == b"headers":
            return _simple(method, 200, mode, _headers_json(headers), content_type=_JSON)
        if name == b"close":
            return _simple(method, 200, mode, _CLOSE_BODY, close=True, cacheable=True)
        if name == b"redirect-to":
            return _redirect_to(method, mode, query)
        if name == b"cookies":
            return _simple(method, 200, mode, _cookies_json(headers), content_type=_JSON)
        if name == b"anything":
            return _anything(method, mode, origin, headers, body)
        return _error(method, 404, mode, "no such route")
    if name == b"cookies" and arg == b"set":
        return _set_cookies(method, mode, query)
    if name in _ENCODINGS:
        return _compressed(method, mode, name.decode("ascii"), arg)
    if name not in (b"bytes", b"chunked", b"delay", b"status", b"redirect"):
        return _error(method, 404, mode, "no such route")
    number = _number(arg)
    if number is None:
        return _error(method, 400, mode, f"/{name.decode()}/ takes a non-negative decimal integer")
    if name == b"bytes" or name == b"chunked":
        if number > MAX_BYTES:
            return _error(method, 400, mode, f"N must be at most {MAX_BYTES}")
        return _payload(method, mode, number, chunked=name == b"chunked")
    if name == b"delay":
        if number > MAX_DELAY_MS:
            return _error(method, 400, mode, f"MS must be at most {MAX_DELAY_MS}")
        return _simple(method, 200, mode, _INDEX_BODY, content_type=_HTML, delay=number / 1000, cacheable=True)
    if name == b"status":
        return _status(method, mode, number)
    # name == b"redirect"
    location = f"/redirect/{number - 1}" if number > 0 else "/"
    return _redirect(method, mode, location, cacheable=True)


def _status(method: bytes, mode: int, code: int) -> _Reply:
    if not 200 <= code <= 599:
        return _error(method, 400, mode, "CODE must be between 200 and 599")
    if code in (204, 304):
        # No content and, for these two, no Content-Length either (RFC 9110 sections 8.6, 15.3.5, 15.4.5).
        close = bool(mode & _CLOSE_BIT)
        return _Reply(code, _head(code, mode, (), close=close), close=close, cacheable=True)
    # 205 Reset Content must not carry content; Content-Length: 0 is allowed and keeps framing explicit.
    body = b"" if code == 205 else f"{code} {_reason(code)}\n".encode("ascii")
    return _simple(method, code, mode, body, cacheable=True)


def _redirect_to(method: bytes, mode: int, query: bytes) -> _Reply:
    urls = urllib.parse.parse_qs(query.decode("latin-1"), keep_blank_values=True).get("url")
    if not urls or not urls[0]:
        return _error(method, 400, mode, "/redirect-to needs ?url=URL")
    url = urls[0]
    # Only visible ASCII goes into a header: no CR/LF injection, no ambiguity about encodings.
    if not all(0x21 <= ord(char) <= 0x7E for char in url):
        return _error(method, 400, mode, "url must be printable ASCII without spaces")
    return _redirect(method, mode, url, cacheable=False)


# /gzip/N, /deflate/N, /br/N, /zstd/N: N bytes of text, encoded so (br and zstd when their package is installed).
_ENCODINGS = (b"gzip", b"deflate", b"br", b"zstd")
# Words drawn at random (seeded: the same bytes every time), so the body compresses as prose does (3-4 times
# with gzip), not as one line repeated (hundreds of times, which the client's bomb guard would refuse).
_WORDS = (
    b"the client server request response header body connection proxy tunnel socket stream timeout deadline "
    b"bytes chunk length encoding gzip deflate brotli zstd cookie path domain retry pool keep alive close "
    b"loopback address port name record probe bench target status reason version error kind wire"
).split()
_TEXT_BLOCK_SIZE = 1024 * 1024
_text_block: bytes | None = None
#: Largest N accepted by the compressed routes (the body is compressed per request when not cached).
MAX_COMPRESSED_BYTES = 10_000_000
# Request bodies kept for /anything; a larger one is refused.
_MAX_ECHO_BODY = 1024 * 1024


def _text(size: int) -> bytes:
    """``size`` bytes of text: a block of seeded random words (made once), repeated as needed."""
    global _text_block
    if _text_block is None:
        chooser = random.Random(1234)
        words = chooser.choices(_WORDS, k=_TEXT_BLOCK_SIZE // 5)
        lines = [b" ".join(words[start : start + 12]) + b".\n" for start in range(0, len(words), 12)]
        _text_block = b"".join(lines)[:_TEXT_BLOCK_SIZE]
    return (_text_block * (size // _TEXT_BLOCK_SIZE + 1))[:size]


def _encode(encoding: str, data: bytes) -> bytes | None:
    """``data`` compressed with ``encoding``, or None when its compressor is not installed."""
    if encoding == "gzip":
        return gzip.compress(data, mtime=0)
    if encoding == "deflate":
        return zlib.compress(data)
    try:  # optional packages (the compression extra): imported when a route needs them
        if encoding == "br":
            import brotli  # type: ignore[import-untyped]

            return bytes(brotli.compress(data))
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(data))
    except ImportError:
        return None


def _compressed(method: bytes, mode: int, encoding: str, arg: bytes) -> _Reply:
    size = _number(arg)
    if size is None or size > MAX_COMPRESSED_BYTES:
        return _error(method, 400, mode, f"/{encoding}/N takes N from 0 to {MAX_COMPRESSED_BYTES}")
    body = _encode(encoding, _text(size))
    if body is None:
        return _error(
            method, 501, mode, f"{encoding}: its compressor is not installed (pip install aiotcp[compression])"
        )
    extra = (("Content-Encoding", encoding), ("Vary", "Accept-Encoding"))
    return _simple(method, 200, mode, body, content_type=_TEXT, extra=extra, cacheable=len(body) <= _INLINE_MAX)


def _cookies_json(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The cookies the request carried, as a JSON object."""
    cookies: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                key, _, val = pair.strip().partition("=")
                if key:
                    cookies[key] = val
    return json.dumps(cookies).encode("utf-8")


def _set_cookies(method: bytes, mode: int, query: bytes) -> _Reply:
    """``/cookies/set?NAME=VALUE&...``: a Set-Cookie (Path=/) for each pair, and the pairs as JSON."""
    pairs = urllib.parse.parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not all(name.isascii() and name.isidentifier() and value.isascii() for name, value in pairs):
        return _error(method, 400, mode, "/cookies/set takes NAME=VALUE pairs of ASCII words")
    extra = [("Set-Cookie", f"{name}={urllib.parse.quote(value)}; Path=/") for name, value in pairs]
    return _simple(method, 200, mode, json.dumps(dict(pairs)).encode("ascii"), content_type=_JSON, extra=extra)


def _anything(method: bytes, mode: int, origin: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> _Reply:
    """``/anything``, any method: the request as JSON (method, path and query, headers, body as text)."""
    echo = {
        "method": method.decode("ascii", "replace"),
        "path": origin.decode("latin-1"),
        "headers": json.loads(_headers_json(headers)),
        "body": body.decode("utf-8", "replace"),
    }
    return _simple(method, 200, mode, json.dumps(echo).encode("utf-8"), content_type=_JSON)


def _bad_request(detail: str) -> _Reply:
    # The request could not be parsed, so its version and keep-alive wishes are unknown: close.
    return _error(b"GET", 400, _CLOSE_11, detail)


def _connection_tokens(values: Sequence[bytes]) -> set[bytes]:
    return {token.strip().lower() for value in values for token in value.split(b",")}


# --------------------------------------------------------------------------------------------------------
# Protocols: one per connection.
# --------------------------------------------------------------------------------------------------------


class _Tracked(asyncio.Protocol):
    """A connection the owning server counts, and closes on aclose()."""

    __slots__ = ("_owner", "_transport")

    def __init__(self, owner: _LoopbackServer) -> None:
        self._owner = owner
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._owner._connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._connection_closed(self)

    def shutdown(self) -> None:
        """Close the connection after flushing what is already written."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close the connection now, dropping unwritten data."""
        if self._transport is not None:
            self._transport.abort()


class _Discarding(_Tracked):
    """SilentServer's connection: reads and discards, never writes."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        pass


class _HTTPConnection(_Tracked):
    """Reply pipeline shared by both parsers: subclasses call _request() / _reject() in request order."""

    __slots__ = (
        "_cache",
        "_closing",
        "_drain_waiter",
        "_eof",
        "_linger",
        "_queue",
        "_reading_paused",
        "_server",
        "_worker",
        "_write_paused",
    )

    def __init__(self, server: TargetServer) -> None:
        super().__init__(server)
        self._server = server
        self._cache = server._cache
        self._queue: deque[_Reply] = deque()  # replies not yet fully written; [0] is being written
        self._worker: asyncio.Task[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closing = False  # a closing reply was submitted, or the transport is gone: ignore input
        self._eof = False
        self._linger: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._reading_paused = False

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def eof_received(self) -> bool:
        self._eof = True
        if self._queue:
            # Half-close: the client may still be reading; the worker closes once the queue is written.
            self._closing = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._worker is not None:
            self._worker.cancel()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._update_reading()

    def shutdown(self) -> None:
        self._closing = True
        super().shutdown()

    # -- reply pipeline -----------------------------------------------------------------------------

    def _request(
        self, method: bytes, target: bytes, mode: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> _Reply:
        key = (method, target, mode)
        reply = self._cache.get(key)
        if reply is None:
            if len(body) > _MAX_ECHO_BODY:
                reply = _error(method, 413, mode, f"a request body is served up to {_MAX_ECHO_BODY} bytes", close=True)
            else:
                reply = _route(method, target, mode, headers, body)
            if reply.cacheable:
                self._server._cache_put(key, reply)
        self._submit(reply)
        return reply

    def _reject(self, detail: str) -> None:
        self._submit(_bad_request(detail))

    def _submit(self, reply: _Reply) -> None:
        transport = self._transport
        assert transport is not None
        if reply.close:
            self._closing = True
        if reply.immediate and not self._queue and not self._write_paused:
            transport.write(reply.data)
            self._server.requests_served += 1
            if reply.close:
                self._finish()
            return
        self._queue.append(reply)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain_queue())
        self._update_reading()

    def _finish(self) -> None:
        """Close after the last reply: FIN now, then discard input until the peer closes (or _LINGER_S).

        Closing a socket with unread input makes the kernel send RST, which can destroy the reply before
        the client reads it -- typically a 400 for a request the client is still sending. Lingering like
        this (nginx's "lingering close") lets the reply arrive intact.
        """
        transport = self._transport
        assert transport is not None
        self._closing = True
        if transport.is_closing():
            return
        if self._eof or not transport.can_write_eof():  # the peer already closed: nothing to linger for
            transport.close()
            return
        transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(_LINGER_S, transport.close)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        want_paused = self._write_paused or len(self._queue) >= _MAX_QUEUED
        if want_paused != self._reading_paused:
            self._reading_paused = want_paused
            if want_paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    async def _writable(self) -> None:
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    async def _drain_queue(self) -> None:
        transport = self._transport
        assert transport is not None
        queue = self._queue
        try:
            # Bounded: each pass writes and removes one reply; reading pauses at _MAX_QUEUED.
            while queue:
                reply = queue[0]
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                await self._writable()
                transport.write(reply.data)
                if reply.stream_size:
                    for piece in _body_pieces(reply.stream_size, reply.chunked):
                        await self._writable()
                        transport.write(piece)
                self._server.requests_served += 1
                queue.popleft()
                if reply.close:
                    self._finish()
                    return
                self._update_reading()
            if self._eof:
                transport.close()
        except Exception as exc:  # a bug: report it the asyncio way and drop the connection
            asyncio.get_running_loop().call_exception_handler(
                {"message": "aiotcp-serve reply writer failed", "exception": exc, "protocol": self}
            )
            transport.abort()
        finally:
            self._worker = None


class _HttptoolsConnection(_HTTPConnection):
    """Requests parsed by httptools (llhttp); its callbacks run inside feed_data()."""

    __slots__ = ("_body", "_fresh_head", "_has_host", "_head_bytes", "_headers", "_in_head", "_parser", "_url")

    def __init__(self, server: TargetServer) -> None:
        super().__init__(server)
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = b""  # of the request being read, up to one byte over _MAX_ECHO_BODY
        self._has_host = False
        # httptools buffers a header line until it ends, so an endless header would grow without bound.
        # _head_bytes counts the reads spent on one unfinished head *after* the read it began in (that
        # first read may also hold earlier pipelined requests, so it is not counted): at most one read
        # plus _MAX_HEAD bytes are ever buffered, and deep pipelining is never mistaken for a huge head.
        self._in_head = True  # between messages or inside a request line / headers
        self._fresh_head = False  # the current head began in the read being processed
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._fresh_head = False
        # Bounded: every pass after the first starts a fresh parser on strictly fewer bytes.
        for _ in range(len(data) + 1):
            try:
                self._parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as exc:
                # llhttp stops at a request asking to switch protocols (Upgrade, CONNECT). We never
                # answer 101, so the client carries on speaking HTTP/1.1: parse the rest afresh.
                self._parser = httptools.HttpRequestParser(self)
                self._in_head, self._fresh_head = True, True
                data = data[exc.args[0] :]
                if not data or self._closing:
                    return
            except httptools.HttpParserError as exc:
                if not self._closing:  # llhttp also objects to bytes after "Connection: close"
                    self._reject(str(exc) or type(exc).__name__)
                return
        if self._in_head and not self._fresh_head and not self._closing:
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD:
                self._reject(f"request head larger than {_MAX_HEAD} bytes")

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._has_host = False
        self._fresh_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if len(name) == 4 and name.lower() == b"host":
            self._has_host = True

    def on_headers_complete(self) -> None:
        self._in_head = False

    def on_message_complete(self) -> None:
        self._in_head = True
        if self._closing:
            return
        parser = self._parser
        version = parser.get_http_version()
        http11 = version == "1.1"
        if not http11 and version != "1.0":  # llhttp lets 0.9 and 2.0 through; h11 lets any d.d through
            self._reject(f"unsupported HTTP version {version}")
            return
        if http11 and not self._has_host:
            # RFC 9112 section 3.2; h11 enforces it too, so both parsers answer alike.
            self._reject("HTTP/1.1 request without a Host header")
            return
        mode = (_KEEP_11 if http11 else _KEEP_10) | (0 if parser.should_keep_alive() else _CLOSE_BIT)
        body, self._body = self._body, b""
        self._request(parser.get_method(), self._url, mode, self._headers, body)

    def on_body(self, body: bytes) -> None:
        if len(self._body) <= _MAX_ECHO_BODY:  # one byte over the cap is enough to refuse it
            self._body += body[: _MAX_ECHO_BODY + 1 - len(self._body)]


class _H11Connection(_HTTPConnection):
    """Requests parsed by h11: the fallback when httptools is missing, kept small."""

    __slots__ = ("_body", "_h11", "_pending")

    def __init__(self, server: TargetServer) -> None:
        super().__init__(server)
        self._h11 = self._new_h11()
        self._pending: h11.Request | None = None
        self._body = b""

    @staticmethod
    def _new_h11() -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._h11.receive_data(data)
            self._next_events()
        except h11.RemoteProtocolError as exc:
            self._reject(str(exc))

    def _next_events(self) -> None:
        # Bounded: every event consumes buffered bytes; NEED_DATA ends the loop once they are used up.
        while not self._closing:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self._pending, self._body = event, b""
            elif isinstance(event, h11.Data):
                if len(self._body) <= _MAX_ECHO_BODY:  # one byte over the cap is enough to refuse it
                    self._body += bytes(event.data[: _MAX_ECHO_BODY + 1 - len(self._body)])
            elif isinstance(event, h11.EndOfMessage):
                self._complete()
            elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):  # pragma: no cover
                # Neither happens: each cycle is restarted in _complete() and EOF never reaches h11.
                self._reject("connection state lost")
                return

    def _complete(self) -> None:
        request = self._pending
        assert request is not None
        self._pending = None
        if request.http_version not in (b"1.1", b"1.0"):
            self._reject(f"unsupported HTTP version {request.http_version.decode('ascii')}")
            return
        tokens = _connection_tokens([value for name, value in request.headers if name == b"connection"])
        if request.http_version == b"1.1":
            mode = _CLOSE_11 if b"close" in tokens else _KEEP_11
        else:
            mode = _KEEP_10 if b"keep-alive" in tokens and b"close" not in tokens else _CLOSE_10
        body, self._body = self._body, b""
        reply = self._request(request.method, request.target, mode, list(request.headers.raw_items()), body)
        if not self._closing:
            self._restart_cycle(reply.status)

    def _restart_cycle(self, status: int) -> None:
        # h11 parses the next request only after our side has sent a response. The real response bytes
        # are ours; h11 is told the same status (so a CONNECT answered 405 is not taken for a tunnel)
        # with no body, and its output is discarded.
        conn = self._h11
        try:
            conn.send(h11.Response(status_code=status, headers=[]))
            conn.send(h11.EndOfMessage())
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            # h11 treats every HTTP/1.0 connection as non-persistent, while we honour
            # "Connection: keep-alive": hand the unparsed bytes to a fresh h11 connection.
            # (receive_data(b"") would mean EOF to h11, and EOF is never fed to it here.)
            data, _ = conn.trailing_data
            self._h11 = self._new_h11()
            if data:
                self._h11.receive_data(data)


# --------------------------------------------------------------------------------------------------------
# Servers.
# --------------------------------------------------------------------------------------------------------


class NotLoopback(ValueError):
    """The server was asked to bind an address that is not loopback without ``allow_public=True``.

    ``host`` is the address asked for; the message does not say how to allow it, because that depends on
    who asked (``allow_public=True`` in Python, ``--public`` on the command line).
    """

    def __init__(self, host: str, resolved: str | None = None) -> None:
        self.host = host
        what = "not a loopback address" if resolved is None else f"it resolves to {resolved}, not a loopback address"
        super().__init__(f"refusing to bind {host}: {what} (127.0.0.0/8, ::1 or localhost)")


def _check_host(host: str, *, allow_public: bool) -> None:
    """Raise NotLoopback unless host is a loopback address (or allow_public)."""
    if allow_public:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if not loopback:
        raise NotLoopback(host)


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port!r} is out of range 0-65535")


def _bind_socket(
    host: str, port: int, infos: list[tuple[Any, ...]], *, allow_public: bool, reuse_address: bool
) -> socket.socket:
    """Bind a TCP socket to the first address host resolved to; raise OSError or ValueError."""
    if not infos:
        raise OSError(f"{host!r} did not resolve to any address")
    family, type_, proto, _, sockaddr = infos[0]
    if not allow_public and not ipaddress.ip_address(sockaddr[0].partition("%")[0]).is_loopback:
        raise NotLoopback(host, sockaddr[0])
    sock = socket.socket(family, type_, proto)
    try:
        if reuse_address and sys.platform != "win32":  # SO_REUSEADDR on Windows allows port stealing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _LoopbackServer(abc.ABC):
    """Lifecycle shared by TargetServer and SilentServer: bind, listen, track connections, close."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, backlog: int = 4096, allow_public: bool = False
    ) -> None:
        _check_host(host, allow_public=allow_public)
        _check_port(port)
        if backlog < 1:
            raise ValueError(f"backlog must be at least 1, got {backlog!r}")
        self._host = host
        self._requested_port = port
        self._backlog = backlog
        self._allow_public = allow_public
        self._server: asyncio.AbstractServer | None = None
        self._address: tuple[str, int] | None = None
        self._closed = False
        self._connections: set[_Tracked] = set()
        self._all_closed: asyncio.Event | None = None
        self.connections_accepted = 0

    @abc.abstractmethod
    def _protocol(self) -> _Tracked:
        """A protocol instance for one accepted connection."""

    # -- state ----------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The host this server was asked to bind."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port once started (and after closing); the requested port before."""
        return self._address[1] if self._address is not None else self._requested_port

    @property
    def url(self) -> str:
        """``http://ADDRESS:PORT`` with the bound address (IPv6 in brackets)."""
        address = self._address[0] if self._address is not None else self._host
        if ":" in address:
            address = f"[{address}]"
        return f"http://{address}:{self.port}"

    @property
    def is_serving(self) -> bool:
        """True between a successful start() and aclose()."""
        return self._server is not None and not self._closed

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet lost."""
        return len(self._connections)

    def _state(self) -> str:
        if self._closed:
            return "closed"
        return "serving" if self._server is not None else "not started"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.url} {self._state()}"
            f" connections_accepted={self.connections_accepted} open_connections={self.open_connections}>"
        )

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and listen on the running event loop.

        Raises ValueError if the host resolves to a non-loopback address (without allow_public), OSError
        if binding fails (e.g. the port is taken), RuntimeError if called twice.
        """
        if self._server is not None or self._closed:
            raise RuntimeError(f"{self!r} can only be started once")
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        sock = _bind_socket(
            self._host, self._requested_port, infos, allow_public=self._allow_public, reuse_address=True
        )
        try:
            self._server = await loop.create_server(self._protocol, sock=sock, backlog=self._backlog)
        except BaseException:
            sock.close()
            raise
        sockname = sock.getsockname()
        self._address = (sockname[0], sockname[1])
        self._all_closed = asyncio.Event()

    async def aclose(self) -> None:
        """Stop listening and close every open connection; idempotent.

        Connections get _CLOSE_GRACE_S to flush what was already written, then they are aborted.
        """
        if self._closed:
            return
        self._closed = True
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.shutdown()
        await self._server.wait_closed()
        assert self._all_closed is not None
        if self._connections:
            try:
                async with asyncio.timeout(_CLOSE_GRACE_S):
                    await self._all_closed.wait()
            except TimeoutError:
                for connection in list(self._connections):
                    connection.abort()
        # connection_lost callbacks cancel reply writers; let those cancellations run before returning.
        await asyncio.sleep(0)

    def _connection_opened(self, connection: _Tracked) -> None:
        self.connections_accepted += 1
        self._connections.add(connection)
        if self._closed:  # accepted in the instant between close() and now
            connection.shutdown()

    def _connection_closed(self, connection: _Tracked) -> None:
        self._connections.discard(connection)
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()


def _resolve_parser(parser: str) -> Literal["httptools", "h11"]:
    if parser == "auto":
        return "h11" if httptools is None else "httptools"
    if parser == "httptools":
        if httptools is None:
            raise ImportError("parser='httptools' was requested but httptools is not installed")
        return "httptools"
    if parser == "h11":
        return "h11"
    raise ValueError(f"parser must be 'auto', 'httptools' or 'h11', got {parser!r}")


class TargetServer(_LoopbackServer):
    """Built-in HTTP/1.1 target server bound to loopback.

    Routes (GET and HEAD; other methods get 405 with ``Allow``): ``/``, ``/bytes/N``, ``/chunked/N``,
    ``/delay/MS``, ``/status/CODE``, ``/redirect/N``, ``/redirect-to?url=URL``, ``/headers``, ``/close``;
    anything else 404. See the module docstring for ordering, back-pressure and closing rules.

    Raises ValueError for a non-loopback host (unless ``allow_public=True``), a bad port or parser name,
    and ImportError for ``parser="httptools"`` without httptools.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backlog: int = 4096,
        parser: ParserName = "auto",
        allow_public: bool = False,
    ) -> None:
        super().__init__(host, port, backlog=backlog, allow_public=allow_public)
        self._parser: Literal["httptools", "h11"] = _resolve_parser(parser)
        self._connection_class: type[_HTTPConnection] = (
            _HttptoolsConnection if self._parser == "httptools" else _H11Connection
        )
        self._cache: dict[tuple[bytes, bytes, int], _Reply] = {}
        self._cache_bytes = 0
        self.requests_served = 0

    @property
    def parser(self) -> Literal["httptools", "h11"]:
        """The request parser in use."""
        return self._parser

    def _protocol(self) -> _Tracked:
        return self._connection_class(self)

    def _cache_put(self, key: tuple[bytes, bytes, int], reply: _Reply) -> None:
        size = len(reply.data)
        if len(self._cache) < _CACHE_MAX_ENTRIES and self._cache_bytes + size <= _CACHE_MAX_BYTES:
            self._cache[key] = reply
            self._cache_bytes += size

    def __repr__(self) -> str:
        return (
            f"<TargetServer {self.url} {self._state()} parser={self._parser}"
            f" requests_served={self.requests_served} connections_accepted={self.connections_accepted}"
            f" open_connections={self.open_connections}>"
        )


class SilentServer(_LoopbackServer):
    """A black hole: completes the TCP handshake, reads and discards, never answers.

    For testing read timeouts. Same lifecycle as TargetServer.
    """

    def _protocol(self) -> _Tracked:
        return _Discarding(self)


# --------------------------------------------------------------------------------------------------------
# Running a server: in a thread of its own, or on the caller's loop.
# --------------------------------------------------------------------------------------------------------

_S = TypeVar("_S", bound=_LoopbackServer)


def _loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop]:
    uvloop = _uvloop() if use_uvloop else None
    if uvloop is not None:
        return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)
    # Explicitly the stdlib loop: asyncio.new_event_loop() would follow a globally installed uvloop policy.
    return asyncio.SelectorEventLoop


class _ServerThread(threading.Thread):
    """Runs one server on a new event loop until stop() is called."""

    def __init__(self, server: _LoopbackServer, use_uvloop: bool) -> None:
        super().__init__(name=f"aiotcp-serve {type(server).__name__}", daemon=True)
        self.server = server
        self.ready = threading.Event()  # set once listening, or once run() has failed
        self.error: BaseException | None = None
        self._loop_factory = _loop_factory(use_uvloop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._main())
        except BaseException as exc:  # handed to the thread that waits in running_in_thread()
            self.error = exc
        finally:
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        await self.server.start()
        try:
            self.ready.set()
            await self._stop_event.wait()
        finally:
            await self.server.aclose()

    def stop(self, timeout: float) -> bool:
        """Ask the loop to close the server and finish; True if the thread ended within timeout."""
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already finished and closed
                loop.call_soon_threadsafe(stop_event.set)
        self.join(timeout)
        return not self.is_alive()


@contextlib.contextmanager
def _in_thread(server: _S, use_uvloop: bool) -> Iterator[_S]:
    thread = _ServerThread(server, use_uvloop)
    thread.start()
    if not thread.ready.wait(_THREAD_START_TIMEOUT_S):
        thread.stop(_THREAD_STOP_TIMEOUT_S)
        raise RuntimeError(f"{server!r} did not start listening within {_THREAD_START_TIMEOUT_S} s")
    if thread.error is not None:
        thread.join(_THREAD_STOP_TIMEOUT_S)
        raise thread.error
    try:
        yield server
    except BaseException:
        thread.stop(_THREAD_STOP_TIMEOUT_S)
        raise
    if not thread.stop(_THREAD_STOP_TIMEOUT_S):
        raise RuntimeError(f"{server!r} did not stop within {_THREAD_STOP_TIMEOUT_S} s")
    if thread.error is not None:
        raise thread.error


def running_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = 4096,
    parser: ParserName = "auto",
    allow_public: bool = False,
    use_uvloop: bool = True,
) -> contextlib.AbstractContextManager[TargetServer]:
    """Run a TargetServer on its own event loop in a daemon thread; yield it once it is listening.

    The loop is uvloop's when ``use_uvloop`` and uvloop is importable, else the stdlib selector loop. The
    caller may use any async backend (asyncio, trio) or none. On exit the server is closed and the thread
    joined, each wait bounded. Raises what TargetServer() or start() raise (ValueError, OSError, ...), and
    RuntimeError if the thread does not start or stop in time.
    """
    server = TargetServer(host, port, backlog=backlog, parser=parser, allow_public=allow_public)
    return _in_thread(server, use_uvloop)


def running_silent_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = 4096,
    allow_public: bool = False,
    use_uvloop: bool = True,
) -> contextlib.AbstractContextManager[SilentServer]:
    """Like running_in_thread(), for a SilentServer."""
    return _in_thread(SilentServer(host, port, backlog=backlog, allow_public=allow_public), use_uvloop)


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_ready: Callable[[TargetServer], None] | None = None,
    backlog: int = 4096,
    parser: ParserName = "auto",
    allow_public: bool = False,
) -> None:
    """Serve on the running loop until cancelled (``aiotcp serve``); on_ready is called once listening.

    Raises what TargetServer() and start() raise. The server is closed on the way out.
    """
    server = TargetServer(host, port, backlog=backlog, parser=parser, allow_public=allow_public)
    await server.start()
    try:
        if on_ready is not None:
            on_ready(server)
        await asyncio.Event().wait()
    finally:
        await server.aclose()


@contextlib.contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """Yield a loopback port where a connect is refused (RST), reserved for the duration.

    The socket is bound but never listens: the kernel answers a SYN with RST, and nobody else can bind the
    port meanwhile. Raises ValueError for a non-loopback host.
    """
    _check_host(host, allow_public=False)
    infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sock = _bind_socket(host, 0, list(infos), allow_public=False, reuse_address=False)
    with sock:
        yield sock.getsockname()[1]
