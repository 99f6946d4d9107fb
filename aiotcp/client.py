"""The client: ``Client.request/get/head/stream`` over the keep-alive pool, and one-shot ``get``/``head``.

A request runs on one :class:`~aiotcp.budget.Budget` from start to end (pool wait, connect, send, head, body
and every redirect hop), so ``timeout=Timeouts(total=5)`` means five seconds whatever the server does.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from contextlib import asynccontextmanager
from types import EllipsisType
from typing import Any
from urllib.parse import urljoin

from ._version import __version__
from .budget import Budget
from .config import Limits, Timeouts, TimeoutsLike
from .connection import BodyReader, HTTPConnection
from .errors import (
    AiotcpError,
    ConnectionReset,
    Disconnected,
    InvalidHeader,
    InvalidInput,
    InvalidTarget,
    TooManyRedirects,
)
from .http11 import Request, make_protocol
from .pool import ConnectionPool
from .response import Headers, Response, Timings
from .targets import Target, parse_target
from .transport import connect, make_ssl_context

__all__ = ["Client", "TooManyRedirects", "get", "head", "request"]

HeaderInput = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]

USER_AGENT = f"aiotcp/{__version__}"
# Methods that are safe to send twice: only these are retried after a stale keep-alive.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Credentials are for the origin they were given to; a redirect to another origin does not get them.
_CREDENTIAL_HEADERS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
# How much of a redirect's body we read to keep its connection reusable before giving up on it.
_REDIRECT_DRAIN_LIMIT = 64 * 1024
_REQUEST_CACHE_SIZE = 1024


def _header_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidHeader(f"header {what} {value!r} is not Latin-1 text; pass bytes to send raw") from None


def _normalize_headers(headers: HeaderInput | None) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(_header_bytes(name, "name"), _header_bytes(value, "value")) for name, value in items]


def _with_host(authority: bytes, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Host first (as h11 sends it), unless the caller set one."""
    for name, _ in headers:
        if len(name) == 4 and name.lower() == b"host":
            return headers
    return [(b"Host", authority), *headers]


