"""The client: ``Client.request/get/head/stream`` over the keep-alive pool, and one-shot ``get``/``head``.

A request runs on one :class:`~aiotcp.budget.Budget` from start to end (pool wait, connect, send, head, body
and every redirect hop), so ``timeout=Timeouts(total=5)`` means five seconds whatever the server does.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json as jsonlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import EllipsisType
from typing import Any
from urllib.parse import urlencode, urljoin

import anyio

from ._version import __version__
from .budget import Budget
from .config import Limits, Retry, RetryLike, Timeouts, TimeoutsLike
from .connection import BodyReader, HTTPConnection
from .cookies import Cookies
from .decoding import ACCEPT_ENCODING, make_decoder
from .errors import (
    AiotcpError,
    ConnectionReset,
    Disconnected,
    InvalidHeader,
    InvalidInput,
    InvalidTarget,
    NetworkError,
    ProtocolError,
    TooManyRedirects,
)
from .http11 import Request, make_protocol
from .pool import ConnectionPool
from .proxy import EnvironmentProxies, Proxy, ProxyLike, parse_proxy
from .resolution import Nameserver
from .resolver import Resolver, ResolverLike, default_resolver, make_resolver
from .response import Headers, Response, Timings
from .targets import Target, parse_target, resolve_overrides
from .transport import TCPTransport, Transport, make_ssl_context

__all__ = ["Client", "TooManyRedirects", "get", "head", "request"]

#: Headers as a mapping or as ``(name, value)`` pairs; a value of ``None`` removes a default header of that
#: name (curl's ``-H 'Name:'``).
HeaderInput = Mapping[str, str | None] | Iterable[tuple[str | bytes, str | bytes | None]]
_HeaderPairs = list[tuple[bytes, bytes | None]]
#: Query parameters (``params=``) or form fields (``data=``): a mapping (a value may be a list of values) or
#: ``(name, value)`` pairs; values are text, numbers or bools.
QueryInput = Mapping[str, Any] | Sequence[tuple[str, Any]]
#: ``auth=``: a user name and password for Basic authentication.
BasicAuth = tuple[str, str]

USER_AGENT = f"aiotcp/{__version__}"
# Methods that are safe to send twice: only these are retried after a stale keep-alive.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# A reused connection that answers with bytes that cannot start a status line (what a server sent after an
# earlier response, such as a body after a HEAD reply) may have acted on the request: only these are retried.
_SAFE = frozenset({"GET", "HEAD"})
# Credentials are for the origin they were given to; a redirect to another origin does not get them.
_CREDENTIAL_HEADERS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
# How much of a redirect's body we read to keep its connection reusable before giving up on it.
_REDIRECT_DRAIN_LIMIT = 64 * 1024
_REQUEST_CACHE_SIZE = 1024
#: Every parameter a request takes besides method and URL: what the one-shot functions pass to the request.
_REQUEST_OPTIONS = ("headers", "content", "params", "json", "data", "auth", "timeout", "follow_redirects")


def _header_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidHeader(f"header {what} {value!r} is not Latin-1 text; pass bytes to send raw") from None


def _normalize_headers(headers: HeaderInput | None) -> _HeaderPairs:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [
        (_header_bytes(name, "name"), None if value is None else _header_bytes(value, "value")) for name, value in items
    ]


def _with_host(authority: bytes, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Host first (as h11 sends it), unless the caller set one."""
    for name, _ in headers:
        if len(name) == 4 and name.lower() == b"host":
            return headers
    return [(b"Host", authority), *headers]


def _merge_headers(defaults: list[tuple[bytes, bytes]], overrides: _HeaderPairs) -> list[tuple[bytes, bytes]]:
    """Defaults first, in order; a header given in ``overrides`` replaces every default of that name, and one
    given as ``None`` removes them (Host excepted: :func:`_with_host` puts it back, HTTP/1.1 requires it)."""
    replaced = {name.lower() for name, _ in overrides}
    kept = [pair for pair in defaults if pair[0].lower() not in replaced]
    return kept + [(name, value) for name, value in overrides if value is not None]


