"""Bulk probing of server lists: one record per target, memory flat in the list's length.

- :mod:`.engine` -- :func:`probe_many` / :func:`probe_jobs`: picks an engine; the reference pipeline;
- :mod:`.fast` -- the lean engine (callbacks on asyncio, llhttp), the one used on asyncio;
- :mod:`.prober` -- :class:`Prober`, the reference probe of one job through :class:`aiotcp.Client`;
- :mod:`.attempts` -- a job's records and one target's attempts, the bookkeeping both engines share;
- :mod:`.options` -- :class:`ProbeOptions`;
- :mod:`.jobs` -- numbering the input (lines, ranges, ports) into jobs;
- :mod:`.records` -- :class:`ProbeResult`, the record and its schema, built here for both engines;
- :mod:`.retry` -- the retry / scheme-switch decisions, pure functions;
- :mod:`.matchers` -- which records are written (``--match-*`` / ``--filter-*``);
- :mod:`.limits` -- the global rate and the per-host cap;
- :mod:`.pacing` -- our own load: loop lag, admission, stall credit, :class:`LoadReport`;
- :mod:`.workers` -- ``--workers N``: processes on this machine, one output;
- :mod:`.journal`, :mod:`.output`, :mod:`.sharding`, :mod:`.dask` -- ``--resume``, record writers,
  ``--shard`` and ``--dask``.

The command line around it lives in :mod:`aiotcp.cli.probe`; nothing here imports it.
"""

from .engine import probe_jobs, probe_many
from .jobs import Job, iter_jobs
from .options import ProbeOptions
from .pacing import LoadReport
from .records import FIELD_NAMES, ProbeResult

__all__ = [
    "FIELD_NAMES",
    "Job",
    "LoadReport",
    "ProbeOptions",
    "ProbeResult",
    "iter_jobs",
    "probe_jobs",
    "probe_many",
]
