"""The prober's two engines against every network row of the behaviour table: the same records.

One probe run per engine over a list with one scripted server per row (hostile_table.py): the lean engine
(aiotcp.probe.fast: callbacks, PlainResponseParser with HttptoolsProtocol behind it) and the reference engine
(every attempt through Client, parser httptools) must write the same record for every row -- status, headers,
title, quirks, fingerprints, error kind and message, timeout phase -- timings and timestamps aside. Replies
delivered whole (the llhttp-alone path of the lean engine) and cut at seeded random points (its replay into
HttptoolsProtocol).
With h11 as the reference's parser the kinds agree too, except on the rows where the table says the two
parsers differ.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import ExitStack, aclosing
from typing import Any

import pytest
from hostile_harness import seed_for, serving
from hostile_table import BEHAVIOURS, Behaviour

from aiotcp.probe import ProbeResult, probe_many

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

TIMEOUT_S = 1.0  # one deadline for every row: what is compared is the two engines, not the table's timings
# Timings are compared by presence only (dns_ms of an address: the reference's look at it, the lean engine's 0).
UNTIMED = ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "time_ms", "timestamp")
# This message quotes the first read, whose length depends on when the kernel handed over the pieces: with
# replies cut in pieces, two runs of the same engine may quote different lengths.
FIRST_READ = re.compile(r"(not an HTTP/1\.x response(?: after \d+ interim \(1xx\) response\(s\))?: starts with ).*")
# The prober sends GET or HEAD; a row whose client sends POST is played with GET (the server does not care).
GET_ROWS = [row for row in BEHAVIOURS if row.method != "HEAD"]
HEAD_ROWS = [row for row in BEHAVIOURS if row.method == "HEAD"]


@contextlib.contextmanager
def servers(rows: list[Behaviour], delivery: str) -> Iterator[list[str]]:
    """One server per row, as the hostile harness starts them; their addresses."""
    with ExitStack() as stack:
        started = [stack.enter_context(serving(row, delivery, seed_for(row, "httptools"))) for row in rows]
        yield [server.url.removeprefix("http://") for server in started]


async def run(rows: list[Behaviour], delivery: str, **options: Any) -> list[dict[str, Any]]:
    """One probe run over fresh servers for ``rows``; each row's record, normalized (see ``normal``; with
    replies cut in pieces, without the quote of the first read)."""
    with servers(rows, delivery) as addresses:
        async with aclosing(
            probe_many(addresses, order="input", timeout=TIMEOUT_S, scheme="http", concurrency=len(rows), **options)
        ) as results:
            records = [result async for result in results]
    assert [record.line for record in records] == list(range(1, len(rows) + 1))
    normalized = [normal(record) for record in records]
    if delivery != "whole":
        for fields in normalized:
            if fields["error_message"] is not None:
                fields["error_message"] = FIRST_READ.sub(r"\1...", fields["error_message"])
    return normalized


def normal(record: ProbeResult) -> dict[str, Any]:
    """The record with its timings as present or not, and without the server's port (each run has servers of its
    own)."""
    fields = record.as_dict()
    for name in UNTIMED:
        fields[name] = fields[name] is not None
    port = str(fields.pop("port"))
    for name in ("input", "url"):
        if fields[name] is not None:
            fields[name] = re.sub(rf":{port}\b", ":PORT", fields[name])
    return fields


def differences(rows: list[Behaviour], lean: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[str]:
    return [
        f"{row.name}: lean {a!r}\n    reference {b!r}"
        for row, a, b in zip(rows, lean, reference, strict=True)
        if a != b
    ]


@pytest.mark.parametrize("delivery", ["whole", "random"])
@pytest.mark.parametrize(("method", "rows"), [("GET", GET_ROWS), ("HEAD", HEAD_ROWS)], ids=["GET", "HEAD"])
async def test_lean_and_reference_write_the_same_records(
    anyio_backend: str, delivery: str, method: str, rows: list[Behaviour]
) -> None:
    lean = await run(rows, delivery, method=method, engine="lean")
    reference = await run(rows, delivery, method=method, engine="reference", http="httptools")
    assert not differences(rows, lean, reference), "\n".join(differences(rows, lean, reference))
    # The corpus reached both of the lean engine's parsers, and every phase a deadline can run out in.
    kinds = {record["error"] for record in lean}
    if method == "GET":
        assert {None, "protocol", "too_large", "disconnected", "reset", "timeout"} <= kinds, kinds
        assert {record["timeout_phase"] for record in lean if record["error"] == "timeout"} == {"connect", "read"}


async def test_kinds_agree_with_the_h11_reference_but_where_the_parsers_differ(anyio_backend: str) -> None:
    lean = await run(GET_ROWS, "whole", engine="lean")
    reference = await run(GET_ROWS, "whole", engine="reference", http="h11")
    for row, a, b in zip(GET_ROWS, lean, reference, strict=True):
        if row.parsers:  # the table names a parser that legitimately differs
            continue
        assert (a["error"], a["status_code"], a["title"]) == (b["error"], b["status_code"], b["title"]), row.name
