"""Matchers and filters on records (aiotcp.probe.matchers), over plain values: no sockets needed."""

from __future__ import annotations

import pytest

from aiotcp.probe import ProbeResult
from aiotcp.probe.matchers import Matchers, parse_ranges


def record(status: int | None = 200, body: bytes = b"", length: int | None = None) -> ProbeResult:
    result = ProbeResult(input="x", line=1, status_code=status, content_length=length, body=body)
    result.error = None if status is not None else "refused"
    return result


def test_ranges() -> None:
    assert parse_ranges("200, 301-308,404") == ((200, 200), (301, 308), (404, 404))
    for bad in ("", "2xx", "300-", "-1", "5-3", "1-2-3"):
        with pytest.raises(ValueError, match=r"range|number"):
            parse_ranges(bad)


def test_no_matcher_keeps_everything() -> None:
    matchers = Matchers.build()
    assert not matchers.active
    assert not matchers.needs_body
    assert matchers.keep(record())
    assert matchers.keep(record(None))


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        ({"match_code": ["200,300-399"]}, [True, True, False, False]),
        ({"filter_code": ["404"]}, [True, True, False, True]),
        ({"match_string": ["admin"]}, [True, False, False, False]),
        ({"filter_string": ["admin"]}, [False, True, True, True]),
        ({"match_regex": [r"ad+min\b"]}, [True, False, False, False]),
        ({"filter_regex": [r"^Not"]}, [True, True, False, True]),
        ({"match_length": ["0-9"]}, [False, True, True, False]),  # Content-Length, else the body's length
        ({"filter_length": ["1000"]}, [True, True, True, True]),
        ({"match_code": ["200-399"], "filter_string": ["moved"]}, [True, False, False, False]),
    ],
)
def test_match_and_filter(options: dict[str, list[str]], kept: list[bool]) -> None:
    records = [
        record(200, b"the admin page"),
        record(301, b"moved", length=5),
        record(404, b"Not Found"),
        record(None),  # an error: matches no code, length, string or regex
    ]
    matchers = Matchers.build(**options)
    assert [matchers.keep(r) for r in records] == kept


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"match_regex": ["a(b"]}, "match-regex"),
        ({"filter_code": ["99"]}, "filter-code"),
        ({"match_code": ["abc"]}, "match-code"),
        ({"filter_length": ["9-1"]}, "filter-length"),
    ],
)
def test_bad_values_name_the_matcher(options: dict[str, list[str]], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Matchers.build(**options)


def test_strings_and_lengths_need_the_body() -> None:
    assert Matchers.build(match_string=["x"]).needs_body
    assert Matchers.build(filter_length=["5"]).needs_body
    assert not Matchers.build(match_code=["200"]).needs_body
