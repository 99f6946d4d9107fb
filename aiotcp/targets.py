"""Parse and validate targets: ``host``, ``host:port``, ``[v6]:port``, ``http(s)://`` URLs and CIDR ranges.

A target line is parsed once, by :func:`parse_spec`, into a :class:`TargetSpec` (what the line says), which
:meth:`TargetSpec.resolve` turns into a :class:`Target` (what we connect to and put in the request line) by
filling in the scheme and port the line left out. :func:`parse_target` does both. Both classes are frozen
value objects that validate themselves when built, so a ``Target`` in hand is safe to put on the wire.

The rules are strict on purpose: the prober reads untrusted lists by the million, and a line that two
parsers would read differently is refused rather than guessed at. Every failure is :class:`InvalidTarget`
and its message quotes the input with ``repr()``, so control characters show up escaped (and cuts it at 256
characters, so one garbage line cannot flood a log).

* No whitespace or control character anywhere: C0, space, DEL, C1, Unicode whitespace, lone surrogates.
  Callers strip lines (and skip comments) themselves.
* Scheme: ``http`` or ``https``, any case, and only when written as ``scheme://``; ``localhost:8080`` is a
  host and a port. Without a scheme a line is ``host[:port]`` and nothing else: a path needs a scheme,
  which also keeps ``127.0.0.0/30`` unambiguous for :func:`expand_cidr`.
* No userinfo (``user:pw@host``).
* Port: 1 to 5 ASCII digits, no sign, no leading zero, 1-65535. An empty port (``host:``) is refused.
* Host, stored normalized:

  - IPv6 only in brackets, without a zone id; stored compressed, without the brackets.
  - If the last label looks like a number (all digits, or ``0x`` and hex digits: the WHATWG URL rule), the
    host must be a dotted quad of four decimal octets 0-255 without leading zeros. ``127.1``,
    ``0x7f.0.0.1``, ``0177.0.0.1`` and ``2130706433`` are 127.0.0.1 to ``inet_aton`` and browsers but
    names (or other addresses) to other parsers.
  - Names: a non-ASCII host goes through UTS #46 mapping as in browsers (fullwidth digits and dots become
    ASCII, then the rules above and below apply), and its non-ASCII labels through IDNA 2008 (``bücher`` ->
    ``xn--bcher-kva``); ``xn--`` labels must be valid A-labels. Then lowercase labels of 1-63
    ``[a-z0-9_-]`` characters, not starting or ending with ``-``, at most 253 characters, plus one trailing
    dot, which is kept because it changes how the name resolves.

* Path (the request target): ``/`` when absent; starts with ``/`` (``http://h?q`` becomes ``/?q``); the
  fragment is dropped; non-ASCII characters are percent-encoded as UTF-8; everything else must be
  printable ASCII, and every ``%`` must start a ``%XX`` escape. Existing escapes are kept as written.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

import idna

from .errors import InvalidTarget

__all__ = [
    "DEFAULT_PORTS",
    "Target",
    "TargetSpec",
    "expand_cidr",
    "parse_port",
    "parse_ports",
    "parse_resolve",
    "parse_spec",
    "parse_target",
    "resolve_overrides",
]

#: The supported schemes and their default ports. Read-only, because scheme validation is a lookup here.
DEFAULT_PORTS: Final[Mapping[str, int]] = MappingProxyType({"http": 80, "https": 443})

# Characters refused anywhere in a target: they end lines, hide in logs or smuggle headers. In a str pattern
# \s is exactly str.isspace(); surrogates only arrive through surrogateescape-decoded input and cannot be
# encoded to UTF-8 (or sent) anyway.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\s\ud800-\udfff]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986 scheme syntax, to tell "x://" from "host:port"
_AUTHORITY_END = re.compile(r"[/?#]")
# ASCII digits only: str.isdigit() and int() also accept "٨٠", and int() accepts "8_0" and " +80 ".
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_PREFIX_LEN = re.compile(r"0|[1-9][0-9]{0,2}")
# The WHATWG "ends in a number" test, applied to the lowercased last label.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
# The commonest line of a target list, "a.b.c.d" or "a.b.c.d:port", already in normal form: parse_spec takes it
# in one match (what the general path gives for it, checked by test_targets).
_IPV4_LINE = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})(?::([1-9][0-9]{{0,4}}))?")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?")
_BAD_NAME_CHAR = re.compile(r"[^a-z0-9_.-]")
# Printable ASCII except "#" (a fragment is never sent) and a "%" that does not start an escape.
_PATH = re.compile(r'/(?:[!"$&-~]|%[0-9A-Fa-f]{2})*')
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# One number of a WHATWG IPv4 address: hex, octal (leading zero) or decimal. Only used to suggest a fix.
_WHATWG_PART = re.compile(r"0x(?P<hex>[0-9a-f]*)|0(?P<oct>[0-7]+)|(?P<dec>[1-9][0-9]*|0)")
_MAX_SHOWN = 256  # longer inputs are cut in error messages: one garbage line must not flood a log


class _Reject(Exception):
    """Why a piece of a target is invalid. The public entry point says which input it was in."""


def _show(text: str) -> str:
    if len(text) <= _MAX_SHOWN:
        return repr(text)
    return f"{text[:_MAX_SHOWN]!r}... ({len(text)} characters)"


# --- the pieces ---------------------------------------------------------------------------------------------
# Each helper returns the normalized piece or raises _Reject with a reason that does not repeat the input.


def _port(text: str) -> int:
    if _PORT.fullmatch(text) is not None:
        value = int(text)
        if value <= 65535:
            return value
    if not text:
        raise _Reject("empty port")
    if not (text.isascii() and text.isdigit()):
        raise _Reject("port must be ASCII digits 1-65535")
    if len(text) > 5 or not 1 <= int(text) <= 65535:  # len first: int() refuses over 4300 digits
        raise _Reject("port must be 1-65535")
    # "080" is 80 to int() but octal 64 to some tools; we refuse to pick one.
    raise _Reject("port has a leading zero (ambiguous: decimal or octal?)")


def _forbidden_reason(match: re.Match[str]) -> str:
    char = match.group()
    if "\ud800" <= char <= "\udfff":
        return f"{char!r} at position {match.start()}: a lone surrogate (input that was not valid UTF-8)"
    return f"{char!r} at position {match.start()}: whitespace and control characters are not allowed"


def _host(text: str) -> str:
    """Normalize an unbracketed host: a dotted-quad IPv4 address or a DNS name."""
    if not text:
        raise _Reject("empty host")
    host = text.lower() if text.isascii() else _to_ascii(text)
    if _IPV4.fullmatch(host) is not None:
        return host
    last = host[:-1] if host.endswith(".") else host
    if _NUMERIC_LABEL.fullmatch(last, last.rfind(".") + 1) is not None:
        raise _Reject(_ipv4_reason(host))
    if len(host) - host.endswith(".") > 253 or _NAME.fullmatch(host) is None:
        raise _Reject(_name_reason(host))
    if "xn--" in host:
        _check_alabels(host)
    return host


def _to_ascii(text: str) -> str:
    # Only non-ASCII labels go through IDNA 2008: it refuses "_" even in ASCII labels, which DNS allows
    # (_dmarc.bücher.example) and WHATWG's UTS #46 processing lets through.
    try:
        mapped = idna.uts46_remap(text, std3_rules=False)
        return ".".join(label if label.isascii() else idna.alabel(label).decode("ascii") for label in mapped.split("."))
    except UnicodeError as exc:  # idna.IDNAError is a UnicodeError
        detail = str(exc)  # it can quote the whole name, which the message already shows
        if len(detail) > 120:
            detail = detail[:120] + "..."
        raise _Reject(f"not a valid internationalized host name ({detail})") from exc


def _check_alabels(host: str) -> None:
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                idna.ulabel(label)
            except UnicodeError as exc:
                raise _Reject(f"{label!r} is not a valid IDNA A-label ({exc})") from exc


def _name_reason(host: str) -> str:
    if host in ("", "."):
        return "empty host"
    if len(host) - host.endswith(".") > 253:
        return "host name is longer than 253 characters"
    bad = _BAD_NAME_CHAR.search(host)
    if bad is not None:
        if bad.group() in "[]":
            return "brackets must enclose the whole host, and only an IPv6 address"
        return f"{bad.group()!r} is not allowed in a host name"
    for label in host.removesuffix(".").split("."):
        if not label:
            return "empty label in host name"
        if len(label) > 63:
            return "host name label longer than 63 characters"
        if label[0] == "-" or label[-1] == "-":
            return "host name label starts or ends with '-'"
    return "invalid host name"  # not reached: the checks above cover every way _NAME can fail


def _ipv4_reason(host: str) -> str:
    meant = _whatwg_ipv4(host)
    if meant is not None:
        return f"ambiguous IPv4 shorthand, write {meant!r} if that is the address you mean"
    return "the host ends in a number, so it must be a dotted-quad IPv4 address (0-255, no leading zeros)"


def _whatwg_ipv4(host: str) -> str | None:
    """The address a browser would read ``host`` as (WHATWG IPv4 parser), or None. Only to suggest a fix."""
    parts = host.split(".")
    if len(parts) > 1 and not parts[-1]:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        match = _WHATWG_PART.fullmatch(part)
        if match is None or len(part) > 12:  # no longer part fits in 32 bits (int() refuses 4300+ digits)
            return None
        if match["hex"] is not None:
            numbers.append(int(match["hex"] or "0", 16))
        elif match["oct"] is not None:
            numbers.append(int(match["oct"], 8))
        else:
            numbers.append(int(match["dec"]))
    last = numbers.pop()
    if any(number > 255 for number in numbers) or last >= 256 ** (4 - len(numbers)):
        return None
    for index, number in enumerate(numbers):
        last += number << (8 * (3 - index))
    return str(ipaddress.IPv4Address(last))


def _ipv6(text: str) -> str:
    """Normalize what was inside the brackets."""
    if not text:
        raise _Reject("empty host")
    if "%" in text:
        # ipaddress accepts "fe80::1%eth0" since 3.9; a zone id means nothing to the peer's Host header.
        raise _Reject("IPv6 zone ids are not supported")
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        if ":" not in text:
            raise _Reject("brackets are for IPv6 addresses only") from None
        raise _Reject("not a valid IPv6 address") from None


def _authority(text: str) -> tuple[str, int | None]:
    if "@" in text:
        raise _Reject("userinfo ('user:password@') is not supported")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _Reject("'[' without a closing ']'")
        host = _ipv6(text[1:end])
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise _Reject(f"unexpected {rest[0]!r} after ']'")
        return host, _port(rest[1:])
    host_text, colon, port_text = text.partition(":")
    if ":" in port_text:
        raise _Reject("more than one ':': an IPv6 address must be in brackets, e.g. '[::1]:8080'")
    return _host(host_text), (_port(port_text) if colon else None)


def _percent_encode(match: re.Match[str]) -> str:
    return quote(match.group(), safe="")


def _path(path: str) -> str:
    """Normalize a request target (path and query, no fragment)."""
    if _PATH.fullmatch(path) is not None:
        return path
    forbidden = _FORBIDDEN.search(path)
    if forbidden is not None:
        raise _Reject(_forbidden_reason(forbidden))
    if not path.startswith("/"):
        raise _Reject("path must start with '/'")
    if not path.isascii():
        path = _NON_ASCII.sub(_percent_encode, path)
        if _PATH.fullmatch(path) is not None:
            return path
    if "#" in path:
        raise _Reject("a request path has no fragment ('#')")
    raise _Reject("'%' in the path must start a '%XX' escape")


def _url_path(tail: str) -> str | None:
    """The request target from what follows the authority (starts with '/', '?' or '#'), or None."""
    fragment = tail.find("#")
    if fragment >= 0:
        tail = tail[:fragment]
    if not tail:
        return None
    return _path("/" + tail if tail[0] == "?" else tail)


# --- the value objects --------------------------------------------------------------------------------------


def _field_errors(scheme: object, host: object, port: object, path: object, *, optional: bool) -> str | None:
    """Why these field values are not a valid, normalized target; None if they are."""
    if not (scheme is None and optional) and not (isinstance(scheme, str) and scheme in DEFAULT_PORTS):
        return f"scheme {scheme!r}: only 'http' and 'https' (lowercase)"
    if not isinstance(host, str):
        return f"host {host!r}: not a str"
    if host.startswith("["):
        return f"host {_show(host)}: write IPv6 addresses without brackets"
    try:
        normal = _ipv6(host) if ":" in host else _host(host)
    except _Reject as exc:
        return f"host {_show(host)}: {exc}"
    if normal != host:
        return f"host {_show(host)}: not normalized, write {normal!r} (parse_target normalizes)"
    # bool is an int, but Target(port=True) is a bug, not port 1.
    if not (port is None and optional) and not (type(port) is int and 1 <= port <= 65535):
        return f"port {port!r}: must be an int 1-65535"
    if path is None and optional:
        return None
    if not isinstance(path, str):
        return f"path {path!r}: not a str"
    try:
        normal = _path(path)
    except _Reject as exc:
        return f"path {_show(path)}: {exc}"
    if normal != path:
        return f"path {_show(path)}: not normalized, write {normal!r} (with_path normalizes)"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and what to ask for: a validated, normalized ``scheme://host:port/path``.

    Build one with :func:`parse_target`, or directly from values that are already normalized (a lowercase
    A-label name, a dotted-quad IPv4 or a compressed IPv6 address without brackets; an ASCII path).

    Raises:
        InvalidTarget: if a field is invalid or not normalized; the message names the field and its value.
    """

    scheme: str
    host: str
    port: int
    path: str = "/"
    #: The Host header value: IPv6 in brackets, ``:port`` only when it is not the scheme's default.
    authority: str = field(init=False, repr=False, compare=False)
    #: The normalized URL; ``parse_target(t.url) == t``.
    url: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        reason = _field_errors(self.scheme, self.host, self.port, self.path, optional=False)
        if reason is not None:
            raise InvalidTarget(f"invalid target {reason}")
        _set_derived(self)

    @property
    def origin(self) -> tuple[str, str, int]:
        """``(scheme, host, port)``: the key connections are pooled by."""
        return (self.scheme, self.host, self.port)

    @property
    def is_ip(self) -> bool:
        """Whether the host is an IP address, so connecting needs no DNS lookup."""
        return ":" in self.host or _IPV4.fullmatch(self.host) is not None

    def with_path(self, path: str) -> Target:
        """This target with another request path, normalized like a URL's (non-ASCII is percent-encoded).

        Raises:
            InvalidTarget: if the path does not start with ``/``, has a fragment, a control or whitespace
                character, or a ``%`` that does not start a ``%XX`` escape.
        """
        try:
            normal = _path(path)
        except _Reject as exc:
            raise InvalidTarget(f"invalid target path {_show(path)}: {exc}") from None
        return _new_target(self.scheme, self.host, self.port, normal)

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A target line as written, before defaults are applied (the prober decides scheme and ports).

    ``scheme``, ``port`` and ``path`` are None when the line does not say; ``host`` is always there.
    Fields are validated and must be normalized, as in :class:`Target`.
    """

    scheme: str | None
    host: str
    port: int | None
    path: str | None

    def __post_init__(self) -> None:
        reason = _field_errors(self.scheme, self.host, self.port, self.path, optional=True)
        if reason is not None:
            raise InvalidTarget(f"invalid target spec {reason}")

    def resolve(self, *, default_scheme: str = "http", default_port: int | None = None) -> Target:
        """The :class:`Target` this line means, with what it leaves out filled in.

        No scheme: ``default_scheme``. No port: ``default_port`` if given, else the scheme's default port;
        URLs included, so ``https://h`` with ``default_port=8443`` is port 8443. No path: ``/``.

        Raises:
            InvalidTarget: if ``default_scheme`` is not http or https, or ``default_port`` is not 1-65535.
                Both are checked on every call, so a bad default fails on the first line, not the first
                line without a scheme.
        """
        if default_scheme not in DEFAULT_PORTS:
            if not (isinstance(default_scheme, str) and default_scheme.lower() in DEFAULT_PORTS):
                raise InvalidTarget(f"unsupported default scheme {default_scheme!r}: only http and https")
            default_scheme = default_scheme.lower()
        if default_port is not None and not (type(default_port) is int and 1 <= default_port <= 65535):
            raise InvalidTarget(f"invalid default port {default_port!r}: must be an int 1-65535")
        scheme = self.scheme or default_scheme
        port = self.port
        if port is None:
            port = DEFAULT_PORTS[scheme] if default_port is None else default_port
        return _new_target(scheme, self.host, port, self.path or "/")


# The parser has already validated and normalized every field, so these skip __post_init__: checking a
# parsed host twice would cost about as much as parsing it, once per line, millions of times.
_set_field = object.__setattr__


def _new_target(scheme: str, host: str, port: int, path: str) -> Target:
    target = object.__new__(Target)
    _set_field(target, "scheme", scheme)
    _set_field(target, "host", host)
    _set_field(target, "port", port)
    _set_field(target, "path", path)
    _set_derived(target)
    return target


def _set_derived(target: Target) -> None:
    """Authority and URL, worked out once: a client reads both for every request it sends."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    authority = host if target.port == DEFAULT_PORTS[target.scheme] else f"{host}:{target.port}"
    _set_field(target, "authority", authority)
    _set_field(target, "url", f"{target.scheme}://{authority}{target.path}")


