"""``aiotcp tcp`` as nc users use it: ``HOST PORT`` or ``HOST:PORT``, stdin sent and then a FIN (``nc -N``),
``-q`` after the end of stdin, output printed as it arrives, errors naming ``host:port``. Run for real
(``python -m aiotcp``) against small loopback servers started here."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cli_runner import run_cli, text
from scripted_server import ReadRequest, ScriptedServer, Send, Sleep

from aiotcp.serve import TargetServer


class EOFServer:
    """Reads until the client's FIN, then answers ``got N bytes: DATA`` and, after ``hold`` seconds, closes.

    A client that never half-closes gets no answer at all: the test of ``nc -N``.
    """

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> EOFServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.listener.close()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while chunk := conn.recv(65536):
                    data += chunk
                self.received.append(data)
                conn.sendall(b"got %d bytes: %s" % (len(data), data))
                self.stop.wait(self.hold)
            except OSError:
                pass


@pytest.fixture
def eof_server() -> Iterator[EOFServer]:
    with EOFServer() as server:
        yield server


@pytest.mark.parametrize("form", ["HOST PORT", "HOST:PORT"])
def test_stdin_is_sent_then_a_fin(eof_server: EOFServer, form: str) -> None:
    target = ["127.0.0.1", str(eof_server.port)] if form == "HOST PORT" else [f"127.0.0.1:{eof_server.port}"]
    done = run_cli("tcp", *target, "-t", "5", stdin=b"hello\r\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"got 7 bytes: hello\r\n"
    assert eof_server.received == [b"hello\r\n"]
    assert text(done.stderr).startswith(f"* eof after 20 bytes from 127.0.0.1:{eof_server.port} (sent 7, then FIN,")


def test_a_raw_http_request_from_stdin(shared_server: TargetServer) -> None:
    done = run_cli("tcp", "127.0.0.1", str(shared_server.port), stdin=b"HEAD / HTTP/1.0\r\n\r\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"HTTP/1.1 200 OK\r\n")


def test_send_replaces_stdin_and_sends_no_fin(shared_server: TargetServer) -> None:
    with ScriptedServer([ReadRequest(), Send(b"answer"), Sleep(0.2)]) as server:
        done = run_cli("tcp", server.address, "--send", r"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "-t", "1", stdin=b"NO")
        received = server.received(0)
    assert done.stdout == b"answer"
    assert received == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    # No FIN after --send (as tcp_exchange): the server's silence after its answer runs into the deadline.
    assert text(done.stderr).startswith("* timeout after 6 bytes")


def test_quit_after_eof() -> None:
    with EOFServer(hold=10.0) as server:
        done = run_cli("tcp", "127.0.0.1", str(server.port), "-q", "0.3", "-t", "8", stdin=b"x")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"got 1 bytes: x"
    # Ended by -q ("linger"), not by the server (which holds the connection for 10 s) nor the deadline.
    assert text(done.stderr).startswith("* linger after 14 bytes")


def test_max_bytes_stops_early(shared_server: TargetServer) -> None:
    done = run_cli("tcp", f"127.0.0.1:{shared_server.port}", "--max-bytes", "5", stdin=b"GET / HTTP/1.0\r\n\r\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"HTTP/"
    assert text(done.stderr).startswith("* limit after 5 bytes")


def test_output_is_printed_as_it_arrives() -> None:
    with ScriptedServer([Send(b"first\n"), Sleep(3.0), Send(b"second\n")]) as server:
        command = [sys.executable, "-m", "aiotcp", "tcp", server.address, "--send", "", "-t", "10"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
            assert process.stdout is not None
            assert process.stdout.readline() == b"first\n"  # while the server still sleeps
            assert process.poll() is None
            process.kill()


def test_errors_name_host_and_port(refused: int) -> None:
    done = run_cli("tcp", "127.0.0.1", str(refused))
    assert done.returncode == 7
    assert text(done.stderr) == f"error: refused: 127.0.0.1:{refused}: connection refused (RST in answer to SYN)\n"
    assert b"http://" not in done.stderr


def test_a_target_without_a_port_is_a_usage_error() -> None:
    done = run_cli("tcp", "127.0.0.1")
    assert done.returncode == 2
    assert text(done.stderr) == "error: usage: no port in '127.0.0.1': give HOST PORT or HOST:PORT\n"


def test_a_deadline_ends_the_exchange_without_failing() -> None:
    with ScriptedServer([]) as silent:
        done = run_cli("tcp", silent.address, "--send", "x", "-t", "0.5")
    assert done.returncode == 0  # a raw exchange that ran into its deadline ended; it did not fail
    assert text(done.stderr).startswith("* timeout after 0 bytes")


def test_tls_first_with_insecure_or_a_trusted_name(server_ssl_context: Any) -> None:
    with ScriptedServer([ReadRequest(), Send(b"over TLS"), Sleep(0.2)], tls=server_ssl_context) as server:
        untrusted = run_cli("tcp", server.address, "--tls", "--send", r"X / HTTP/1.0\r\n\r\n", "-t", "2")
        done = run_cli("tcp", server.address, "--tls", "-k", "--send", r"X / HTTP/1.0\r\n\r\n", "-t", "2")
    assert untrusted.returncode == 60  # the test CA is not in the system store: curl's certificate error
    assert text(untrusted.stderr).startswith(f"error: tls: {server.address}: certificate verify failed")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"over TLS"
