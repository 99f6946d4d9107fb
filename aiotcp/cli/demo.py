"""``aiotcp demo``: an offline tour against built-in loopback targets, in well under 30 seconds.

It starts three targets on 127.0.0.1 -- a live HTTP server, a port that refuses (RST to our SYN) and a
server that accepts and never answers -- and shows what aiotcp says about each: the seed program's raw
``HEAD / HTTP/1.0`` exchange, the same through the client with its timings, then ``refused`` and a timeout
with their kinds.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import anyio

from ..client import Client, head
from ..config import Timeouts
from ..errors import AiotcpError
from ..probe import probe_many
from ..probe.output import TextWriter
from ..text import escape_control
from ..transport import tcp_exchange
from .common import make_console

if TYPE_CHECKING:  # rich, the built-in server and the bench are loaded when the demo runs: aiotcp starts faster
    from rich.console import Console

    from ..serve import TargetServer

__all__ = ["demo_bench", "register", "run_demo"]


def register(commands: Any) -> None:
    """Add ``demo`` to the ``aiotcp`` subcommands."""
    demo = commands.add_parser("demo", help="offline tour against built-in loopback targets")
    demo.add_argument("--quick", action="store_true", help="skip the probe and bench parts")
    demo.set_defaults(handler=lambda args: run_demo(quick=args.quick))


async def _tour(console: Console, live: str, refused: str, silent: str) -> int:
    from rich.table import Table

    failures = 0

    console.rule("1. The seed program: write HEAD / HTTP/1.0, read until the server closes")
    console.print(f"$ aiotcp tcp {live} --send 'HEAD / HTTP/1.0\\r\\n\\r\\n'", style="dim")
    result = await tcp_exchange(live, b"HEAD / HTTP/1.0\r\n\r\n", timeout=5)
    console.print(escape_control(result.data.decode("latin-1")).replace("\\r\\n", "\n").rstrip(), markup=False)
    console.print(f"[green]ended: {result.ended}[/] after {len(result.data)} bytes, {result.total_ms:.2f} ms")

    console.rule("2. The same through the client: status, headers, timings per phase")
    console.print(f"$ aiotcp head -v http://{live}/", style="dim")
    async with Client(timeout=5) as client:
        response = await client.head(f"http://{live}/")
        console.print(f"HTTP/{response.http_version} {response.status_code} {response.reason}", markup=False)
        for name, value in response.headers.multi_items():
            console.print(f"{escape_control(name)}: {escape_control(value)}", markup=False)
        timings = Table("dns_ms", "connect_ms", "ttfb_ms", "total_ms", "peer", title="timings")
        t = response.timings
        peer = f"{response.peer[0]}:{response.peer[1]}" if response.peer else "?"
        timings.add_row(f"{t.dns_ms:.3f}", f"{t.connect_ms:.3f}", f"{t.ttfb_ms:.3f}", f"{t.total_ms:.3f}", peer)
        console.print(timings)
        again = await client.get(f"http://{live}/")
        console.print(
            f"a second request reuses the connection: reused={again.timings.reused}, "
            f"total {again.timings.total_ms:.3f} ms, title in body: {'<title>' in again.text}"
        )

    console.rule("3. When it goes wrong, the error names what happened on the wire")
    for label, url, timeout in (
        ("nothing listening (RST answers SYN)", f"http://{refused}/", Timeouts.from_value(3)),
        ("accepts, never answers (deadline 1 s)", f"http://{silent}/", Timeouts.from_value(1)),
    ):
        console.print(f"$ aiotcp head --timeout {timeout.total:g} {url}    # {label}", style="dim")
        started = time.perf_counter()
        try:
            await head(url, timeout=timeout)
        except AiotcpError as exc:
            elapsed = time.perf_counter() - started
            console.print(f"[red]error: {exc.kind}[/]: {escape_control(str(exc))}  [dim]({elapsed:.2f} s)[/]")
        else:  # pragma: no cover - the demo targets are built to fail
            failures += 1
            console.print("[red]expected an error here[/]")
    return failures


def run_demo(*, quick: bool = False) -> int:
    """Run the tour; returns the process exit code."""
    from ..serve import refused_port, running_in_thread, running_silent_in_thread

    console = make_console(sys.stdout)
    console.print(f"[bold]aiotcp demo[/] -- loopback only, no network needed (quick={quick})")
    with ExitStack() as stack:
        server: TargetServer = stack.enter_context(running_in_thread())
        silent = stack.enter_context(running_silent_in_thread())
        refused = stack.enter_context(refused_port())
        live_addr = f"127.0.0.1:{server.port}"
        failures = anyio.run(_tour, console, live_addr, f"127.0.0.1:{refused}", f"127.0.0.1:{silent.port}")
        extras = [] if quick else _extra_parts()
        for part in extras:
            failures += part(console, server)
    console.rule()
    console.print("[green]demo complete[/]" if not failures else f"[red]{failures} demo step(s) failed[/]")
    return 0 if not failures else 1


def _extra_parts() -> list[Callable[[Console, TargetServer], int]]:
    """The chapters that need more than one request: a probe of a mixed list, a short bench."""

    return [_demo_probe, demo_bench]


def _demo_probe(console: Console, server: TargetServer) -> int:
    """Probe a small mixed list: live, redirecting, refused, silent, and a malformed line."""
    from ..serve import refused_port, running_silent_in_thread

    console.rule("4. aiotcp probe: one record per target, whatever happens to it")
    with ExitStack() as stack:
        silent = stack.enter_context(running_silent_in_thread())
        refused = stack.enter_context(refused_port())
        lines = [
            f"127.0.0.1:{server.port}",
            f"http://127.0.0.1:{server.port}/redirect/1",
            f"http://127.0.0.1:{server.port}/status/503",
            "# comments and blank lines are skipped",
            "",
            f"127.0.0.1:{refused}",
            f"127.0.0.1:{silent.port}",
            "not a target!",
            f"127.0.0.1/31:{server.port}",
        ]
        for line in lines:
            console.print(f"  {line}", style="dim", markup=False)
        console.print("$ aiotcp probe targets.txt --timeout 1 --format text --order input", style="dim")
        records = anyio.run(_probe_lines, lines)
    output = io.StringIO()
    writer = TextWriter(output)
    for record in records:
        writer.write(record)
    console.print(output.getvalue().rstrip(), markup=False)
    expected_targets = 8  # the range 127.0.0.0/31 is two addresses
    if len(records) != expected_targets:
        console.print(f"[red]expected {expected_targets} records, got {len(records)}[/]")
        return 1
    return 0


async def _probe_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [result.as_dict() async for result in probe_many(lines, timeout=1, order="input")]


# -- the bench chapter: three seconds of load on the built-in server, then the report -------------------

DEMO_SECONDS = 3.0


def demo_bench(console: Console, server: Any, *, seconds: float = DEMO_SECONDS) -> int:
    """Load ``server`` (a running :class:`~aiotcp.serve.TargetServer`) for ``seconds``; print the report.

    Returns the number of failed checks: the run must get responses, no errors, and exactly as many
    responses as the server counts served (in-flight requests at the end aside).
    """
    from ..bench.config import BenchConfig, available_engines
    from ..bench.report import write_text
    from ..bench.workers import run_bench

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
