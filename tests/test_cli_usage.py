"""Mistakes on the command line, for every subcommand: bad flags, bad values, input files that are missing,
directories, unreadable or undecodable. Each is one line, ``error: ...``, exit status 2 -- never a
traceback. And the exit-code table: one in the code, the same in ``--help`` and in the README.

The walk runs :func:`aiotcp.cli.main` in this process (a few hundred cases at interpreter start-up each would
take minutes); the commands a new user tries first also run for real, in a subprocess.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import socket
from collections.abc import Iterator

import pytest
from cli_runner import run_cli, text

from aiotcp.cli import main
from aiotcp.cli.common import EXIT_CODES, exit_codes_help, run_handler

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path: pathlib.Path) -> dict[str, str]:
    """Inputs of every bad kind, and one good target list."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "targets.txt").write_text("127.0.0.1:1\n")
    (tmp_path / "not-utf8.txt").write_bytes(b"%{http_code}\xff\xfe\n")
    (tmp_path / "not-a-journal").write_text("127.0.0.1:80\n")
    (tmp_path / "not-pem").write_text("no certificate here\n")
    unreadable = tmp_path / "unreadable"
    unreadable.write_text("secret\n")
    unreadable.chmod(0)
    return {
        "missing": str(tmp_path / "no-such-file"),
        "dir": str(tmp_path / "dir"),
        "unreadable": str(unreadable),
        "not-utf8": str(tmp_path / "not-utf8.txt"),
        "targets": str(tmp_path / "targets.txt"),
        "not-a-journal": str(tmp_path / "not-a-journal"),
        "not-pem": str(tmp_path / "not-pem"),
        "no-dir": str(tmp_path / "no-dir" / "out"),
    }


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


URL = "http://127.0.0.1:1/"
UNREADABLE_KINDS = ["missing", "dir", "unreadable"]