def _new_spec(scheme: str | None, host: str, port: int | None, path: str | None) -> TargetSpec:
    spec = object.__new__(TargetSpec)
    _set_field(spec, "scheme", scheme)
    _set_field(spec, "host", host)
    _set_field(spec, "port", port)
    _set_field(spec, "path", path)
    return spec


# --- public parsers ---------------------------------------------------------------------------------------


def parse_port(text: str) -> int:
    """Parse a port number: 1 to 5 ASCII digits, no sign, no leading zero, 1-65535.

    Raises:
        InvalidTarget: for anything else, quoting ``text``.
    """
    try:
        return _port(text)
    except _Reject as exc:
        raise InvalidTarget(f"invalid port {_show(text)}: {exc}") from None


def parse_ports(spec: str) -> list[int]:
    """Parse a port list such as ``"80,443,8000-8010"``.

    Ranges are inclusive and need ``lo <= hi``. Order is kept and duplicates are dropped, first one wins.
    No spaces, no empty items.

    Raises:
        InvalidTarget: quoting ``spec``, for any malformed item or port.
    """
    ports: dict[int, None] = {}  # an ordered set
    try:
        for item in spec.split(","):
            low, dash, high = item.partition("-")
            if not dash:
                ports[_port(item)] = None
                continue
            first, last = _port(low), _port(high)
            if first > last:
                raise _Reject(f"range {item!r} runs backwards")
            ports.update(dict.fromkeys(range(first, last + 1)))
    except _Reject as exc:
        raise InvalidTarget(f"invalid port list {_show(spec)}: {exc}") from None
    return list(ports)


