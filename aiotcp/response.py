"""What a request gives back: :class:`Headers`, :class:`Timings` and :class:`Response`."""

from __future__ import annotations

import codecs
import functools
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .errors import AiotcpError
from .resolution import Resolution
from .tlsfacts import TLSInfo

if TYPE_CHECKING:
    from .connection import BodyReader
    from .decoding import BodyDecoder
    from .http11 import Request

__all__ = ["Headers", "Response", "Timings", "charset_of", "decode_header_value"]


def decode_header_value(value: bytes) -> str:
    """A header value as text: UTF-8 when it is valid UTF-8, else Latin-1 (which cannot fail)."""
    # Header values are bytes on the wire; UTF-8 is what servers mean today, Latin-1 what RFC 2616 said.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


@functools.lru_cache(maxsize=256)
def _text_codec(name: str) -> str | None:
    # The name comes from the server. codecs.lookup also knows byte transforms ("base64", "zlib") that
    # bytes.decode refuses, and codecs that fail whatever the error handler ("idna", "undefined"): only a
    # codec that decodes anything with errors="replace" is a charset .text can use. (Cached: servers name
    # the same few charsets, and a prober asks once per target.)
    try:
        codec = codecs.lookup(name)
        b"\x80\xff\x00a\\x".decode(codec.name, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None
    return codec.name


@functools.lru_cache(maxsize=1024)
def charset_of(content_type: str | None) -> str | None:
    """The charset a Content-Type value names, if it is a text encoding Python knows (``None`` otherwise).
    (Cached: servers send the same few Content-Types, and a prober asks once per target.)"""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            return _text_codec(value.strip().strip('"'))
    return None


class Headers(Mapping[str, str]):
    """Case-insensitive, multi-valued response headers. ``raw`` keeps the bytes exactly as received.

    ``headers["set-cookie"]`` joins repeated fields with ``", "``; :meth:`get_all` keeps them apart.
    """

    __slots__ = ("_built", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        self.raw: list[tuple[bytes, bytes]] = list(raw) if raw else []
        self._built: dict[str, list[str]] | None = None  # the index, built on first lookup

    @property
    def _index(self) -> dict[str, list[str]]:
        index = self._built
        if index is None:
            index = {}
            for name, value in self.raw:
                index.setdefault(name.decode("latin-1").lower(), []).append(decode_header_value(value))
            self._built = index
        return index

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received (empty if absent)."""
        return list(self._index.get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._index[name.lower()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def multi_items(self) -> list[tuple[str, str]]:
        """``(name, value)`` for every field, names as received."""
        return [(name.decode("latin-1"), decode_header_value(value)) for name, value in self.raw]

    def __repr__(self) -> str:
        return f"Headers({self.multi_items()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._index == other._index
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(slots=True)
class Timings:
    """Milliseconds spent in each phase, measured from the start of the request.

    ``dns_ms``/``connect_ms``/``tls_ms`` are ``None`` when a pooled connection was reused (nothing was done)
    and ``tls_ms`` for plain http. ``ttfb_ms`` runs to the first byte of the response; ``total_ms`` to its end.
    Through a proxy, ``dns_ms`` and ``connect_ms`` are the hop to the proxy and ``proxy_connect_ms`` the tunnel's
    handshake (CONNECT or SOCKS: until the proxy says the target is reached; ``None`` without a tunnel).
    """

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    total_ms: float | None = None
    reused: bool = False
    proxy_connect_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Response:
    """A response. ``content``/``text`` need the body read: always so for ``Client.request``;
    after ``await response.aread()`` or a full ``async for chunk in response.stream()`` for ``Client.stream``.
    ``request`` is the request it answers, as sent; ``history`` the redirect responses before it, each with
    its own ``request``. ``attempts`` counts the requests sent for it, retries included (1 without), and
    ``retried`` says why each retry was made (an error kind, or the status code that asked for it).

    A body sent with a ``Content-Encoding`` the client decodes (gzip, deflate, br, zstd) comes out of
    ``content``, ``text`` and ``stream()`` decoded (the headers still say how it was sent), unless the client
    was made with ``decode=False``.
    """

    def __init__(
        self,
        *,
        url: str,
        method: str,
        status_code: int,
        reason: str,
        http_version: str,
        headers: Headers,
        peer: tuple[str, int] | None,
        timings: Timings,
        body: BodyReader | None = None,
        content: bytes | None = None,
        request: Request | None = None,
        dns: Resolution | None = None,
        decoder: BodyDecoder | None = None,
        proxy: str | None = None,
        quirks: tuple[str, ...] = (),
        tls: TLSInfo | None = None,
    ) -> None:
        self.url = url
        self.method = method
        self.status_code = status_code
        self.reason = reason
        self.http_version = http_version
        self.headers = headers
        self.peer = peer
        self.timings = timings
        #: The DNS facts of the host (a, aaaa, cname, resolver), None for an IP address or a given address.
        self.dns = dns
        #: Deviations from RFC 9110/9112 the response was read despite, in a fixed order (``bare_lf``,
        #: ``obs_fold``...: :data:`aiotcp.http11.QUIRKS`); empty for a response that follows the RFCs.
        self.quirks = quirks
        #: For https: the handshake's facts and the server's certificates as sent (``tls.certificate()``,
        #: ``tls.verify(host)`` parse and judge them on demand); None for plain http.
        self.tls = tls
        self.history: list[Response] = []
        #: The request as it was written on the wire (method, path, headers in order, body), or None for a
        #: response not made by a client; ``request.head()`` is its head in bytes.
        self.request = request
        #: The URL of the proxy the request went through (credentials left out), None when direct.
        self.proxy = proxy
        self.attempts = 1
        self.retried: tuple[str, ...] = ()
        self._body = body
        self._content = content
        self._decoder = decoder

    def __repr__(self) -> str:
        state = "read" if self._content is not None else "streaming"
        return f"<Response [{self.status_code} {self.reason}] {self.method} {self.url} {state}>"

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx or 3xx."""
        return 200 <= self.status_code < 400

    @property
    def is_redirect(self) -> bool:
        """Whether the status is a redirect that carries a Location."""
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def content(self) -> bytes:
        """The whole body. Raises ``RuntimeError`` on a streamed response not read yet."""
        if self._content is None:
            raise RuntimeError("the body of a streamed response is not read yet: await response.aread()")
        return self._content

    @property
    def charset(self) -> str | None:
        """The charset named by Content-Type, if it is a text encoding Python knows (``None`` otherwise)."""
        return charset_of(self.headers.get("content-type"))

    @property
    def text(self) -> str:
        """The body decoded by its charset (UTF-8 when none is named); undecodable bytes become U+FFFD."""
        return self.content.decode(self.charset or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    async def aread(self) -> bytes:
        """Read the rest of a streamed body into :attr:`content`."""
        if self._content is None:
            if self._body is None or self._body.consumed:
                raise RuntimeError("the body was already streamed")
            if self._decoder is None:
                self._content = await self._body.read_all()
            else:
                pieces = [piece async for piece in _Decoded(self._body, self._decoder, self.url)]
                self._content = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        return self._content

    def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk as it arrives (``async for chunk in response.stream()``).

        A body already read comes as one chunk. Raises ``RuntimeError`` if the body was streamed before.
        """
        if self._content is not None:
            return _OneChunk(self._content)
        if self._body is None or self._body.consumed:
            raise RuntimeError("the body was already streamed")
        if self._decoder is not None:
            return _Decoded(self._body, self._decoder, self.url)
        return self._body.__aiter__()

    async def aclose(self) -> None:
        """Release the connection (closing it if the body was not read to the end)."""
        if self._body is not None:
            await self._body.aclose()


class _OneChunk:
    """An async iterator over one already-read body."""

    def __init__(self, content: bytes) -> None:
        self._content: bytes | None = content

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> bytes:
        content, self._content = self._content, None
        if not content:
            raise StopAsyncIteration
        return content


class _Decoded:
    """An async iterator over a body as decoded: raw chunks from the reader go through the decoder, and each
    piece it gives (at most 64 KiB) comes out on its own, so memory stays at one piece whatever the ratio."""

    __slots__ = ("_body", "_decoder", "_ended", "_pieces", "_url")

    def __init__(self, body: BodyReader, decoder: BodyDecoder, url: str) -> None:
        self._body = body.__aiter__()
        self._decoder = decoder
        self._url = url
        self._pieces: deque[bytes] = deque()
        self._ended = False

    def __aiter__(self) -> _Decoded:
        return self

    async def __anext__(self) -> bytes:
        pieces = self._pieces
        while not pieces:
            if self._ended:
                raise StopAsyncIteration
            try:
                chunk = await anext(self._body, None)
                if chunk is None:
                    self._ended = True
                    pieces.extend(self._decoder.end())
                else:
                    pieces.extend(self._decoder.feed(chunk))
            except AiotcpError as exc:
                await self._body.aclose()  # a body that does not decode leaves its connection unusable
                raise exc.for_target(self._url) from exc.__cause__
        return pieces.popleft()
