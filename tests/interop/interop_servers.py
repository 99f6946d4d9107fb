"""Real servers for the interop suite, each started here on 127.0.0.1 and a free port and stopped at the end:
the Python ones from PyPI (the app of :mod:`interop_app` in a process of its own) and, when installed, nginx,
Apache httpd and lighttpd (a static site and CGI scripts, from a configuration generated in a temporary
directory, run in the foreground; nothing is written outside that directory).

Every server answers the same routes (see :mod:`interop_app`) and says what it is set up to do
(:class:`RealServer`): how many requests it serves on one keep-alive connection, how long it keeps an idle
one, how many connections it serves at a time, whether its POST route hashes the body, and how it counts the
requests to ``/bench`` (its own counter, or its access log).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import interop_app

from aiotcp import Client, Timeouts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the checkout: the commands the checks run import aiotcp from it
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
#: What nginx, Apache and lighttpd are set up with (the Python servers: interop_app's constants).
REQUESTS_PER_CONNECTION = 3
#: lighttpd counts whole seconds and looks for idle connections once a second.
IDLE_TIMEOUT_S = {"nginx": 0.2, "apache": 0.2, "lighttpd": 2.0}
LIGHTTPD_CONNECTION_LIMIT = 16


# -- what the checks share ----------------------------------------------------------------------------------

TIMEOUTS = Timeouts(connect=5, read=10, write=10, pool=20, total=20)
BIG_SHA256 = hashlib.sha256(interop_app.big_body()).hexdigest()
IDLE_MARGIN_S = 0.3  # waited past a server's idle timeout


def client(http: str, **options: object) -> Client:
    """A Client with the suite's timeouts and the response parser ``http``."""
    return Client(http=http, timeout=TIMEOUTS, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RealServer:
    """A running server and what it is set up to do."""

    name: str
    url: str  # http://127.0.0.1:PORT, no trailing slash
    count: Callable[[], int]  # the server's own count of the requests it answered on /bench
    idle_timeout: float  # it closes a keep-alive connection idle for this long (give or take a second)
    requests_per_connection: int | None = None  # it closes a connection after this many keep-alive requests
    # (nginx counts every request; Apache and lighttpd the ones after the first)
    connection_limit: int | None = None  # it serves at most this many connections at a time; more wait
    post_hash: bool = True  # POST /post answers "sha256 length"; else only the length
    https_url: str | None = None  # the same site over TLS, for the servers that have a TLS port
    ca_file: str | None = None  # the CA of its certificate

    @property
    def tls_port(self) -> int | None:
        return None if self.https_url is None else int(self.https_url.rsplit(":", 1)[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {START_TIMEOUT_S} s")


@contextlib.contextmanager
def running(command: list[str], ports: list[int], log: Path, stop: signal.Signals, **popen: object) -> Iterator[None]:
    """Run ``command`` until the context ends: wait for every port to listen, then stop it with ``stop``."""
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, **popen)  # type: ignore[call-overload]
    try:
        for port in ports:
            wait_listening(port, process, log)
        yield
    finally:
        if process.poll() is None:
            process.send_signal(stop)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def _get_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/count", timeout=5) as answer:
        return int(answer.read())


def _log_count(path: Path, needle: bytes) -> Callable[[], int]:
    def count() -> int:
        try:
            return path.read_bytes().count(needle)
        except FileNotFoundError:
            return 0

    return count


# -- Python servers (PyPI) --------------------------------------------------------------------------------------

PYTHON_SERVERS = ("uvicorn-h11", "uvicorn-httptools", "waitress", "gunicorn", "aiohttp")
#: The module each needs, to skip it with a reason when missing.
PYTHON_MODULES = {
    "uvicorn-h11": "uvicorn",
    "uvicorn-httptools": "uvicorn",
    "waitress": "waitress",
    "waitress-limited": "waitress",
    "gunicorn": "gunicorn",
    "aiohttp": "aiohttp",
}


@contextlib.contextmanager
def python_server(kind: str, directory: Path) -> Iterator[RealServer]:
    port = free_port()
    log = directory / f"{kind}.log"
    command = [sys.executable, str(HERE / "interop_app.py"), kind, str(port)]
    with running(command, [port], log, signal.SIGTERM, cwd=HERE):
        url = f"http://127.0.0.1:{port}"
        limited = kind in ("waitress-limited", "gunicorn")
        yield RealServer(
            name=kind,
            url=url,
            count=lambda: _get_count(url),
            idle_timeout=interop_app.IDLE_TIMEOUT_S.get(kind, 120.0),  # waitress-limited: waitress's default
            connection_limit=interop_app.CONNECTION_LIMIT if limited else None,
        )


# -- the static site nginx, Apache and lighttpd serve ------------------------------------------------------------

_POST_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
hash=$(head -c "${CONTENT_LENGTH:-0}" | sha256sum | cut -d' ' -f1)
printf '%s %s\\n' "$hash" "${CONTENT_LENGTH:-0}"
"""
# In two parts with a pause between: a server that has the whole output at once may frame it with a length.
_CHUNKED_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
head -c 32000 "{site}/chunked.txt"
sleep 0.05
tail -c +32001 "{site}/chunked.txt"
"""


def make_site(directory: Path) -> Path:
    """The static site: the routes of interop_app as files (and CGI scripts, for the servers that run them).
    Readable by every user: a server started as root serves it as an unprivileged one."""
    site = directory / "site"
    site.mkdir()
    (site / "index.html").write_bytes(b"hello from a static server\n")
    (site / "bench").write_bytes(b"ok\n")
    (site / "file").write_bytes(b"file contents\n")
    (site / "bytes").write_bytes(interop_app.big_body())
    (site / "chunked.txt").write_bytes(b"".join(interop_app.chunked_body()))
    (site / "chunked").write_bytes(b"".join(interop_app.chunked_body()))
    (site / "gzip").write_bytes(interop_app.gzip_text())
    cgi = directory / "cgi"
    cgi.mkdir()
    for name, text in (("post.cgi", _POST_CGI), ("chunked.cgi", _CHUNKED_CGI.format(site=site))):
        (cgi / name).write_text(text)
        (cgi / name).chmod(0o755)
    for path in (directory, site, cgi):
        path.chmod(0o755)
    return site


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (path for path in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(path, os.X_OK)), None
    )


def write_certificate(ca: object, directory: Path) -> tuple[Path, Path, Path]:
    """(certificate, key, CA) files for 127.0.0.1 from the test CA (trustme)."""
    issued = ca.issue_cert("127.0.0.1", "localhost")  # type: ignore[attr-defined]
    cert, key, ca_file = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))  # type: ignore[attr-defined]
    for path in (cert, key):
        path.chmod(0o644)  # a server reads its key before it drops root; lighttpd may not
    return cert, key, ca_file


_NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type text/plain;
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_requests {requests};
    keepalive_timeout {idle_ms}ms;
    client_max_body_size 8m;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 0;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {site};
        location = /redirect {{ return 302 /; }}
        # nginx runs no program: the POST route answers the length it read, not a hash.
        location = /post {{ return 200 "$content_length\\n"; }}
        # sub_filter drops the Content-Length of what it filters: the file goes out chunked.
        location = /chunked {{ sub_filter_types *; sub_filter "never in the file" ""; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(binary: str, directory: Path, ca: object) -> Iterator[RealServer]:
    site = make_site(directory)
    cert, key, ca_file = write_certificate(ca, directory)
    (directory / "tmp").mkdir(mode=0o777)
    (directory / "tmp").chmod(0o777)  # the worker (nobody, when started as root) writes request bodies there
    port, tls_port = free_port(), free_port()
    config = directory / "nginx.conf"
    config.write_text(
        _NGINX_CONF.format(
            dir=directory,
            site=site,
            port=port,
            tls_port=tls_port,
            cert=cert,
            key=key,
            requests=REQUESTS_PER_CONNECTION,
            idle_ms=int(IDLE_TIMEOUT_S["nginx"] * 1000),
        )
    )
    command = [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")]
    with running(command, [port, tls_port], directory / "nginx.out", signal.SIGQUIT):
        yield RealServer(
            name="nginx",
            url=f"http://127.0.0.1:{port}",
            count=_log_count(directory / "access.log", b'"GET /bench HTTP/1.1"'),
            idle_timeout=IDLE_TIMEOUT_S["nginx"],
            requests_per_connection=REQUESTS_PER_CONNECTION,
            post_hash=False,
            https_url=f"https://127.0.0.1:{tls_port}",
            ca_file=str(ca_file),
        )


_APACHE_CONF = """\
ServerRoot {dir}
ServerName 127.0.0.1
PidFile {dir}/httpd.pid
DefaultRuntimeDir {dir}
ErrorLog {dir}/error.log
LogLevel warn
{user}
Listen 127.0.0.1:{port}
Listen 127.0.0.1:{tls_port}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule dir_module {modules}/mod_dir.so
LoadModule alias_module {modules}/mod_alias.so
LoadModule mime_module {modules}/mod_mime.so
TypesConfig /dev/null
LoadModule cgid_module {modules}/mod_cgid.so
LoadModule filter_module {modules}/mod_filter.so
LoadModule deflate_module {modules}/mod_deflate.so
LoadModule ssl_module {modules}/mod_ssl.so
LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so
ServerLimit 1
StartServers 1
ThreadsPerChild 8
MaxRequestWorkers 8
KeepAlive On
MaxKeepAliveRequests {requests}
KeepAliveTimeout {idle_ms}ms
ScriptSock {dir}/cgid.sock
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog {dir}/access.log common
DocumentRoot {site}
DirectoryIndex index.html
<Directory {site}>
    Require all granted
</Directory>
<Directory {dir}/cgi>
    Require all granted
</Directory>
ScriptAlias /post {dir}/cgi/post.cgi
ScriptAlias /chunked {dir}/cgi/chunked.cgi
Redirect 302 /redirect /
<Location /gzip>
    ForceType text/plain
    SetOutputFilter DEFLATE
</Location>
<VirtualHost 127.0.0.1:{tls_port}>
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
</VirtualHost>
"""


@contextlib.contextmanager
def apache(binary: str, directory: Path, ca: object) -> Iterator[RealServer]:
    site = make_site(directory)
    cert, key, ca_file = write_certificate(ca, directory)
    port, tls_port = free_port(), free_port()
    config = directory / "httpd.conf"
    user = "User #65534\nGroup #65534" if os.geteuid() == 0 else ""
    config.write_text(
        _APACHE_CONF.format(
            dir=directory,
            site=site,
            port=port,
            tls_port=tls_port,
            cert=cert,
            key=key,
            user=user,
            modules="/usr/lib/apache2/modules",
            requests=REQUESTS_PER_CONNECTION,
            idle_ms=int(IDLE_TIMEOUT_S["apache"] * 1000),
        )
    )
    command = [binary, "-f", str(config), "-D", "FOREGROUND"]
    with running(command, [port, tls_port], directory / "httpd.out", signal.SIGTERM):
        yield RealServer(
            name="apache",
            url=f"http://127.0.0.1:{port}",
            count=_log_count(directory / "access.log", b'"GET /bench HTTP/1.1"'),
            idle_timeout=IDLE_TIMEOUT_S["apache"],
            requests_per_connection=REQUESTS_PER_CONNECTION,
            https_url=f"https://127.0.0.1:{tls_port}",
            ca_file=str(ca_file),
        )


_LIGHTTPD_CONF = """\
server.document-root = "{site}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
server.modules = (
    "mod_redirect", "mod_rewrite", "mod_alias", "mod_accesslog", "mod_cgi", "mod_deflate", "mod_openssl"
)
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html", "" => "text/plain")
# A piped logger gets every line at once (a file gets them in batches, a second or two later).
accesslog.filename = "|/bin/cat >> {dir}/access.log"
server.max-keep-alive-requests = {requests}
server.max-keep-alive-idle = {idle_s}
server.max-connections = {connections}
server.max-request-size = 8192
server.stream-response-body = 1
url.redirect = ("^/redirect$" => "/")
url.redirect-code = 302
url.rewrite-once = ("^/post$" => "/cgi/post.cgi", "^/chunked$" => "/cgi/chunked.cgi")
alias.url = ("/cgi/" => "{dir}/cgi/")
cgi.assign = (".cgi" => "")
deflate.mimetypes = ("text/plain")
deflate.allowed-encodings = ("gzip")
$SERVER["socket"] == "127.0.0.1:{tls_port}" {{
    ssl.engine = "enable"
    ssl.pemfile = "{cert}"
    ssl.privkey = "{key}"
}}
"""


@contextlib.contextmanager
def lighttpd(binary: str, directory: Path, ca: object) -> Iterator[RealServer]:
    site = make_site(directory)
    cert, key, ca_file = write_certificate(ca, directory)
    port, tls_port = free_port(), free_port()
    config = directory / "lighttpd.conf"
    config.write_text(
        _LIGHTTPD_CONF.format(
            dir=directory,
            site=site,
            port=port,
            tls_port=tls_port,
            cert=cert,
            key=key,
            requests=REQUESTS_PER_CONNECTION,
            idle_s=int(IDLE_TIMEOUT_S["lighttpd"]) - 1,
            connections=LIGHTTPD_CONNECTION_LIMIT,
        )
    )
    command = [binary, "-D", "-f", str(config)]
    with running(command, [port, tls_port], directory / "lighttpd.out", signal.SIGTERM):
        yield RealServer(
            name="lighttpd",
            url=f"http://127.0.0.1:{port}",
            count=_log_count(directory / "access.log", b'"GET /bench HTTP/1.1"'),
            idle_timeout=IDLE_TIMEOUT_S["lighttpd"],
            requests_per_connection=REQUESTS_PER_CONNECTION,
            connection_limit=LIGHTTPD_CONNECTION_LIMIT,
            https_url=f"https://127.0.0.1:{tls_port}",
            ca_file=str(ca_file),
        )


STATIC_SERVERS = {"nginx": nginx, "apache": apache, "lighttpd": lighttpd}
#: The binary each static server runs (Debian names Apache's "apache2").
STATIC_BINARIES = {"nginx": "nginx", "apache": "apache2", "lighttpd": "lighttpd"}


@contextlib.contextmanager
def start(name: str, ca: object) -> Iterator[RealServer]:
    """Start the server ``name`` (one of PYTHON_SERVERS, "waitress-limited" or STATIC_SERVERS) in a temporary
    directory of its own. Raises LookupError when it is not installed (the message says what is missing)."""
    if name in STATIC_SERVERS:
        binary = find_binary(STATIC_BINARIES[name])
        if binary is None:
            raise LookupError(f"{STATIC_BINARIES[name]} is not installed")
    else:
        module = PYTHON_MODULES[name]
        try:
            __import__(module)
        except ImportError:
            raise LookupError(f"{module} is not installed (pip install -e '.[interop]')") from None
    with tempfile.TemporaryDirectory(prefix=f"aiotcp-interop-{name}-") as temporary:
        directory = Path(temporary)
        if name in STATIC_SERVERS:
            with STATIC_SERVERS[name](binary, directory, ca) as server:  # type: ignore[arg-type]
                yield server
        else:
            with python_server(name, directory) as server:
                yield server
