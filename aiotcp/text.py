"""Making server-supplied text safe to print.

A title, a Server header or a reason phrase comes from the peer; printed raw to a terminal, an ESC in it
could move the cursor, rewrite earlier output or set the window title. Everything that is not printable is
shown as an escape instead.
"""

from __future__ import annotations

__all__ = ["escape_control"]


def _escape_table() -> dict[int, str]:
    table = {code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]}
    table[ord("\t")] = "\\t"
    table[ord("\n")] = "\\n"
    table[ord("\r")] = "\\r"
    table[ord("\\")] = "\\\\"
    # Bidirectional overrides and isolates reorder what the reader sees (CVE-2021-42574 "Trojan Source").
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]:
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _escape_table()


def escape_control(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1), backslashes and bidi controls escaped."""
    return text.translate(_ESCAPES)
