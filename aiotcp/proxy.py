"""Proxies as values: :class:`Proxy` (``http://``, ``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://``),
and which proxy a URL goes through when the environment says (``trust_env``: ``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY``, ``NO_PROXY``).

What each kind of proxy does with a request (the hops themselves are made in :mod:`aiotcp.tunnel` and
:func:`aiotcp.transport.connect`):

==============  ============================================================================================
``http``        an ``http://`` target: the request goes to the proxy in absolute form
                (``GET http://host/path HTTP/1.1``) with ``Proxy-Authorization``; an ``https://`` target:
                a ``CONNECT host:port`` tunnel (``Proxy-Authorization`` on the CONNECT only), then TLS to
                the target through it
``socks5``      a tunnel; the target's name is resolved here and the proxy is given the address
``socks5h``     a tunnel; the proxy resolves the name (DNS happens on the proxy's side)
``socks4``      a tunnel to an IPv4 address resolved here (SOCKS4 cannot carry a name or IPv6)
``socks4a``     a tunnel; the proxy resolves the name
==============  ============================================================================================

Credentials come from the URL (``http://user:pass@host:3128``, percent-encoded); they are sent only to the
proxy and never shown: ``repr()``, ``str()`` and error messages use :attr:`Proxy.url`, which leaves them out.

This module holds values only and imports nothing but the standard library.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import unquote

from .errors import InvalidTarget
from .targets import Target, parse_target

__all__ = ["PROXY_SCHEMES", "EnvironmentProxies", "Proxy", "ProxyLike", "parse_proxy"]

ProxyScheme = Literal["http", "socks5", "socks5h", "socks4", "socks4a"]
#: The proxy schemes understood, and whether the proxy resolves the target's name (``socks5h``, ``socks4a``).
PROXY_SCHEMES: Final[Mapping[str, bool]] = {
    "http": False,
    "socks5": False,
    "socks5h": True,
    "socks4": False,
    "socks4a": True,
}
# curl's default proxy port, whatever the proxy's scheme.
_DEFAULT_PORT = 1080


@dataclass(frozen=True, slots=True)
class Proxy:
    """One proxy, validated when built: ``scheme`` (see :data:`PROXY_SCHEMES`), ``host`` and ``port`` (normalized
    as a target's are), and optional ``username``/``password`` (already percent-decoded).

    Raises:
        InvalidTarget: for an unknown scheme, a bad host or port, or a password without a user name.
    """

    scheme: ProxyScheme
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    #: ``scheme://host:port``, without the credentials: what messages, ``repr()`` and the pool key show.
    url: str = field(init=False, compare=False)
    #: The proxy as a connect target (``http://host:port/``): what DNS and TCP go to.
    target: Target = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scheme not in PROXY_SCHEMES:
            raise InvalidTarget(f"unsupported proxy scheme {self.scheme!r}: use {', '.join(PROXY_SCHEMES)}")
        if self.password is not None and self.username is None:
            raise InvalidTarget("a proxy password needs a user name")
        if self.scheme.startswith("socks4") and self.password:
            raise InvalidTarget("SOCKS4 has no password: give only a user id (socks4://user@host)")
        if self.username is not None and len(self.username.encode("utf-8")) > 255:
            raise InvalidTarget("the proxy user name is longer than 255 bytes")
        if self.password is not None and len(self.password.encode("utf-8")) > 255:
            raise InvalidTarget("the proxy password is longer than 255 bytes")
        try:
            target = Target("http", self.host, self.port)
        except InvalidTarget as exc:
            raise InvalidTarget(f"invalid proxy: {exc.message}") from None
        object.__setattr__(self, "target", target)
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "url", f"{self.scheme}://{host}:{self.port}")

    def __str__(self) -> str:
        return self.url

    @property
    def resolves_names(self) -> bool:
        """Whether the proxy is given the target's name and resolves it (``socks5h``, ``socks4a``)."""
        return PROXY_SCHEMES[self.scheme]

    @property
    def is_http(self) -> bool:
        """An HTTP proxy: absolute-form requests for ``http://``, CONNECT tunnels for ``https://``."""
        return self.scheme == "http"

    def forwards(self, target: Target) -> bool:
        """Whether requests to ``target`` are sent to the proxy in absolute form (an HTTP proxy and an
        ``http://`` target) rather than through a tunnel."""
        return self.scheme == "http" and target.scheme == "http"

    def authorization(self) -> bytes | None:
        """The ``Proxy-Authorization`` value (Basic) for an HTTP proxy with credentials, else None."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return b"Basic " + base64.b64encode(token)


ProxyLike = Proxy | str


def parse_proxy(value: ProxyLike) -> Proxy:
    """A :class:`Proxy` from ``scheme://[user[:password]@]host[:port]`` (a :class:`Proxy` is returned as is).

    Without a scheme the proxy is ``http://`` and without a port it is 1080, as in curl. User name and
    password are percent-decoded (``%40`` for ``@``).

    Raises:
        InvalidTarget: naming what is wrong; the message never repeats a password.
    """
    if isinstance(value, Proxy):
        return value
    if not isinstance(value, str) or not value:
        raise InvalidTarget(f"a proxy is a URL such as http://127.0.0.1:3128, got {value!r}")
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    scheme = scheme.lower()
    if scheme == "socks":  # what some environments call SOCKS5
        scheme = "socks5"
    if scheme == "https":
        raise InvalidTarget("an https:// proxy (TLS to the proxy) is not supported: use http:// or socks5://")
    if scheme not in PROXY_SCHEMES:
        raise InvalidTarget(f"unsupported proxy scheme {scheme!r}: use {', '.join(PROXY_SCHEMES)}")
    userinfo, at, hostport = rest.rpartition("@")
    if not at:
        userinfo, hostport = "", rest
    hostport = hostport.rstrip("/")
    if "/" in hostport or "?" in hostport or "#" in hostport:
        raise InvalidTarget(f"a proxy URL has no path: {_without_password(value)!r}")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user)
        password = unquote(secret) if colon else None
    try:
        where = parse_target(f"http://{hostport}", default_port=_DEFAULT_PORT)
    except InvalidTarget as exc:
        raise InvalidTarget(f"invalid proxy {_without_password(value)!r}: {exc.message}") from None
    return Proxy(scheme, where.host, where.port, username, password)  # type: ignore[arg-type]


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostport = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hostport}"


# -- the environment ----------------------------------------------------------------------------------------


class EnvironmentProxies:
    """The proxies the environment names, read once: ``http_proxy``, ``https_proxy``, ``all_proxy`` and
    ``no_proxy`` (the lowercase name wins over the uppercase one, as in curl).

    ``HTTP_PROXY`` in upper case is ignored when ``REQUEST_METHOD`` is set: in a CGI program it comes from the
    request's ``Proxy:`` header ("httpoxy"), as the standard library's ``urllib`` also rules.

    ``no_proxy``: comma-separated; ``*`` matches every host; a name matches itself and its subdomains (a
    leading dot is optional: ``example.com`` and ``.example.com`` both match ``www.example.com``); an IP
    address or CIDR range (``127.0.0.0/8``, ``::1``) matches addresses in it. Ports in entries are ignored.

    Raises:
        InvalidTarget: when a variable holds a proxy URL that does not parse, naming the variable.
    """

    __slots__ = ("_by_scheme", "_no_proxy_all", "_no_proxy_names", "_no_proxy_networks")

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        cgi = "REQUEST_METHOD" in env
        self._by_scheme: dict[str, Proxy | None] = {}
        fallback = self._read(env, "all_proxy", upper=True)
        for scheme in ("http", "https"):
            proxy = self._read(env, f"{scheme}_proxy", upper=not (cgi and scheme == "http"))
            self._by_scheme[scheme] = proxy or fallback
        no_proxy = env.get("no_proxy", env.get("NO_PROXY", ""))
        self._no_proxy_all = False
        self._no_proxy_names: list[str] = []
        self._no_proxy_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in no_proxy.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self._no_proxy_all = True
                continue
            try:
                self._no_proxy_networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            host = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry  # "host:port": the port is ignored
            self._no_proxy_names.append(host.lstrip(".").rstrip("."))

    @staticmethod
    def _read(env: Mapping[str, str], name: str, *, upper: bool) -> Proxy | None:
        value = env.get(name)
        used = name
        if not value and upper:
            value, used = env.get(name.upper()), name.upper()
        if not value:
            return None
        try:
            return parse_proxy(value.strip())
        except InvalidTarget as exc:
            raise InvalidTarget(f"{used}: {exc.message}") from None

    def __repr__(self) -> str:
        shown = {scheme: proxy.url if proxy else None for scheme, proxy in self._by_scheme.items()}
        return f"<EnvironmentProxies {shown} no_proxy={'*' if self._no_proxy_all else len(self._no_proxy_names)}>"

    def __bool__(self) -> bool:
        return any(self._by_scheme.values())

    def bypass(self, host: str) -> bool:
        """Whether ``no_proxy`` says ``host`` (a normalized target host) is reached directly."""
        if self._no_proxy_all:
            return True
        if self._no_proxy_networks:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                pass
            else:
                return any(address in network for network in self._no_proxy_networks)
        name = host.rstrip(".")
        return any(name == entry or name.endswith("." + entry) for entry in self._no_proxy_names)

    def proxy_for(self, target: Target) -> Proxy | None:
        """The proxy for ``target``, or None when it is reached directly."""
        proxy = self._by_scheme.get(target.scheme)
        if proxy is None or self.bypass(target.host):
            return None
        return proxy
