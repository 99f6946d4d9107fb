"""Deterministic sharding: ``aiotcp probe --shard I/N`` probes the I-th of N disjoint parts of a list.

N machines given the same list, the same ``--ports`` and ``--shard 0/N`` ... ``--shard N-1/N`` probe disjoint
sets of targets whose union is the whole list, with no coordination: each reads the whole list, numbers it
as a single run would (so ``seq`` and ``line`` are the same everywhere) and keeps the jobs whose shard is I.

What is hashed (:func:`shard_key`), so that any other tool can reproduce the split:

* a target that parsed: its normalized host (IPv6 in brackets), then ``:PORT`` when the line gives a port,
  ``--ports`` gives one, or the line is a URL (its scheme's default port). So ``Example.COM:80`` and
  ``http://example.com/a`` share the key ``example.com:80``; a bare ``example.com`` without ``--ports`` is
  keyed ``example.com`` (its port would depend on ``--scheme``). Paths are not part of the key: every URL
  of one host and port lands in the same shard. The port is: one host's ports spread over the shards (a
  range probed with ``-p 1-1024`` splits evenly), so ``--per-host`` holds per machine, not fleet-wide.
* a line that does not parse: the line as read, stripped (so each invalid line is in exactly one shard).

The shard is ``int.from_bytes(blake2b(key, digest_size=8), "big") % N``, the key encoded as UTF-8 (lone
surrogates from undecodable input bytes as ``surrogatepass``). It does not use Python's ``hash()``, which
is randomized per process.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

from ..targets import DEFAULT_PORTS
from .jobs import Job

__all__ = ["Shard", "in_shard", "parse_shard", "select", "shard_key", "shard_of"]

_SHARD = re.compile(r"(0|[1-9][0-9]*)/([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` parts. Raises ``ValueError`` unless ``0 <= index < count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if type(self.index) is not int or type(self.count) is not int or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index!r}/{self.count!r}: need 0 <= I < N, as in 0/{self.count!r}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def includes(self, job: Job) -> bool:
        """Whether this shard probes ``job``."""
        return shard_of(job, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """Parse ``I/N`` (decimal, no sign or spaces) into a :class:`Shard`.

    Raises:
        ValueError: quoting ``text``, if it is not ``I/N`` with ``0 <= I < N``.
    """
    match = _SHARD.fullmatch(text)
    if match is None:
        raise ValueError(f"shard {text!r}: write I/N with 0 <= I < N, e.g. 0/3")
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_key(job: Job) -> str:
    """The string a job is sharded by (see the module docstring)."""
    spec = job.spec
    if spec is None:
        return job.text
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    port = job.port
    if port is None and spec.scheme is not None:
        port = DEFAULT_PORTS[spec.scheme]
    return host if port is None else f"{host}:{port}"


def shard_of(job: Job, count: int) -> int:
    """The shard (``0 <= shard < count``) that probes ``job``. Raises ``ValueError`` if ``count < 1``."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count!r}")
    digest = hashlib.blake2b(shard_key(job).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def in_shard(job: Job, index: int, count: int) -> bool:
    """Whether shard ``index`` of ``count`` probes ``job``."""
    return shard_of(job, count) == index


async def select(jobs: AsyncIterable[Job], shard: Shard | None) -> AsyncGenerator[Job, None]:
    """The jobs of ``jobs`` that ``shard`` probes, lazily; all of them when ``shard`` is None."""
    async for job in jobs:
        if shard is None or shard.includes(job):
            yield job
