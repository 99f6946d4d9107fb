"""Record writers for ``aiotcp probe``: JSONL (one object per line), CSV (a header, then one row per record)
and text (for people; server-supplied fields escaped so a title cannot drive the terminal).

All writers take records as dicts in schema order (:data:`aiotcp.probe.FIELD_NAMES`), or as a
:class:`~aiotcp.probe.ProbeResult` (``write_result``: JSONL then encodes it without building the dict), and
write through a text stream; flushing is the caller's choice (the probe flushes in batches, and on exit).
"""

from __future__ import annotations

import csv
import json
from typing import Any, Protocol, TextIO

from ..text import escape_control
from .records import ProbeResult

__all__ = ["CSVWriter", "JSONLWriter", "RecordWriter", "TextWriter", "make_writer"]

# Lone surrogates come from input lines that were not UTF-8 (read with surrogateescape, so the record can
# quote them): no UTF-8 stream can write them, so every writer shows them as ``\udcXX``.
_SURROGATES = {code: f"\\u{code:04x}" for code in range(0xD800, 0xE000)}
# JSON escapes only C0 controls; these too are escaped in JSONL so that ``cat``-ing a file of server-supplied
# strings cannot drive a terminal (DEL, C1 such as U+009B CSI, bidi overrides, line/paragraph separators).
# Each can only occur inside a JSON string, where its ``\u`` escape (four hex digits) means the same character.
_CONTROLS = [0x7F, *range(0x80, 0xA0)]
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in [*_CONTROLS, *_BIDI, 0x2028, 0x2029]} | _SURROGATES
# CSV keeps TAB, CR and LF (quoting makes them data) and escapes the other controls as JSONL does: a CSV written
# to a terminal, or cat-ed to one, must not drive it either.
_CSV_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x20) if chr(code) not in "\t\r\n"} | _JSON_ESCAPES
# Text output is a record per line: the line and paragraph separators (which splitlines() and editors break
# at) are shown as escapes, as escape_control() shows the rest.
_TEXT_ESCAPES = {code: f"\\u{code:04x}" for code in (0x2028, 0x2029)} | _SURROGATES


class RecordWriter(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def write_result(self, result: ProbeResult, encoded: str | None = None) -> None: ...

    def flush(self) -> None: ...


class JSONLWriter:
    """One JSON object per line. Non-ASCII text kept as UTF-8; control characters (C0 by JSON itself, DEL, C1),
    bidi controls and lone surrogates written as ``\\u`` escapes (four hex digits)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write(self, record: dict[str, Any]) -> None:
        self._write_json(self._encode(record))

    def write_result(self, result: ProbeResult, encoded: str | None = None) -> None:
        """Write ``result``; ``encoded`` is its ``to_json()`` when the caller has it already."""
        self._write_json(result.to_json() if encoded is None else encoded)

    def _write_json(self, text: str) -> None:
        if not text.isascii() or "\x7f" in text:  # the common all-ASCII record skips the translation
            text = text.translate(_JSON_ESCAPES)
        self._stream.write(text + "\n")

    def flush(self) -> None:
        self._stream.flush()


class CSVWriter:
    """RFC 4180 CSV with a header row. Lists of strings (``a``, ``aaaa``, ``cname``) are joined with ``|``;
    other nested values (the redirect chain) are JSON in one cell; cells that a
    spreadsheet would run as a formula are prefixed with a quote (CSV injection); control characters other than
    TAB, CR and LF, bidi controls and lone surrogates are written as ``\\u`` escapes, as in JSONL.

    Rows end in CRLF, as RFC 4180 has it: the csv module quotes a cell only for the characters of the line
    terminator, so with a bare LF a cell holding CR would go out unquoted and split the row for every reader.
    The stream must not translate newlines (open files with ``newline=""``).
    """

    def __init__(self, stream: TextIO, fields: tuple[str, ...]) -> None:
        self._stream = stream
        self._fields = fields
        self._writer = csv.writer(stream, lineterminator="\r\n")
        self._writer.writerow(fields)

    def write(self, record: dict[str, Any]) -> None:
        self._writer.writerow([_cell(record.get(name)) for name in self._fields])

    def write_result(self, result: ProbeResult, encoded: str | None = None) -> None:
        self.write(result.as_dict())

    def flush(self) -> None:
        self._stream.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = "|".join(value)  # addresses and names: no "|" in either
    elif isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    if not text.isprintable():  # controls, bidi controls, separators, lone surrogates (and TAB, CR, LF: kept)
        text = text.translate(_CSV_ESCAPES)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not isinstance(value, (int, float)):
        return "'" + text
    return text


def _show(value: Any) -> str:
    """A field as text that cannot drive a terminal, and that any UTF-8 stream can write."""
    text = escape_control(str(value))
    return text if text.isascii() else text.translate(_TEXT_ESCAPES)


class TextWriter:
    """``url [status] title`` per line, or ``input error: kind: message`` -- for reading, not parsing."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any]) -> None:
        where = _show(record.get("url") or record.get("input") or "")
        if record.get("error"):
            line = f"{where} error: {_show(record['error'])}: {_show(record.get('error_message') or '')}"
            if record.get("line") is not None:
                line += f" (line {record['line']})"
        else:
            parts = [where, f"[{record.get('status_code')}]"]
            for name in ("server", "title"):
                if record.get(name):
                    parts.append(f"[{_show(record[name])}]")
            if record.get("location"):
                parts.append(f"-> {_show(record['location'])}")
            line = " ".join(parts)
        self._stream.write(line + "\n")

    def write_result(self, result: ProbeResult, encoded: str | None = None) -> None:
        self.write(result.as_dict())

    def flush(self) -> None:
        self._stream.flush()


def make_writer(format: str, stream: TextIO, fields: tuple[str, ...]) -> RecordWriter:
    """A writer for ``format`` (jsonl, csv or text). Raises ``ValueError`` for another format."""
    if format == "jsonl":
        return JSONLWriter(stream)
    if format == "csv":
        return CSVWriter(stream, fields)
    if format == "text":
        return TextWriter(stream)
    raise ValueError(f"unknown output format {format!r}: choose jsonl, csv or text")
