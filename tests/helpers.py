"""What several test modules share: the response parsers and the optional one, driving a sans-IO protocol, and
hypothesis strategies for target text. Test modules import from here (and from the other helper modules:
scripted_server.py, memory_stream.py, hostile/hostile_harness.py, hostile/hostile_table.py), never from one
another.

httptools is optional (aiotcp runs on h11 where it has no wheel), so nothing here or in a test module may
skip a test that h11 can run just because httptools is missing:

* a test parametrized over parsers takes ``PARSERS`` (or the ``http`` fixture of conftest.py): the httptools
  parameter carries :data:`needs_httptools`, so only it is skipped;
* a test that runs both parsers in one example (hypothesis) loops over :data:`INSTALLED_PARSERS`;
* only a test that compares the two parsers (a differential test) is marked :data:`needs_httptools` whole.

Whether httptools is there is what aiotcp itself decided when it imported its accelerators
(:func:`aiotcp.http11.available_backends`): one answer for the library and the tests, whether the package is
missing or fails to import.
"""

from __future__ import annotations

import itertools
import re
import string
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest
from hypothesis import strategies as st

from aiotcp.errors import AiotcpError
from aiotcp.http11 import Event, HTTP11Protocol, ResponseEnd, ResponseHead, available_backends
from aiotcp.targets import Target

__all__ = [
    "EDITS",
    "HAVE_HTTPTOOLS",
    "INSTALLED_PARSERS",
    "PARSERS",
    "Outcome",
    "any_text",
    "bytewise",
    "drive",
    "mutate",
    "needs_httptools",
    "parser_marks",
    "split_at",
    "targets",
]

# -- the parsers ----------------------------------------------------------------------------------------------

#: Whether the optional parser can run here.
HAVE_HTTPTOOLS = "httptools" in available_backends()
#: Skips a test (or one parameter) that cannot run without httptools.
needs_httptools = pytest.mark.skipif(not HAVE_HTTPTOOLS, reason="httptools is not installed")
#: The parsers that run here, for a test that loops over them in one example.
INSTALLED_PARSERS = [parser for parser in ("h11", "httptools") if parser == "h11" or HAVE_HTTPTOOLS]