def _merge_headers(
    defaults: list[tuple[bytes, bytes]], overrides: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Defaults first, in order; a header given in ``overrides`` replaces every default of that name."""
    replaced = {name.lower() for name, _ in overrides}
    return [pair for pair in defaults if pair[0].lower() not in replaced] + overrides


class Client:
    """An HTTP/1.1 client with a keep-alive pool. Use as ``async with Client() as client: ...``.

    :param timeout: :class:`Timeouts`, or a number of seconds capping every phase and the total.
    :param limits: pool sizes and response caps (:class:`Limits`).
    :param verify: verify TLS certificates and host names (``True``), against a CA file (a path), not at all
        (``False``), or with a given ``ssl.SSLContext``.
    :param headers: sent with every request (a request's own headers replace these by name).
    :param follow_redirects: follow 3xx up to ``max_redirects`` hops (off by default, as in curl).
    :param http: response parser, ``"h11"`` (strict reference, the default) or ``"httptools"`` (faster).
    """

    def __init__(
        self,
        *,
        timeout: TimeoutsLike = Timeouts(),  # noqa: B008 - frozen value object
        limits: Limits = Limits(),  # noqa: B008 - frozen value object
        verify: Any = True,
        headers: HeaderInput | None = None,
        follow_redirects: bool = False,
        max_redirects: int = 10,
        http: str = "h11",
        user_agent: str = USER_AGENT,
    ) -> None:
        make_protocol(http, limits)  # fail now, not at the first request, on a bad or missing backend
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {max_redirects!r}")
        self.timeouts = Timeouts.from_value(timeout)
        self.limits = limits
        self.http = http
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self._ssl_context = None if verify is None else make_ssl_context(verify)
        self._tls_key = ("verify", id(self._ssl_context))
        self._default_headers = _merge_headers(
            [
                (b"User-Agent", _header_bytes(user_agent, "value")),
                (b"Accept", b"*/*"),
                (b"Accept-Encoding", b"identity"),
            ],
            _normalize_headers(headers),
        )
        self._pool = ConnectionPool(limits)
        # Requests built from the default headers, by (method, path, authority): most applications send the
        # same few, and a Request keeps its validated, encoded form. Bounded: cleared when full.
        self._requests: dict[tuple[str, str, str], Request] = {}

    def __repr__(self) -> str:
        return f"<Client http={self.http} {self._pool!r}>"

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()

    # -- public API -----------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str | Target,
        *,
        headers: HeaderInput | None = None,
        content: bytes = b"",
        timeout: TimeoutsLike | EllipsisType = ...,
        follow_redirects: bool | None = None,
    ) -> Response:
        """Send a request and read the whole response (up to ``limits.max_body_bytes``).

        Raises an :class:`~aiotcp.errors.AiotcpError` whose ``kind`` names what happened: ``invalid_target``
        (nothing sent), ``dns``, ``refused``, ``connect_timeout``, ``tls``, ``reset``, ``disconnected``,
        ``read_timeout``, ``write_timeout``, ``timeout``, ``pool_timeout``, ``protocol``, ``too_large``,
        ``local`` or ``too_many_redirects``.
        """
        response = await self.send(
            method,
            url,
            budget=self._budget(timeout),
            headers=headers,
            content=content,
            follow_redirects=follow_redirects,
        )
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    async def get(self, url: str | Target, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str | Target, **kwargs: Any) -> Response:
        return await self.request("HEAD", url, **kwargs)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str | Target,
        *,
        headers: HeaderInput | None = None,
        content: bytes = b"",
        timeout: TimeoutsLike | EllipsisType = ...,
        follow_redirects: bool | None = None,
    ) -> AsyncIterator[Response]:
        """Send a request; yield the response with its body unread (``async for chunk in r.stream()``).

        The connection goes back to the pool when the body has been read to the end, and is closed if the
        block exits before that. Raises like :meth:`request`.
        """
        response = await self.send(
            method,
            url,
            budget=self._budget(timeout),
            headers=headers,
            content=content,
            follow_redirects=follow_redirects,
        )
        try:
            yield response
        finally:
            await response.aclose()

    def send(
        self,
        method: str,
        url: str | Target,
        *,
        budget: Budget,
        headers: HeaderInput | None = None,
        content: bytes = b"",
        follow_redirects: bool | None = None,
    ) -> Coroutine[Any, Any, Response]:
        """Send one request on a deadline the caller started: ``await client.send("GET", url, budget=budget)``.

        For callers that spend one deadline on several requests (the prober's attempts and scheme switch share
        one): ``budget = Budget.start(timeouts)`` (:mod:`aiotcp.budget`). The response comes back with its body
        unread; read it (``aread()``, ``stream()``) and close it (``aclose()``), or use :meth:`stream`.

        Raises like :meth:`request`; ``invalid_target`` (a bad URL or header) is raised at the call, before
        anything is awaited. (A function returning the coroutine that sends, not a coroutine itself: one
        coroutine less per request.)
        """
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        target = url if isinstance(url, Target) else _parse_url(url)
        if headers:
            try:
                request_headers = _merge_headers(self._default_headers, _normalize_headers(headers))
            except InvalidInput as exc:
                exc.for_target(target.url)
                raise
        else:
            request_headers = self._default_headers
        if not follow:
            return self._send_once(method.upper(), target, request_headers, content, budget)
        return self._send_following(method.upper(), target, request_headers, content, budget)

    def build_request(self, *, method: str, target: Target) -> Request:
        """The request this client sends for ``method`` and ``target`` with its default headers: validated,
        with its wire bytes (``.encode()``). For engines that do their own I/O with this client's requests
        (the prober's lean engine).

        Raises :class:`~aiotcp.errors.InvalidInput` (``invalid_target``) for a header or path that cannot go on
        the wire, naming the target.
        """
        return self._request(method.upper(), target, self._default_headers, b"")

    # -- internals ------------------------------------------------------------------------------------------

    def _budget(self, timeout: TimeoutsLike | EllipsisType) -> Budget:
        timeouts = self.timeouts if isinstance(timeout, EllipsisType) else Timeouts.from_value(timeout)
        return Budget.start(timeouts)

    async def _send_following(
        self,
        method: str,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        budget: Budget,
    ) -> Response:
        history: list[Response] = []
        while True:
            response = await self._send_once(method, target, headers, content, budget)
            if not response.is_redirect:
                response.history = history
                return response
            if len(history) >= self.max_redirects:
                await response.aclose()
                raise TooManyRedirects(f"more than {self.max_redirects} redirects", target=target.url)
            await _drain(response)
            history.append(response)
            location = response.headers["location"]
            try:
                next_target = parse_target(urljoin(target.url, location))
            except InvalidTarget as exc:
                raise InvalidTarget(
                    f"redirect to an invalid location {location!r}: {exc.message}", target=target.url
                ) from exc
            if next_target.origin != target.origin:
                headers = [pair for pair in headers if pair[0].lower() not in _CREDENTIAL_HEADERS]
            if response.status_code == 303 or (response.status_code in (301, 302) and method not in ("GET", "HEAD")):
                method = "GET" if method != "HEAD" else "HEAD"
                content = b""
            target = next_target

    def _request(self, method: str, target: Target, headers: list[tuple[bytes, bytes]], content: bytes) -> Request:
        """The request to send, validated before any connection is made: a bad header never costs a socket."""
        cacheable = headers is self._default_headers and not content
        if cacheable:
            key = (method, target.path, target.authority)
            request = self._requests.get(key)
            if request is not None:
                return request
        try:
            request = Request(
                method.encode("ascii", "replace"),
                target.path.encode("ascii"),
                _with_host(target.authority.encode("ascii"), headers),
                content,
            )
        except InvalidInput as exc:
            exc.for_target(target.url)
            raise
        if cacheable:
            if len(self._requests) >= _REQUEST_CACHE_SIZE:
                self._requests.clear()
            self._requests[key] = request
        return request

    def _opener(self, target: Target, key: Hashable, budget: Budget) -> Callable[[], Awaitable[HTTPConnection]]:
        """What the pool calls to open a connection to ``target`` when it has none to give."""
        ssl_context = self._ssl_context if target.scheme == "https" else None

        async def open_connection() -> HTTPConnection:
            stream = await connect(target, budget, ssl_context=ssl_context)
            return HTTPConnection(stream, make_protocol(self.http, self.limits), key)

        return open_connection

    async def _send_once(
        self,
        method: str,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        budget: Budget,
    ) -> Response:
        request = self._request(method, target, headers, content)
        https = target.scheme == "https"
        if https and self._ssl_context is None:
            raise InvalidTarget("https needs TLS but the client was built with verify=None", target=target.url)
        key = (target.scheme, target.host, target.port, self._tls_key if https else None)
        started = time.perf_counter()
        fresh = False
        while True:
            # An idle connection without waiting first: the common case needs neither an opener nor the
            # pool's coroutine.
            connection = None if fresh else self._pool.take_idle(key)
            if connection is None:
                try:
                    connection = await self._pool.acquire(key, budget, self._opener(target, key, budget), fresh=fresh)
                except AiotcpError as exc:
                    exc.for_target(target.url)  # a pool wait does not know the URL it waited for
                    raise
            try:
                head = await connection.send_request(request, budget, target.url)
            except BaseException as exc:
                stale = (
                    connection.is_reused()
                    and not connection.response_started()
                    and isinstance(exc, (ConnectionReset, Disconnected))
                )
                await self._pool.release(connection, False)
                if stale and not fresh and method in _IDEMPOTENT:
                    fresh = True  # the server closed a pooled connection under us: once more, on a new one
                    continue
                raise
            break

        info = connection.stream.info
        reused = connection.is_reused()
        timings = Timings(
            dns_ms=None if reused else info.dns_ms,
            connect_ms=None if reused else info.connect_ms,
            tls_ms=None if reused else info.tls_ms,
            ttfb_ms=_ms_between(started, connection.first_byte_at),
            reused=reused,
        )

        def release(conn: HTTPConnection, reusable: bool) -> bool:
            timings.total_ms = _ms_between(started, time.perf_counter())
            return self._pool.give_back(conn, reusable)

        return Response(
            url=target.url,
            method=method,
            status_code=head.status_code,
            reason=head.reason.decode("latin-1"),
            http_version=head.http_version.decode("ascii", "replace"),
            headers=Headers(head.headers),
            peer=info.peer,
            timings=timings,
            body=BodyReader(connection, budget, release),
        )


@functools.lru_cache(maxsize=1024)
def _parse_url(url: str) -> Target:
    """``parse_target``, remembered: an application asks for the same few URLs again and again, and a
    Target is immutable. Failures are not cached (lru_cache does not keep exceptions)."""
    return parse_target(url)


def _ms_between(start: float, end: float | None) -> float | None:
    # To the microsecond; int() instead of round(x, 3), which formats the float through a decimal string.
    return None if end is None else int((end - start) * 1e6 + 0.5) / 1000.0


async def _drain(response: Response) -> None:
    """Read a small redirect body so its connection can be reused; close it if the body is large."""
    received = 0
    async for chunk in response.stream():
        received += len(chunk)
        if received > _REDIRECT_DRAIN_LIMIT:
            break  # response.aclose() below closes the connection: the rest is not worth reading
    await response.aclose()


async def request(method: str, url: str | Target, **kwargs: Any) -> Response:
    """One request on a client of its own. Keyword arguments go to :class:`Client` or to the request."""
    per_request = {k: kwargs.pop(k) for k in ("headers", "content") if k in kwargs}
    async with Client(**kwargs) as client:
        return await client.request(method, url, **per_request)


async def get(url: str | Target, **kwargs: Any) -> Response:
    """``GET url`` on a client of its own: ``response = await aiotcp.get("http://127.0.0.1:8080/")``."""
    return await request("GET", url, **kwargs)


async def head(url: str | Target, **kwargs: Any) -> Response:
    """``HEAD url`` on a client of its own."""
    return await request("HEAD", url, **kwargs)