# (argv, with {name} for a file of the fixture above). Every one must be a usage error: exit 2, one line.
CASES: list[list[str]] = [
    [],
    ["no-such-command"],
    ["--no-such-flag"],
    # get and head
    *[[command, *args] for command in ("get", "head") for args in (
        [],
        ["--no-such-flag", URL],
        ["-m", "soon", URL],
        ["-m", "-1", URL],
        ["-m", "inf", URL],
        ["--connect-timeout", "0", URL],
        ["--max-redirs", "-1", URL],
        ["--max-filesize", "1e9", URL],
        ["--resolve", "example.com:80", URL],
        ["--resolve", "example.com:80:not-an-address", URL],
        ["-H", "no colon", URL],
        ["-H", "X-Bad: a\x01b", URL],
        ["-X", "G T", URL],
        ["-u", "user-without-password", URL],
        ["-w", "%{no_such_variable}", URL],
        ["-w", "@{not-utf8}", URL],
        *(["-w", f"@{{{kind}}}", URL] for kind in UNREADABLE_KINDS),
        *(["--cacert", f"{{{kind}}}", "https://127.0.0.1:1/"] for kind in [*UNREADABLE_KINDS, "not-pem"]),
        ["./not-a-url"],
        ["ftp://127.0.0.1/"],
        ["http://127.0.0.1:99999/"],
        ["http://[::1/"],
    )],
    *(["get", flag, f"@{{{kind}}}", URL] for flag in ("-d", "--data-binary", "--json") for kind in UNREADABLE_KINDS),
    *(["get", "-T", f"{{{kind}}}", URL] for kind in UNREADABLE_KINDS),
    ["get", "-I", "-d", "x", URL],
    ["head", "--json", "[1]", URL],
    ["get", "-T", "{targets}", "-d", "x", URL],
    ["get", "--json", "[1]", "-d", "x", URL],
    # tcp
    ["tcp"],
    ["tcp", "127.0.0.1"],
    ["tcp", "127.0.0.1", "99999"],
    ["tcp", "127.0.0.1", "1", "extra"],
    ["tcp", "127.0.0.1:1", "-q", "-1"],
    ["tcp", "127.0.0.1:1", "--max-bytes", "0"],
    ["tcp", "127.0.0.1:1", "-t", "nan"],
    ["tcp", "ftp://127.0.0.1:1"],
    ["tcp", "127.0.0.1:1", "--send", "\\x"],
    # serve
    ["serve", "--port", "http"],
    ["serve", "--port", "99999"],
    ["serve", "--host", "0.0.0.0"],
    ["serve", "--port", "{busy_port}"],
    # probe
    *(["probe", f"{{{kind}}}"] for kind in UNREADABLE_KINDS),
    ["probe", "{targets}", "--resume", "{dir}"],
    ["probe", "{targets}", "--resume", "{not-a-journal}"],
    ["probe", "{targets}", "-o", "{no-dir}"],
    ["probe", "{targets}", "-o", "{dir}"],
    ["probe", "{targets}", "-c", "0"],
    ["probe", "{targets}", "-t", "nan"],
    ["probe", "{targets}", "-p", "80-"],
    ["probe", "{targets}", "--format", "xml"],
    ["probe", "{targets}", "--window", "5"],
    ["probe", "{targets}", "--order", "input", "--window", "0"],
    ["probe", "{targets}", "--shard", "3/2"],
    ["probe", "{targets}", "--dask", "local:0"],
    ["probe", "{targets}", "--retries", "-1"],
    ["probe", "{targets}", "--engine", "fast"],
    ["probe", "{targets}", "-w", "0"],
    ["probe", "{targets}", "--workers", "many"],
    ["probe", "{targets}", "--workers", "2", "--dask", "local:1"],
    ["probe", "{targets}", "--summary-json", "{no-dir}"],
    ["probe", "{targets}", "--summary-json", "{dir}"],
    ["probe", "{targets}", "--engine", "lean", "--http", "h11"],
    # bench
    ["bench"],
    ["bench", URL, "-c", "0"],
    ["bench", "ftp://127.0.0.1/"],
    ["bench", "https://127.0.0.1/"],
    ["bench", URL, "-d", "soon"],
    ["bench", URL, "-w", "0"],
    ["bench", URL, "-H", "no colon"],
    ["bench", URL, "--report", "{no-dir}"],
    ["bench", URL, "--hdr-log", "{dir}"],
    *(["bench", URL, flag, f"{{{kind}}}"] for flag in ("--urls", "--body", "--body-lines")
      for kind in UNREADABLE_KINDS),
    ["bench", URL, "--urls", "{not-utf8}"],
    ["bench", URL, "--urls", "{not-pem}"],  # "no certificate here": not [METHOD] URL [WEIGHT]
    ["bench", "--urls", "{targets}"],  # 127.0.0.1:1 is no http:// URL
    ["bench", URL, "-m", "GE T"],
    ["bench", URL, "-m", "CONNECT"],
    ["bench", URL, "--body", "{targets}", "-m", "GET"],
    ["bench", URL, "--order", "shuffled"],
    ["bench", URL, "--stages", "10s"],
    ["bench", URL, "--stages", "0s:100"],
    ["bench", URL, "--stages", "1s:100", "-R", "50"],
    ["bench", URL, "--stages", "1s:100", "-d", "5s"],
    ["bench", URL, "--connection-stages", "1s:2.5"],
    ["bench", URL, "--connection-stages", "1s:5", "-c", "5"],
    ["bench", URL, "--stages", "1s:5", "--connection-stages", "1s:5"],
    ["bench", URL, "--threshold", "p99<<1ms"],
    ["bench", URL, "--threshold", "p99<20%"],
    ["bench", URL, "--threshold-per-stage"],
    ["bench", URL, "--interval", "0"],
    ["bench", URL, "--dask", "local:0"],
    ["bench", URL, "--dask", "local:2", "-w", "2"],
    ["bench", "compare"],
    ["bench", "compare", "{missing}", "{targets}"],
    ["bench", "compare", "{targets}", "{targets}"],  # not JSON
    ["bench", "compare", "{dir}", "{targets}"],
    ["bench", "compare", "{targets}", "{targets}", "--fail-if-worse", "much"],
    # demo
    ["demo", "--no-such-flag"],
]  # fmt: skip


