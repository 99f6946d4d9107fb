"""Making server-supplied text safe to print.

A title, a Server header or a reason phrase comes from the peer; printed raw to a terminal, an ESC in it
could move the cursor, rewrite earlier output or set the window title. So these are shown as escapes
(``\\xNN``, ``\\t``, ``\\n``, ``\\r``, ``\\uNNNN``): every control character (C0, DEL, C1), the bidi
controls that reorder what the reader sees, the line and paragraph separators, lone surrogates (which
cannot be printed at all), and the backslash itself so that an escape in the output is never ambiguous.
Printable text, non-ASCII letters included, is left as it is.
"""

from __future__ import annotations

__all__ = ["escape_control", "quote_bytes"]


def _escape_table() -> dict[int, str]:
    table = {code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]}
    table[ord("\t")] = "\\t"
    table[ord("\n")] = "\\n"
    table[ord("\r")] = "\\r"
    table[ord("\\")] = "\\\\"
    # Bidirectional overrides and isolates reorder what the reader sees (CVE-2021-42574 "Trojan Source").
    # U+2028/U+2029 break lines in some viewers; a lone surrogate (from surrogateescape) makes print() fail.
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C, 0x2028, 0x2029]:
        table[code] = f"\\u{code:04x}"
    for code in range(0xD800, 0xE000):
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _escape_table()


def escape_control(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1), backslashes, bidi controls, line and paragraph
    separators and lone surrogates escaped (see the module docstring)."""
    return text.translate(_ESCAPES)


def quote_bytes(data: bytes | bytearray | memoryview) -> str:
    r"""Bytes from the wire, quoted for a message: ``'SSH-2.0\r\n'``, not Python's ``b'SSH-2.0\r\n'``.

    Printable ASCII stays as it is; everything else is an escape (``\r``, ``\xNN``), so the result is safe
    to print.
    """
    return repr(bytes(data))[1:]
