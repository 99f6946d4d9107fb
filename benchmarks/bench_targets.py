"""Loopback targets for the side-by-side benchmarks: nginx (one worker) when installed, else the built-in
server in a process of its own (so it does not share the GIL with the client being measured).

nginx is started from a config generated in a temporary directory: one worker, ``daemon off``, pid file,
logs and temp paths all inside that directory, listening on 127.0.0.1 and a free port; it is stopped (and
the directory removed) when the context exits. Nothing is written outside the temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Target", "builtin_server", "cpu_seconds_of_children", "find_nginx", "free_port", "nginx", "wait_listening"]

NGINX_BODY = "hello"


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    describe: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )


_NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(binary: str) -> Iterator[Target]:
    """nginx, one worker, on 127.0.0.1 and a free port, for the duration of the context."""
    with tempfile.TemporaryDirectory(prefix="aiotcp-bench-nginx-") as directory:
        port = free_port()
        config = _NGINX_CONF.format(dir=directory, port=port, body=NGINX_BODY)
        with run_nginx(binary, directory, config, port) as version:
            yield Target("nginx", f"http://127.0.0.1:{port}/", f"{version}, 1 worker")


@contextlib.contextmanager
def run_nginx(binary: str, directory: str, config: str, port: int) -> Iterator[str]:
    """nginx run from ``directory`` with ``config`` (the file's text), once it listens on ``port``; yields its
    version line. Stopped at the end, gracefully (the master stops its workers), killed if it does not."""
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w") as file:
        file.write(config)
    process = subprocess.Popen(
        [binary, "-p", directory, "-c", path, "-e", os.path.join(directory, "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        yield subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10).stderr.strip()
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def builtin_server() -> Iterator[Target]:
    """``aiotcp serve`` (httptools on uvloop when installed) in a separate process."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; from aiotcp.cli import main; sys.exit(main(['serve', '--port', '{port}']))",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        yield Target("aiotcp-serve", f"http://127.0.0.1:{port}/", "aiotcp serve (built-in), 1 process")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def cpu_seconds_of_children() -> float:
    """User + system CPU seconds of waited-for children so far (subtract two readings)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
