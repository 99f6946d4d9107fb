"""``aiotcp get`` and ``aiotcp head`` flag by flag, as curl users use them: each run for real
(``python -m aiotcp`` in a subprocess) against loopback servers this process starts -- the built-in server,
or a scripted one that records the request it gets and misbehaves on demand.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_cli, text
from dns_server import zone_server
from scripted_server import (
    CloseAfterSending,
    NeverAcceptServer,
    Read,
    ReadRequest,
    Reset,
    ScriptedServer,
    Send,
    Sleep,
    response,
)

import aiotcp
from aiotcp.cli import main, writeout
from aiotcp.serve import SilentServer, TargetServer

OK = [
    ReadRequest(),
    Send(response(200, b"ok", headers=[("Content-Type", "text/plain")], close=True)),
    CloseAfterSending(),
]


@pytest.fixture
def recorder() -> Iterator[ScriptedServer]:
    """Answers one request with 200 ``ok`` and keeps it: ``recorder.requests(0)[0]`` is what the CLI sent."""
    with ScriptedServer(OK) as server:
        yield server


def sent(server: ScriptedServer) -> tuple[str, dict[str, str], bytes]:
    """The request line, the headers (lowercase names) and the body the server received."""
    raw = server.requests(0)[0]
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return line, headers, body


# -- methods and bodies -------------------------------------------------------------------------------------


def test_request_sets_the_method(recorder: ScriptedServer) -> None:
    done = run_cli("get", "-X", "PATCH", f"{recorder.url}/x")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"ok"
    line, headers, body = sent(recorder)
    assert line == "PATCH /x HTTP/1.1"
    assert headers["content-length"] == "0"  # a method other than GET/HEAD is framed, even without a body
    assert body == b""


def test_data_is_a_form_post_joined_with_ampersands(recorder: ScriptedServer, tmp_path: Path) -> None:
    form = tmp_path / "form.txt"
    form.write_bytes(b"c=3\r\nd=4\n")  # curl drops CR and LF from -d @FILE
    done = run_cli("get", "-d", "a=1", "--data", "b=2", "-d", f"@{form}", recorder.url)
    assert done.returncode == 0, done.stderr
    line, headers, body = sent(recorder)
    assert line == "POST / HTTP/1.1"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert body == b"a=1&b=2&c=3d=4"
    assert headers["content-length"] == str(len(body))


def test_data_binary_keeps_every_byte_and_reads_stdin(recorder: ScriptedServer) -> None:
    payload = bytes(range(256)) + b"\r\n"
    done = run_cli("get", "--data-binary", "@-", "-X", "PUT", recorder.url, stdin=payload)
    assert done.returncode == 0, done.stderr
    line, _, body = sent(recorder)
    assert line == "PUT / HTTP/1.1"
    assert body == payload


def test_json_sets_content_type_and_accept(recorder: ScriptedServer) -> None:
    done = run_cli("get", "--json", '{"a": 1}', recorder.url)
    assert done.returncode == 0, done.stderr
    line, headers, body = sent(recorder)
    assert line == "POST / HTTP/1.1"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert json.loads(body) == {"a": 1}


def test_upload_file_is_a_put_named_after_the_file(recorder: ScriptedServer, tmp_path: Path) -> None:
    upload = tmp_path / "report 1.bin"
    upload.write_bytes(b"\x00\x01 upload")
    done = run_cli("get", "-T", str(upload), f"{recorder.url}/files/")
    assert done.returncode == 0, done.stderr
    line, _, body = sent(recorder)
    assert line == "PUT /files/report%201.bin HTTP/1.1"
    assert body == b"\x00\x01 upload"


def test_head_flag_sends_head_and_prints_the_head(shared_server: TargetServer) -> None:
    done = run_cli("get", "-I", f"{shared_server.url}/bytes/10")
    assert done.returncode == 0, done.stderr
    assert text(done.stdout).startswith("HTTP/1.1 200 OK\n")
    assert "Content-Length: 10" in text(done.stdout).splitlines()
    assert text(done.stdout).endswith("\n\n")  # no body, only the head and its blank line


# -- headers ------------------------------------------------------------------------------------------------


def test_header_flags_add_replace_remove_and_empty(recorder: ScriptedServer) -> None:
    done = run_cli(
        "get",
        "-H", "X-One: 1",
        "-H", "Accept:",  # removes the default
        "-H", "X-Empty;",  # sent empty
        "-A", "agent/9",
        "-e", "http://127.0.0.1/from",
        "-u", "user:pa:ss",
        recorder.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, headers, _ = sent(recorder)
    assert headers["x-one"] == "1"
    assert "accept" not in headers
    assert headers["x-empty"] == ""
    assert headers["user-agent"] == "agent/9"
    assert headers["referer"] == "http://127.0.0.1/from"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert headers["accept-encoding"] == "identity"  # defaults not named stay


def test_an_empty_user_agent_sends_none(recorder: ScriptedServer) -> None:
    assert run_cli("get", "-A", "", recorder.url).returncode == 0
    _, headers, _ = sent(recorder)
    assert "user-agent" not in headers


def test_host_cannot_be_removed(recorder: ScriptedServer) -> None:
    assert run_cli("get", "-H", "Host:", recorder.url).returncode == 0
    _, headers, _ = sent(recorder)
    assert headers["host"] == recorder.address  # HTTP/1.1 requires it


def test_a_url_without_a_scheme_is_http(recorder: ScriptedServer) -> None:
    done = run_cli("get", f"{recorder.address}/path?q=1")
    assert done.returncode == 0, done.stderr
    assert sent(recorder)[0] == "GET /path?q=1 HTTP/1.1"


def test_resolve_connects_to_the_address_without_dns(recorder: ScriptedServer) -> None:
    # No name is looked up: "aiotcp.test" (a reserved name no resolver answers) goes to the scripted server.
    url = f"http://aiotcp.test:{recorder.port}/r"
    done = run_cli("get", "--resolve", f"aiotcp.test:{recorder.port}:127.0.0.1", "-w", "%{remote_ip}", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"ok127.0.0.1"
    _, headers, _ = sent(recorder)
    assert headers["host"] == f"aiotcp.test:{recorder.port}"


# -- redirects ----------------------------------------------------------------------------------------------


def test_include_with_location_prints_every_hop_then_the_body(shared_server: TargetServer) -> None:
    done = run_cli("get", "-i", "-L", f"{shared_server.url}/redirect/2")
    assert done.returncode == 0, done.stderr
    hops = text(done.stdout).split("\n\n")
    assert [hop.splitlines()[0] for hop in hops[:4]] == ["HTTP/1.1 302 Found"] * 3 + ["HTTP/1.1 200 OK"]
    assert "Location: /redirect/1" in hops[0].splitlines()
    assert "<title>aiotcp test server</title>" in hops[4]


def test_max_redirs_exits_47(shared_server: TargetServer) -> None:
    done = run_cli("get", "-L", "--max-redirs", "1", f"{shared_server.url}/redirect/3")
    assert done.returncode == 47
    assert text(done.stderr).startswith("error: too_many_redirects: ")


def test_verbose_shows_every_hop_as_sent_and_received(shared_server: TargetServer) -> None:
    done = run_cli("get", "-v", "-L", "-H", "X-Trace: 1", f"{shared_server.url}/redirect/1")
    assert done.returncode == 0, done.stderr
    err = text(done.stderr).splitlines()
    requests = [line for line in err if line.startswith("> GET ")]
    assert requests == ["> GET /redirect/1 HTTP/1.1", "> GET /redirect/0 HTTP/1.1", "> GET / HTTP/1.1"]
    assert err.count("> X-Trace: 1") == 3
    assert err.count(f"> Host: 127.0.0.1:{shared_server.port}") == 3
    assert [line for line in err if line.startswith("< HTTP/")] == ["< HTTP/1.1 302 Found"] * 2 + ["< HTTP/1.1 200 OK"]
    assert err[0] == f"* Connected to 127.0.0.1 (127.0.0.1 port {shared_server.port})"
    assert sum(line.startswith("* Re-using the connection to 127.0.0.1") for line in err) == 2
    assert sum(line.startswith("* peer ") for line in err) == 3


def test_verbose_request_lines_are_what_the_server_received(recorder: ScriptedServer) -> None:
    done = run_cli("get", "-v", "-d", "x=1", "-H", "X-A: b", recorder.url)
    assert done.returncode == 0, done.stderr
    shown = [line[2:] for line in text(done.stderr).splitlines() if line.startswith("> ")]
    head = recorder.requests(0)[0].partition(b"\r\n\r\n")[0].decode("latin-1")
    assert shown == head.split("\r\n")


# -- output -------------------------------------------------------------------------------------------------


def test_output_dash_is_stdout(shared_server: TargetServer, tmp_path: Path) -> None:
    done = run_cli("get", "-o", "-", f"{shared_server.url}/bytes/1000")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"x" * 1000
    assert not os.path.exists("-")  # (the test runs in the repository: nothing named "-" was made there)


def test_include_goes_where_the_body_goes(shared_server: TargetServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_cli("get", "-i", "-o", str(out), f"{shared_server.url}/bytes/3")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert out.read_bytes().startswith(b"HTTP/1.1 200 OK\n")
    assert out.read_bytes().endswith(b"\n\nxxx")


def test_dump_header_writes_every_hop(shared_server: TargetServer, tmp_path: Path) -> None:
    heads = tmp_path / "heads.txt"
    done = run_cli("get", "-L", "-D", str(heads), f"{shared_server.url}/redirect/1")
    assert done.returncode == 0, done.stderr
    assert b"<title>" in done.stdout
    statuses = [line for line in heads.read_text().splitlines() if line.startswith("HTTP/")]
    assert statuses == ["HTTP/1.1 302 Found", "HTTP/1.1 302 Found", "HTTP/1.1 200 OK"]
    to_stdout = run_cli("get", "-D", "-", "-o", str(tmp_path / "body"), f"{shared_server.url}/bytes/2")
    assert text(to_stdout.stdout).startswith("HTTP/1.1 200 OK\n")


def test_fail_writes_no_body_and_no_file(shared_server: TargetServer, tmp_path: Path) -> None:
    url = f"{shared_server.url}/status/404"
    out = tmp_path / "out"
    done = run_cli("get", "-f", "-o", str(out), url)
    assert done.returncode == 22
    assert done.stdout == b""
    assert text(done.stderr) == f"error: http: 404 Not Found ({url})\n"
    assert not out.exists()
    shown = run_cli("get", url)  # without -f the error body is the output, and the exit status 0
    assert shown.returncode == 0
    assert shown.stdout


def test_silent_hides_errors_and_show_error_shows_them(refused: int) -> None:
    url = f"http://127.0.0.1:{refused}/"
    silent = run_cli("get", "-s", url)
    assert (silent.returncode, silent.stdout, silent.stderr) == (7, b"", b"")
    shown = run_cli("get", "-sS", url)
    assert shown.returncode == 7
    assert text(shown.stderr).startswith("error: refused: ")


def test_max_filesize_exits_63(shared_server: TargetServer) -> None:
    assert run_cli("get", "--max-filesize", "1000", f"{shared_server.url}/bytes/1000").returncode == 0
    done = run_cli("get", "--max-filesize", "999", f"{shared_server.url}/bytes/1000")
    assert done.returncode == 63
    assert text(done.stderr).startswith("error: too_large: ")


def test_write_out_after_the_body(shared_server: TargetServer) -> None:
    url = f"{shared_server.url}/redirect/1"
    fmt = r"\n%{http_code} %{num_redirects} %{url_effective} %{size_download} %{method} %{exitcode}"
    done = run_cli("get", "-L", "-w", fmt + r" [%{error_kind}] %header{content-type} %%\n", url)
    assert done.returncode == 0, done.stderr
    body, _, written = text(done.stdout).rpartition("\n200 ")
    assert written == f"2 {shared_server.url}/ {len(body)} GET 0 [] text/html; charset=utf-8 %\n"


def test_write_out_on_failure_and_from_a_file(refused: int, tmp_path: Path) -> None:
    fmt = tmp_path / "format"
    fmt.write_text("%{http_code} %{error_kind} %{exitcode} %{size_download}")
    done = run_cli("get", "-s", "-w", f"@{fmt}", f"http://127.0.0.1:{refused}/")
    assert done.returncode == 7
    assert done.stdout == b"000 refused 7 0"


def test_write_out_times_are_the_verbose_timings(shared_server: TargetServer) -> None:
    names = ["time_namelookup", "time_connect", "time_appconnect", "time_starttransfer", "time_total"]
    done = run_cli("get", "-v", "-o", "/dev/null", "-w", " ".join(f"%{{{n}}}" for n in names), f"{shared_server.url}/")
    assert done.returncode == 0, done.stderr
    written = dict(zip(names, map(float, text(done.stdout).split()), strict=True))
    timing = re.search(
        r"dns_ms (\S+)  connect_ms (\S+)  tls_ms (\S+)  ttfb_ms (\S+)  total_ms (\S+)", text(done.stderr)
    )
    assert timing is not None, done.stderr
    dns, connect, tls, ttfb, total = (float(v) if v != "-" else 0.0 for v in timing.groups())
    assert written["time_namelookup"] == pytest.approx(dns / 1000, abs=1e-6)
    assert written["time_connect"] == pytest.approx((dns + connect) / 1000, abs=1e-6)
    assert written["time_appconnect"] == 0.0  # no TLS
    assert written["time_starttransfer"] == pytest.approx(ttfb / 1000, abs=1e-6)
    assert written["time_total"] == pytest.approx(total / 1000, abs=1e-6)
    assert tls == 0.0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_write_out_variables_are_the_library_timings(anyio_backend: str, shared_server: TargetServer) -> None:
    async with aiotcp.Client(follow_redirects=True) as client:
        response = await client.get(f"{shared_server.url}/redirect/2")
    facts = writeout.Facts(response, len(response.content), None, "", 0)
    values = writeout.variables(facts)
    t = response.timings
    assert t.dns_ms is None  # the last hop reused the first hop's connection
    assert t.connect_ms is None
    assert values["time_namelookup"] == values["time_connect"] == values["time_appconnect"] == "0.000000"
    assert t.ttfb_ms is not None
    assert t.total_ms is not None
    assert all(hop.timings.total_ms is not None for hop in response.history)
    assert float(values["time_starttransfer"]) == pytest.approx(t.ttfb_ms / 1000, abs=1e-6)
    redirects = sum(hop.timings.total_ms or 0.0 for hop in response.history)
    assert float(values["time_redirect"]) == pytest.approx(redirects / 1000, abs=1e-6)
    assert float(values["time_total"]) == pytest.approx((redirects + t.total_ms) / 1000, abs=1e-6)
    first = response.history[0].timings
    assert first.dns_ms is not None
    assert first.connect_ms is not None
    assert values["num_redirects"] == "3"  # /redirect/2 -> /redirect/1 -> /redirect/0 -> /
    assert values["remote_ip"] == "127.0.0.1"
    assert values["size_download"] == str(len(response.content))


def test_unknown_write_out_variable_is_a_usage_error(shared_server: TargetServer) -> None:
    done = run_cli("get", "-w", "%{nope}", shared_server.url)
    assert done.returncode == 2
    assert text(done.stderr).startswith("error: usage: -w/--write-out: unknown variable %{nope}")


# -- exit codes per kind --------------------------------------------------------------------------------------


def _server(*steps: Any) -> ScriptedServer:
    return ScriptedServer(list(steps))


@pytest.mark.parametrize(
    ("steps", "code", "kind"),
    [
        ((ReadRequest(), Send(b"SSH-2.0-OpenSSH_9.2\r\n"), CloseAfterSending()), 8, "protocol"),
        ((ReadRequest(), Send(response(200, b"abc", content_length=10)), CloseAfterSending()), 18, "disconnected"),
        ((ReadRequest(), CloseAfterSending()), 52, "disconnected"),
        ((ReadRequest(), Send(response(200, b"x" * 10, content_length=1000)), Sleep(0.1), Reset()), 56, "reset"),
    ],
    ids=["protocol-8", "partial-18", "empty-reply-52", "reset-56"],
)
def test_exit_code_per_kind(steps: tuple[Any, ...], code: int, kind: str) -> None:
    with _server(*steps) as server:
        done = run_cli("get", "-o", "/dev/null", "-w", "%{error_kind}", server.url)
    assert (done.returncode, text(done.stdout)) == (code, kind), done.stderr
    assert text(done.stderr).startswith(f"error: {kind}: {server.url}/: ")


def test_exit_code_for_timeouts(silent_server: SilentServer) -> None:
    done = run_cli("get", "-m", "0.5", silent_server.url)
    assert done.returncode == 28
    assert text(done.stderr).startswith("error: timeout: ")


def test_exit_code_for_a_connect_timeout() -> None:
    with NeverAcceptServer() as server:
        done = run_cli("get", "--connect-timeout", "0.3", server.url)
    assert done.returncode == 28
    assert text(done.stderr).startswith("error: connect_timeout: ")


def test_exit_codes_for_tls(ca: Any, server_ssl_context: Any, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with ScriptedServer(OK, tls=server_ssl_context) as server:
        untrusted = run_cli("get", server.url)
        trusted = run_cli("get", "--cacert", str(bundle), server.url)
        insecure = run_cli("get", "-k", server.url)
    assert untrusted.returncode == 60
    assert text(untrusted.stderr).startswith("error: tls: ")
    assert "certificate verify failed" in text(untrusted.stderr)
    assert (trusted.returncode, trusted.stdout) == (0, b"ok")
    assert (insecure.returncode, insecure.stdout) == (0, b"ok")
    with ScriptedServer([Read(1), Send(b"HTTP/1.1 400 Bad Request\r\n\r\n"), CloseAfterSending()]) as plain:
        mismatch = run_cli("get", "-k", f"https://{plain.address}/")
    assert mismatch.returncode == 35  # a handshake that fails, not a certificate
    assert text(mismatch.stderr).startswith("error: tls: ")


def test_a_bad_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    done = run_cli("get", "--cacert", str(bogus), "https://127.0.0.1:1/")
    assert done.returncode == 2
    assert text(done.stderr).startswith(f"error: usage: --cacert: {bogus} holds no usable PEM certificate")


def test_exit_code_for_dns(capsys: pytest.CaptureFixture[str]) -> None:
    # A loopback DNS server that knows no name: NXDOMAIN, and no query leaves the machine.
    with zone_server({}) as dns:
        code = main(["get", "-w", "%{error_kind}", "--resolvers", dns.address, "http://missing.test/"])
    assert code == 6
    out, err = capsys.readouterr()
    assert out == "dns"
    assert err.startswith("error: dns: http://missing.test/: ")
    assert "NXDOMAIN" in err


# -- streaming ------------------------------------------------------------------------------------------------

BIG = 300 * 1024 * 1024
RSS_LIMIT_KB = 60 * 1024


class BigServer:
    """Serves one body of ``size`` bytes per connection as fast as the socket takes it, from one 1 MiB block
    (the built-in server caps /bytes/N at 100 MB and would hold the body in memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.stopping = False

    def __enter__(self) -> BigServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        # close() does not wake an accept() blocked in another thread: a connection does.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass
        self.thread.join(timeout=10)
        self.listener.close()

    def _serve(self) -> None:
        block = b"\x00" * (1 << 20)
        while True:
            conn, _ = self.listener.accept()
            if self.stopping:
                conn.close()
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request and (data := conn.recv(65536)):
                    request += data
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % self.size)
                left = self.size
                try:
                    while left:
                        conn.sendall(block if left >= len(block) else block[:left])
                        left -= min(left, len(block))
                except OSError:
                    pass


