"""Matchers and filters on the stream of records: which records are written.

A record is *kept* when it passes every ``match_*`` given (within one, any of its values matches) and no
``filter_*`` matches it. What each looks at:

- ``code``: ``status_code`` (a record without a response has none: it matches no code);
- ``length``: the response's length -- its Content-Length, else the body bytes read;
- ``string``: a substring of the body read (the first ``max_body`` bytes), case-sensitive, as UTF-8;
- ``regex``: a Python regular expression searched in that body, decoded as UTF-8 (bad bytes as U+FFFD).

So a record with an error kind passes only when no ``match_*`` is given, and then no filter can drop it.
Codes and lengths are lists of numbers and ranges: ``200,301-308``. The values are parsed here
(:func:`parse_ranges`, :func:`compile_regexes`), raising ``ValueError`` with the bad value quoted, so the
command line can turn them into usage errors before any probe starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .records import ProbeResult

__all__ = ["Matchers", "parse_ranges"]

Ranges = tuple[tuple[int, int], ...]


def parse_ranges(text: str, *, what: str = "value") -> Ranges:
    """``"200,301-308"`` -> ``((200, 200), (301, 308))``. Raises ``ValueError`` quoting a bad piece."""
    ranges: list[tuple[int, int]] = []
    for piece in text.split(","):
        piece = piece.strip()
        low, dash, high = piece.partition("-")
        low, high = low.strip(), high.strip()
        if not (low.isascii() and low.isdigit()) or (dash and not (high.isascii() and high.isdigit())):
            raise ValueError(f"{what} {piece!r} is not a number or a range N-M")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ValueError(f"{what} range {piece!r} is empty (its start is after its end)")
        ranges.append((first, last))
    return tuple(ranges)


def _in(value: int | None, ranges: Ranges) -> bool:
    return value is not None and any(first <= value <= last for first, last in ranges)


@dataclass(frozen=True, slots=True)
class Matchers:
    """The matchers and filters of one run (see the module docstring). Empty: every record is kept."""

    match_code: Ranges = ()
    filter_code: Ranges = ()
    match_length: Ranges = ()
    filter_length: Ranges = ()
    match_string: tuple[str, ...] = ()
    filter_string: tuple[str, ...] = ()
    match_regex: tuple[re.Pattern[str], ...] = ()
    filter_regex: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def build(
        cls,
        *,
        match_code: Iterable[str] = (),
        filter_code: Iterable[str] = (),
        match_length: Iterable[str] = (),
        filter_length: Iterable[str] = (),
        match_string: Iterable[str] = (),
        filter_string: Iterable[str] = (),
        match_regex: Iterable[str] = (),
        filter_regex: Iterable[str] = (),
    ) -> Matchers:
        """From their text forms (each value may list several: ``"200,300-399"``). Raises ``ValueError`` naming
        the matcher and quoting the value that is not a code, a length or a regular expression."""

        def ranges(name: str, texts: Iterable[str], low: int, high: int) -> Ranges:
            out: list[tuple[int, int]] = []
            for text in texts:
                for first, last in parse_ranges(text, what=name):
                    if first < low or last > high:
                        raise ValueError(f"{name} {text!r}: each must be within {low}-{high}")
                    out.append((first, last))
            return tuple(out)

        def regexes(name: str, texts: Iterable[str]) -> tuple[re.Pattern[str], ...]:
            compiled = []
            for text in texts:
                try:
                    compiled.append(re.compile(text))
                except re.error as exc:
                    raise ValueError(f"{name} {text!r} is not a regular expression: {exc}") from None
            return tuple(compiled)

        return cls(
            match_code=ranges("match-code", match_code, 100, 999),
            filter_code=ranges("filter-code", filter_code, 100, 999),
            match_length=ranges("match-length", match_length, 0, 2**63 - 1),
            filter_length=ranges("filter-length", filter_length, 0, 2**63 - 1),
            match_string=tuple(match_string),
            filter_string=tuple(filter_string),
            match_regex=regexes("match-regex", match_regex),
            filter_regex=regexes("filter-regex", filter_regex),
        )

    @property
    def active(self) -> bool:
        """Whether any matcher or filter is set (else every record is kept)."""
        return any(getattr(self, name) for name in self.__slots__)

    @property
    def needs_body(self) -> bool:
        """Whether the records must carry the body read (``ProbeOptions.keep_body``): strings, regexes and
        lengths of responses without a Content-Length look at it."""
        return bool(
            self.match_string
            or self.filter_string
            or self.match_regex
            or self.filter_regex
            or self.match_length
            or self.filter_length
        )

    def keep(self, result: ProbeResult) -> bool:
        """Whether ``result`` is written. Reads ``result.body`` when a string, regex or length asks for it."""
        body = result.body or b""
        responded = result.status_code is not None
        length = (result.content_length if result.content_length is not None else len(body)) if responded else None
        text: str | None = None
        if self.match_code and not _in(result.status_code, self.match_code):
            return False
        if self.match_length and not _in(length, self.match_length):
            return False
        if self.match_string and not (responded and any(s.encode() in body for s in self.match_string)):
            return False
        if self.match_regex:
            text = body.decode("utf-8", errors="replace")
            if not (responded and any(pattern.search(text) for pattern in self.match_regex)):
                return False
        if _in(result.status_code, self.filter_code) or _in(length, self.filter_length):
            return False
        if responded and any(s.encode() in body for s in self.filter_string):
            return False
        if responded and self.filter_regex:
            text = body.decode("utf-8", errors="replace") if text is None else text
            if any(pattern.search(text) for pattern in self.filter_regex):
                return False
        return True
