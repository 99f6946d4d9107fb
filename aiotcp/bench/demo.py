"""The bench chapter of ``aiotcp demo``: three seconds of load on the built-in server, then the report."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from .config import BenchConfig, available_engines

__all__ = ["demo_bench"]

DEMO_SECONDS = 3.0


def demo_bench(console: Console, server: Any, *, seconds: float = DEMO_SECONDS) -> int:
    """Load ``server`` (a running :class:`~aiotcp.serve.TargetServer`) for ``seconds``; print the report.

    Returns the number of failed checks: the run must get responses, no errors, and exactly as many
    responses as the server counts served (in-flight requests at the end aside).
    """
    from .report import write_text
    from .workers import run_bench

    engine = available_engines()[0]
    console.rule(f"5. Load: aiotcp bench, {seconds:g} seconds against the built-in server")
    url = f"{server.url}/"
    console.print(f"$ aiotcp bench -c 20 -d {seconds:g}s --engine {engine} {url}", style="dim")
    before = server.requests_served
    config = BenchConfig(url, connections=20, duration=seconds, engine=engine)
    result = run_bench(config)
    text = io.StringIO()
    write_text(result, text)
    console.print(text.getvalue().rstrip(), markup=False, highlight=False)
    served = server.requests_served - before
    counters = result.counters
    failures = 0
    if counters.requests == 0 or counters.errors:
        failures += 1
        console.print("[red]expected responses and no errors[/]")
    if not counters.requests <= served <= counters.requests + counters.in_flight:
        failures += 1
        console.print(f"[red]the server served {served:,}, the bench counted {counters.requests:,}[/]")
    else:
        console.print(
            f"the server counts {served:,} requests served: the {counters.requests:,} responses counted here"
            f" plus {served - counters.requests:,} of the {counters.in_flight:,} still in flight at the end"
        )
    console.print(
        "[dim]The built-in server shares this process (and its GIL) with the load generator, so these numbers"
        " measure both; see benchmarks/ for side-by-side runs against nginx and wrk.[/]"
    )
    return failures