def _basic(auth: BasicAuth) -> bytes:
    """The ``Authorization`` value of HTTP Basic for ``(user, password)`` (UTF-8, as RFC 7617 recommends)."""
    if not (isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(part, str) for part in auth)):
        raise InvalidHeader(f"auth must be a (user, password) tuple of str, got {type(auth).__name__}")
    user, password = auth
    if ":" in user:
        raise InvalidHeader("a Basic auth user name cannot contain ':'")
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def _form_text(value: Any) -> str:
    # As httpx and JavaScript's URLSearchParams write them: booleans in lower case, None as an empty value.
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def _encode_pairs(values: QueryInput) -> str:
    """``name=value&...`` (application/x-www-form-urlencoded) from a mapping or pairs; a list or tuple value
    gives the name once per item."""
    items = values.items() if isinstance(values, Mapping) else values
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        if isinstance(value, (list, tuple)):
            pairs.extend((str(name), _form_text(item)) for item in value)
        else:
            pairs.append((str(name), _form_text(value)))
    return urlencode(pairs)


def _with_params(target: Target, params: QueryInput) -> Target:
    """``target`` with ``params`` added to its query (after the ones the URL has)."""
    query = _encode_pairs(params)
    if not query:
        return target
    path = target.path
    joiner = "" if path.endswith(("?", "&")) else "&" if "?" in path else "?"
    return target.with_path(path + joiner + query)


def _has_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(key.lower() == name for key, _ in headers)


def _local_address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidTarget(f"local_address must be an IP address, got {value!r}") from None


