"""Shared fixtures: real servers on 127.0.0.1 port 0, and the async backends the core runs on.

Async tests use anyio's pytest plugin (``@pytest.mark.anyio``) and run once on asyncio and once on trio,
unless a module narrows ``anyio_backend``.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import PARSERS

from aiotcp.serve import SilentServer, TargetServer, refused_port, running_in_thread, running_silent_in_thread


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=PARSERS)
def http(request: pytest.FixtureRequest) -> str:
    """The client's response parser (``Client(http=...)``), for tests that must pass on both backends. Without
    httptools only its parameter skips (see helpers.py)."""
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


# -- reliability figures ------------------------------------------------------------------------------------
#
# The hostile-server suite (tests/hostile/) counts what it exercised; the run ends with one summary line, the
# figures of the README's "Reliability" section. Set AIOTCP_RELIABILITY_JSON=path to also get them as JSON.


@dataclass
class Reliability:
    """Figures collected over a session: behaviours played and survived, time over deadline, fuzz examples
    (every hypothesis example run in the session, whichever module), soak totals."""

    exercised: int = 0
    survived: int = 0
    worst_overrun: float | None = None  # max of (elapsed - deadline) over the behaviours played, seconds
    worst_run: str = ""
    fuzz_examples: int = 0
    failed: list[str] = field(default_factory=list)
    soak: dict[str, Any] | None = None
    _open: set[str] = field(default_factory=set)

    def start(self, label: str) -> None:
        """A behaviour is about to be played (``label`` names the row and how it is played)."""
        self.exercised += 1
        self._open.add(label)

    def survive(self, label: str, overrun: float | None = None) -> None:
        """Every check of the behaviour passed; ``overrun`` is its elapsed time minus its deadline."""
        self._open.discard(label)
        self.survived += 1
        if overrun is not None and (self.worst_overrun is None or overrun > self.worst_overrun):
            self.worst_overrun = overrun
            self.worst_run = label

    def as_dict(self) -> dict[str, Any]:
        return {
            "behaviours_exercised": self.exercised,
            "behaviours_survived": self.survived,
            "worst_overrun_s": None if self.worst_overrun is None else round(self.worst_overrun, 3),
            "worst_run": self.worst_run,
            "fuzz_examples": self.fuzz_examples,
            "failed": sorted(self._open),
            "soak": self.soak,
        }

    def summary(self) -> list[str]:
        overrun = "n/a" if self.worst_overrun is None else f"{self.worst_overrun:+.3f} s ({self.worst_run})"
        lines = [
            f"reliability: {self.survived}/{self.exercised} behaviours survived, worst time over deadline "
            f"{overrun}, fuzz examples {self.fuzz_examples}"
        ]
        if self._open:
            lines.append(f"reliability: not survived: {', '.join(sorted(self._open))}")
        if self.soak:
            lines.append("reliability: soak: " + ", ".join(f"{key} {value}" for key, value in self.soak.items()))
        return lines


_RELIABILITY = Reliability()


@pytest.fixture(scope="session")
def reliability() -> Reliability:
    """The session's reliability figures (see :class:`Reliability`)."""
    return _RELIABILITY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Count every example hypothesis runs: wrap the inner test of each @given test (hypothesis reads
    # ``test.hypothesis.inner_test`` when it runs, the hook it documents for plugins).
    for item in items:
        function = getattr(item, "obj", None)
        handle = getattr(function, "hypothesis", None)
        inner = getattr(handle, "inner_test", None)
        if handle is None or inner is None or getattr(inner, "_counted", False):
            continue

        def counted(*args: Any, __inner: Any = inner, **kwargs: Any) -> Any:
            _RELIABILITY.fuzz_examples += 1
            return __inner(*args, **kwargs)

        counted._counted = True  # type: ignore[attr-defined]
        functools.update_wrapper(counted, inner)
        handle.inner_test = counted


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not (_RELIABILITY.exercised or _RELIABILITY.fuzz_examples or _RELIABILITY.soak):
        return
    for line in _RELIABILITY.summary():
        terminalreporter.write_line(line)
    path = os.environ.get("AIOTCP_RELIABILITY_JSON")
    if path:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(_RELIABILITY.as_dict(), file, indent=2)
