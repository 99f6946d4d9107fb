"""Record writers for ``aiotcp probe``: JSONL (one object per line), CSV (a header, then one row per record)
and text (for people; server-supplied fields escaped so a title cannot drive the terminal).

All writers take records as dicts in schema order (:data:`aiotcp.probe.FIELD_NAMES`) and write through a
text stream; flushing is the caller's choice (the probe flushes in batches, and on exit).
"""

from __future__ import annotations

import csv
import json
from typing import Any, Protocol, TextIO

from .text import escape_control

__all__ = ["CSVWriter", "JSONLWriter", "RecordWriter", "TextWriter", "make_writer"]


class RecordWriter(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


class JSONLWriter:
    """One JSON object per line. Non-ASCII kept as UTF-8; control characters escaped by JSON itself."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(self._encode(record) + "\n")

    def flush(self) -> None:
        self._stream.flush()


class CSVWriter:
    """RFC 4180 CSV with a header row. Nested values (the redirect chain) are JSON in one cell; cells that a
    spreadsheet would run as a formula are prefixed with a quote (CSV injection)."""

    def __init__(self, stream: TextIO, fields: tuple[str, ...]) -> None:
        self._stream = stream
        self._fields = fields
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(fields)

    def write(self, record: dict[str, Any]) -> None:
        self._writer.writerow([_cell(record.get(name)) for name in self._fields])

    def flush(self) -> None:
        self._stream.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not isinstance(value, (int, float)):
        return "'" + text
    return text


class TextWriter:
    """``url [status] title`` per line, or ``input error: kind: message`` -- for reading, not parsing."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any]) -> None:
        where = escape_control(str(record.get("url") or record.get("input") or ""))
        if record.get("error"):
            line = f"{where} error: {record['error']}: {escape_control(str(record.get('error_message') or ''))}"
            if record.get("line") is not None:
                line += f" (line {record['line']})"
        else:
            parts = [where, f"[{record.get('status_code')}]"]
            for name in ("server", "title"):
                if record.get(name):
                    parts.append(f"[{escape_control(str(record[name]))}]")
            if record.get("location"):
                parts.append(f"-> {escape_control(str(record['location']))}")
            line = " ".join(parts)
        self._stream.write(line + "\n")

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