def parse_spec(text: str) -> TargetSpec:
    """Parse one target line into a :class:`TargetSpec`, applying no defaults. See the module docstring.

    Raises:
        InvalidTarget: quoting ``text`` with ``repr()``, and saying what is wrong with it.
    """
    try:
        return _parse(text)
    except _Reject as exc:
        raise InvalidTarget(f"invalid target {_show(text)}: {exc}") from exc.__cause__


def _parse(text: str) -> TargetSpec:
    quick = _IPV4_LINE.fullmatch(text)
    if quick is not None:
        port_text = quick.group(2)
        if port_text is None:
            return _new_spec(None, quick.group(1), None, None)
        if int(port_text) <= 65535:
            return _new_spec(None, quick.group(1), int(port_text), None)
    forbidden = _FORBIDDEN.search(text)
    if forbidden is not None:
        raise _Reject(_forbidden_reason(forbidden))
    sep = text.find("://")
    if sep > 0 and _SCHEME.fullmatch(text, 0, sep) is not None:
        scheme = text[:sep].lower()
        if scheme not in DEFAULT_PORTS:
            raise _Reject(f"unsupported scheme {text[:sep]!r}: only http and https")
        start = sep + 3
        end = _AUTHORITY_END.search(text, start)
        if end is None:
            host, port = _authority(text[start:])
            return _new_spec(scheme, host, port, None)
        host, port = _authority(text[start : end.start()])
        return _new_spec(scheme, host, port, _url_path(text[end.start() :]))
    end = _AUTHORITY_END.search(text)
    if end is not None:
        what = "a path" if end.group() == "/" else "a query or fragment"
        raise _Reject(f"{what} needs a scheme, e.g. 'http://example.com/path' (an address range is not one target)")
    host, port = _authority(text)
    return _new_spec(None, host, port, None)


