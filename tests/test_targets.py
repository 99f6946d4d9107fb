"""Tests for aiotcp.targets: every accepted form with its normalized result, every rejection, properties.

Only loopback, documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and
``.example`` names appear here; nothing is resolved or connected to.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import pickle
import re
from collections.abc import Callable
from typing import TypeVar

import idna
import pytest
from helpers import any_text, targets
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aiotcp.errors import InvalidTarget
from aiotcp.targets import (
    DEFAULT_PORTS,
    Target,
    TargetSpec,
    expand_cidr,
    parse_port,
    parse_ports,
    parse_resolve,
    parse_spec,
    parse_target,
    resolve_overrides,
)

T = TypeVar("T")


def check_invalid(exc: InvalidTarget, offending: str, reason: str = "") -> None:
    assert exc.kind == "invalid_target"
    assert isinstance(exc, ValueError)
    if len(offending) <= 256:
        assert repr(offending) in exc.message
    else:
        # Long input is cut in the message: one garbage line must not flood a log.
        assert repr(offending[:256]) + f"... ({len(offending)} characters)" in exc.message
        assert len(exc.message) < 500
    assert reason in exc.message
    # The message is safe to print on one line: repr() escaped every control character.
    assert exc.message.isprintable()


# --- accepted forms ---------------------------------------------------------------------------------------

LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters

# text, host, port, path, authority, url
ACCEPTED = [
    ("example.com", "example.com", 80, "/", "example.com", "http://example.com/"),
    ("EXAMPLE.Com", "example.com", 80, "/", "example.com", "http://example.com/"),
    ("example.com:8080", "example.com", 8080, "/", "example.com:8080", "http://example.com:8080/"),
    ("example.com:80", "example.com", 80, "/", "example.com", "http://example.com/"),
    ("example.com:1", "example.com", 1, "/", "example.com:1", "http://example.com:1/"),
    ("example.com:65535", "example.com", 65535, "/", "example.com:65535", "http://example.com:65535/"),
    ("localhost", "localhost", 80, "/", "localhost", "http://localhost/"),
    ("localhost:8080", "localhost", 8080, "/", "localhost:8080", "http://localhost:8080/"),
    ("http:8080", "http", 8080, "/", "http:8080", "http://http:8080/"),  # a host named http, not a scheme
    ("example.com.", "example.com.", 80, "/", "example.com.", "http://example.com./"),
    ("example.com.:8080", "example.com.", 8080, "/", "example.com.:8080", "http://example.com.:8080/"),
    ("my_host-1.example", "my_host-1.example", 80, "/", "my_host-1.example", "http://my_host-1.example/"),
    ("1.2.3.example", "1.2.3.example", 80, "/", "1.2.3.example", "http://1.2.3.example/"),
    ("a.0xg", "a.0xg", 80, "/", "a.0xg", "http://a.0xg/"),  # "0xg" is not hex, so not a number
    (LONGEST_NAME, LONGEST_NAME, 80, "/", LONGEST_NAME, f"http://{LONGEST_NAME}/"),
    (LONGEST_NAME + ".", LONGEST_NAME + ".", 80, "/", LONGEST_NAME + ".", f"http://{LONGEST_NAME}./"),
    # URLs
    ("http://example.com", "example.com", 80, "/", "example.com", "http://example.com/"),
    ("HTTP://Example.COM/", "example.com", 80, "/", "example.com", "http://example.com/"),
    ("https://example.com", "example.com", 443, "/", "example.com", "https://example.com/"),
    ("hTTpS://example.com:443/", "example.com", 443, "/", "example.com", "https://example.com/"),
    ("http://example.com:443/", "example.com", 443, "/", "example.com:443", "http://example.com:443/"),
    ("https://example.com:80/", "example.com", 80, "/", "example.com:80", "https://example.com:80/"),
    (
        "https://example.com:8443/a/b?x=1&y=2#frag",
        "example.com",
        8443,
        "/a/b?x=1&y=2",
        "example.com:8443",
        "https://example.com:8443/a/b?x=1&y=2",
    ),
    ("http://example.com?q=1", "example.com", 80, "/?q=1", "example.com", "http://example.com/?q=1"),
    ("http://example.com:8080?q", "example.com", 8080, "/?q", "example.com:8080", "http://example.com:8080/?q"),
    ("http://example.com#top", "example.com", 80, "/", "example.com", "http://example.com/"),
    ("http://example.com/#top", "example.com", 80, "/", "example.com", "http://example.com/"),
    ("http://example.com/a#b#c", "example.com", 80, "/a", "example.com", "http://example.com/a"),
    ("http://example.com//x", "example.com", 80, "//x", "example.com", "http://example.com//x"),
    ("http://example.com/a%20b%2f", "example.com", 80, "/a%20b%2f", "example.com", "http://example.com/a%20b%2f"),
    # "@" and ":" after the authority belong to the path, not to userinfo or a port
    ("http://example.com/a@b:c", "example.com", 80, "/a@b:c", "example.com", "http://example.com/a@b:c"),
    ("http://example.com/?u=x://y", "example.com", 80, "/?u=x://y", "example.com", "http://example.com/?u=x://y"),
    (
        "http://example.com/caf\u00e9?q=\u00fc",
        "example.com",
        80,
        "/caf%C3%A9?q=%C3%BC",
        "example.com",
        "http://example.com/caf%C3%A9?q=%C3%BC",
    ),
    ('http://example.com/<"{|}>', "example.com", 80, '/<"{|}>', "example.com", 'http://example.com/<"{|}>'),
    # IPv4
    ("127.0.0.1", "127.0.0.1", 80, "/", "127.0.0.1", "http://127.0.0.1/"),
    ("127.0.0.1:8080", "127.0.0.1", 8080, "/", "127.0.0.1:8080", "http://127.0.0.1:8080/"),
    ("0.0.0.0", "0.0.0.0", 80, "/", "0.0.0.0", "http://0.0.0.0/"),
    ("255.255.255.255:1", "255.255.255.255", 1, "/", "255.255.255.255:1", "http://255.255.255.255:1/"),
    ("https://192.0.2.10/x", "192.0.2.10", 443, "/x", "192.0.2.10", "https://192.0.2.10/x"),
    # IPv6
    ("[::1]", "::1", 80, "/", "[::1]", "http://[::1]/"),
    ("[::1]:8080", "::1", 8080, "/", "[::1]:8080", "http://[::1]:8080/"),
    ("http://[::1]:8080/x", "::1", 8080, "/x", "[::1]:8080", "http://[::1]:8080/x"),
    ("https://[2001:DB8:0:0::1]/", "2001:db8::1", 443, "/", "[2001:db8::1]", "https://[2001:db8::1]/"),
    ("[2001:db8:0:0:0:0:0:1]:443", "2001:db8::1", 443, "/", "[2001:db8::1]:443", "http://[2001:db8::1]:443/"),
    ("http://[2001:db8::1]?q", "2001:db8::1", 80, "/?q", "[2001:db8::1]", "http://[2001:db8::1]/?q"),
    # IDNA
    ("b\u00fccher.example", "xn--bcher-kva.example", 80, "/", "xn--bcher-kva.example", "http://xn--bcher-kva.example/"),
    (
        "B\u00dcCHER.example:8080",
        "xn--bcher-kva.example",
        8080,
        "/",
        "xn--bcher-kva.example:8080",
        "http://xn--bcher-kva.example:8080/",
    ),
    (
        "https://b\u00fccher.example/\u00fc",
        "xn--bcher-kva.example",
        443,
        "/%C3%BC",
        "xn--bcher-kva.example",
        "https://xn--bcher-kva.example/%C3%BC",
    ),
    (
        "xn--bcher-kva.example",
        "xn--bcher-kva.example",
        80,
        "/",
        "xn--bcher-kva.example",
        "http://xn--bcher-kva.example/",
    ),
    (
        "XN--BCHER-KVA.example",
        "xn--bcher-kva.example",
        80,
        "/",
        "xn--bcher-kva.example",
        "http://xn--bcher-kva.example/",
    ),
    # UTS #46 maps the ideographic full stop to "." and fullwidth digits to ASCII, as browsers do
    (
        "b\u00fccher\u3002example",
        "xn--bcher-kva.example",
        80,
        "/",
        "xn--bcher-kva.example",
        "http://xn--bcher-kva.example/",
    ),
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1", 80, "/", "127.0.0.1", "http://127.0.0.1/"),
    # "_" is fine in an ASCII label next to an IDN label (DNS allows it; IDNA 2008 would not)
    (
        "_dmarc.b\u00fccher.example",
        "_dmarc.xn--bcher-kva.example",
        80,
        "/",
        "_dmarc.xn--bcher-kva.example",
        "http://_dmarc.xn--bcher-kva.example/",
    ),
    (
        "\u043f\u0440\u0438\u043c\u0435\u0440.\u0438\u0441\u043f\u044b\u0442\u0430\u043d\u0438\u0435",
        "xn--e1afmkfd.xn--80akhbyknj4f",
        80,
        "/",
        "xn--e1afmkfd.xn--80akhbyknj4f",
        "http://xn--e1afmkfd.xn--80akhbyknj4f/",
    ),
]


@pytest.mark.parametrize(("text", "host", "port", "path", "authority", "url"), ACCEPTED)
def test_accepted(text: str, host: str, port: int, path: str, authority: str, url: str) -> None:
    target = parse_target(text)
    assert (target.host, target.port, target.path) == (host, port, path)
    assert (target.authority, target.url, str(target)) == (authority, url, url)
    assert target.origin == (url.partition(":")[0], host, port)
    # The normalized form is a fixed point, and valid as a directly built Target.
    assert parse_target(url) == target
    assert Target(target.scheme, host, port, path) == target


@pytest.mark.parametrize(
    ("text", "is_ip"),
    [("127.0.0.1", True), ("[::1]", True), ("example.com", False), ("host1", False), ("1.2.3.example", False)],
)
def test_is_ip(text: str, is_ip: bool) -> None:
    assert parse_target(text).is_ip is is_ip


def test_idna_matches_the_idna_package() -> None:
    assert parse_target("b\u00fccher.example").host == idna.encode("b\u00fccher.example", uts46=True).decode()


# --- rejections -------------------------------------------------------------------------------------------

# text, a piece of the reason
REJECTED = [
    # whitespace and control characters, anywhere
    ("exa mple.com", "whitespace"),
    (" example.com", "whitespace"),
    ("example.com ", "whitespace"),
    ("example.com\r\nX-Injected: 1", "whitespace"),
    ("example.com\n", "whitespace"),
    ("example.com\x00", "whitespace"),
    ("exam\tple.com", "whitespace"),
    ("\x1bexample.com", "control"),
    ("example.com\x0b", "control"),
    ("example.com\x7f", "control"),
    ("example.com\x85", "control"),
    ("example.com\x9b", "control"),
    ("example.com\u00a0", "whitespace"),
    ("example.com\u2028", "whitespace"),
    ("example.com\u3000", "whitespace"),
    ("http://example.com/a b", "whitespace"),
    ("http://example.com/\x7f", "control"),
    ("http://example.com/#a b", "whitespace"),  # even in the fragment we drop
    ("http://example.com/\udc80", "surrogate"),
    ("\udcc3\udcbc.example", "surrogate"),  # a lone surrogate, as surrogateescape decodes bad UTF-8
    # schemes
    ("ftp://example.com", "unsupported scheme 'ftp'"),
    ("tcp://example.com:80", "unsupported scheme"),
    ("ws://example.com/", "unsupported scheme"),
    ("httpx://example.com", "unsupported scheme"),
    ("file:///etc/passwd", "unsupported scheme"),
    # without a scheme: host[:port] only
    ("example.com/path", "needs a scheme"),
    ("example.com:8080/", "needs a scheme"),
    ("example.com?q", "needs a scheme"),
    ("example.com#f", "needs a scheme"),
    ("//example.com", "needs a scheme"),
    ("://example.com", "needs a scheme"),
    ("127.0.0.0/30", "an address range is not one target"),
    ("http:/example.com", "needs a scheme"),
    # userinfo
    ("user:pw@example.com", "userinfo"),
    ("user@example.com", "userinfo"),
    ("http://user@example.com/", "userinfo"),
    ("https://user:pw@example.com:8443/", "userinfo"),
    ("http://[::1]@example.com/", "userinfo"),
    # ports
    ("example.com:", "empty port"),
    ("http://example.com:/", "empty port"),
    ("[::1]:", "empty port"),
    ("example.com:0", "1-65535"),
    ("example.com:65536", "1-65535"),
    ("example.com:99999", "port must be 1-65535"),
    ("example.com:123456", "1-65535"),
    ("example.com:080", "leading zero"),
    ("example.com:00", "1-65535"),
    ("example.com:-1", "ASCII digits"),
    ("example.com:+80", "ASCII digits"),
    ("example.com:8_0", "ASCII digits"),
    ("example.com:\u0668\u0660", "ASCII digits"),  # Arabic-Indic 80: str.isdigit() says yes
    ("example.com:\uff18\uff10", "ASCII digits"),  # fullwidth 80
    ("example.com:http", "ASCII digits"),
    ("example.com:80:90", "brackets"),
    ("example.com:" + "1" * 5000, "1-65535"),  # int() refuses 4300+ digits with ValueError
    # empty hosts
    ("", "empty host"),
    (":80", "empty host"),
    ("http://", "empty host"),
    ("http:///path", "empty host"),
    ("http://:80/", "empty host"),
    ("http://?q", "empty host"),
    ("[]", "empty host"),
    ("[]:80", "empty host"),
    (".", "empty host"),
    # names
    ("a..example", "empty label"),
    (".example.com", "empty label"),
    ("example.com..", "empty label"),
    ("-a.example", "'-'"),
    ("a-.example", "'-'"),
    ("a" * 64 + ".example", "63"),
    (LONGEST_NAME + "d", "253"),
    (LONGEST_NAME + "d.", "253"),
    ("exa!mple.com", "'!' is not allowed"),
    ("exa%41mple.com", "'%' is not allowed"),
    ("exa*mple.com", "'*' is not allowed"),
    ("example.com]", "brackets"),
    ("a[::1]", "brackets"),
    ("xn--zz.example", "A-label"),
    ("www.xn--.example", "'-'"),
    ("\u00fc_x.example", "internationalized"),
    ("\u00fc-.example", "internationalized"),
    ("\u00fc" * 64 + ".example", "internationalized"),
    ("\u2603\ufe0f.example", "internationalized"),  # emoji are not IDNA 2008
    ("\u00fc" * 300 + "\u0378", "internationalized"),  # U+0378 is unassigned; idna quotes the whole name
    # IPv6
    ("::1", "brackets"),
    ("2001:db8::1:8080", "brackets"),
    ("http://::1/", "brackets"),
    ("::1]", "brackets"),
    ("[::1", "closing"),
    ("http://[::1/", "closing"),
    ("[::1]x", "after ']'"),
    ("[::1]8080", "after ']'"),
    ("[127.0.0.1]", "IPv6 addresses only"),
    ("[example.com]:80", "IPv6 addresses only"),
    ("[fe80::1%eth0]", "zone"),
    ("http://[fe80::1%25eth0]:80/", "zone"),
    ("[::g]", "not a valid IPv6 address"),
    ("[1:2:3:4:5:6:7:8:9]", "not a valid IPv6 address"),
    ("[[::1]]", "not a valid IPv6 address"),
    ("[v1.fe80::]", "not a valid IPv6 address"),  # RFC 3986 IPvFuture
    # IPv4 shorthand and lookalikes (WHATWG: the host ends in a number)
    ("127.1", "ambiguous IPv4 shorthand, write '127.0.0.1'"),
    ("127.0.1", "write '127.0.0.1'"),
    ("0x7f.0.0.1", "write '127.0.0.1'"),
    ("0x7F.1", "write '127.0.0.1'"),
    ("0177.0.0.1", "write '127.0.0.1'"),
    ("127.000.000.001", "write '127.0.0.1'"),
    ("2130706433", "write '127.0.0.1'"),
    ("0x7f000001", "write '127.0.0.1'"),
    ("127.0.0.1.", "write '127.0.0.1'"),
    ("http://127.1:8080/", "write '127.0.0.1'"),
    ("\uff11\uff12\uff17.\uff11", "write '127.0.0.1'"),  # fullwidth, after UTS #46 mapping
    ("192.0.2.256", "dotted-quad"),
    ("192.0.2.4.5", "dotted-quad"),
    ("08.0.0.1", "dotted-quad"),  # not octal, not decimal
    ("example.123", "dotted-quad"),
    ("example.0x1f", "dotted-quad"),
    ("example.0x", "dotted-quad"),
    ("1" * 5000, "dotted-quad"),
    # paths
    ("http://example.com/%", "'%XX'"),
    ("http://example.com/%zz", "'%XX'"),
    ("http://example.com/%4", "'%XX'"),
    ("http://example.com/a?b=%2", "'%XX'"),
]


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_rejected(text: str, reason: str) -> None:
    with pytest.raises(InvalidTarget) as excinfo:
        parse_target(text)
    check_invalid(excinfo.value, text, reason)
    # parse_spec is the same parser, so it rejects the same lines.
    with pytest.raises(InvalidTarget):
        parse_spec(text)


def test_error_message_format() -> None:
    with pytest.raises(InvalidTarget) as excinfo:
        parse_target("host:99999")
    assert excinfo.value.message == "invalid target 'host:99999': port must be 1-65535"
    # No target is attached: the raw text could hold control characters; the message has it escaped.
    assert excinfo.value.target is None
    assert str(excinfo.value) == excinfo.value.message


def test_error_hides_internal_exception_and_keeps_idna_cause() -> None:
    with pytest.raises(InvalidTarget) as excinfo:
        parse_target("example.com:0")
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__
    with pytest.raises(InvalidTarget) as excinfo:
        parse_target("\u00fc_x.example")
    assert isinstance(excinfo.value.__cause__, idna.IDNAError)


# --- parse_port and parse_ports ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "port"), [("1", 1), ("80", 80), ("443", 443), ("8080", 8080), ("65535", 65535)])
def test_parse_port(text: str, port: int) -> None:
    assert parse_port(text) == port


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "00",
        "080",
        "0080",
        "65536",
        "99999",
        "123456",
        "-1",
        "+80",
        " 80",
        "80 ",
        " +80 ",
        "8_0",
        "\u0668\u0660",
        "\uff18\uff10",
        "0x50",
        "80.0",
        "1e3",
        "eighty",
    ],
)
def test_parse_port_rejects(text: str) -> None:
    with pytest.raises(InvalidTarget) as excinfo:
        parse_port(text)
    check_invalid(excinfo.value, text)
    assert excinfo.value.message.startswith(f"invalid port {text!r}: ")


def test_parse_port_rejects_huge_numbers_without_valueerror() -> None:
    with pytest.raises(InvalidTarget, match="1-65535"):
        parse_port("9" * 5000)


@pytest.mark.parametrize(
    ("spec", "ports"),
    [
        ("80", [80]),
        ("443,80", [443, 80]),
        ("80,443,8000-8003", [80, 443, 8000, 8001, 8002, 8003]),
        ("8000-8002,8001,80,8000", [8000, 8001, 8002, 80]),
        ("80,80,80", [80]),
        ("5-5", [5]),
        ("65534-65535", [65534, 65535]),
    ],
)
def test_parse_ports(spec: str, ports: list[int]) -> None:
    assert parse_ports(spec) == ports


def test_parse_ports_whole_range() -> None:
    assert parse_ports("1-65535,80") == list(range(1, 65536))


@pytest.mark.parametrize(
    "spec",
    [
        "",
        ",",
        "80,",
        ",80",
        "80,,443",
        "80, 443",
        "80 ,443",
        "80-",
        "-80",
        "90-80",
        "80-90-100",
        "0-10",
        "1-65536",
        "http",
        "80;443",
        "080",
        "\u0668\u0660",
        "80..90",
    ],
)
def test_parse_ports_rejects(spec: str) -> None:
    with pytest.raises(InvalidTarget) as excinfo:
        parse_ports(spec)
    check_invalid(excinfo.value, spec)
    assert excinfo.value.message.startswith(f"invalid port list {spec!r}: ")


def test_parse_ports_backwards_range_names_the_item() -> None:
    with pytest.raises(InvalidTarget, match="'90-80' runs backwards"):
        parse_ports("80,90-80")


# --- Target -----------------------------------------------------------------------------------------------


def test_target_direct() -> None:
    target = Target("https", "2001:db8::1", 8443, "/x?y")
    assert target.authority == "[2001:db8::1]:8443"
    assert target.url == "https://[2001:db8::1]:8443/x?y"
    assert target.origin == ("https", "2001:db8::1", 8443)
    assert target.is_ip
    assert Target("http", "example.com", 80).path == "/"
    assert Target("http", "example.com", 80) == parse_target("example.com")
    assert hash(Target("http", "example.com", 80)) == hash(parse_target("http://EXAMPLE.com:80"))
    assert repr(target) == "Target(scheme='https', host='2001:db8::1', port=8443, path='/x?y')"


def test_target_pickles() -> None:
    target = parse_target("https://[2001:db8::1]:8443/x")
    assert pickle.loads(pickle.dumps(target)) == target
    assert pickle.loads(pickle.dumps(parse_spec("example.com"))) == parse_spec("example.com")


def test_target_is_frozen() -> None:
    target = parse_target("example.com")
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.port = 81  # type: ignore[misc]


# scheme, host, port, path, the offending value
BAD_FIELDS = [
    (("http", "a b", 80), "a b"),
    (("http", "", 80), ""),
    (("http", "a..b", 80), "a..b"),
    (("http", "Example.com", 80), "Example.com"),  # valid but not normalized
    (("http", "b\u00fccher.example", 80), "b\u00fccher.example"),
    (("http", "example.com.", 80, "x"), "x"),
    (("http", "[::1]", 80), "[::1]"),
    (("http", "0:0::1", 80), "0:0::1"),
    (("http", "fe80::1%eth0", 80), "fe80::1%eth0"),
    (("http", "example.com:80", 80), "example.com:80"),
    (("http", "127.1", 80), "127.1"),
    (("http", "2130706433", 80), "2130706433"),
    (("HTTP", "example.com", 80), "HTTP"),
    (("ftp", "example.com", 21), "ftp"),
    (("", "example.com", 80), ""),
    (("http", "example.com", 0), 0),
    (("http", "example.com", 65536), 65536),
    (("http", "example.com", -1), -1),
    (("http", "example.com", True), True),
    (("http", "example.com", "80"), "80"),
    (("http", "example.com", 80.0), 80.0),
    (("http", "example.com", 80, ""), ""),
    (("http", "example.com", 80, "x"), "x"),
    (("http", "example.com", 80, "/a b"), "/a b"),
    (("http", "example.com", 80, "/a#b"), "/a#b"),
    (("http", "example.com", 80, "/%zz"), "/%zz"),
    (("http", "example.com", 80, "/\r\nHost: x"), "/\r\nHost: x"),
    (("http", "example.com", 80, "/\u00fc"), "/\u00fc"),  # valid but not normalized
    (("http", "example.com", 80, None), None),
    (("http", None, 80), None),
]


@pytest.mark.parametrize(("fields", "offending"), BAD_FIELDS)
def test_target_validates_fields(fields: tuple[object, ...], offending: object) -> None:
    with pytest.raises(InvalidTarget) as excinfo:
        Target(*fields)  # type: ignore[arg-type]
    assert excinfo.value.kind == "invalid_target"
    assert repr(offending) in excinfo.value.message
    assert excinfo.value.message.isprintable()


@pytest.mark.parametrize(
    ("fields", "hint"),
    [
        (("http", "Example.com", 80), "write 'example.com'"),
        (("http", "b\u00fccher.example", 80), "write 'xn--bcher-kva.example'"),
        (("http", "0:0::1", 80), "write '::1'"),
        (("http", "[::1]", 80), "without brackets"),
        (("http", "example.com", 80, "/\u00fc"), "write '/%C3%BC'"),
    ],
)
def test_target_says_how_to_normalize(fields: tuple[str, str, int], hint: str) -> None:
    with pytest.raises(InvalidTarget, match=re.escape(hint)):
        Target(*fields)


def test_replace_validates() -> None:
    with pytest.raises(InvalidTarget, match="port 0"):
        dataclasses.replace(parse_target("example.com"), port=0)


def test_with_path() -> None:
    target = parse_target("https://example.com:8443/old")
    assert target.with_path("/new?x=1") == Target("https", "example.com", 8443, "/new?x=1")
    assert target.with_path("/\u00fc").path == "/%C3%BC"
    assert target.with_path("/a%2Fb").path == "/a%2Fb"


@pytest.mark.parametrize("path", ["", "x", "http://example.com/", "/a b", "/a#frag", "/%", "/%g0", "/\x00", "/\u3000"])
def test_with_path_rejects(path: str) -> None:
    with pytest.raises(InvalidTarget) as excinfo:
        parse_target("example.com").with_path(path)
    check_invalid(excinfo.value, path)


# --- TargetSpec -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("example.com", TargetSpec(None, "example.com", None, None)),
        ("Example.com:8080", TargetSpec(None, "example.com", 8080, None)),
        ("[::1]:80", TargetSpec(None, "::1", 80, None)),
        ("http://example.com", TargetSpec("http", "example.com", None, None)),
        ("http://example.com#f", TargetSpec("http", "example.com", None, None)),
        ("http://example.com/", TargetSpec("http", "example.com", None, "/")),
        ("HTTPS://example.com:443/x?y#z", TargetSpec("https", "example.com", 443, "/x?y")),
        ("http://example.com?y", TargetSpec("http", "example.com", None, "/?y")),
    ],
)
def test_parse_spec(text: str, spec: TargetSpec) -> None:
    assert parse_spec(text) == spec


def test_resolve_defaults() -> None:
    bare = parse_spec("example.com")
    assert bare.resolve() == Target("http", "example.com", 80, "/")
    assert bare.resolve(default_scheme="https") == Target("https", "example.com", 443, "/")
    assert bare.resolve(default_scheme="HTTPS") == Target("https", "example.com", 443, "/")
    assert bare.resolve(default_port=8080) == Target("http", "example.com", 8080, "/")
    assert bare.resolve(default_scheme="https", default_port=8443).url == "https://example.com:8443/"
    # What the line says wins over the defaults.
    assert parse_spec("example.com:81").resolve(default_port=8080).port == 81
    assert parse_spec("https://example.com:443/").resolve(default_scheme="http", default_port=8080).port == 443
    assert parse_spec("https://example.com/").resolve(default_scheme="http").scheme == "https"
    # A URL with no port takes default_port when one is given (the prober's --port applies to every line).
    assert parse_spec("https://example.com/").resolve(default_port=8443).port == 8443
    assert parse_spec("https://example.com/").resolve().port == 443


@pytest.mark.parametrize(
    ("kwargs", "offending"),
    [
        ({"default_scheme": "ftp"}, "ftp"),
        ({"default_scheme": ""}, ""),
        ({"default_port": 0}, 0),
        ({"default_port": 65536}, 65536),
        ({"default_port": True}, True),
        ({"default_port": "80"}, "80"),
    ],
)
def test_resolve_rejects_bad_defaults(kwargs: dict[str, object], offending: object) -> None:
    # Checked even when the line names scheme and port, so a bad default fails on the first line.
    for text in ["example.com", "https://example.com:8443/"]:
        with pytest.raises(InvalidTarget) as excinfo:
            parse_target(text, **kwargs)  # type: ignore[arg-type]
        assert repr(offending) in excinfo.value.message


@pytest.mark.parametrize(
    "fields",
    [
        ("ftp", "example.com", None, None),
        (None, "Example.com", None, None),
        (None, "a b", None, None),
        (None, "example.com", 0, None),
        (None, "example.com", None, "x"),
        (None, "example.com", None, ""),
    ],
)
def test_target_spec_validates_fields(fields: tuple[str | None, str, int | None, str | None]) -> None:
    with pytest.raises(InvalidTarget):
        TargetSpec(*fields)


@pytest.mark.parametrize("text", [row[0] for row in ACCEPTED])
def test_parse_target_is_parse_spec_resolved(text: str) -> None:
    for kwargs in [{}, {"default_scheme": "https"}, {"default_port": 8080}]:
        assert parse_target(text, **kwargs) == parse_spec(text).resolve(**kwargs)  # type: ignore[arg-type]


def test_default_ports() -> None:
    assert DEFAULT_PORTS == {"http": 80, "https": 443}
    with pytest.raises(TypeError):
        DEFAULT_PORTS["ftp"] = 21  # type: ignore[index]


# --- expand_cidr ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.0/30", ["127.0.0.1", "127.0.0.2"]),
        ("127.0.0.0/30:8080", ["127.0.0.1:8080", "127.0.0.2:8080"]),
        ("127.0.0.5/30", ["127.0.0.5", "127.0.0.6"]),  # host bits set: the network is 127.0.0.4/30
        ("127.0.0.1/32", ["127.0.0.1"]),
        ("127.0.0.1/32:80", ["127.0.0.1:80"]),
        ("127.0.0.0/31", ["127.0.0.0", "127.0.0.1"]),
        ("192.0.2.0/29", [f"192.0.2.{i}" for i in range(1, 7)]),
        ("2001:db8::/126", ["[2001:db8::1]", "[2001:db8::2]", "[2001:db8::3]"]),
        ("2001:DB8::/126:8080", ["[2001:db8::1]:8080", "[2001:db8::2]:8080", "[2001:db8::3]:8080"]),
        ("[2001:db8::/126]:8080", ["[2001:db8::1]:8080", "[2001:db8::2]:8080", "[2001:db8::3]:8080"]),
        ("[2001:db8::1/128]", ["[2001:db8::1]"]),
        ("2001:db8::/127", ["[2001:db8::]", "[2001:db8::1]"]),
        ("::1/128:8080", ["[::1]:8080"]),
    ],
)
def test_expand_cidr(text: str, expected: list[str]) -> None:
    expanded = expand_cidr(text)
    assert expanded is not None
    items = list(expanded)
    assert items == expected
    for item in items:
        assert parse_target(item).is_ip


def test_expand_cidr_is_lazy() -> None:
    expanded = expand_cidr("127.0.0.0/8")
    assert expanded is not None
    assert iter(expanded) is expanded
    assert list(itertools.islice(expanded, 3)) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    huge = expand_cidr("2001:db8::/32:443")
    assert huge is not None
    assert list(itertools.islice(huge, 2)) == ["[2001:db8::1]:443", "[2001:db8::2]:443"]


@pytest.mark.parametrize(
    "text",
    [
        "example.com",
        "127.0.0.1",
        "127.0.0.1:80",
        "[::1]:80",
        "[::1]",
        "http://127.0.0.0/30",
        "https://[2001:db8::]/126",
        "example.com/30",
        "localhost/8",
        "[::1]/x",
        "",
    ],
)
def test_expand_cidr_not_a_range(text: str) -> None:
    assert expand_cidr(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.0/33", "prefix length must be 0-32"),
        ("127.0.0.0/-1", "prefix length"),
        ("127.0.0.0/", "prefix length"),
        ("127.0.0.0/08", "prefix length"),
        ("127.0.0.0/8 ", "prefix length"),
        ("127.0.0.0/255.0.0.0", "prefix length"),
        ("127.0.0.0/" + "1" * 5000, "prefix length"),
        ("127.0.0.0/8:0", "1-65535"),
        ("127.0.0.0/8:", "empty port"),
        ("127.0.0.0/8:99999", "1-65535"),
        ("127.0.0.0/8:080", "leading zero"),
        ("127.1/8", "write '127.0.0.1'"),
        ("1.2.3.256/24", "dotted-quad"),
        ("2001:db8::/129", "prefix length must be 0-128"),
        ("[2001:db8::/32]x", "after ']'"),
        ("[127.0.0.0/8]", "IPv6 addresses only"),
        ("2001:db8::g/64", "not a valid IPv6 address"),
        ("fe80::%eth0/64", "zone"),
    ],
)
def test_expand_cidr_rejects(text: str, reason: str) -> None:
    # Raised by the call itself, not later by the first next().
    with pytest.raises(InvalidTarget) as excinfo:
        expand_cidr(text)
    check_invalid(excinfo.value, text, reason)


# --- properties (strategies in helpers.py) ---------------------------------------------------------------


def outcome(call: Callable[[str], T], text: str) -> T | InvalidTarget:
    try:
        return call(text)
    except InvalidTarget as exc:
        return exc


@settings(max_examples=500)
@given(any_text)
@example("1" * 5000)
@example("[" + "1:" * 5000 + "]")
@example("\u00fc" * 5000)
def test_parse_target_returns_a_target_or_raises_invalid_target(text: str) -> None:
    result = outcome(parse_target, text)
    if isinstance(result, InvalidTarget):
        assert result.kind == "invalid_target"
        assert result.message.isprintable()
    else:
        # Whatever the parser accepts is normalized, passes Target's own checks and round-trips.
        assert Target(result.scheme, result.host, result.port, result.path) == result
        assert parse_target(result.url) == result


@settings(max_examples=300)
@given(any_text)
def test_expand_cidr_returns_none_an_iterator_or_raises_invalid_target(text: str) -> None:
    result = outcome(expand_cidr, text)
    if isinstance(result, InvalidTarget):
        assert result.message.isprintable()
    elif result is not None:
        for item in itertools.islice(result, 3):
            parse_target(item)


@settings(max_examples=300)
@given(targets)
def test_round_trip(target: Target) -> None:
    assert parse_target(target.url) == target
    assert parse_target(str(target)) == target
    assert parse_spec(target.url).resolve() == target
    if target.path == "/":
        assert parse_target(target.authority, default_scheme=target.scheme) == target


@given(
    st.one_of(st.text(max_size=30), targets.map(str)),
    st.sampled_from("\r\n\x00 \t"),
    st.data(),
)
def test_whitespace_and_control_characters_are_always_rejected(base: str, char: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(base)))
    text = base[:index] + char + base[index:]
    with pytest.raises(InvalidTarget) as excinfo:
        parse_target(text)
    assert repr(text) in excinfo.value.message
    assert char == " " or char not in excinfo.value.message


@given(st.ip_addresses(network="127.0.0.0/8") | st.ip_addresses(network="2001:db8::/32"), st.data())
def test_expand_cidr_contains_the_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, data: st.DataObject
) -> None:
    max_len = address.max_prefixlen
    prefix = data.draw(st.integers(min_value=max_len - 6, max_value=max_len))
    expanded = expand_cidr(f"{address}/{prefix}")
    assert expanded is not None
    hosts = [parse_target(item).host for item in expanded]
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert hosts == [str(host) for host in network.hosts()]
    assert len(hosts) == len(set(hosts))


# --- --resolve entries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com:443:127.0.0.1", (("example.com", 443), ("127.0.0.1",))),
        ("Example.COM:80:127.0.0.1,127.0.0.2", (("example.com", 80), ("127.0.0.1", "127.0.0.2"))),
        ("example.com:8443:[::1]", (("example.com", 8443), ("::1",))),
        ("example.com:8443:0:0::1", (("example.com", 8443), ("::1",))),
        ("[::1]:80:127.0.0.1", (("::1", 80), ("127.0.0.1",))),
        ("bücher.example:80:127.0.0.1", (("xn--bcher-kva.example", 80), ("127.0.0.1",))),
    ],
)
def test_parse_resolve(text: str, expected: object) -> None:
    assert parse_resolve(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("example.com:443", "expected HOST:PORT:ADDR"),
        ("example.com", "expected HOST:PORT:ADDR"),
        ("example.com:443:", "expected HOST:PORT:ADDR"),
        ("example.com:0:127.0.0.1", "port must be 1-65535"),
        ("example.com:443:example.org", "is not an IP address"),
        ("exa mple.com:443:127.0.0.1", "is not allowed in a host name"),
        ("[::1:443:127.0.0.1", "without a closing"),
        ("example.com:443:fe80::1%eth0", "zone ids are not supported"),
    ],
)
def test_parse_resolve_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidTarget, match=re.escape(reason)) as caught:
        parse_resolve(text)
    assert caught.value.message.startswith(f"invalid --resolve {text!r}")


def test_resolve_overrides_normalize_like_targets() -> None:
    overrides = resolve_overrides({("Example.COM", 443): "127.0.0.1", ("[::1]", 80): ["::1", "127.0.0.1"]})
    target = parse_target("https://example.com/")
    assert overrides[(target.host, target.port)] == ("127.0.0.1",)
    assert overrides[("::1", 80)] == ("::1", "127.0.0.1")
    with pytest.raises(InvalidTarget, match="no address given"):
        resolve_overrides({("example.com", 80): []})
