"""Numbering the input: lines (or :class:`~aiotcp.targets.Target` objects) become :class:`Job` s, lazily.

Job numbers (``seq``) depend only on the input, so they identify a target across runs: ``--resume``, sharding
and Dask chunks rely on that. A line that does not parse becomes a job that already holds its
``invalid_target`` record.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

from ..errors import InvalidTarget
from ..targets import Target, TargetSpec, expand_cidr, parse_spec
from .records import ProbeResult

__all__ = ["InputItem", "Inputs", "Job", "as_async_iterator", "iter_jobs"]

_Item = TypeVar("_Item")


@dataclass(slots=True)
class Job:
    """One target to probe, numbered in input order. ``result`` is preset for lines that failed to parse."""

    seq: int
    line: int | None
    text: str
    spec: TargetSpec | None = None
    port: int | None = None
    result: ProbeResult | None = None


InputItem = str | Target
Inputs = Iterable[InputItem] | AsyncIterable[InputItem]


async def as_async_iterator(items: Iterable[_Item] | AsyncIterable[_Item]) -> AsyncGenerator[_Item, None]:
    """Iterate a sync or an async iterable the same way (inputs may be either)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _invalid(seq: int, line: int | None, text: str, exc: InvalidTarget) -> Job:
    result = ProbeResult(input=text, line=line, error=exc.kind, error_message=exc.message, seq=seq)
    return Job(seq, line, text, result=result)


def _jobs_for_line(seq: int, line: int | None, text: str, ports: tuple[int, ...]) -> Iterable[Job]:
    """The jobs of one (non-blank) line: one per address of a range and per port of ``ports``."""
    try:
        expanded = expand_cidr(text)
        texts: Iterable[str] = (text,) if expanded is None else expanded
        for host_text in texts:
            spec = parse_spec(host_text)
            if spec.port is None and spec.scheme is None and ports:
                for port in ports:
                    yield Job(seq, line, text, spec, port)
                    seq += 1
            else:
                yield Job(seq, line, text, spec, spec.port)
                seq += 1
    except InvalidTarget as exc:
        yield _invalid(seq, line, text, exc)


async def iter_jobs(items: Inputs, *, ports: tuple[int, ...] = ()) -> AsyncGenerator[Job, None]:
    """Number the targets of ``items`` lazily. Strings are lines: blank ones and ``#`` comments are skipped
    but counted, so ``line`` is the 1-based line number in the input."""
    seq = 0
    line = 0
    async with aclosing(as_async_iterator(items)) as lines:
        async for item in lines:
            line += 1
            if isinstance(item, Target):
                yield Job(seq, line, item.url, TargetSpec(item.scheme, item.host, item.port, item.path), item.port)
                seq += 1
                continue
            text = item.strip()
            if not text or text.startswith("#"):
                continue
            if "/" not in text and not ports:  # not a range nor a URL, and one port at most: one job
                try:
                    spec = parse_spec(text)
                except InvalidTarget as exc:
                    yield _invalid(seq, line, text, exc)
                else:
                    yield Job(seq, line, text, spec, spec.port)
                seq += 1
                continue
            for job in _jobs_for_line(seq, line, text, ports):
                seq = job.seq + 1
                yield job