def parse_target(text: str, *, default_scheme: str = "http", default_port: int | None = None) -> Target:
    """Parse one target line into a :class:`Target`: ``parse_spec(text).resolve(...)``.

    Raises:
        InvalidTarget: as :func:`parse_spec` and :meth:`TargetSpec.resolve`.
    """
    return parse_spec(text).resolve(default_scheme=default_scheme, default_port=default_port)


def _address(text: str) -> str:
    """An IP literal to connect to (IPv6 with or without brackets), normalized."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(inner)
    except ValueError:
        raise _Reject(f"{_show(text)} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise _Reject("IPv6 zone ids are not supported")
    return address.compressed


def resolve_overrides(entries: Mapping[tuple[str, int], str | Iterable[str]]) -> dict[tuple[str, int], tuple[str, ...]]:
    """Validate a ``{(host, port): address or addresses}`` mapping (``Client(resolve=...)``), normalized as
    :class:`Target` normalizes them: ``("Example.COM", 443)`` matches ``https://example.com/``.

    Raises:
        InvalidTarget: for a bad host, port or address, quoting it.
    """
    overrides: dict[tuple[str, int], tuple[str, ...]] = {}
    for key, value in entries.items():
        try:
            host_text, port = key
            host = _ipv6(host_text.strip("[]")) if ":" in host_text else _host(host_text)
            if type(port) is not int or not 1 <= port <= 65535:
                raise _Reject(f"port must be an int 1-65535, got {port!r}")
            addresses = (value,) if isinstance(value, str) else tuple(value)
            if not addresses:
                raise _Reject("no address given")
            overrides[(host, port)] = tuple(_address(address) for address in addresses)
        except (_Reject, TypeError, ValueError) as exc:
            raise InvalidTarget(f"invalid resolve entry {key!r}: {value!r}: {exc}") from None
    return overrides


def parse_resolve(text: str) -> tuple[tuple[str, int], tuple[str, ...]]:
    """Parse curl's ``--resolve HOST:PORT:ADDR[,ADDR...]`` into ``((host, port), (address, ...))``.

    ``HOST`` is a name or a bracketed IPv6 address; each ``ADDR`` an IPv4 or IPv6 address (brackets optional).

    Raises:
        InvalidTarget: quoting ``text``, saying which part is wrong.
    """
    try:
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise _Reject("'[' without a closing ']'")
            host, rest = _ipv6(text[1:end]), text[end + 1 :]
            if not rest.startswith(":"):
                raise _Reject("expected HOST:PORT:ADDR")
            rest = rest[1:]
        else:
            host_text, colon, rest = text.partition(":")
            if not colon:
                raise _Reject("expected HOST:PORT:ADDR")
            host = _host(host_text)
        port_text, colon, addresses = rest.partition(":")
        if not colon or not addresses:
            raise _Reject("expected HOST:PORT:ADDR")
        return (host, _port(port_text)), tuple(_address(item) for item in addresses.split(","))
    except _Reject as exc:
        raise InvalidTarget(f"invalid --resolve {_show(text)}: {exc}") from None


def expand_cidr(text: str) -> Iterator[str] | None:
    """Expand an address range into one target string per host address, lazily; None if ``text`` is not one.

    A range is ``addr/len`` or ``addr/len:port``, IPv6 also ``[addr/len]`` or ``[addr/len]:port``, with no
    scheme: ``http://127.0.0.0/30`` is a URL with path ``/30``. Host bits may be set (``127.0.0.5/30`` is
    ``127.0.0.4/30``). The strings yielded are what ``ipaddress`` ``hosts()`` yields (IPv4 skips the network
    and broadcast addresses except in /31 and /32; IPv6 skips the subnet-router anycast address except in
    /127 and /128), with the ``:port`` suffix kept. IPv6 addresses are always bracketed so that every
    string feeds :func:`parse_target`.

    The text is checked before this returns; nothing is computed until the iterator is consumed, so
    ``2001:db8::/32`` costs nothing up front.

    Raises:
        InvalidTarget: if the address part is an IP address (or ends in a number) but the range is
            malformed: a bad address, prefix length or port, e.g. ``127.0.0.0/33``.
    """
    sep = text.find("://")
    if sep > 0 and _SCHEME.fullmatch(text, 0, sep) is not None:
        return None
    bracketed = text.startswith("[")
    if bracketed:
        end = text.find("]")
        if end < 0 or "/" not in text[:end]:
            return None
        address, _, prefix = text[1:end].partition("/")
        rest = text[end + 1 :]
        if rest and rest[0] != ":":
            raise InvalidTarget(f"invalid address range {_show(text)}: unexpected {rest[0]!r} after ']'")
        colon, port_text = rest[:1], rest[1:]
    else:
        address, slash, after = text.partition("/")
        if not slash:
            return None
        prefix, colon, port_text = after.partition(":")
    try:
        if ":" in address:
            max_len = 128
            address = _ipv6(address)
        else:
            last = address.lower()
            if _NUMERIC_LABEL.fullmatch(last[last.rfind(".") + 1 :]) is None:
                return None  # a name with a path, not a range; parse_target says what is wrong with it
            if bracketed:
                raise _Reject("brackets are for IPv6 addresses only")
            max_len = 32
            if _IPV4.fullmatch(address) is None:
                raise _Reject(_ipv4_reason(address.lower()))
        if _PREFIX_LEN.fullmatch(prefix) is None or int(prefix) > max_len:
            raise _Reject(f"prefix length must be 0-{max_len}")
        suffix = f":{_port(port_text)}" if colon else ""
    except _Reject as exc:
        raise InvalidTarget(f"invalid address range {_show(text)}: {exc}") from None
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return _expand(network, "[{}]" + suffix if max_len == 128 else "{}" + suffix)


def _expand(network: ipaddress.IPv4Network | ipaddress.IPv6Network, template: str) -> Iterator[str]:
    for address in network.hosts():
        yield template.format(address)
