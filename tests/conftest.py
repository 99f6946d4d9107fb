"""Shared fixtures: real servers on 127.0.0.1 port 0, and the async backends the core runs on.

Async tests use anyio's pytest plugin (``@pytest.mark.anyio``) and run once on asyncio and once on trio,
unless a module narrows ``anyio_backend``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from aiotcp.serve import SilentServer, TargetServer, refused_port, running_in_thread, running_silent_in_thread


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["h11", "httptools"])
def http(request: pytest.FixtureRequest) -> str:
    """The client's response parser (``Client(http=...)``), for tests that must pass on both backends."""
    if request.param == "httptools":
        pytest.importorskip("httptools")
    return str(request.param)


@pytest.fixture(scope="session")
def shared_server() -> Iterator[TargetServer]:
    """One built-in server for the whole run, for tests that do not count its requests."""
    with running_in_thread() as server:
        yield server


@pytest.fixture
def server() -> Iterator[TargetServer]:
    """A fresh built-in server, so its counters belong to this test alone."""
    with running_in_thread() as server:
        yield server


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """Accepts connections and never answers."""
    with running_silent_in_thread() as server:
        yield server


@pytest.fixture
def refused() -> Iterator[int]:
    """A loopback port where a connect gets RST."""
    with refused_port() as port:
        yield port


# -- TLS with a locally generated CA ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca():  # type: ignore[no-untyped-def]
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(ca) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """Server side: a certificate for localhost, 127.0.0.1 and ::1 signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl_context(ca) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """Client side: trusts the test CA only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
