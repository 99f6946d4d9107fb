"""Tests for ``aiotcp probe``: the command run as a subprocess (``python -m aiotcp``) against servers started
in this process, on loopback."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pathlib
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dns_server import zone_server
from helpers import INSTALLED_PARSERS, PARSERS
from scripted_server import CloseAfterSending, ReadRequest, ScriptedServer, Send, response

from aiotcp.serve import TargetServer

RUN_TIMEOUT_S = 30.0
WAIT_S = 10.0

# The schema, written out: the order is part of the contract (JSONL key order, CSV columns).
SCHEMA = [
    "input", "line", "url", "scheme", "host", "ip", "a", "aaaa", "cname", "resolver", "dns_rcode", "port", "path",
    "ok", "status_code", "reason", "http_version", "content_length", "content_type", "content_encoding", "server",
    "title", "location", "quirks", "body_sha256", "header_sha256", "words", "lines", "favicon_mmh3", "favicon_url",
    "tls_version", "tls_cipher", "tls_alpn", "cert_subject_cn", "cert_sans", "cert_issuer", "cert_not_before",
    "cert_not_after", "cert_sha256", "cert_self_signed", "cert_verify_error",
    "dns_ms", "connect_ms", "tls_ms", "ttfb_ms",
    "time_ms", "attempts", "error", "error_message", "timeout_phase", "timestamp",
]  # fmt: skip


def command(*args: str) -> list[str]:
    return [sys.executable, "-W", "error", "-m", "aiotcp", "probe", *args]


def probe(
    *args: str,
    stdin: str | bytes | None = None,
    preexec_fn: Callable[[], None] | None = None,
    cwd: pathlib.Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        command(*args), input=data, capture_output=True, timeout=RUN_TIMEOUT_S, preexec_fn=preexec_fn, cwd=cwd
    )
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    assert b"Warning" not in done.stderr, done.stderr.decode()
    return done


def records_of(text: bytes | str) -> list[dict[str, Any]]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def write_lines(path: pathlib.Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture
def targets(tmp_path: pathlib.Path, shared_server: TargetServer, refused: int) -> str:
    return write_lines(
        tmp_path / "targets.txt",
        [
            "# servers",  # 1
            f"127.0.0.1:{shared_server.port}",  # 2
            "",  # 3
            f"127.0.0.1:{refused}",  # 4
            "no such thing!",  # 5
            f"{shared_server.url}/status/404",  # 6
        ],
    )


def test_jsonl_records_follow_the_schema_one_per_target(targets: str, shared_server: TargetServer) -> None:
    done = probe(targets, "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    records = records_of(done.stdout)
    for line in done.stdout.decode().splitlines():
        assert list(json.loads(line)) == SCHEMA
    got = {record["line"]: record for record in records}
    assert sorted(got) == [2, 4, 5, 6]
    assert got[2]["ok"] is True
    assert got[2]["status_code"] == 200
    assert got[2]["title"] == "aiotcp test server"
    assert got[4]["ok"] is False
    assert got[4]["error"] == "refused"
    assert got[5]["error"] == "invalid_target"
    assert got[5]["input"] == "no such thing!"
    assert got[5]["url"] is None
    assert got[6]["ok"] is True
    assert got[6]["status_code"] == 404
    assert all(isinstance(record["timestamp"], str) for record in records)


def test_summary_goes_to_stderr_unless_quiet(targets: str) -> None:
    done = probe(targets)
    assert done.returncode == 0
    assert len(records_of(done.stdout)) == 4
    summary = done.stderr.decode()
    assert "HTTP 200" in summary
    assert "error: refused" in summary
    assert "error: invalid_target" in summary


def test_csv_has_the_schema_header_and_one_row_per_target(targets: str) -> None:
    done = probe(targets, "-q", "--format", "csv")
    assert done.returncode == 0
    rows = list(csv.reader(io.StringIO(done.stdout.decode())))
    assert rows[0] == SCHEMA
    assert sorted(int(row[1]) for row in rows[1:]) == [2, 4, 5, 6]


def test_only_ok_and_output_file(targets: str, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.jsonl"
    done = probe(targets, "-q", "--only-ok", "-o", str(out))
    assert done.returncode == 0
    assert done.stdout == b""
    records = records_of(out.read_bytes())
    assert sorted(record["line"] for record in records) == [2, 6]
    assert all(record["ok"] for record in records)


def test_output_dash_is_stdout_as_in_curl(targets: str, tmp_path: pathlib.Path) -> None:
    done = probe(targets, "-q", "-o", "-", cwd=tmp_path)
    assert done.returncode == 0
    assert sorted(record["line"] for record in records_of(done.stdout)) == [2, 4, 5, 6]
    assert not (tmp_path / "-").exists()
    named = probe(targets, "-q", "-o", "./-", cwd=tmp_path)  # a file named "-" is still written as curl does
    assert (named.returncode, named.stdout) == (0, b"")
    assert len(records_of((tmp_path / "-").read_bytes())) == 4


def test_stdin_and_ports(shared_server: TargetServer, refused: int) -> None:
    lines = f"127.0.0.1\n127.0.0.2\n127.0.0.1:{refused}\n#\n127.0.0.0/31\n"
    done = probe("-", "-q", "-p", f"{shared_server.port},{refused}", stdin=lines)
    assert done.returncode == 0
    seen = sorted((r["line"], r["host"], r["port"], r["ok"]) for r in records_of(done.stdout))
    ports = (shared_server.port, refused)
    expected = [(1, "127.0.0.1", port, port == shared_server.port) for port in ports]
    expected += [(2, "127.0.0.2", port, False) for port in ports]
    expected += [(3, "127.0.0.1", refused, False)]
    for host in ("127.0.0.0", "127.0.0.1"):
        expected += [(5, host, port, port == shared_server.port and host == "127.0.0.1") for port in ports]
    assert seen == sorted(expected)


def test_input_order(shared_server: TargetServer) -> None:
    lines = [f"{shared_server.url}/delay/300"] + [f"{shared_server.url}/"] * 20
    done = probe("-", "-q", "--order", "input", "-c", "8", stdin="\n".join(lines))
    assert [record["line"] for record in records_of(done.stdout)] == list(range(1, 22))


def test_lines_that_are_not_utf8_get_records_not_a_crash(tmp_path: pathlib.Path, refused: int) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(b"exa\xffmple.com\nhttp://127.0.0.1:%d/caf\xe9\n127.0.0.1:%d\n" % (refused, refused))
    for fmt in ("jsonl", "csv", "text"):
        done = probe(str(path), "-q", "--format", fmt, "--resume", str(tmp_path / f"{fmt}.journal"))
        assert done.returncode == 0, done.stderr
        done.stdout.decode("utf-8")  # whatever the format, the output is UTF-8
    records = records_of(probe(str(path), "-q").stdout)
    got = {record["line"]: record for record in records}
    assert got[1]["error"] == got[2]["error"] == "invalid_target"
    assert got[1]["input"] == "exa\udcffmple.com"  # the line as read, with the byte that was not UTF-8
    assert got[3]["error"] == "refused"


# -- text output ---------------------------------------------------------------------------------------------


# ESC cannot come in a header (both parsers reject control characters there, as RFC 9110 section 5.5
# allows), but C1 controls can: they are obs-text, bytes 0x80-0x9F, which Latin-1 makes U+0080-U+009F --
# and U+009B is CSI, the 8-bit twin of ESC [. A title can hold anything.
EVIL_TITLE = b"\x1b]0;owned\x07title\x9b2J"
EVIL = response(
    200,
    b"<title>" + EVIL_TITLE + b"</title>",
    headers=[("Server", b"evil\x9b31mred"), ("Location", b"/\x9b1A"), ("Content-Type", "text/html; charset=latin-1")],
    close=True,
)


@pytest.fixture
def evil_server() -> Iterator[ScriptedServer]:
    with ScriptedServer([ReadRequest(), Send(EVIL), CloseAfterSending()]) as server:
        yield server


@pytest.mark.parametrize("http", PARSERS)
def test_text_output_escapes_what_the_server_sent(evil_server: ScriptedServer, http: str) -> None:
    done = probe("-", "-q", "--format", "text", "--http", http, stdin=evil_server.address)
    assert done.returncode == 0
    text = done.stdout.decode()
    assert text == (
        f"http://{evil_server.address}/ [200] [evil\\x9b31mred] [\\x1b]0;owned\\x07title\\x9b2J] -> /\\x9b1A\n"
    )
    assert not any(char in text for char in "\x1b\x07\x9b")


def test_text_output_of_an_escape_in_a_header_is_escaped() -> None:
    # A quirk, not an error (as for curl and h11): the record has the response, the terminal never the escape.
    reply = response(200, b"", headers=[("Server", b"evil\x1b[31mred")], close=True)
    for http in INSTALLED_PARSERS:
        with ScriptedServer([ReadRequest(), Send(reply), CloseAfterSending()]) as server:
            done = probe("-", "-q", "--format", "text", "--http", http, stdin=server.address)
        text = done.stdout.decode()
        assert text == f"http://{server.address}/ [200] [evil\\x1b[31mred]\n"
        assert "\x1b" not in text


def test_jsonl_keeps_what_the_server_sent_as_data(evil_server: ScriptedServer) -> None:
    done = probe("-", "-q", stdin=evil_server.address)
    (record,) = records_of(done.stdout)
    assert record["server"] == "evil\x9b31mred"
    assert record["title"] == EVIL_TITLE.decode("latin-1")
    assert record["location"] == "/\x9b1A"
    assert b"\x1b" not in done.stdout
    assert "\x9b".encode() not in done.stdout


def test_csv_cells_that_a_spreadsheet_would_run_are_defused() -> None:
    reply = response(200, b"", headers=[("Server", '=HYPERLINK("http://x")'), ("Location", "+1")], close=True)
    with ScriptedServer([ReadRequest(), Send(reply), CloseAfterSending()]) as server:
        done = probe("-", "-q", "--format", "csv", stdin=server.address)
    header, row = list(csv.reader(io.StringIO(done.stdout.decode())))
    cells = dict(zip(header, row, strict=True))
    assert cells["server"] == '\'=HYPERLINK("http://x")'
    assert cells["location"] == "'+1"
    assert cells["ok"] == "true"
    assert cells["status_code"] == "200"


# -- limits and usage ------------------------------------------------------------------------------------------


def test_concurrency_is_clamped_to_the_open_file_limit(targets: str) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    done = probe(targets, "-q", "-c", "1000", preexec_fn=low_limit)
    assert done.returncode == 0
    assert "concurrency 1000 does not fit the open-file limit 100; using 36" in done.stderr.decode()
    assert len(records_of(done.stdout)) == 4


@pytest.mark.parametrize("args", [("-p", "80-"), ("-c", "0"), ("--retries", "-1"), ("--format", "xml"), ("-t", "nan")])
def test_usage_errors_exit_2(targets: str, args: tuple[str, ...]) -> None:
    done = probe(targets, "-q", *args)
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"error: usage:" in done.stderr


# -- --resume --------------------------------------------------------------------------------------------------


def journal_records(path: pathlib.Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def run_until_killed(args: list[str], journal: pathlib.Path, at_least: int) -> None:
    """Start the command, SIGKILL it once the journal holds ``at_least`` records; it must not have finished."""
    process = subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT_S
        while journal_records(journal) < at_least and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed: make the list slower"
        assert journal_records(journal) >= at_least
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == -signal.SIGKILL, stderr.decode()


def test_resume_after_kill_9_completes_the_list_once(
    tmp_path: pathlib.Path, server: TargetServer, refused: int
) -> None:
    lines = ["# 2,000 targets: refused at once, or answered after 50 ms"]
    expected: set[tuple[int, str | None]] = set()
    for i in range(2000):
        if i % 250 == 7:
            lines.append("")
        if i % 400 == 3:
            lines.append(f"bad target {i}")
            expected.add((len(lines), None))
        url = f"http://127.0.0.1:{refused}/" if i % 2 else f"{server.url}/delay/50"
        lines.append(url)
        expected.add((len(lines), url))
    path = write_lines(tmp_path / "targets.txt", lines)
    journal, out = tmp_path / "probe.journal", tmp_path / "out.jsonl"
    args = [path, "-q", "-c", "20", "--resume", str(journal), "-o", str(out)]

    run_until_killed(args, journal, at_least=300)
    with journal.open("ab") as file:  # as if the kill had come in the middle of writing a record
        file.write(b'{"input":"127.0.0.1:1","line":12,"url":"http://127.0')
    run_until_killed(args, journal, at_least=journal_records(journal) + 300)
    done = probe(*args)
    assert done.returncode == 0, done.stderr

    records = records_of(out.read_bytes())
    seen = [(record["line"], record["url"]) for record in records]
    assert len(seen) == len(set(seen)), "a target was written twice"
    assert set(seen) == expected
    assert all(list(record) == SCHEMA for record in records)
    assert {record["error"] for record in records} == {None, "refused", "invalid_target"}

    seqs = [json.loads(line)["seq"] for line in journal.read_bytes().splitlines()[1:]]
    assert sorted(seqs) == list(range(len(expected)))


def test_resume_of_a_finished_run_probes_nothing(tmp_path: pathlib.Path, targets: str, refused: int) -> None:
    journal, out = tmp_path / "probe.journal", tmp_path / "out.jsonl"
    first = probe(targets, "-q", "--resume", str(journal), "-o", str(out))
    assert first.returncode == 0
    before = sorted(json.dumps(record) for record in records_of(out.read_bytes()))
    journal_before = journal.read_bytes()
    again = probe(targets, "-q", "--resume", str(journal), "-o", str(out))
    assert again.returncode == 0
    assert sorted(json.dumps(record) for record in records_of(out.read_bytes())) == before
    assert journal.read_bytes() == journal_before


def test_journal_of_another_input_is_refused(tmp_path: pathlib.Path, targets: str) -> None:
    journal = tmp_path / "probe.journal"
    assert probe(targets, "-q", "--resume", str(journal)).returncode == 0
    written = journal.read_bytes()

    other = write_lines(tmp_path / "other.txt", ["127.0.0.1:1"])
    edited = write_lines(pathlib.Path(targets), ["127.0.0.1:1", "127.0.0.1:2"])  # same name, other content
    for args in ([other], [edited], [targets, "-p", "80"], ["-"]):
        done = probe(*args, "-q", "--resume", str(journal), stdin="")
        assert done.returncode == 2
        assert done.stdout == b""
        assert b"error: usage: --resume:" in done.stderr
        assert b"was written for another run" in done.stderr
        assert journal.read_bytes() == written


def test_resume_from_stdin_checks_the_lines_it_has_records_of(tmp_path: pathlib.Path, refused: int) -> None:
    # Stdin has no name or digest for the journal's key: the journal keeps a check of each line it has a
    # record of, so another input is refused rather than answered with the old records.
    journal = tmp_path / "probe.journal"
    first_lines = f"127.0.0.1:{refused}\n# a comment\n127.0.0.2:{refused}\n"
    assert probe("-", "-q", "--resume", str(journal), stdin=first_lines).returncode == 0
    written = journal.read_bytes()

    other = probe("-", "-q", "--resume", str(journal), stdin=f"127.0.0.3:{refused}\n# a comment\n127.0.0.2:{refused}\n")
    assert other.returncode == 2
    assert b"error: usage: --resume: line 1 of the input is not the line" in other.stderr
    assert journal.read_bytes() == written  # nothing probed, nothing journaled

    longer = probe("-", "-q", "--resume", str(journal), stdin=first_lines + f"127.0.0.4:{refused}\n")
    assert longer.returncode == 0
    records = records_of(longer.stdout)
    assert sorted(record["input"] for record in records) == [f"127.0.0.{n}:{refused}" for n in (1, 2, 4)]
    assert len(journal.read_bytes().splitlines()) == 1 + 3  # the header, and one record per target


def test_a_file_that_is_not_a_journal_is_left_alone(tmp_path: pathlib.Path, targets: str) -> None:
    for content in (b"127.0.0.1:80\n", b"127.0.0.1:80", b"\x00\x01binary"):
        precious = tmp_path / "precious.txt"
        precious.write_bytes(content)
        done = probe(targets, "-q", "--resume", str(precious))
        assert done.returncode == 2
        assert b"is not an aiotcp journal" in done.stderr
        assert precious.read_bytes() == content


def test_journal_directory_is_a_usage_error(tmp_path: pathlib.Path, targets: str) -> None:
    done = probe(targets, "-q", "--resume", str(tmp_path))
    assert done.returncode == 2
    assert b"error: usage: --resume:" in done.stderr
    assert os.listdir(tmp_path) == ["targets.txt"]


# -- --resolvers and --all-ips ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named"), [("127.0.0.1,dns.example", "'dns.example'"), ("127.0.0.1:99999", "'127.0.0.1:99999'")]
)
def test_an_invalid_resolver_is_a_usage_error_naming_it(targets: str, value: str, named: str) -> None:
    done = probe(targets, "-q", "--resolvers", value)
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"error: usage:" in done.stderr
    assert named in done.stderr.decode()


def test_resolvers_from_a_file_and_dns_facts_in_csv(tmp_path: pathlib.Path, shared_server: TargetServer) -> None:
    zone = {"web.test": [("CNAME", "origin.test", 60)], "origin.test": [("A", "127.0.0.1", 60), ("A", "127.0.0.2", 60)]}
    with zone_server(zone) as dns:
        resolvers = tmp_path / "resolvers.txt"
        resolvers.write_text(f"# loopback only\n{dns.address}\n")
        targets = write_lines(tmp_path / "t.txt", [f"web.test:{shared_server.port}", "missing.test:1"])
        done = probe(targets, "-q", "--format", "csv", "--resolvers", str(resolvers), "--all-ips", "--order", "input")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode())))
    assert [row["ip"] for row in rows[:2]] == ["127.0.0.1", "127.0.0.2"]
    assert {row["a"] for row in rows[:2]} == {"127.0.0.1|127.0.0.2"}
    assert {row["cname"] for row in rows[:2]} == {"origin.test"}
    assert {row["resolver"] for row in rows} == {dns.address}
    assert (rows[2]["error"], rows[2]["dns_rcode"]) == ("dns", "NXDOMAIN")


# -- paths, matchers and filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--match-regex", "a(b"], "--match-regex"),
        (["--filter-regex", "*x"], "--filter-regex"),
        (["--match-code", "2xx"], "--match-code"),
        (["--filter-code", "99"], "--filter-code"),
        (["--match-length", "10-5"], "--match-length"),
        (["--filter-length", "-1"], "--filter-length"),
        (["--path-file", "/nonexistent/paths.txt"], "--path-file"),
        (["--path", "no-slash"], "path"),
        (["--ca", "/nonexistent/ca.pem"], "--ca"),
        (["--max-host-errors", "0"], "--max-host-errors"),
    ],
)
def test_bad_matcher_path_or_ca_is_a_usage_error(flags: list[str], named: str, tmp_path: pathlib.Path) -> None:
    targets = write_lines(tmp_path / "t.txt", ["127.0.0.1:1"])
    done = probe(targets, "-q", *flags)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("error: usage: "), line
    assert named in line, line
    assert done.stdout == b""  # nothing was probed


def test_a_ca_file_without_a_certificate_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    targets = write_lines(tmp_path / "t.txt", ["127.0.0.1:1"])
    done = probe(targets, "-q", "--ca", str(ca))
    assert done.returncode == 2
    assert b"--ca" in done.stderr


def test_paths_matchers_and_resume_account_for_every_record(tmp_path: pathlib.Path) -> None:
    def route(path: bytes) -> list[Any]:
        body = b"<html>found %s</html>" % path
        status = 200 if path != b"/missing" else 404
        return [ReadRequest(), Send(response(status, body)), CloseAfterSending()]

    with ScriptedServer(*[route(p) for p in (b"/", b"/admin", b"/missing")] * 2) as server:
        targets = write_lines(tmp_path / "t.txt", [f"127.0.0.1:{server.port}"])
        paths = tmp_path / "paths.txt"
        paths.write_text("# the paths\n/admin\n\n/missing\n")
        journal = tmp_path / "journal"
        args = (targets, "--path", "/", "--path-file", str(paths), "--match-code", "200-299", "--filter-string",
                "found /admin", "--resume", str(journal))  # fmt: skip
        done = probe(*args)
        assert done.returncode == 0, done.stderr
        written = records_of(done.stdout)
        assert [(r["path"], r["status_code"]) for r in written] == [("/", 200)]
        summary = done.stderr.decode()
        assert "matched (written)" in summary
        assert "filtered (not written)" in summary
        journaled = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
        assert sorted(r["path"] for r in journaled) == ["/", "/admin", "/missing"]  # every record, filtered too
        again = probe(*args)  # everything is journaled: nothing is probed, the same records are written
        assert again.returncode == 0, again.stderr
        assert [(r["path"], r["status_code"]) for r in records_of(again.stdout)] == [("/", 200)]


def test_csv_has_every_field_with_lists_joined(tmp_path: pathlib.Path) -> None:
    with ScriptedServer(
        [ReadRequest(), Send(b"HTTP/1.0 200\r\nContent-Length: 2\r\n\r\nok"), CloseAfterSending()]
    ) as server:
        targets = write_lines(tmp_path / "t.txt", [f"127.0.0.1:{server.port}"])
        done = probe(targets, "-q", "--format", "csv")
    rows = list(csv.reader(io.StringIO(done.stdout.decode())))
    assert rows[0] == SCHEMA
    record = dict(zip(rows[0], rows[1], strict=True))
    assert record["quirks"] == "http10|no_reason"
    assert record["body_sha256"] == hashlib.sha256(b"ok").hexdigest()
    assert (record["words"], record["lines"]) == ("1", "1")
