"""Bulk probing of server lists: one record per target, memory flat in the list's length.

- :mod:`.engine` -- :func:`probe_many` / :func:`probe_jobs`: the fan-out pipeline and one probe;
- :mod:`.jobs` -- numbering the input (lines, ranges, ports) into jobs;
- :mod:`.records` -- :class:`ProbeResult`, the record and its schema;
- :mod:`.retry` -- the retry / scheme-switch decision, a pure function;
- :mod:`.matchers` -- which records are written (``--match-*`` / ``--filter-*``);
- :mod:`.limits` -- the global rate and the per-host cap;
- :mod:`.journal`, :mod:`.output`, :mod:`.sharding`, :mod:`.dask` -- ``--resume``, record writers,
  ``--shard`` and ``--dask``.

The command line around it lives in :mod:`aiotcp.cli.probe`; nothing here imports it.
"""

from .engine import ProbeOptions, probe_jobs, probe_many
from .jobs import Job, iter_jobs
from .records import FIELD_NAMES, ProbeResult

__all__ = ["FIELD_NAMES", "Job", "ProbeOptions", "ProbeResult", "iter_jobs", "probe_jobs", "probe_many"]
