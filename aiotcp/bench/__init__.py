"""``aiotcp bench``: a load generator -- closed loop like wrk, open loop with coordinated-omission correction
like wrk2 -- with exact HdrHistograms merged across worker processes, and text/JSON/HDR-log/HTML reports.

    from aiotcp.bench import BenchConfig, run_bench
    result = run_bench(BenchConfig("http://127.0.0.1:8080/", connections=50, duration=5))
    print(result.rps, result.counters.status)

Layout: :mod:`.config` (what to run, each worker's share), :mod:`.mix` (``--urls``, templates, bodies),
:mod:`.stages` (ramps), :mod:`.thresholds`, :mod:`.engines` (phases, budget, schedules shared by both
engines), :mod:`.engine_httptools` (asyncio Protocol + llhttp, the fast one), :mod:`.engine_h11` (anyio +
h11, the portable one), :mod:`.histogram`, :mod:`.results` (the accounting), :mod:`.workers` (processes
and merging), :mod:`.dask` (``--dask``), :mod:`.analysis` (per endpoint, per stage, thresholds, the
self-check), :mod:`.compare` (two runs), :mod:`.report` and :mod:`.plots`. The command line is
:mod:`aiotcp.cli.bench`; nothing here imports it.
"""

from __future__ import annotations

from .config import BenchConfig, WorkerPlan, available_engines, resolve_engine, resolve_workers
from .results import Counters, Interval, WorkerResult
from .workers import BenchResult, run_bench

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Counters",
    "Interval",
    "WorkerPlan",
    "WorkerResult",
    "available_engines",
    "resolve_engine",
    "resolve_workers",
    "run_bench",
]