def settled(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``predicate()`` holds within ``timeout`` seconds, polled: for the counters a server keeps in its
    own thread, which it updates after the reply a client already read (a test that reads them at once races
    that thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def parser_marks(parser: str) -> list[pytest.MarkDecorator]:
    """The marks of a test parameter that runs ``parser`` (for parameters that combine a parser with more)."""
    return [needs_httptools] if parser == "httptools" else []


#: ``@pytest.mark.parametrize("parser", PARSERS)``: both parsers; the httptools case skips without httptools.
PARSERS = [pytest.param(parser, marks=parser_marks(parser), id=parser) for parser in ("h11", "httptools")]


# -- driving a protocol ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a protocol made of some bytes: the events (bodies joined) and the error that ended them, if any."""

    events: list[Event]
    error: AiotcpError | None

    @property
    def summary(self) -> object:
        """Events when it succeeded, else the error kind: what must not depend on how bytes were split."""
        if self.error is not None:
            return ("error", self.error.kind)
        return self.events

    @property
    def head(self) -> ResponseHead:
        head = self.events[0]
        assert isinstance(head, ResponseHead), self
        return head

    @property
    def body(self) -> bytes:
        return b"".join(event for event in self.events if isinstance(event, bytes))

    @property
    def end(self) -> ResponseEnd:
        end = self.events[-1]
        assert isinstance(end, ResponseEnd), self
        return end


def _join_bodies(events: Iterable[Event]) -> list[Event]:
    joined: list[Event] = []
    for event in events:
        if isinstance(event, bytes):
            assert event, "a body event is never empty"
            if joined and isinstance(joined[-1], bytes):
                joined[-1] += event
                continue
        joined.append(event)
    return joined


def drive(protocol: HTTP11Protocol, chunks: Iterable[bytes], *, eof: bool = True) -> Outcome:
    """Feed ``chunks`` the way a connection does: take every event before feeding the next chunk; stop at
    ``ResponseEnd``; feed EOF (``b""``) when the chunks run out, if ``eof``."""
    pending = deque(chunk for chunk in chunks if chunk)
    events: list[Event] = []
    eof_fed = not eof
    # Each step feeds a chunk or takes an event, and every event but the end stands for at least one byte.
    for _ in range(2 * sum(map(len, pending)) + len(pending) + 16):
        try:
            event = protocol.next_event()
            if event is None:
                if pending:
                    protocol.receive_data(pending.popleft())
                    continue
                if eof_fed:
                    break
                eof_fed = True
                protocol.receive_data(b"")
                continue
        except AiotcpError as exc:
            return Outcome(_join_bodies(events), exc)
        events.append(event)
        if isinstance(event, ResponseEnd):
            break
    else:  # pragma: no cover - a protocol that neither ends nor asks for bytes
        raise AssertionError(f"protocol made no progress: {events!r}")
    return Outcome(_join_bodies(events), None)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``points`` (taken modulo its length plus one), in order, without empty pieces."""
    cuts = sorted({0, len(data), *(point % (len(data) + 1) for point in points)})
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """``data`` with each edit (position, bytes to delete, bytes to insert) applied in turn."""
    for position, delete, insert in edits:
        position %= len(data) + 1
        data = data[:position] + insert + data[position + delete :]
    return data


#: Edits for :func:`mutate`, biased towards the bytes that matter to HTTP framing.
EDITS = st.lists(
    st.tuples(
        st.integers(min_value=0),
        st.integers(min_value=0, max_value=3),
        st.one_of(st.binary(max_size=3), st.sampled_from([b"\r\n", b"\n", b":", b" ", b"\x00", b"0", b";", b"\r"])),
    ),
    max_size=4,
)


# -- target text ----------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
labels = st.from_regex(r"[a-z0-9_](?:[a-z0-9_-]{0,10}[a-z0-9_])?", fullmatch=True).filter(
    lambda label: not label.startswith("xn--")
)
names = st.builds(
    lambda parts, dot: ".".join(parts) + dot,
    st.lists(labels, min_size=1, max_size=4).filter(lambda parts: _NUMBER.fullmatch(parts[-1]) is None),
    st.sampled_from(["", "."]),
)
hosts = st.one_of(
    names,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["127.0.0.1", "::1", "localhost", "xn--bcher-kva.example"]),
)
path_chars = st.sampled_from([c for c in string.printable if c.isprintable() and c not in " #%"])
escapes = st.tuples(st.sampled_from(string.hexdigits), st.sampled_from(string.hexdigits)).map("%{0[0]}{0[1]}".format)
paths = st.lists(st.one_of(path_chars, escapes), max_size=20).map(lambda parts: "/" + "".join(parts))
#: Valid targets, built from their parts.
targets = st.builds(Target, st.sampled_from(["http", "https"]), hosts, st.integers(min_value=1, max_value=65535), paths)

# Pieces that take the parser down its deeper branches more often than random text does.
pieces = st.sampled_from(
    [
        "http://",
        "HTTPS://",
        "ftp://",
        "//",
        "[",
        "]",
        "::",
        ":",
        "@",
        "/",
        "?",
        "#",
        "%",
        "%4",
        "%41",
        ".",
        "-",
        "_",
        "0",
        "1",
        "127",
        "255",
        "256",
        "0x7f",
        "0177",
        "8080",
        "65536",
        "example",
        "xn--",
        "xn--bcher-kva",
        "\u00fc",
        "\u3002",
        "\uff11",
        "\u00ad",
        "\u200b",
        "::1",
        "2001:db8::",
        "%eth0",
        " ",
        "\t",
    ]
)
urlish = st.lists(pieces, max_size=12).map("".join)
#: Any text a user might give as a target, valid or not.
any_text = st.one_of(
    st.text(),
    urlish,
    st.text(st.characters(exclude_categories=())),  # surrogates included
    targets.map(str),
)