# The peak RSS is measured by a launcher between this process and the command: the kernel counts the memory a
# child had before exec() in its ru_maxrss, and a child forked from pytest starts with all of pytest's. The
# launcher is a bare interpreter (-S -I, about 10 MiB): the figure includes that much, never less than the
# command's own peak.
_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL).returncode\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def _run_measured(args: list[str], stdout: Any, rss_file: Path) -> tuple[int, int, bytes, int]:
    """Run the command; return its exit status, its peak RSS in KiB, its stderr and the bytes it wrote to
    stdout (counted as they come when ``stdout`` is a pipe)."""
    command = [sys.executable, "-W", "error", "-m", "aiotcp", *args]
    with subprocess.Popen(
        [sys.executable, "-S", "-I", "-c", _LAUNCHER, str(rss_file), *command],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as process:
        counted = 0
        if process.stdout is not None:
            while chunk := process.stdout.read(1 << 20):
                counted += len(chunk)
        assert process.stderr is not None
        err = process.stderr.read()
        code = process.wait(timeout=120)
    return code, int(rss_file.read_text()), err, counted


@pytest.mark.slow
def test_a_300_mb_download_streams_in_constant_memory(tmp_path: Path) -> None:
    out = tmp_path / "big.bin"
    with BigServer(BIG) as server:
        url = f"http://127.0.0.1:{server.port}/big"
        code, rss_file, err, _ = _run_measured(["get", "-o", str(out), url], subprocess.DEVNULL, tmp_path / "rss")
        assert code == 0, err
        assert out.stat().st_size == BIG
        out.unlink()
        code, rss_stdout, err, written = _run_measured(["get", url], subprocess.PIPE, tmp_path / "rss")
        assert code == 0, err
        assert written == BIG
    assert rss_file < RSS_LIMIT_KB, f"peak RSS {rss_file} KiB writing to a file"
    assert rss_stdout < RSS_LIMIT_KB, f"peak RSS {rss_stdout} KiB writing to stdout"
