"""The ``--resume`` journal: an append-only JSONL file of finished records that survives ``kill -9``.

Format: a header line ``{"aiotcp_journal": 1, "key": ...}`` naming the run (input and the options that
decide how the input is numbered), then one finished record per line, with its ``seq``. A job with several
records (``--all-ips``: one per address) writes them on consecutive lines, each with ``parts``, their count.

Why it is crash-safe: a record is appended only once it is complete, as one line; ``kill -9`` can at worst
cut the last line short, and a line without its newline (or that is not JSON) is dropped -- and cut off
the file -- when the journal is reopened. Records still in our buffer when the process dies are simply
probed again. So a rerun of the same command skips exactly the records on disk and writes the rest: every
target ends up in the journal once. A job is done only once all its parts are on disk: the parts of a job
cut short by a crash are cut off with the torn line, and the job is probed again whole.

Memory: the set of finished records is a bitmap over ``seq`` (a bit per target), never the records.

Standard input has no name or digest to put in the key, so a journal of a run that read stdin keeps a
check byte per input line it holds a record for (a hash of the line's text, from the records' ``input``):
:meth:`Journal.check_line` refuses a rerun whose input is not the same at those lines, instead of replaying
records of other targets and skipping the new ones unprobed.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Journal", "JournalMismatch"]

VERSION = 1
_FLUSH_EVERY = 0.25  # seconds
_FLUSH_RECORDS = 512
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class JournalMismatch(ValueError):
    """The journal was written by a run with another input or other numbering options."""


class Journal:
    """Open (or create) the journal at ``path`` for the run identified by ``key``.

    Raises :class:`JournalMismatch` if the file belongs to another run, ``OSError`` if it cannot be opened.
    """

    def __init__(self, path: str, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        self._done = bytearray()
        self.recovered = 0  # records found on disk when opened
        self._lines = 0  # whole record lines on disk when opened
        self.dropped_tail = 0  # bytes of a torn last line cut off when opened
        # For a run that read stdin: a check byte of each input line the journal holds a record for (0: none).
        self._line_checks: bytearray | None = bytearray() if key.get("input") == "-" else None
        good_end = self._load()
        self._file = open(path, "r+b" if good_end is not None else "wb")  # noqa: SIM115 - closed in close()
        if good_end is None:
            self._file.write(self._header())
            self._file.flush()
        else:
            self._file.truncate(good_end)
            self._file.seek(good_end)
        self._pending = 0
        self._last_flush = time.monotonic()

    def __repr__(self) -> str:
        return f"<Journal {self.path!r} recovered={self.recovered}>"

    def _header(self) -> bytes:
        return json.dumps({"aiotcp_journal": VERSION, "key": self.key}, separators=(",", ":")).encode() + b"\n"

    def _load(self) -> int | None:
        """Read what is on disk; return the offset after the last whole line, or None for a new journal."""
        try:
            file = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return None
        with file:
            header_line = file.readline()
            if not header_line.endswith(b"\n"):
                if self._header().startswith(header_line):
                    return None  # killed before the header was complete: start over
                # Not what we would have written: some other file, which must not be overwritten.
                raise JournalMismatch(f"{self.path} is not an aiotcp journal")
            try:
                header = json.loads(header_line)
            except ValueError:
                raise JournalMismatch(f"{self.path} is not an aiotcp journal") from None
            if not isinstance(header, dict) or header.get("aiotcp_journal") != VERSION:
                raise JournalMismatch(f"{self.path} is not an aiotcp journal (version {VERSION})")
            if header.get("key") != self.key:
                raise JournalMismatch(
                    f"{self.path} was written for another run ({_describe_key(header.get('key'))}); "
                    "use a new journal file or rerun the same command"
                )
            good_end = file.tell()
            # The lines of a job with several parts, read so far: counted only when its last part is read.
            group: list[dict[str, Any]] = []
            group_bytes = 0
            for line in file:
                record = _record_of(line)
                if record is None or (group and record["seq"] != group[0]["seq"]):
                    break  # torn, or a job's parts cut short (they are written in a row)
                group.append(record)
                group_bytes += len(line)
                if len(group) < record.get("parts", 1):
                    continue
                for part in group:
                    self._mark(part["seq"])
                    if self._line_checks is not None:
                        self._note_line(part)
                self._lines += len(group)
                good_end += group_bytes
                group, group_bytes = [], 0
            if good_end < os.path.getsize(self.path):
                self.dropped_tail = os.path.getsize(self.path) - good_end
            return good_end

    def _mark(self, seq: int) -> None:
        index, bit = divmod(seq, 8)
        if index >= len(self._done):
            self._done.extend(bytes(index + 1 - len(self._done) + len(self._done) // 2))
        if not self._done[index] & (1 << bit):
            self._done[index] |= 1 << bit
            self.recovered += 1

    def _note_line(self, record: dict[str, Any]) -> None:
        number, text = record.get("line"), record.get("input")
        if isinstance(number, int) and number > 0 and isinstance(text, str):
            checks = self._line_checks
            assert checks is not None
            if number >= len(checks):
                checks.extend(bytes(number + 1 - len(checks) + len(checks) // 2))
            checks[number] = _check_byte(text)

    def check_line(self, number: int, line: str) -> None:
        """Raise :class:`JournalMismatch` if the journal holds a record of input line ``number`` (1-based) made
        from another text: the input is not the one the journal was written for. Only for stdin runs (a
        file's digest is in the key); a no-op otherwise."""
        checks = self._line_checks
        if checks is None or number >= len(checks) or not checks[number]:
            return
        if checks[number] != _check_byte(line.strip()):
            raise JournalMismatch(
                f"line {number} of the input is not the line {self.path} has a record of: the journal was "
                "written for another input; use a new journal file or give the same input"
            )

    def is_done(self, seq: int) -> bool:
        """Whether the record ``seq`` is already in the journal."""
        index, bit = divmod(seq, 8)
        return index < len(self._done) and bool(self._done[index] & (1 << bit))

    def done_bitmap(self) -> bytes:
        """The ``seq`` s on disk when the journal was opened, as a bitmap (bit ``seq % 8`` of byte ``seq // 8``):
        what ``--workers`` processes are given to skip."""
        return bytes(self._done)

    def replay(self) -> Iterator[dict[str, Any]]:
        """The records on disk when the journal was opened, streamed from the file, without ``seq``."""
        with open(self.path, "rb") as file:
            file.readline()
            for _ in range(self._lines):
                line = file.readline()
                record = json.loads(line)
                record.pop("seq", None)
                record.pop("parts", None)
                yield record

    def _write_line(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        # A lone surrogate (from an input line that was not UTF-8) becomes the JSON escape \udcXX: the line stays
        # valid UTF-8 and JSON, and replay() reads back the very same string.
        self._file.write(text.encode("utf-8", "backslashreplace") + b"\n")

    def append(self, seq: int, record: dict[str, Any], parts: int = 1) -> None:
        """Add a finished record, one of the ``parts`` records of job ``seq`` (append those in a row). Written
        in batches: a crash loses at most the last batch, never a half."""
        self._write_line({**record, "seq": seq} if parts == 1 else {**record, "seq": seq, "parts": parts})
        self._appended()

    def append_json(
        self, seq: int, record_json: str, parts: int = 1, *, marks: Mapping[str, Any] | None = None
    ) -> None:
        """:meth:`append` for a record already encoded as one JSON object (``ProbeResult.to_json()``), with the
        fields of ``marks`` added after the record's: the same line as ``append(seq, {**record, **marks},
        parts)``, without decoding and encoding the record again."""
        extra = "".join(f",{_dumps(name)}:{_dumps(value)}" for name, value in marks.items()) if marks else ""
        count = f',"parts":{parts}' if parts != 1 else ""
        text = f'{record_json[:-1]}{extra},"seq":{seq}{count}}}'
        self._file.write(text.encode("utf-8", "backslashreplace") + b"\n")
        self._appended()

    def _appended(self) -> None:
        self._pending += 1
        now = time.monotonic()
        if self._pending >= _FLUSH_RECORDS or now - self._last_flush >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._pending = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


def _record_of(line: bytes) -> dict[str, Any] | None:
    """A whole record line with its ``seq``, or None (a torn or foreign line)."""
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    seq, parts = record.get("seq"), record.get("parts", 1)
    return record if isinstance(seq, int) and seq >= 0 and isinstance(parts, int) and parts >= 1 else None


def _check_byte(text: str) -> int:
    """1-255 from the line's text: a changed line is caught with probability 254/255, two with 1 - 255**-2."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % 255 + 1


def _describe_key(key: object) -> str:
    """A journal's key as a person reads it: ``input targets.txt (sha256 1a2b3c4d...), ports 80,443``."""
    if not isinstance(key, dict):
        return "an unknown input"
    parts = [f"input {key.get('input', '?')}"]
    if key.get("sha256"):
        parts[0] += f" (sha256 {str(key['sha256'])[:12]}...)"
    if key.get("ports"):
        parts.append("ports " + ",".join(str(port) for port in key["ports"]))
    if key.get("shard"):
        parts.append(f"shard {key['shard']}")
    return ", ".join(parts)
