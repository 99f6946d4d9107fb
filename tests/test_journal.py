"""Tests for aiotcp.probe.journal, the ``--resume`` journal: what a rerun finds after a crash at any byte."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

from aiotcp.probe.journal import Journal, JournalMismatch

KEY = {"input": "/lists/targets.txt", "ports": [80, 443]}


def record(seq: int, **extra: object) -> dict[str, object]:
    return {"input": f"127.0.9.{seq}", "line": seq + 1, "ok": False, "error": "refused", **extra}


def write_journal(path: pathlib.Path, seqs: list[int]) -> bytes:
    journal = Journal(str(path), KEY)
    for seq in seqs:
        journal.append(seq, record(seq))
    journal.close()
    return path.read_bytes()


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "probe.journal"


def test_a_new_journal_is_a_header_line(path: pathlib.Path) -> None:
    journal = Journal(str(path), KEY)
    try:
        assert journal.recovered == 0
        assert not journal.is_done(0)
        assert list(journal.replay()) == []
        assert "recovered=0" in repr(journal)
    finally:
        journal.close()
    (header,) = path.read_bytes().splitlines()
    assert json.loads(header) == {"aiotcp_journal": 1, "key": KEY}


def test_records_survive_a_reopen_and_replay_in_file_order_without_seq(path: pathlib.Path) -> None:
    write_journal(path, [3, 0, 2])
    journal = Journal(str(path), KEY)
    try:
        assert journal.recovered == 3
        assert [journal.is_done(seq) for seq in range(5)] == [True, False, True, True, False]
        assert list(journal.replay()) == [record(3), record(0), record(2)]
    finally:
        journal.close()


def test_header_only_journal(path: pathlib.Path) -> None:
    write_journal(path, [])
    journal = Journal(str(path), KEY)
    try:
        assert journal.recovered == 0
        assert journal.dropped_tail == 0
        assert list(journal.replay()) == []
        journal.append(0, record(0))
    finally:
        journal.close()
    journal = Journal(str(path), KEY)
    journal.close()
    assert journal.recovered == 1


@pytest.mark.parametrize(
    "tail",
    [
        b'{"input":"127.0.9.9","li',  # cut in the middle of a record
        json.dumps({**record(9), "seq": 9}).encode(),  # a whole record but for its newline
        b"\n",  # an empty line
        b'{"input":"127.0.9.9"}\n',  # JSON but no seq: not a record we wrote
    ],
)
def test_a_torn_last_line_is_dropped_and_cut_off(path: pathlib.Path, tail: bytes) -> None:
    whole = write_journal(path, [0, 1])
    with path.open("ab") as file:
        file.write(tail)
    journal = Journal(str(path), KEY)
    try:
        assert journal.recovered == 2
        assert journal.dropped_tail == len(tail)
        assert not journal.is_done(9)
        assert path.read_bytes() == whole  # cut off now, so the next record starts on a line of its own
        journal.append(9, record(9))
    finally:
        journal.close()
    journal = Journal(str(path), KEY)
    try:
        assert journal.recovered == 3
        assert journal.dropped_tail == 0
        assert [r["input"] for r in journal.replay()] == ["127.0.9.0", "127.0.9.1", "127.0.9.9"]
    finally:
        journal.close()


@pytest.mark.parametrize("cut", [0, 1, 10, -1])
def test_a_torn_header_starts_over(path: pathlib.Path, cut: int) -> None:
    header = write_journal(path, [])
    path.write_bytes(header[:cut])  # killed while the header was being written
    journal = Journal(str(path), KEY)
    journal.close()
    assert journal.recovered == 0
    assert path.read_bytes() == header


def test_a_journal_of_another_run_is_refused_and_left_alone(path: pathlib.Path) -> None:
    written = write_journal(path, [0])
    for key in ({**KEY, "ports": []}, {**KEY, "input": "/lists/other.txt"}, {}):
        with pytest.raises(JournalMismatch, match="written for another run") as caught:
            Journal(str(path), key)
        # The journal's own run, said for people (not a Python dict).
        assert f"(input {KEY['input']}" in str(caught.value)
        assert "{" not in str(caught.value)
    assert path.read_bytes() == written


@pytest.mark.parametrize(
    "content",
    [b"127.0.9.1\n127.0.9.2\n", b"127.0.9.1", b'{"some": "json"}\n', b"[1, 2]\n", b'{"aiotcp_journal": 2}\n'],
)
def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(path: pathlib.Path, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(JournalMismatch, match="not an aiotcp journal"):
        Journal(str(path), KEY)
    assert path.read_bytes() == content


def test_is_done_is_a_bitmap_over_seq(path: pathlib.Path) -> None:
    seqs = [0, 7, 8, 9, 1000, 123_456]
    write_journal(path, [*seqs, 8, 9])  # a seq written twice counts once
    journal = Journal(str(path), KEY)
    try:
        assert journal.recovered == len(seqs)
        done = {seq for seq in range(123_460) if journal.is_done(seq)}
        assert done == set(seqs)
        assert not journal.is_done(10**9)
        # A bit per target, with room to grow: not a set of ints, not the records.
        assert len(journal._done) <= (123_456 // 8 + 1) * 2
    finally:
        journal.close()


def test_replay_streams_from_the_file(path: pathlib.Path) -> None:
    write_journal(path, list(range(1000)))
    journal = Journal(str(path), KEY)
    try:
        records = journal.replay()
        assert isinstance(records, Iterator)
        assert next(records) == record(0)
        assert sum(1 for _ in records) == 999
    finally:
        journal.close()


def test_replay_is_what_was_on_disk_when_opened(path: pathlib.Path) -> None:
    write_journal(path, [0, 1])
    journal = Journal(str(path), KEY)
    try:
        journal.append(2, record(2))
        journal.flush()
        assert [r["line"] for r in journal.replay()] == [1, 2]
    finally:
        journal.close()


def test_a_line_that_was_not_utf8_round_trips(path: pathlib.Path) -> None:
    odd = record(0, input="exa\udcffmple.com", title="\x1b[31m\u202e")
    journal = Journal(str(path), KEY)
    journal.append(0, odd)
    journal.close()
    path.read_bytes().decode("utf-8")  # the journal itself is UTF-8
    journal = Journal(str(path), KEY)
    try:
        assert list(journal.replay()) == [odd]
    finally:
        journal.close()


def test_records_reach_the_disk_in_batches_and_on_flush(path: pathlib.Path) -> None:
    journal = Journal(str(path), KEY)
    try:
        for seq in range(600):  # more than one batch
            journal.append(seq, record(seq))
        on_disk = path.read_bytes()
        assert on_disk.count(b"\n") - 1 >= 512
        journal.flush()
        assert path.read_bytes().count(b"\n") - 1 == 600
    finally:
        journal.close()


def test_a_stdin_journal_checks_the_lines_it_has_records_of(path: pathlib.Path) -> None:
    stdin_key = {"input": "-", "ports": []}
    journal = Journal(str(path), stdin_key)
    journal.append(0, {"input": "127.0.9.1", "line": 1})
    journal.append(1, {"input": "127.0.9.3", "line": 3})  # line 2 was a comment: no record
    journal.close()
    reopened = Journal(str(path), stdin_key)
    try:
        reopened.check_line(1, "  127.0.9.1\n")  # stripped, as the prober strips a line
        reopened.check_line(2, "# another comment\n")  # no record of line 2: nothing to compare
        reopened.check_line(4, "127.0.9.4\n")  # beyond the journal: a new line
        for number, line in ((1, "127.0.9.2\n"), (3, "\n")):
            with pytest.raises(JournalMismatch, match=f"line {number} of the input"):
                reopened.check_line(number, line)
    finally:
        reopened.close()
    file_journal = Journal(str(path.with_suffix(".file")), KEY)
    try:
        file_journal.check_line(1, "anything")  # a file's digest is in its key: no line checks
    finally:
        file_journal.close()


@pytest.mark.parametrize("written", [0, 1, 2, 3])
def test_a_job_of_several_records_is_done_only_with_all_its_parts(path: pathlib.Path, written: int) -> None:
    # --all-ips: job 7 has three records (one per address). A crash after some of them leaves the job to be
    # probed again whole: its parts on disk are cut off, never replayed beside a new set.
    journal = Journal(str(path), KEY)
    journal.append(1, record(1))
    for part in range(written):
        journal.append(7, record(7, ip=f"127.0.0.{part + 1}"), parts=3)
    journal.close()
    before = path.stat().st_size
    reopened = Journal(str(path), KEY)
    try:
        assert reopened.is_done(1)
        assert reopened.is_done(7) == (written == 3)
        replayed = list(reopened.replay())
        assert len(replayed) == (1 + 3 if written == 3 else 1)
        assert all("parts" not in line and "seq" not in line for line in replayed)
        assert (reopened.dropped_tail > 0) == (0 < written < 3)
        if 0 < written < 3:
            assert path.stat().st_size < before  # the parts were cut off the file
            reopened.append(7, record(7, ip="127.0.0.9"), parts=1)
    finally:
        reopened.close()
    if 0 < written < 3:
        again = Journal(str(path), KEY)
        try:
            assert again.is_done(7)
            assert [line.get("ip") for line in again.replay()] == [None, "127.0.0.9"]
        finally:
            again.close()