def _fill(args: list[str], files: dict[str, str], busy_port: int) -> list[str]:
    return [arg.format(**files, busy_port=busy_port) if "{" in arg and "%{" not in arg else arg for arg in args]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(case) or "(nothing)" for case in CASES])
def test_a_mistake_is_one_line_and_exit_2(
    args: list[str], files: dict[str, str], busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    if "{unreadable}" in " ".join(args) and os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    argv = _fill(args, files, busy_port)
    try:
        code: object = main(argv)
    except SystemExit as exit:  # argparse
        code = exit.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1, err
    assert re.match(r"error: (usage|invalid_target): \S", err), err
    assert "Traceback" not in err
    assert not re.search(r"(?<![\w\\])b['\"]", err), err  # Python's bytes syntax
    for internals in ("[Errno", "Error(", "{'"):
        assert internals not in err, err


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ("probe ./no-such-list.txt", 2),
        ("probe .", 2),
        ("get", 2),
        ("get -o - ./not-a-url", 2),
        ("bench http://127.0.0.1:1/ -c 0", 2),
        ("tcp 127.0.0.1:1 --send x", 7),
    ],
)
def test_first_mistakes_for_real(args: str, code: int) -> None:
    done = run_cli(*args.split())
    assert done.returncode == code
    assert done.stdout == b""
    lines = text(done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "ExceptionGroup" not in lines[0]


def test_an_unreadable_file_names_itself(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "-d", f"@{files['missing']}", URL]) == 2
    assert (
        capsys.readouterr().err
        == f"error: usage: -d/--data: cannot read {files['missing']}: No such file or directory\n"
    )
    assert main(["probe", files["dir"]]) == 2
    assert capsys.readouterr().err == f"error: usage: cannot read the target list {files['dir']}: Is a directory\n"


def test_serve_on_a_public_address_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--public" in err
    assert "allow_public" not in err


# -- the exit-code table --------------------------------------------------------------------------------------


def _rows() -> list[str]:
    rows = []
    for row in EXIT_CODES:
        kinds = ", ".join(f"`{kind}`" for kind in row.kinds.split(", ")) if row.kinds else ""
        rows.append(f"| {row.code} | {kinds} | {row.meaning} |")
    return rows


def test_the_readme_has_the_exit_code_table_of_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exit codes", 1)[1].split("\n\n", 3)
    table = next(part for part in section if part.startswith("| code |"))
    assert table.splitlines()[2:] == _rows()


@pytest.mark.parametrize("command", ["get", "head", "tcp"])
def test_help_has_the_exit_code_table(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert exit_codes_help() in capsys.readouterr().out


def test_every_error_class_has_one_code() -> None:
    codes = [row.code for row in EXIT_CODES]
    assert codes == sorted(set(codes))
    classes = [cls for row in EXIT_CODES for cls in row.errors]
    assert len(classes) == len(set(classes))


def test_a_bug_is_one_line_too(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: argparse.Namespace) -> int:
        table: dict[str, int] = {}
        return table["no such key"]

    monkeypatch.delenv("AIOTCP_TRACEBACK", raising=False)
    assert run_handler(broken, argparse.Namespace()) == 1
    assert capsys.readouterr().err == (
        "error: internal: KeyError: 'no such key' (a bug in aiotcp; AIOTCP_TRACEBACK=1 shows where)\n"
    )
    monkeypatch.setenv("AIOTCP_TRACEBACK", "1")
    with pytest.raises(KeyError):
        run_handler(broken, argparse.Namespace())
