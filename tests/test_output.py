"""Tests for aiotcp.probe.output: the JSONL, CSV and text record writers."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from aiotcp.probe import FIELD_NAMES, ProbeResult
from aiotcp.probe.output import CSVWriter, JSONLWriter, TextWriter, make_writer

# What a hostile server (or a list that was not UTF-8) can put in a record's strings.
NASTY = "a\x1b[2J\x07b\x7f\x9b31m\u202eevil\u2028\udcff\\ é漢"


def ok_record(**fields: Any) -> dict[str, Any]:
    result = ProbeResult(
        input="127.0.0.1:8080",
        line=3,
        url="http://127.0.0.1:8080/",
        scheme="http",
        host="127.0.0.1",
        ip="127.0.0.1",
        port=8080,
        ok=True,
        status_code=200,
        reason="OK",
        http_version="1.1",
        content_length=12,
        content_type="text/html",
        server="nginx",
        title="Home",
        connect_ms=0.25,
        ttfb_ms=1.5,
        time_ms=2.0,
        attempts=1,
        timestamp="2026-01-01T00:00:00.000Z",
    )
    return {**result.as_dict(), **fields}


def error_record(**fields: Any) -> dict[str, Any]:
    record = ProbeResult(input="bad target", line=7, error="invalid_target", error_message="no good").as_dict()
    return {**record, **fields}


def written(writer_class: Any, *records: dict[str, Any], **kwargs: Any) -> str:
    stream = io.StringIO()
    writer = writer_class(stream, **kwargs)
    for record in records:
        writer.write(record)
    writer.flush()
    text = stream.getvalue()
    text.encode("utf-8")  # any UTF-8 stream can take it
    return text


# -- JSONL -----------------------------------------------------------------------------------------------------


def test_jsonl_is_one_object_per_line_in_schema_order() -> None:
    records = [ok_record(), error_record()]
    text = written(JSONLWriter, *records)
    lines = text.split("\n")
    assert lines[-1] == ""
    assert len(lines) == 3
    for line, record in zip(lines, records, strict=False):
        assert json.loads(line) == record
        assert list(json.loads(line)) == list(FIELD_NAMES)
    assert '"ok":true' in lines[0]
    assert '"title":"Home"' in lines[0]


def test_jsonl_escapes_controls_and_keeps_other_text() -> None:
    record = ok_record(title=NASTY, server="x\ny", redirects=[{"url": "u", "location": "\x9b"}])
    text = written(JSONLWriter, record)
    assert json.loads(text) == record  # the same strings, only spelled with escapes
    line = text.removesuffix("\n")
    assert "\n" not in line
    for raw in ("\x1b", "\x07", "\x7f", "\x9b", "\u202e", "\u2028"):
        assert raw not in line
    for escape in ("\\u001b", "\\u0007", "\\u007f", "\\u009b", "\\u202e", "\\u2028", "\\udcff", "\\\\"):
        assert escape in line
    assert "é漢" in line  # readable text stays readable


def test_jsonl_escapes_del_in_an_ascii_record() -> None:
    text = written(JSONLWriter, ok_record(server="a\x7fb"))
    assert "\x7f" not in text
    assert json.loads(text)["server"] == "a\x7fb"


# -- CSV -------------------------------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(FIELD_NAMES)
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_csv_has_a_header_then_a_row_per_record() -> None:
    text = written(CSVWriter, ok_record(), error_record(), fields=FIELD_NAMES)
    assert text.startswith(",".join(FIELD_NAMES) + "\r\n")
    assert text.endswith("\r\n")
    ok, error = read_csv(text)
    assert ok["ok"] == "true"
    assert ok["status_code"] == "200"
    assert ok["tls_ms"] == ""
    assert ok["connect_ms"] == "0.25"
    assert error["ok"] == "false"
    assert error["url"] == ""
    assert error["line"] == "7"
    assert error["attempts"] == "0"


def test_csv_header_only_when_nothing_is_written() -> None:
    assert written(CSVWriter, fields=FIELD_NAMES) == ",".join(FIELD_NAMES) + "\r\n"


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nb", "x\r"])
def test_csv_line_breaks_inside_a_cell_never_split_the_row(value: str) -> None:
    (row,) = read_csv(written(CSVWriter, error_record(error_message=value), fields=FIELD_NAMES))
    assert row["error_message"] == value
    assert row["error"] == "invalid_target"


def test_csv_quotes_what_needs_quoting_and_keeps_nested_values_as_json() -> None:
    chain = [{"url": "http://a/", "status_code": 301, "location": "/b,c"}]
    record = ok_record(title='say "hi", then\nleave', server="a,b", redirects=chain)
    text = written(CSVWriter, record, fields=(*FIELD_NAMES, "redirects"))
    rows = list(csv.reader(io.StringIO(text)))
    cells = dict(zip(rows[0], rows[1], strict=True))
    assert cells["title"] == 'say "hi", then\nleave'
    assert cells["server"] == "a,b"
    assert json.loads(cells["redirects"]) == chain


def test_csv_joins_lists_of_addresses_and_names_with_a_bar() -> None:
    record = ok_record(a=["127.0.0.1", "127.0.0.2"], aaaa=[], cname=["b.test", "c.test"])
    (row,) = read_csv(written(CSVWriter, record, fields=FIELD_NAMES))
    assert row["a"] == "127.0.0.1|127.0.0.2"
    assert row["aaaa"] == ""
    assert row["cname"] == "b.test|c.test"


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_csv_defuses_cells_a_spreadsheet_would_run(value: str) -> None:
    (row,) = read_csv(written(CSVWriter, ok_record(server=value, title=value), fields=FIELD_NAMES))
    assert row["server"] == row["title"] == "'" + value


def test_csv_leaves_numbers_and_plain_text_alone() -> None:
    (row,) = read_csv(written(CSVWriter, ok_record(connect_ms=-0.5, port=-1, title="a=b"), fields=FIELD_NAMES))
    assert (row["connect_ms"], row["port"], row["title"]) == ("-0.5", "-1", "a=b")


def test_csv_writes_a_line_that_was_not_utf8() -> None:
    (row,) = read_csv(written(CSVWriter, error_record(input="exa\udcffmple"), fields=FIELD_NAMES))
    assert row["input"] == "exa\\udcffmple"


# -- text ------------------------------------------------------------------------------------------------------


def test_text_lines() -> None:
    redirect = ok_record(status_code=301, title=None, server=None, location="https://127.0.0.1/")
    text = written(TextWriter, ok_record(), redirect, error_record(), error_record(line=None, url="http://h/"))
    assert text.splitlines() == [
        "http://127.0.0.1:8080/ [200] [nginx] [Home]",
        "http://127.0.0.1:8080/ [301] -> https://127.0.0.1/",
        "bad target error: invalid_target: no good (line 7)",
        "http://h/ error: invalid_target: no good",
    ]


def test_text_escapes_every_server_supplied_field() -> None:
    expected = "a\\x1b[2J\\x07b\\x7f\\x9b31m\\u202eevil\\u2028\\udcff\\\\ é漢"
    record = ok_record(url=f"http://h/{NASTY}", server=NASTY, title=NASTY, location=NASTY)
    (line,) = written(TextWriter, record).splitlines()
    assert line == f"http://h/{expected} [200] [{expected}] [{expected}] -> {expected}"
    (line,) = written(TextWriter, error_record(input=NASTY, error_message=NASTY)).splitlines()
    assert line == f"{expected} error: invalid_target: {expected} (line 7)"


def test_text_has_no_raw_control_characters() -> None:
    text = written(TextWriter, ok_record(server=NASTY, title=NASTY), error_record(error_message=NASTY))
    assert text.count("\n") == 2
    assert not any((ord(char) < 0x20 and char != "\n") or 0x7F <= ord(char) < 0xA0 for char in text)


# -- make_writer -----------------------------------------------------------------------------------------------


def test_make_writer() -> None:
    stream = io.StringIO()
    assert isinstance(make_writer("jsonl", stream, FIELD_NAMES), JSONLWriter)
    assert isinstance(make_writer("csv", stream, FIELD_NAMES), CSVWriter)
    assert isinstance(make_writer("text", stream, FIELD_NAMES), TextWriter)
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        make_writer("xml", stream, FIELD_NAMES)
