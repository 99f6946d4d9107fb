"""Fixtures of the interop suite: one real server per parameter (started once per module, stopped after it),
and no logged warning anywhere (asyncio's and uvloop's included).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
from interop_servers import PYTHON_SERVERS, STATIC_SERVERS, RealServer, start

#: Every server the suite runs against: the PyPI ones (skipped when not installed) and nginx, Apache httpd and
#: lighttpd (skipped when their binary is missing). waitress-limited is waitress with a connection limit of 10
#: and its default idle timeout (120 s): the case where idle connections must be closed by the client.
SERVERS = [*PYTHON_SERVERS, "waitress-limited", *STATIC_SERVERS]


@contextlib.contextmanager
def _serving(name: str, ca: object) -> Iterator[RealServer]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(start(name, ca))
        except LookupError as exc:
            pytest.skip(f"{name}: {exc}")
        yield server


@pytest.fixture(scope="module", params=SERVERS)
def real_server(request: pytest.FixtureRequest, ca: object) -> Iterator[RealServer]:
    """Each server in turn, started once for the module that uses it."""
    with _serving(request.param, ca) as server:
        yield server


@pytest.fixture(scope="module", params=list(STATIC_SERVERS))
def tls_server(request: pytest.FixtureRequest, ca: object) -> Iterator[RealServer]:
    """Each server with a TLS port (nginx, Apache, lighttpd) in turn."""
    with _serving(request.param, ca) as server:
        yield server


@pytest.fixture(autouse=True)
def no_logged_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Any record of WARNING or above, from any logger (asyncio and uvloop log through "asyncio"), fails the
    test that logged it: a kept-alive TLS close, a task left pending, an exception nobody retrieved..."""
    caplog.set_level(logging.WARNING)
    yield
    records = [record for when in ("setup", "call") for record in caplog.get_records(when)]
    logged = [f"{record.name}: {record.getMessage()}" for record in records if record.levelno >= logging.WARNING]
    if logged:
        pytest.fail(f"warnings were logged: {logged}")
