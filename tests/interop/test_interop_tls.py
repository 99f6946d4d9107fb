"""aiotcp against the TLS ports of nginx, Apache httpd and lighttpd (each skipped when not installed), on
asyncio, uvloop and trio: kept-alive TLS connections the server closes (after its request cap, and when they
idle) cost no request and log nothing, and ``--scheme auto`` finds TLS on a port that does not say it (nginx
and Apache answer plaintext with a 400 that says so, lighttpd closes without a byte).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from interop_servers import BIG_SHA256, IDLE_MARGIN_S, ROOT, RealServer, client

from aiotcp.probe import probe_many

pytestmark = pytest.mark.anyio

ALL_ASYNCIO = pytest.mark.parametrize(
    "anyio_backend", ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"]
)


def https_of(server: RealServer) -> str:
    assert server.https_url is not None, server
    return server.https_url


@ALL_ASYNCIO
async def test_tls_keepalive_closed_by_the_server_logs_nothing(anyio_backend: Any, tls_server: RealServer) -> None:
    """Over TLS, the server closes kept-alive connections after its request cap and when they idle: close_notify
    then FIN, each time. Every request succeeds and nothing is logged (conftest.py fails the test otherwise):
    asyncio and uvloop warn when a protocol asks to keep a TLS transport half-open."""
    https = https_of(tls_server)
    async with (
        client("h11", verify=tls_server.ca_file) as h11,
        client("httptools", verify=tls_server.ca_file) as fast,
    ):
        for c in (h11, fast):
            for _ in range(7):
                response = await c.get(f"{https}/")
                assert response.status_code == 200
                assert response.content == b"hello from a static server\n"
        if tls_server.idle_timeout <= 1:  # (lighttpd's, longer, is waited for once, over plain HTTP)
            await anyio.sleep(tls_server.idle_timeout + IDLE_MARGIN_S)
        for c in (h11, fast):
            again = await c.get(f"{https}/bytes")
            assert hashlib.sha256(again.content).hexdigest() == BIG_SHA256
            if tls_server.idle_timeout <= 1:
                assert not again.timings.reused
                assert again.timings.tls_ms is not None


@ALL_ASYNCIO
async def test_probe_scheme_auto_finds_tls_on_a_port_that_does_not_say_it(
    anyio_backend: Any, tls_server: RealServer
) -> None:
    """On a port that is not a usual TLS port, ``--scheme auto`` tries http first: nginx and Apache answer a 400
    that says TLS was meant, lighttpd closes without a byte; either way the record is https's, after two
    attempts. The plain port stays http, after one."""
    https = https_of(tls_server)
    tls_target, plain_target = https.removeprefix("https://"), tls_server.url.removeprefix("http://")
    records = [record async for record in probe_many([tls_target, plain_target], scheme="auto", timeout=10)]
    by_port = {record.port: record for record in records}
    tls, plain = by_port[tls_server.tls_port], by_port[int(plain_target.rsplit(":", 1)[1])]
    assert (tls.ok, tls.scheme, tls.status_code, tls.attempts) == (True, "https", 200, 2), tls
    assert tls.tls_ms is not None
    assert (plain.ok, plain.scheme, plain.status_code, plain.attempts) == (True, "http", 200, 1), plain


def test_probe_command_prints_nothing_on_stderr(tls_server: RealServer, tmp_path: Path) -> None:
    """The ``aiotcp probe`` command against the server's plain and TLS ports: one record each, and nothing on
    stderr -- no warning from the event loop."""
    https = https_of(tls_server)
    targets = [tls_server.url.removeprefix("http://"), https.removeprefix("https://")]
    listing = tmp_path / "targets.txt"
    listing.write_text("\n".join(targets) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "aiotcp", "probe", str(listing), "--scheme", "auto", "-t", "10", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    records: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == len(targets)
    assert all(record["ok"] and record["status_code"] == 200 for record in records), records
