"""Tests for aiotcp.text.escape_control: what a peer sends cannot drive the terminal it is printed on."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiotcp.text import escape_control, quote_bytes

_ESCAPE = re.compile(r"\\(\\|t|n|r|x[0-9a-f]{2}|u[0-9a-f]{4})")
_SIMPLE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: _SIMPLE.get(m[1]) or chr(int(m[1][1:], 16)), text)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),  # clear screen, set the window title
        ("a\x00b", "a\\x00b"),
        ("line\r\nnext", "line\\r\\nnext"),
        ("tab\there", "tab\\there"),
        ("del\x7f", "del\\x7f"),
        ("c1 \x85 \x9b31m \x9d", "c1 \\x85 \\x9b31m \\x9d"),  # NEL, CSI, OSC
        ("back\\slash", "back\\\\slash"),
        ("\\x1b", "\\\\x1b"),  # a literal backslash-x is not an escape
        ("abc\u202edcba", "abc\\u202edcba"),  # RIGHT-TO-LEFT OVERRIDE
        (
            "\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d",
            "\\u2066\\u2067\\u2068\\u2069\\u202a\\u202b\\u202c\\u202d",
        ),
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("bad \udcff byte", "bad \\udcff byte"),  # surrogateescape leftovers cannot be printed
    ],
)
def test_escapes(raw: str, shown: str) -> None:
    assert escape_control(raw) == shown
    assert unescape(shown) == raw


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, world!",
        "nginx/1.25.3 (Ubuntu)",
        "Café déjà vu — naïve Ünïcödé",
        "Привет мир",
        "日本語のタイトル",
        "عربى",  # right-to-left letters are fine; only the invisible controls are not
        "emoji 🎉👍",
        "spaces\u00a0and\u3000wide",
        "~!@#$%^&*()_+{}|:\"<>?`-=[];',./",
    ],
)
def test_printable_text_is_unchanged(text: str) -> None:
    assert escape_control(text) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_output_never_holds_a_control_character(text: str) -> None:
    shown = escape_control(text)
    for char in shown:
        assert unicodedata.category(char) not in ("Cc", "Cs", "Zl", "Zp"), (text, shown)
        assert char not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    assert unescape(shown) == text  # nothing lost, nothing ambiguous


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(categories=["L", "M", "N", "P", "S", "Zs"]).filter(lambda c: c != "\\")))
def test_printable_text_is_never_escaped(text: str) -> None:
    assert escape_control(text) == text


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_any_bytes_decoded_either_way_print(data: bytes) -> None:
    for text in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        shown = escape_control(text)
        shown.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogates left
        assert "\x1b" not in shown


def test_quote_bytes_shows_wire_bytes_without_python_syntax() -> None:
    assert quote_bytes(b"SSH-2.0\r\n\x1b[2J\xff") == "'SSH-2.0\\r\\n\\x1b[2J\\xff'"
    assert quote_bytes(bytearray(b"it's")) == '"it\'s"'
    assert "b'" not in quote_bytes(b"x")
