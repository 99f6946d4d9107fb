"""A client's cookie jar: :class:`Cookies`, RFC 6265's rules through the standard library's ``http.cookiejar``.

A cookie goes back only to the hosts and paths its ``Set-Cookie`` allows (the host that set it and no other,
or, with a ``Domain`` attribute, that domain and its subdomains when the setter is in it), only over https when
``Secure``, and not after it expires. As RFC 6265 says (section 8.5), cookies are not kept apart by port or by
scheme: one set by ``http://127.0.0.1:8080`` goes to ``http://127.0.0.1:9090`` too.

``http.cookiejar`` (and the ``urllib.request`` it needs) is imported when the first cookie arrives or is set,
so a client that never sees a cookie never pays for it, and a request costs one attribute test while the
jar is empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import http.cookiejar

__all__ = ["Cookies"]


class _Headers:
    """The part of ``http.client.HTTPMessage`` that ``CookieJar.extract_cookies`` reads."""

    __slots__ = ("_set_cookie",)

    def __init__(self, set_cookie: list[str]) -> None:
        self._set_cookie = set_cookie

    def get_all(self, name: str, default: Any = None) -> list[str] | Any:
        return self._set_cookie if name.lower() == "set-cookie" and self._set_cookie else default


class _Response:
    """The part of a ``urllib`` response that ``CookieJar.extract_cookies`` reads."""

    __slots__ = ("_headers",)

    def __init__(self, set_cookie: list[str]) -> None:
        self._headers = _Headers(set_cookie)

    def info(self) -> _Headers:
        return self._headers


class Cookies:
    """The cookies a client keeps (``client.cookies``): filled from responses' ``Set-Cookie``, sent as
    ``Cookie`` with the requests they match. Iterating gives ``http.cookiejar.Cookie`` objects."""

    __slots__ = ("_jar", "any")

    def __init__(self) -> None:
        self._jar: http.cookiejar.CookieJar | None = None
        #: Whether the jar may hold a cookie (the client asks before every request; cheap).
        self.any = False

    def _cookiejar(self) -> http.cookiejar.CookieJar:
        if self._jar is None:
            import http.cookiejar

            # RFC 6265's host-only rule: a cookie set without a Domain attribute goes back to that host only,
            # not to its subdomains (the standard library's default policy is more liberal).
            policy = http.cookiejar.DefaultCookiePolicy(
                strict_ns_domain=http.cookiejar.DefaultCookiePolicy.DomainStrictNonDomain
            )
            self._jar = http.cookiejar.CookieJar(policy)
        return self._jar

    def __repr__(self) -> str:
        shown = ", ".join(f"{cookie.name}={cookie.value} for {cookie.domain}{cookie.path}" for cookie in self)
        return f"<Cookies [{shown}]>"

    def __iter__(self) -> Iterator[http.cookiejar.Cookie]:
        return iter(self._jar) if self._jar is not None else iter(())

    def __len__(self) -> int:
        return len(self._jar) if self._jar is not None else 0

    def get(self, name: str, default: str | None = None, *, domain: str | None = None) -> str | None:
        """The value of the cookie ``name`` (of ``domain``, when several domains set one)."""
        for cookie in self:
            if cookie.name == name and (domain is None or cookie.domain.lstrip(".") == domain.lstrip(".")):
                return cookie.value
        return default

    def set(self, name: str, value: str, *, domain: str, path: str = "/", secure: bool = False) -> None:
        """Add a cookie as if ``domain`` had set it: sent to ``domain`` (a host, or ``.example.com`` for it and
        its subdomains) on ``path`` and below, over https only when ``secure``."""
        import http.cookiejar

        dotted = domain.startswith(".")
        cookie = http.cookiejar.Cookie(
            version=0,
            name=name,
            value=value,
            port=None,
            port_specified=False,
            domain=domain.lower(),
            domain_specified=dotted,
            domain_initial_dot=dotted,
            path=path,
            path_specified=True,
            secure=secure,
            expires=None,
            discard=True,
            comment=None,
            comment_url=None,
            rest={},
        )
        self._cookiejar().set_cookie(cookie)
        self.any = True

    def clear(self, domain: str | None = None) -> None:
        """Forget every cookie (of ``domain`` only, when given)."""
        if self._jar is not None:
            if domain is None:
                self._jar.clear()
            else:
                for name in {cookie.domain for cookie in self._jar if cookie.domain.lstrip(".") == domain.lstrip(".")}:
                    self._jar.clear(name)
            self.any = len(self._jar) > 0

    def header_for(self, url: str) -> str | None:
        """The ``Cookie`` value a request to ``url`` carries, or None when no cookie matches."""
        if not self.any:
            return None
        import urllib.request

        request = urllib.request.Request(url)
        self._cookiejar().add_cookie_header(request)
        return request.get_header("Cookie")

    def extract(self, url: str, set_cookie: list[str]) -> None:
        """Keep what the ``Set-Cookie`` values of a response to ``url`` allow (and drop what they expire)."""
        import urllib.request

        jar = self._cookiejar()
        jar.extract_cookies(_Response(set_cookie), urllib.request.Request(url))  # type: ignore[arg-type]
        self.any = len(jar) > 0
