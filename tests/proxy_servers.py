"""Real proxies on loopback for the proxy tests: pproxy (PyPI: HTTP, SOCKS4/4a and SOCKS5 on one port), and
squid (HTTP) and dante (SOCKS5) when the system has them; each started on 127.0.0.1 and a free port, stopped
at the end. The misbehaving proxies are scripts of :mod:`scripted_server`.

pproxy installs uvloop's event-loop policy when it can import uvloop, then calls
``asyncio.get_event_loop()``, which fails under that policy: it runs in a subprocess whose import of
``uvloop`` is made to fail (:data:`_PPROXY`).
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

__all__ = ["RunningProxy", "dante", "find_program", "free_port", "pproxy", "squid", "wait_listening"]

START_TIMEOUT_S = 15.0

_PPROXY = r"""
import sys

class _NoUvloop:
    # pproxy installs uvloop's policy when it can import it, then calls asyncio.get_event_loop(), which fails.
    def find_spec(self, name, path=None, target=None):
        if name == "uvloop" or name.startswith("uvloop."):
            raise ModuleNotFoundError("uvloop hidden from pproxy")
        return None

sys.meta_path.insert(0, _NoUvloop())
from pproxy.server import main

sys.argv = ["pproxy", *sys.argv[1:]]
main()
"""


@dataclass(frozen=True)
class RunningProxy:
    """A proxy listening on ``127.0.0.1:port``; ``url(scheme)`` is what a client is given."""

    name: str
    port: int
    auth: str = ""  # "user:password@" when the proxy wants credentials

    def url(self, scheme: str = "http", *, auth: str | None = None) -> str:
        return f"{scheme}://{self.auth if auth is None else auth}127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:g}s")


@contextlib.contextmanager
def _running(command: list[str], port: int, what: str, **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)  # type: ignore[call-overload]
    try:
        wait_listening(port, process, what)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@contextlib.contextmanager
def pproxy(*, auth: str | None = None) -> Iterator[RunningProxy]:
    """pproxy serving HTTP (forwarding and CONNECT), SOCKS4/4a and SOCKS5 on one loopback port; with ``auth``
    (``user:password``) it asks for those credentials (HTTP: 407; SOCKS5: user name and password)."""
    port = free_port()
    listen = f"http+socks4+socks5://127.0.0.1:{port}" + (f"#{auth}" if auth else "")
    with _running([sys.executable, "-c", _PPROXY, "-l", listen], port, "pproxy"):
        yield RunningProxy("pproxy", port, f"{auth}@" if auth else "")


def find_program(name: str) -> str | None:
    return shutil.which(name) or next(
        (path for path in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(path, os.X_OK)), None
    )


@contextlib.contextmanager
def squid() -> Iterator[RunningProxy]:
    """squid (the system's) on a free loopback port, from a config in a temporary directory: no cache, no
    logs but its own, loopback clients only. Raises LookupError when squid is not installed."""
    program = find_program("squid")
    if program is None:
        raise LookupError("squid is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aiotcp-squid-") as directory:
        os.chmod(directory, 0o777)  # squid drops to its own user: it must write its pid and logs here
        config = os.path.join(directory, "squid.conf")
        with open(config, "w", encoding="ascii") as file:
            file.write(
                f"http_port 127.0.0.1:{port}\n"
                "acl localnet src 127.0.0.0/8\n"
                "acl Safe_ports port 1-65535\n"
                "acl CONNECT method CONNECT\n"
                "http_access allow localnet\n"
                "http_access deny all\n"
                "cache deny all\n"
                "cache_mem 8 MB\n"
                f"pid_filename {directory}/squid.pid\n"
                f"access_log {directory}/access.log\n"
                f"cache_log {directory}/cache.log\n"
                "cache_store_log none\n"
                "shutdown_lifetime 0 seconds\n"
                "dns_nameservers 127.0.0.1\n"
                "workers 1\n"
            )
        with _running([program, "-N", "-f", config], port, "squid"):
            yield RunningProxy("squid", port)


@contextlib.contextmanager
def dante() -> Iterator[RunningProxy]:
    """dante's SOCKS5 server (``danted``, the system's) on a free loopback port, from a config in a temporary
    directory. Raises LookupError when dante is not installed."""
    program = find_program("danted") or find_program("sockd")
    if program is None:
        raise LookupError("dante (danted) is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aiotcp-dante-") as directory:
        config = os.path.join(directory, "danted.conf")
        with open(config, "w", encoding="ascii") as file:
            file.write(
                f"logoutput: {directory}/danted.log\n"
                f"internal: 127.0.0.1 port = {port}\n"
                "external: 127.0.0.1\n"
                "clientmethod: none\n"
                "socksmethod: none\n"
                "user.privileged: root\n"
                "user.unprivileged: nobody\n"
                "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
                "socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }\n"
            )
        with _running([program, "-f", config, "-N", "1", "-p", f"{directory}/danted.pid"], port, "dante"):
            yield RunningProxy("dante", port)
