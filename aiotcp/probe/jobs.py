"""Numbering the input: lines (or :class:`~aiotcp.targets.Target` objects) become :class:`Job` s, lazily.

Job numbers (``seq``) depend only on the input, so they identify a target across runs: ``--resume``, sharding
and Dask chunks rely on that. A line that does not parse becomes a job that already holds its
``invalid_target`` record.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator
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
    numbering = _Numbering(ports)
    if isinstance(items, AsyncIterable):
        async with aclosing(as_async_iterator(items)) as lines:
            async for item in lines:
                for job in numbering.jobs(item):
                    yield job
    else:  # (not through as_async_iterator: a list is read by the million, a layer less is a step less each)
        for item in items:
            for job in numbering.jobs(item):
                yield job


class _Numbering:
    """The running numbers of :func:`iter_jobs`: the next ``seq`` and the line."""

    __slots__ = ("line", "ports", "seq")

    def __init__(self, ports: tuple[int, ...]) -> None:
        self.ports = ports
        self.seq = 0
        self.line = 0

    def jobs(self, item: InputItem) -> list[Job] | Iterable[Job]:
        """The jobs of one input item (none for a blank line or a comment)."""
        self.line += 1
        seq, line = self.seq, self.line
        if isinstance(item, Target):
            self.seq += 1
            return [Job(seq, line, item.url, TargetSpec(item.scheme, item.host, item.port, item.path), item.port)]
        text = item.strip()
        if not text or text.startswith("#"):
            return ()
        if "/" not in text and not self.ports:  # not a range nor a URL, and one port at most: one job
            self.seq += 1
            try:
                spec = parse_spec(text)
            except InvalidTarget as exc:
                return [_invalid(seq, line, text, exc)]
            return [Job(seq, line, text, spec, spec.port)]
        return self._expanded(seq, line, text)

    def _expanded(self, seq: int, line: int, text: str) -> Iterator[Job]:
        """A line's jobs one by one, as its range expands (a /8 is 16 million of them: never a list)."""
        for job in _jobs_for_line(seq, line, text, self.ports):
            self.seq = job.seq + 1
            yield job
