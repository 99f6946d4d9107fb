"""What a terminal shows: the probe's progress never inside a record line (run in a pseudo-terminal and
replayed through a small terminal model), bench's progress gone before its report, a binary body kept off
the terminal; Ctrl-C's summary and the command that finishes the list; the ``--order input`` stall warning.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from cli_runner import run_cli, text
from scripted_server import CloseAfterSending, ReadRequest, ScriptedServer, Send, response

from aiotcp.serve import SilentServer, TargetServer

COLUMNS = 160
_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_pty(args: list[str], timeout: float = 60.0) -> tuple[int, bytes]:
    """Run ``python -m aiotcp ARGS`` with stdout and stderr on one pseudo-terminal (COLUMNS wide), as a user
    at a terminal would; return the exit status and every byte the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
    env = {**os.environ, "COLUMNS": str(COLUMNS), "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "aiotcp", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal has closed it
                    break
                if not data:
                    break
                received += data
            elif process.poll() is not None:
                continue  # drain what is left, then EIO
        code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        process.kill()
        os.close(master)
    return code, bytes(received)


def screen_lines(data: bytes) -> list[str]:
    """The lines a terminal would show, in order: CR returns to column 0, ESC[2K blanks the line (the
    cursor stays), other control sequences (colours, cursor visibility) change nothing read here, LF ends
    the line."""
    lines: list[str] = []
    line: list[str] = []
    column = 0
    screen = data.decode("utf-8", "replace")
    position = 0
    while position < len(screen):
        char = screen[position]
        if char == "\x1b":
            match = _CSI.match(screen, position)
            if match is None:
                position += 1
                continue
            if match.group(0) == "\x1b[2K":
                line = [" "] * column
            position = match.end()
            continue
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append("".join(line).rstrip())
            line, column = [], 0
        else:
            line[column : column + 1] = [char] if column < len(line) else [" "] * (column - len(line)) + [char]
            column += 1
        position += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


def test_the_terminal_model() -> None:
    assert screen_lines(b"status 1\r\x1b[2Krecord\r\n") == ["record"]
    assert screen_lines(b"status 1record\r\n") == ["status 1record"]  # the defect this file guards against
    assert screen_lines(b"abc\rX\n") == ["Xbc"]


def test_probe_progress_never_shares_a_line_with_a_record(shared_server: TargetServer, tmp_path: pathlib.Path) -> None:
    targets = tmp_path / "targets.txt"
    count = 600
    targets.write_text("".join(f"{shared_server.url}/delay/{20 + i % 30}\n" for i in range(count)))
    code, data = run_in_pty(["probe", str(targets), "-c", "20"])
    assert code == 0, data.decode("utf-8", "replace")
    assert b"probes/s" in data.split(b"aiotcp probe")[0], "the progress line was never drawn: the test proves nothing"
    lines = screen_lines(data)
    records = [line for line in lines if "http://" in line]
    assert len(records) == count
    for line in records:
        assert re.fullmatch(rf"{re.escape(shared_server.url)}/delay/\d+ \[200\] .*", line), line
    summary = lines[lines.index(next(line for line in lines if line.startswith("aiotcp probe"))) :]
    assert any("HTTP 200" in line and str(count) in line for line in summary)


def test_bench_progress_is_gone_before_the_report(shared_server: TargetServer) -> None:
    code, data = run_in_pty(["bench", f"{shared_server.url}/", "-c", "4", "-d", "1.5s"])
    assert code == 0, data.decode("utf-8", "replace")
    assert b"requests/s" in data
    lines = screen_lines(data)
    assert not any(line.startswith("bench ") and "requests" in line and "p99" in line for line in lines), lines
    assert all(len(line) < COLUMNS for line in lines)


def test_binary_stays_off_the_terminal_unless_asked(shared_server: TargetServer) -> None:
    code, data = run_in_pty(["get", f"{shared_server.url}/bytes/5"])  # text passes
    assert (code, data) == (0, b"xxxxx")
    with ScriptedServer([ReadRequest(), Send(response(200, b"\x00\x01binary", close=True)), CloseAfterSending()]) as s:
        code, data = run_in_pty(["get", s.url])
        assert code == 23
        assert b"binary output not shown on a terminal" in data
        assert b"\x00\x01binary" not in data
        code, data = run_in_pty(["get", "-o", "-", s.url])
        assert code == 0
        assert b"binary" in data


def test_demo_lines_are_whole_when_piped() -> None:
    done = run_cli("demo", "--quick")
    assert done.returncode == 0, done.stderr
    lines = text(done.stdout).splitlines()
    refused = [line for line in lines if line.startswith("error: refused: ")]
    assert refused
    assert all("(RST in answer to SYN)" in line for line in refused)


# -- Ctrl-C ---------------------------------------------------------------------------------------------------


def test_ctrl_c_prints_the_summary_and_the_command_that_finishes_the_list(
    server: TargetServer, tmp_path: pathlib.Path
) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text(f"{server.url}/delay/100\n" * 400)
    journal, out, summary = tmp_path / "run.journal", tmp_path / "out.jsonl", tmp_path / "summary.json"
    args = [str(targets), "-c", "10", "--resume", str(journal), "-o", str(out), "--summary-json", str(summary)]
    with subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "aiotcp", "probe", *args],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as process:
        deadline = time.monotonic() + 20
        while (not out.exists() or out.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 130
    message = err.decode()
    assert "Traceback" not in message
    assert "aiotcp probe (interrupted)" in message
    written = out.read_text().splitlines()
    assert 0 < len(written) < 400
    assert re.search(rf"HTTP 200\D+{len(written)}\b", message), message
    assert message.rstrip().endswith(
        "interrupted: to finish the list, run the same command again: aiotcp probe " + " ".join(args)
    )
    figures = json.loads(summary.read_text())  # --summary-json is written on Ctrl-C too, and says so
    assert (figures["interrupted"], figures["records"], figures["statuses"]) == (
        True,
        len(written),
        {"200": len(written)},
    )
    assert figures["load"]["engine"] == "lean"
    # ... and that command does finish it.
    done = run_cli("probe", *args, "-q")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line)["line"] for line in out.read_text().splitlines()]
    assert sorted(lines) == list(range(1, 401))


# -- --order input --------------------------------------------------------------------------------------------


def test_order_input_warns_when_a_slow_target_fills_the_window(
    shared_server: TargetServer, silent_server: SilentServer
) -> None:
    lines = [silent_server.url] + [f"{shared_server.url}/"] * 30
    stdin = ("\n".join(lines) + "\n").encode()
    stalled = run_cli("probe", "-", "-q", "--order", "input", "--window", "5", "-c", "4", "-t", "2", stdin=stdin)
    roomy = run_cli("probe", "-", "-q", "--order", "input", "--window", "100", "-c", "4", "-t", "2", stdin=stdin)
    for done in (stalled, roomy):
        assert done.returncode == 0, done.stderr
        assert [json.loads(line)["line"] for line in done.stdout.splitlines()] == list(range(1, 32))
    assert text(stalled.stderr).startswith("warning: --order input: all 5 places of the window hold records")
    assert text(stalled.stderr).count("\n") == 1  # said once
    assert roomy.stderr == b""  # every record fits: nothing waits


@pytest.mark.parametrize("order", ["completion", "input"])
def test_window_only_with_order_input(order: str, shared_server: TargetServer) -> None:
    done = run_cli("probe", "-", "-q", "--order", order, "--window", "10", stdin=f"{shared_server.url}/\n".encode())
    assert done.returncode == (0 if order == "input" else 2)
