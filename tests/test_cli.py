"""The ``aiotcp`` command, run for real: ``python -m aiotcp`` in a subprocess against loopback servers that
this process runs (the built-in server via conftest, scripted servers for misbehaviour).

Exit codes of ``get``, ``head`` and ``tcp``: curl's (``error: KIND: ...`` on stderr); 2 usage error.
``test_cli_http.py`` has the rest of the get/head flags, ``test_cli_tcp.py`` tcp's, ``test_cli_usage.py`` bad
input for every command, ``test_cli_terminal.py`` what a terminal shows.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from cli_runner import run_cli, text
from dns_server import zone_server
from scripted_server import ReadRequest, ScriptedServer, Send, response

from aiotcp._version import __version__
from aiotcp.serve import SilentServer, TargetServer

# -- head ---------------------------------------------------------------------------------------------------


def test_head_prints_status_line_and_headers(shared_server: TargetServer) -> None:
    done = run_cli("head", f"{shared_server.url}/")
    assert done.returncode == 0, done.stderr
    lines = text(done.stdout).splitlines()
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-Type: text/html; charset=utf-8" in lines
    assert any(re.fullmatch(r"Content-Length: \d+", line) for line in lines)
    assert f"Server: aiotcp-serve/{__version__}" in lines
    assert done.stderr == b""


def test_head_verbose_adds_timings_on_stderr(shared_server: TargetServer) -> None:
    done = run_cli("head", "-v", f"{shared_server.url}/")
    assert done.returncode == 0, done.stderr
    assert text(done.stdout).startswith("HTTP/1.1 200 OK\n")
    assert text(done.stdout).endswith("\n\n")  # a head ends with its blank line, as curl -I prints it
    timings = text(done.stderr)
    assert f"* peer 127.0.0.1:{shared_server.port}" in timings
    for field in ("dns_ms", "connect_ms", "ttfb_ms", "total_ms"):
        assert re.search(rf"{field} \d+\.\d{{3}}", timings), timings
    assert "tls_ms -" in timings  # plain http: no handshake


def test_head_with_header_and_redirect_prints_every_hop(shared_server: TargetServer) -> None:
    done = run_cli("head", "-L", "-H", "X-Test: yes", f"{shared_server.url}/redirect/1")
    assert done.returncode == 0, done.stderr
    first, second, last, end = text(done.stdout).split("\n\n")  # /redirect/1 -> /redirect/0 -> /
    assert first.startswith("HTTP/1.1 302 Found\n")
    assert "Location: /redirect/0" in first.splitlines()
    assert second.startswith("HTTP/1.1 302 Found\n")
    assert last.startswith("HTTP/1.1 200 OK\n")
    assert end == ""


def test_refused(refused: int) -> None:
    done = run_cli("head", f"http://127.0.0.1:{refused}/")
    assert done.returncode == 7  # curl's "could not connect"
    assert done.stdout == b""
    assert text(done.stderr).startswith(f"error: refused: http://127.0.0.1:{refused}/: ")


def test_timeout_against_a_silent_server(silent_server: SilentServer) -> None:
    started = time.perf_counter()
    assert run_cli("--version").returncode == 0
    start_up = time.perf_counter() - started  # the interpreter and its imports, which no --timeout covers
    started = time.perf_counter()
    done = run_cli("head", "--timeout", "1", f"{silent_server.url}/")
    wall = time.perf_counter() - started
    assert done.returncode == 28  # curl's timeout
    kind = text(done.stderr).split(":", 2)[1].strip()
    assert kind in ("timeout", "read_timeout"), done.stderr
    assert text(done.stderr).startswith(f"error: {kind}: {silent_server.url}/: ")
    assert wall - start_up < 1.5, f"{wall:.2f}s in all, {start_up:.2f}s of it start-up"


def test_timeout_measured_from_the_connection() -> None:
    """The same deadline seen from the server: connection accepted to process gone, start-up excluded."""
    with ScriptedServer([]) as silent:
        done = run_cli("head", "--timeout", "1", f"{silent.url}/")
        ended = time.monotonic()
        assert silent.connections_accepted == 1
        assert silent.accepted_at(0) <= ended
        assert ended - silent.accepted_at(0) < 1.5
    assert done.returncode == 28


@pytest.mark.parametrize("target", ["http://127.0.0.1:99999/", "ftp://127.0.0.1/"])
def test_invalid_target(target: str) -> None:
    done = run_cli("head", target)
    assert done.returncode == 2
    assert text(done.stderr).startswith("error: invalid_target: ")
    assert done.stdout == b""


@pytest.mark.parametrize("args", [["head"], [], ["head", "--timeout", "0", "x"]])
def test_usage_errors(args: list[str]) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stdout == b""
    assert text(done.stderr).startswith("error: usage: ")
    assert text(done.stderr).count("\n") == 1


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert text(done.stdout).strip() == f"aiotcp {__version__}"


# -- get ----------------------------------------------------------------------------------------------------


def test_get_writes_the_body_to_stdout(shared_server: TargetServer) -> None:
    done = run_cli("get", f"{shared_server.url}/bytes/100000")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"x" * 100_000
    assert done.stderr == b""


def test_get_include(shared_server: TargetServer) -> None:
    done = run_cli("get", "-i", f"{shared_server.url}/chunked/10")
    assert done.returncode == 0, done.stderr
    head, sep, body = done.stdout.partition(b"\n\n")
    assert sep
    assert head.startswith(b"HTTP/1.1 200 OK\n")
    assert b"Transfer-Encoding: chunked" in head.split(b"\n")
    assert body == b"x" * 10


def test_get_output_file(shared_server: TargetServer, tmp_path: Path) -> None:
    out = tmp_path / "body.bin"
    done = run_cli("get", "-o", str(out), f"{shared_server.url}/bytes/5000")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert out.read_bytes() == b"x" * 5000


def test_get_output_file_not_writable(shared_server: TargetServer, tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "body.bin"
    done = run_cli("get", "-o", str(out), f"{shared_server.url}/bytes/10")
    assert done.returncode == 23  # curl's write error
    assert text(done.stderr) == f"error: output: -o/--output: cannot write {out}: No such file or directory\n"
    assert done.stdout == b""


def test_get_fail_flag(shared_server: TargetServer) -> None:
    assert run_cli("get", f"{shared_server.url}/status/404").returncode == 0
    assert run_cli("get", "-f", f"{shared_server.url}/status/404").returncode == 22


# -- tcp ----------------------------------------------------------------------------------------------------


def test_tcp_raw_exchange(shared_server: TargetServer) -> None:
    done = run_cli("tcp", f"127.0.0.1:{shared_server.port}", "--send", r"HEAD / HTTP/1.0\r\n\r\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert done.stdout.endswith(b"\r\n\r\n")
    status = text(done.stderr)
    assert status.startswith(f"* eof after {len(done.stdout)} bytes from 127.0.0.1:{shared_server.port}")
    assert "(sent 19," in status


def test_tcp_refused(refused: int) -> None:
    done = run_cli("tcp", f"127.0.0.1:{refused}")
    assert done.returncode == 7
    assert text(done.stderr) == f"error: refused: 127.0.0.1:{refused}: connection refused (RST in answer to SYN)\n"


# -- untrusted text from the server ----------------------------------------------------------------------


def test_escape_sequences_in_a_header_are_never_printed_raw() -> None:
    evil = response(200, b"hi", headers=[("X-Evil", b"\x1b[31mred\x1b]0;title\x07")])
    with ScriptedServer([ReadRequest(), Send(evil)]) as server:
        for command in ("head", "get"):
            done = run_cli(command, "-i", server.url) if command == "get" else run_cli(command, server.url)
            output = done.stdout + done.stderr
            assert b"\x1b" not in output
            assert b"\x07" not in output
            # Printed escaped, or refused as a malformed header (with the value quoted escaped): either way
            # the reader sees the escape, never the effect.
            assert rb"\x1b[31mred" in output, output
            if done.returncode:
                assert done.stderr.startswith(b"error: protocol: ")


def test_c1_and_bidi_controls_in_a_header_are_escaped() -> None:
    # Valid obs-text on the wire, but as UTF-8 they are U+009B (CSI, the 8-bit ESC [) and U+202E (right-to-left
    # override): both change what a terminal shows.
    evil = response(200, b"", reason="OK", headers=[("X-Evil", "\u009b2J\u202eboom".encode())])
    with ScriptedServer([ReadRequest(), Send(evil)]) as server:
        done = run_cli("head", server.url)
    assert done.returncode == 0, done.stderr
    out = text(done.stdout)
    assert "X-Evil: \\x9b2J\\u202eboom" in out.splitlines()
    assert "\u009b" not in out
    assert "\u202e" not in out


# -- demo ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_quick() -> None:
    started = time.perf_counter()
    done = run_cli("demo", "--quick", timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.perf_counter() - started < 30
    out = text(done.stdout)
    assert "demo complete" in out
    assert "error: refused" in out
    assert "\x1b" not in out  # not a terminal: rich prints no colour codes


# -- --resolvers --------------------------------------------------------------------------------------------


def test_get_resolves_through_the_given_resolver(shared_server: TargetServer) -> None:
    with zone_server({"web.test": [("A", "127.0.0.1", 60)]}) as dns:
        done = run_cli("get", f"http://web.test:{shared_server.port}/", "--resolvers", dns.address, "-v")
        assert dns.asked("web.test", "A") == 1
    assert done.returncode == 0, done.stderr
    assert "peer 127.0.0.1:" in text(done.stderr)


def test_head_reports_the_rcode_of_a_name_that_does_not_resolve() -> None:
    with zone_server({}) as dns:
        done = run_cli("head", "http://missing.test/", "--resolvers", dns.address)
    assert done.returncode == 6  # curl's "could not resolve host"
    assert text(done.stderr).startswith("error: dns: ")
    assert "NXDOMAIN" in text(done.stderr)


@pytest.mark.parametrize("command", ["get", "head", "bench"])
def test_an_invalid_resolver_is_a_usage_error(command: str) -> None:
    done = run_cli(command, "http://127.0.0.1:1/", "--resolvers", "127.0.0.1:0")
    assert done.returncode == 2
    assert "error: usage:" in text(done.stderr)
    assert "'127.0.0.1:0'" in text(done.stderr)