class Client:
    """An HTTP/1.1 client with a keep-alive pool. Use as ``async with Client() as client: ...``.

    :param timeout: :class:`Timeouts`, or a number of seconds capping every phase and the total.
    :param limits: pool sizes and response caps (:class:`Limits`).
    :param verify: verify TLS certificates and host names (``True``), against a CA file (a path), not at all
        (``False``), or with a given ``ssl.SSLContext``.
    :param headers: sent with every request (a request's own headers replace these by name).
    :param follow_redirects: follow 3xx up to ``max_redirects`` hops (off by default, as in curl).
    :param http: response parser, ``"h11"`` (strict reference, the default) or ``"httptools"`` (faster).
    :param resolve: ``{(host, port): address}`` (or a list of addresses): connect there instead of asking DNS,
        as curl's ``--resolve`` does; the Host header, SNI and certificate check still use the URL's host.
        Validated now: raises :class:`~aiotcp.errors.InvalidTarget` for a bad host, port or address.
    :param resolver: how names resolve: ``"auto"`` (the async resolver with the system's nameservers and
        ``/etc/hosts``, one cache for the process), ``"system"`` (getaddrinfo in a thread), an
        :class:`~aiotcp.resolution.ResolverConfig` or a :class:`~aiotcp.resolver.Resolver`.
    :param resolvers: DNS resolvers to query instead of the system's, ``["IP[:PORT]", ...]``.
    :param proxy: every request through this proxy (:mod:`aiotcp.proxy`): ``http://[user:pass@]host:port``,
        ``socks5://``, ``socks5h://``, ``socks4://`` or ``socks4a://``. Validated now (``invalid_target``).
    :param trust_env: without ``proxy``, take proxies from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``,
        ``ALL_PROXY``, ``NO_PROXY``; lowercase names first), read once, now. Off by default.
    :param auth: ``(user, password)``: HTTP Basic on every request (dropped on a redirect to another origin).
    :param decode: decode gzip, deflate, br and zstd bodies (and say so in ``Accept-Encoding``); ``False``
        keeps bodies as sent and asks for ``identity``.
    :param retries: a number of retries or a :class:`~aiotcp.config.Retry` (see there for what is retried);
        none by default. The retry of a stale keep-alive connection is made whatever this says.
    :param transport: how connections are made: a :class:`~aiotcp.transport.Transport`, such as
        :class:`aiotcp.testing.MockTransport`; by default over the network.
    :param uds: connect every request to this Unix domain socket (the URL still gives Host and the path).
    :param local_address: the source IP address of every connection (``127.0.0.2``): only destinations of its
        family are tried.
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
        resolve: Mapping[tuple[str, int], str | Iterable[str]] | None = None,
        resolver: ResolverLike = "auto",
        resolvers: Iterable[str | Nameserver] | str | None = None,
        proxy: ProxyLike | None = None,
        trust_env: bool = False,
        auth: BasicAuth | None = None,
        decode: bool = True,
        retries: RetryLike = None,
        transport: Transport | None = None,
        uds: str | None = None,
        local_address: str | None = None,
    ) -> None:
        make_protocol(http, limits)  # fail now, not at the first request, on a bad or missing backend
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {max_redirects!r}")
        if uds is not None and proxy is not None:
            raise ValueError("uds and proxy exclude each other: a Unix socket is the whole way")
        if transport is not None and (uds is not None or local_address is not None):
            raise ValueError("uds and local_address are TCPTransport's: give them to the transport you pass")
        self._proxy: Proxy | None = parse_proxy(proxy) if proxy is not None else None
        environment = EnvironmentProxies() if trust_env and proxy is None and uds is None else None
        self._env_proxies = environment if environment else None
        self.resolver: Resolver = make_resolver(resolver, resolvers)
        # A resolver made here is closed with the client; one passed in, or the process's, is not.
        self._owns_resolver = self.resolver is not resolver and self.resolver is not default_resolver()
        self.timeouts = Timeouts.from_value(timeout)
        self.limits = limits
        self.http = http
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.decode = decode
        self.retry: Retry | None = Retry.from_value(retries)
        #: The cookies this client keeps and sends (:class:`~aiotcp.cookies.Cookies`).
        self.cookies = Cookies()
        self.transport: Transport = transport or TCPTransport(
            resolver=self.resolver,
            resolve=resolve_overrides(resolve) if resolve else None,
            uds=uds,
            local_address=_local_address(local_address),
        )
        self._ssl_context = None if verify is None else make_ssl_context(verify)
        self._tls_key = ("verify", id(self._ssl_context))
        defaults = [
            (b"User-Agent", _header_bytes(user_agent, "value")),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", ACCEPT_ENCODING.encode("ascii") if decode else b"identity"),
        ]
        if auth is not None:
            defaults.append((b"Authorization", _basic(auth)))
        self._default_headers = _merge_headers(defaults, _normalize_headers(headers))
        self._pool = ConnectionPool(limits)
        # Requests built from the default headers, by (method, path, authority, proxy): most applications send
        # the same few, and a Request keeps its validated, encoded form. Bounded: cleared when full.
        self._requests: dict[tuple[str, str, str, Proxy | None], Request] = {}

    def __repr__(self) -> str:
        via = f" proxy={self._proxy.url}" if self._proxy is not None else " trust_env" if self._env_proxies else ""
        return f"<Client http={self.http}{via} {self._pool!r}>"

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection (and the resolver, if the client made it)."""
        await self._pool.aclose()
        if self._owns_resolver:
            await self.resolver.aclose()

    def proxy_for(self, url: str | Target) -> Proxy | None:
        """The proxy a request to ``url`` goes through (``proxy=``, or the environment's with ``trust_env``),
        or None when it goes directly."""
        target = url if isinstance(url, Target) else _parse_url(url)
        if self._env_proxies is not None:
            return self._env_proxies.proxy_for(target)
        return self._proxy

    # -- public API -----------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str | Target,
        *,
        headers: HeaderInput | None = None,
        content: bytes = b"",
        params: QueryInput | None = None,
        json: Any = None,
        data: QueryInput | None = None,
        auth: BasicAuth | None = None,
        timeout: TimeoutsLike | EllipsisType = ...,
        follow_redirects: bool | None = None,
    ) -> Response:
        """Send a request and read the whole response (up to ``limits.max_body_bytes``, decoded).

        ``params``: query parameters added to the URL's; ``json``: a body serialized as JSON
        (``Content-Type: application/json``); ``data``: form fields, urlencoded
        (``application/x-www-form-urlencoded``); ``content``: the body as bytes. One body at most. ``auth``:
        ``(user, password)`` for Basic, this request only.

        Raises an :class:`~aiotcp.errors.AiotcpError` whose ``kind`` names what happened: ``invalid_target``
        (nothing sent), ``dns``, ``refused``, ``connect_timeout``, ``tls``, ``proxy``, ``reset``,
        ``disconnected``, ``read_timeout``, ``write_timeout``, ``timeout``, ``pool_timeout``, ``protocol``,
        ``too_large``, ``local`` or ``too_many_redirects``.
        """
        response = await self.send(
            method,
            url,
            budget=self._budget(timeout),
            headers=headers,
            content=content,
            params=params,
            json=json,
            data=data,
            auth=auth,
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

    async def post(self, url: str | Target, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str | Target,
        *,
        headers: HeaderInput | None = None,
        content: bytes = b"",
        params: QueryInput | None = None,
        json: Any = None,
        data: QueryInput | None = None,
        auth: BasicAuth | None = None,
        timeout: TimeoutsLike | EllipsisType = ...,
        follow_redirects: bool | None = None,
    ) -> AsyncIterator[Response]:
        """Send a request; yield the response with its body unread (``async for chunk in r.stream()``).

        The connection goes back to the pool when the body has been read to the end, and is closed if the
        block exits before that. Takes and raises what :meth:`request` does.
        """
        response = await self.send(
            method,
            url,
            budget=self._budget(timeout),
            headers=headers,
            content=content,
            params=params,
            json=json,
            data=data,
            auth=auth,
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
        address: str | None = None,
        params: QueryInput | None = None,
        json: Any = None,
        data: QueryInput | None = None,
        auth: BasicAuth | None = None,
    ) -> Coroutine[Any, Any, Response]:
        """Send one request on a deadline the caller started: ``await client.send("GET", url, budget=budget)``.

        For callers that spend one deadline on several requests (the prober's attempts and scheme switch share
        one): ``budget = Budget.start(timeouts)`` (:mod:`aiotcp.budget`). The response comes back with its body
        unread; read it (``aread()``, ``stream()``) and close it (``aclose()``), or use :meth:`stream`.

        ``address``: connect to this IP address instead of resolving the URL's host (TLS still checks the
        host name); it applies to every hop with that host. The prober's ``--all-ips`` sends one request per
        address of a name this way. The other keywords are :meth:`request`'s.

        Raises like :meth:`request`; ``invalid_target`` (a bad URL, header or body option) is raised at the
        call, before anything is awaited. (A function returning the coroutine that sends, not a coroutine
        itself: one coroutine less per request.)
        """
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        target = url if isinstance(url, Target) else _parse_url(url)
        try:
            if params is not None:
                target = _with_params(target, params)
            if headers:
                request_headers = _merge_headers(self._default_headers, _normalize_headers(headers))
            else:
                request_headers = self._default_headers
            if json is not None or data is not None or auth is not None:
                request_headers, content = _with_body(request_headers, content, json, data, auth)
        except InvalidInput as exc:
            exc.for_target(target.url)
            raise
        send_one = self._send_once if self.retry is None else self._send_retrying
        if not follow:
            return send_one(method.upper(), target, request_headers, content, budget, address)
        return self._send_following(method.upper(), target, request_headers, content, budget, address)

    def build_request(self, *, method: str, target: Target) -> Request:
        """The request this client sends for ``method`` and ``target`` with its default headers: validated,
        with its wire bytes (``.encode()``). For engines that do their own I/O with this client's requests
        (the prober's lean engine).

        Raises :class:`~aiotcp.errors.InvalidInput` (``invalid_target``) for a header or path that cannot go on
        the wire, naming the target.
        """
        return self._request(method.upper(), target, self._default_headers, b"", None)

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
        address: str | None = None,
    ) -> Response:
        history: list[Response] = []
        pinned = target.host
        send_one = self._send_once if self.retry is None else self._send_retrying
        while True:
            hop_address = address if target.host == pinned else None
            response = await send_one(method, target, headers, content, budget, hop_address)
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
                headers = [pair for pair in headers if pair[0].lower() != b"content-type"]
            target = next_target

    async def _send_retrying(
        self,
        method: str,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        budget: Budget,
        address: str | None = None,
    ) -> Response:
        """:meth:`_send_once`, tried again as :attr:`retry` says; the response counts the attempts."""
        retry = self.retry
        assert retry is not None
        reasons: list[str] = []
        while True:
            try:
                response = await self._send_once(method, target, headers, content, budget, address)
            except AiotcpError as exc:
                pause = retry.after_error(
                    method, exc, retry=len(reasons) + 1, remaining=budget.remaining(), jitter=random.uniform(0.5, 1.5)
                )
                if pause is None:
                    raise
                reasons.append(exc.kind)
            else:
                pause = retry.after_status(
                    method,
                    response.status_code,
                    response.headers.get("retry-after"),
                    retry=len(reasons) + 1,
                    remaining=budget.remaining(),
                    jitter=random.uniform(0.5, 1.5),
                )
                if pause is None:
                    response.attempts, response.retried = len(reasons) + 1, tuple(reasons)
                    return response
                await _drain(response)
                reasons.append(str(response.status_code))
            await anyio.sleep(pause)

    def _request(
        self, method: str, target: Target, headers: list[tuple[bytes, bytes]], content: bytes, proxy: Proxy | None
    ) -> Request:
        """The request to send, validated before any connection is made: a bad header never costs a socket.

        Through an HTTP proxy that forwards it (an ``http://`` target), the request line has the absolute URL and
        the proxy's credentials go in ``Proxy-Authorization``; through a tunnel, no ``Proxy-Authorization``
        goes to the target.
        """
        cacheable = headers is self._default_headers and not content
        if cacheable:
            key = (method, target.path, target.authority, proxy)
            request = self._requests.get(key)
            if request is not None:
                return request
        request_target = target.path
        if proxy is not None:
            headers = [pair for pair in headers if pair[0].lower() != b"proxy-authorization"]
            if proxy.forwards(target):
                request_target = target.url
                authorization = proxy.authorization()
                if authorization is not None:
                    headers.append((b"Proxy-Authorization", authorization))
        try:
            request = Request(
                method.encode("ascii", "replace"),
                request_target.encode("ascii"),
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

    def _opener(
        self, target: Target, key: Hashable, budget: Budget, address: str | None, proxy: Proxy | None
    ) -> Callable[[], Awaitable[HTTPConnection]]:
        """What the pool calls to open a connection to ``target`` when it has none to give."""
        ssl_context = self._ssl_context if target.scheme == "https" else None
        transport = self.transport

        async def open_connection() -> HTTPConnection:
            stream = await transport.connect(target, budget, ssl_context=ssl_context, address=address, proxy=proxy)
            return HTTPConnection(stream, make_protocol(self.http, self.limits), key)

        return open_connection

    async def _send_once(
        self,
        method: str,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        budget: Budget,
        address: str | None = None,
    ) -> Response:
        proxy = self._proxy if self._env_proxies is None else self._env_proxies.proxy_for(target)
        if self.cookies.any:
            headers = self._with_cookies(target, headers)
        request = self._request(method, target, headers, content, proxy)
        https = target.scheme == "https"
        if https and self._ssl_context is None:
            raise InvalidTarget("https needs TLS but the client was built with verify=None", target=target.url)
        key = (target.scheme, target.host, target.port, self._tls_key if https else None, address, proxy)
        started = time.perf_counter()
        fresh = False
        while True:
            # An idle connection without waiting first: the common case needs neither an opener nor the
            # pool's coroutine.
            connection = None if fresh else self._pool.take_idle(key)
            if connection is None:
                try:
                    connection = await self._pool.acquire(
                        key, budget, self._opener(target, key, budget, address, proxy), fresh=fresh
                    )
                except AiotcpError as exc:
                    exc.for_target(target.url)  # a pool wait does not know the URL it waited for
                    raise
            try:
                head = await connection.send_request(request, budget, target.url)
            except BaseException as exc:
                if isinstance(exc, NetworkError) and exc.response_started is None:
                    exc.response_started = connection.response_started()
                retry = not fresh and connection.is_reused() and _worth_a_fresh_connection(exc, method, connection)
                await self._pool.release(connection, False)
                if retry:
                    # The server closed a pooled connection under us, or bytes it sent after an earlier response
                    # came first: once more, on a new connection.
                    fresh = True
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
            proxy_connect_ms=None if reused else info.proxy_connect_ms,
        )

        def release(conn: HTTPConnection, reusable: bool) -> bool:
            timings.total_ms = _ms_between(started, time.perf_counter())
            return self._pool.give_back(conn, reusable)

        # One pass over the names for the two headers the client acts on (by length first: most names are
        # neither): Content-Encoding (decoding) and Set-Cookie (the jar).
        encoding: bytes | None = None
        set_cookie: list[str] | None = None
        for name, value in head.headers:
            size = len(name)
            if size == 16 and name.lower() == b"content-encoding":
                encoding = value if encoding is None else encoding + b", " + value
            elif size == 10 and name.lower() == b"set-cookie":
                if set_cookie is None:
                    set_cookie = []
                set_cookie.append(value.decode("latin-1"))
        if set_cookie is not None:
            self.cookies.extract(target.url, set_cookie)
        decoder = None
        if encoding is not None and self.decode and method != "HEAD":
            limits = self.limits
            decoder = make_decoder(encoding.decode("latin-1"), limits.max_body_bytes, limits.max_decompression_ratio)

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
            request=request,
            dns=info.resolution,
            decoder=decoder,
            proxy=info.proxy,
            quirks=head.quirks,
            tls=info.tls,
        )

    def _with_cookies(self, target: Target, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """``headers`` with the jar's ``Cookie`` for ``target``, unless the caller set a Cookie header."""
        cookie = self.cookies.header_for(target.url)
        if cookie is None or _has_header(headers, b"cookie"):
            return headers
        return [*headers, (b"Cookie", cookie.encode("latin-1"))]


def _with_body(
    headers: list[tuple[bytes, bytes]], content: bytes, json: Any, data: QueryInput | None, auth: BasicAuth | None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body that ``json=``, ``data=`` and ``auth=`` ask for. Raises InvalidHeader for two
    bodies at once or a body ``json.dumps`` refuses."""
    extra: list[tuple[bytes, bytes]] = []
    given = sum(part is not None for part in (json, data)) + bool(content)
    if given > 1:
        raise InvalidHeader("give one body: content=, json= or data=")
    if json is not None:
        try:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidHeader(f"json= cannot be serialized: {exc}") from None
        if not _has_header(headers, b"content-type"):
            extra.append((b"Content-Type", b"application/json"))
    elif data is not None:
        if isinstance(data, (bytes, str)):
            raise InvalidHeader("data= takes form fields (a mapping or pairs); send bytes with content=")
        content = _encode_pairs(data).encode("ascii")
        if not _has_header(headers, b"content-type"):
            extra.append((b"Content-Type", b"application/x-www-form-urlencoded"))
    if auth is not None:
        headers = [pair for pair in headers if pair[0].lower() != b"authorization"]
        extra.append((b"Authorization", _basic(auth)))
    return [*headers, *extra], content


def _worth_a_fresh_connection(exc: BaseException, method: str, connection: HTTPConnection) -> bool:
    """Whether a request that failed on a reused connection goes once more on a new one: when the server had
    closed it (reset or FIN before any byte of response; idempotent methods), or when the first bytes that came
    back cannot start a status line (GET and HEAD only)."""
    if isinstance(exc, (ConnectionReset, Disconnected)):
        return method in _IDEMPOTENT and not connection.response_started()
    return isinstance(exc, ProtocolError) and method in _SAFE and connection.started_with_garbage()


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
    per_request = {k: kwargs.pop(k) for k in _REQUEST_OPTIONS if k in kwargs}
    async with Client(**kwargs) as client:
        return await client.request(method, url, **per_request)


async def get(url: str | Target, **kwargs: Any) -> Response:
    """``GET url`` on a client of its own: ``response = await aiotcp.get("http://127.0.0.1:8080/")``."""
    return await request("GET", url, **kwargs)


async def head(url: str | Target, **kwargs: Any) -> Response:
    """``HEAD url`` on a client of its own."""
    return await request("HEAD", url, **kwargs)
