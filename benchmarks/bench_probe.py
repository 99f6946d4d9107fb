"""Probe throughput, CPU, memory and verdicts on loopback, side by side with the bare floor and Go's httprobe.

    python benchmarks/bench_probe.py                         # the 10,000-target list, 3 rounds, all tools
    python benchmarks/bench_probe.py --live 20000 --levels 100,1000,3000,10000      # + all-live, -t 0.5
    python benchmarks/bench_probe.py --lines 1000000 --silent 0 --concurrency 200 --rounds 1   # memory: 1M lines
    python benchmarks/bench_probe.py --aiotcp-path /tmp/aiotcp-before   # another checkout's aiotcp (before/after)
    python benchmarks/bench_probe.py --before-path /tmp/aiotcp-before   # this checkout and another, side by side
    python benchmarks/bench_probe.py --probe-args=--no-facts           # more aiotcp probe flags (the facts' cost)

Tools, alternated round by round:

* ``aiotcp probe`` (its own process; ``--workers 2`` too with ``--workers 2``);
* the **floor**: a bare asyncio Protocol prober (connect, send ``GET /``, parse the status line with httptools,
  close; refused and timed-out targets counted) with none of aiotcp's records, error mapping or limits -- the
  least the Python runtime and uvloop allow per target on this machine;
* **httprobe** (tomnomnom/httprobe, Go) when found: ``$AIOTCP_HTTPROBE``, or ``httprobe`` on ``PATH``. Build it
  from source outside this repository (``go build`` in its checkout); nothing of it belongs here. It tries
  https, then http, on every line, and splits ``-c`` between the two: it runs with ``-c`` twice aiotcp's, so
  that as many of its workers probe http as aiotcp has probes in flight (as the probe issue measured it).

The 10,000-target list: 60 % live targets spread over 50 hosts 127.0.0.1-127.0.0.50, 39 % refused (127.0.2.x,
nothing listening) and 1 % silent (127.0.3.1: accepts, never answers); ``-t 1``. With ``--live N``: N live
targets, ``-t 0.5``, at each ``--levels`` concurrency, counting timeouts (every target answers: each timeout is
a false verdict) -- the open-file limit is raised to the hard limit first, and a level that does not fit is
clamped with a warning. Live targets are nginx with one worker (when installed, ``--server auto``) or the
built-in server, in processes of their own, as are the silent target; the probers run one at a time.

Printed per run: wall seconds, CPU seconds (user + system of the process and its children, from wait4),
CPU per target, peak RSS (the largest process), and the verdicts. Then medians, spreads and the ratios of
the goals: aiotcp wall / httprobe wall (<= 1), aiotcp CPU / floor CPU (<= 1.5), aiotcp RSS / httprobe RSS at
``-c 3000`` (<= 1). Each aiotcp checkout is byte-compiled first, as installing it would; the start-up CPU of
both Python probers (an empty list) is measured once and the CPU ratio is printed again without it. The
machine is shared with other work: compare ratios within one run, not figures across runs. Traffic stays on
127.0.0.0/8; every run is bounded by its list and its timeout (and killed after ``--run-timeout``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_targets import find_nginx, free_port, run_nginx

LIVE_HOSTS = [f"127.0.0.{i}" for i in range(1, 51)]
SILENT_HOST = "127.0.3.1"
TIMEOUT_KINDS = {"timeout", "read_timeout", "connect_timeout"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FD_RESERVE = 128


# -- targets -------------------------------------------------------------------------------------------------


def _serve(port_queue: multiprocessing.Queue, stop: multiprocessing.Event, live: bool) -> None:  # type: ignore[type-arg]
    """Built-in targets in a process of their own: the live servers (unless nginx serves them), the silent one."""
    import asyncio

    from aiotcp.serve import SilentServer, TargetServer

    async def main() -> None:
        servers: list[Any] = []
        live_port = 0
        if live:
            first = TargetServer(LIVE_HOSTS[0], 0)
            await first.start()
            servers.append(first)
            live_port = first.port
            for host in LIVE_HOSTS[1:]:
                server = TargetServer(host, live_port)
                await server.start()
                servers.append(server)
        silent = SilentServer(SILENT_HOST, 0)
        await silent.start()
        servers.append(silent)
        port_queue.put((live_port, silent.port))
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        for server in servers:
            await server.aclose()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


_NGINX_CONF = """\
worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log crit;
events {{ worker_connections {connections}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
{listens}
        location / {{ default_type "text/html; charset=utf-8"; return 200 "{page}"; }}
    }}
}}
"""
PAGE = "<!DOCTYPE html><html><head><title>nginx probe target</title></head><body>ok</body></html>"


@contextlib.contextmanager
def nginx_live(binary: str) -> Iterator[tuple[int, str]]:
    """nginx, one worker, listening on 127.0.0.1-50 and one free port; yields (port, description)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = min(hard if hard != resource.RLIM_INFINITY else 65536, 65536)
    with tempfile.TemporaryDirectory(prefix="aiotcp-bench-probe-nginx-") as directory:
        port = free_port()
        listens = "\n".join(f"        listen {host}:{port} backlog=4096;" for host in LIVE_HOSTS)
        config = _NGINX_CONF.format(
            dir=directory, port=port, listens=listens, page=PAGE, nofile=nofile, connections=nofile - 64
        )
        with run_nginx(binary, directory, config, port) as version:
            yield port, f"{version}, 1 worker"


@contextlib.contextmanager
def targets(server: str) -> Iterator[tuple[int, int, str]]:
    """Live targets (nginx or built-in) and the silent one; yields (live port, silent port, description)."""
    binary = find_nginx() if server in ("auto", "nginx") else None
    if server == "nginx" and binary is None:
        raise SystemExit("--server nginx: nginx not found")
    with contextlib.ExitStack() as stack:
        live_port, what = 0, "aiotcp serve (built-in), 1 process"
        if binary is not None:
            live_port, what = stack.enter_context(nginx_live(binary))
        ports: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        stop = multiprocessing.Event()
        process = multiprocessing.Process(target=_serve, args=(ports, stop, binary is None), daemon=True)
        process.start()
        try:
            built_in_port, silent_port = ports.get(timeout=30)
            yield live_port or built_in_port, silent_port, what
        finally:
            stop.set()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def write_list(path: str, lines: int, live_port: int, silent_port: int, silent_share: float) -> None:
    """60 % live, ``silent_share`` silent, the rest refused; interleaved so every stretch has the same mix."""
    silent_every = round(1 / silent_share) if silent_share > 0 else 0
    with open(path, "w") as file:
        for i in range(lines):
            if silent_every and i % silent_every == silent_every - 1:
                file.write(f"{SILENT_HOST}:{silent_port}\n")
            elif i % 5 < 3:  # 3 of 5 = 60 %
                file.write(f"{LIVE_HOSTS[i % len(LIVE_HOSTS)]}:{live_port}\n")
            else:
                file.write(f"127.0.2.{1 + i % 250}:{live_port}\n")


def write_live_list(path: str, lines: int, live_port: int) -> None:
    with open(path, "w") as file:
        for i in range(lines):
            file.write(f"{LIVE_HOSTS[i % len(LIVE_HOSTS)]}:{live_port}\n")


# -- the probers ---------------------------------------------------------------------------------------------

FLOOR = r"""
import asyncio, collections, json, sys
import httptools, uvloop

class Probe(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    def data_received(self, data):
        self.parser.feed_data(data)
    def on_message_complete(self):
        if not self.done.done():
            self.done.set_result(self.parser.get_status_code())
        self.transport.close()
    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result("disconnected")

async def probe(loop, host, port, timeout):
    done = loop.create_future()
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(lambda: Probe(done), host, port)
            try:
                return await done
            finally:
                transport.close()
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"

async def main(path, concurrency, timeout):
    loop = asyncio.get_running_loop()
    counts = collections.Counter()
    lines = (line.strip().rpartition(":") for line in open(path))
    async def worker():
        for host, _, port in lines:
            counts[await probe(loop, host, int(port), timeout)] += 1
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    print(json.dumps({str(kind): count for kind, count in counts.items()}))

uvloop.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


@dataclass
class Run:
    tool: str
    wall: float
    cpu: float
    rss_mb: float
    targets: int
    verdicts: dict[str, int] = field(default_factory=dict)
    load: dict[str, Any] | None = None

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.targets * 1e6 if self.targets else 0.0

    @property
    def timeouts(self) -> int:
        return sum(count for kind, count in self.verdicts.items() if kind in TIMEOUT_KINDS)

    def line(self) -> str:
        verdicts = ", ".join(
            f"{kind} {count:,}" for kind, count in sorted(self.verdicts.items(), key=lambda kv: -kv[1])
        )
        load = ""
        if self.load:
            load = (
                f"  [lean: mean {self.load['concurrency_mean']:,.0f} in flight, lag p99"
                f" {self.load['loop_lag_ms']['p99']:g} ms, capped {self.load['capped_share']:.0%}]"
            )
        return (
            f"  {self.tool:<22}{self.wall:>8.2f} s{self.cpu:>8.2f} s{self.cpu_us:>9.1f} µs{self.rss_mb:>8.1f} MB"
            f"   {verdicts}{load}"
        )


def measure(command: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, Any, int]:
    """Run ``command``; wall seconds, its rusage (children included) and exit code. Killed after ``timeout``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            return time.perf_counter() - started, usage, os.waitstatus_to_exitcode(status)
        if time.perf_counter() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            raise RuntimeError(f"{command[0]} ran over {timeout:g} s: killed")
        time.sleep(0.005)


def run_aiotcp(
    args: argparse.Namespace,
    path: str,
    lines: int,
    concurrency: int,
    timeout: float,
    tmp: str,
    extra: list[str],
    checkout: str | None = None,
) -> Run:
    """``aiotcp probe`` from ``checkout`` (default ``--aiotcp-path``; another one is named in the tool's name)."""
    out, summary = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "summary.json")
    env = {**os.environ, "PYTHONPATH": checkout or args.aiotcp_path}
    extra = [*extra, *shlex.split(args.probe_args)]
    command = [
        sys.executable,
        "-m",
        "aiotcp",
        "probe",
        path,
        "-q",
        "-o",
        out,
        "-c",
        str(concurrency),
        "-t",
        str(timeout),
        *extra,
    ]
    if args.summary:
        command += ["--summary-json", summary]
    wall, usage, status = measure(command, args.run_timeout, env)
    if status != 0:
        raise RuntimeError(f"aiotcp probe exited with status {status}")
    kinds: collections.Counter[str] = collections.Counter()
    records = 0
    with open(out) as file:
        for line in file:
            record = json.loads(line)
            kinds[record["error"] or str(record["status_code"])] += 1
            records += 1
    if records != lines:
        raise RuntimeError(f"aiotcp probe wrote {records} records for {lines} lines")
    load = None
    if args.summary:
        with open(summary) as file:
            load = json.load(file)["load"]
    name = "aiotcp probe" + (" " + " ".join(extra) if extra else "") + (" (before)" if checkout else "")
    return Run(name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, lines, dict(kinds), load)


def compile_checkout(checkout: str) -> None:
    """Byte-compile a checkout's ``aiotcp`` as installing it would (pip compiles what it installs).

    Without this, a run with ``PYTHONDONTWRITEBYTECODE`` set (or from a read-only checkout) compiles every module
    from source at each start -- 50-80 ms of CPU here that no installed aiotcp pays, counted against it and not
    against the one-file floor. ``py_compile`` writes the caches whatever that variable says.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(checkout, "aiotcp")], check=True)


def measure_start(args: argparse.Namespace, tmp: str) -> tuple[float, float]:
    """CPU seconds of starting and stopping: ``aiotcp probe`` and the floor on an empty list (medians of 3)."""
    empty = os.path.join(tmp, "empty.txt")
    open(empty, "w").close()
    aiotcp = [run_aiotcp(args, empty, 0, 1, 1.0, tmp, []).cpu for _ in range(3)]
    floor = [run_floor(args, empty, 0, 1, 1.0, tmp).cpu for _ in range(3)]
    return statistics.median(aiotcp), statistics.median(floor)


def run_floor(args: argparse.Namespace, path: str, lines: int, concurrency: int, timeout: float, tmp: str) -> Run:
    script = os.path.join(tmp, "floor.py")
    with open(script, "w") as file:
        file.write(FLOOR)
    out = os.path.join(tmp, "floor.out")
    with open(out, "w") as file:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, script, path, str(concurrency), str(timeout)], stdout=file)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the floor prober failed")
    with open(out) as file:
        counts = json.load(file)
    return Run(
        "floor (bare Protocol)",
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        lines,
        {str(k): v for k, v in counts.items()},
    )


def run_httprobe(args: argparse.Namespace, path: str, lines: int, concurrency: int, timeout: float, tmp: str) -> Run:
    out = os.path.join(tmp, "httprobe.out")
    with open(path, "rb") as source, open(out, "wb") as sink:
        started = time.perf_counter()
        command = [args.httprobe, "-c", str(2 * concurrency), "-t", str(round(timeout * 1000))]
        process = subprocess.Popen(command, stdin=source, stdout=sink, stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    with open(out) as file:
        found = collections.Counter(line.split(":", 1)[0] for line in file)
    verdicts = {f"found ({scheme})": count for scheme, count in found.items()}
    return Run(
        f"httprobe -c {2 * concurrency}", wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, lines, verdicts
    )


def find_httprobe(given: str | None) -> str | None:
    candidate = given or os.environ.get("AIOTCP_HTTPROBE") or shutil.which("httprobe")
    return candidate if candidate and os.access(candidate, os.X_OK) else None


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft open-file limit (children inherit it); the concurrency that fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + FD_RESERVE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return min(wanted, soft - FD_RESERVE)


# -- reports -------------------------------------------------------------------------------------------------


def spread(values: list[float], fmt: str = ".2f") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def summarize(runs: dict[str, list[Run]], aiotcp: str, start: tuple[float, float] | None = None) -> dict[str, Any]:
    print("  medians (min-max):")
    for tool, done in runs.items():
        print(
            f"    {tool:<22} wall {spread([r.wall for r in done])} s, cpu {spread([r.cpu for r in done])} s,"
            f" {spread([r.cpu_us for r in done], '.1f')} µs/target, RSS {spread([r.rss_mb for r in done], '.1f')} MB"
        )
    ratios: dict[str, Any] = {}
    rounds = len(runs[aiotcp])
    floor = runs.get("floor (bare Protocol)")
    before = next((tool for tool in runs if tool.endswith("(before)")), None)
    if floor:
        cpu = [runs[aiotcp][i].cpu / floor[i].cpu for i in range(rounds)]
        ratios["cpu_vs_floor"] = cpu
        print(f"  aiotcp CPU / floor CPU, per round: {', '.join(f'{r:.2f}' for r in cpu)} (goal <= 1.5)")
        if start is not None:
            # The same ratio without the start-up each process pays once, whatever the list's length.
            aiotcp_start, floor_start = start
            cpu = [(runs[aiotcp][i].cpu - aiotcp_start) / (floor[i].cpu - floor_start) for i in range(rounds)]
            ratios["cpu_vs_floor_after_start"] = cpu
            print(
                f"  the same less start-up (aiotcp {aiotcp_start:.2f} s, floor {floor_start:.2f} s): "
                f"{', '.join(f'{r:.2f}' for r in cpu)}"
            )
        if before is not None:
            cpu = [runs[before][i].cpu / floor[i].cpu for i in range(rounds)]
            ratios["before_cpu_vs_floor"] = cpu
            print(f"  before CPU / floor CPU, per round: {', '.join(f'{r:.2f}' for r in cpu)}")
    if before is not None:
        cpu = [runs[aiotcp][i].cpu / runs[before][i].cpu for i in range(rounds)]
        ratios["cpu_vs_before"] = cpu
        print(f"  aiotcp CPU / before CPU, per round: {', '.join(f'{r:.2f}' for r in cpu)}")
    for tool in runs:
        if tool.startswith("httprobe"):
            wall = [runs[aiotcp][i].wall / runs[tool][i].wall for i in range(rounds)]
            rss = [runs[aiotcp][i].rss_mb / runs[tool][i].rss_mb for i in range(rounds)]
            ratios["wall_vs_httprobe"], ratios["rss_vs_httprobe"] = wall, rss
            print(f"  aiotcp wall / httprobe wall, per round: {', '.join(f'{r:.2f}' for r in wall)} (goal <= 1)")
            print(f"  aiotcp RSS / httprobe RSS, per round: {', '.join(f'{r:.2f}' for r in rss)}")
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000, help="the mixed list's length (10000; 0: skip it)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--silent", type=float, default=0.01, help="share of silent targets (0.01)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--live", type=int, default=0, help="also an all-live list of this many targets")
    parser.add_argument("--live-timeout", type=float, default=0.5)
    parser.add_argument("--levels", default="100,1000,3000,10000", help="concurrency levels of the all-live runs")
    parser.add_argument("--server", choices=["auto", "nginx", "builtin"], default="auto", help="live targets")
    parser.add_argument("--httprobe", help="path of httprobe (default: $AIOTCP_HTTPROBE, or httprobe on PATH)")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare floor prober")
    parser.add_argument("--baseline", action="store_true", help="(the floor runs by default now; kept for old scripts)")
    parser.add_argument("--workers", type=int, default=0, help="also run aiotcp probe --workers N")
    parser.add_argument("--aiotcp-path", default=REPO, help="the aiotcp checkout to run (PYTHONPATH)")
    parser.add_argument("--before-path", help="also run another checkout's aiotcp, round by round (before/after)")
    parser.add_argument("--probe-args", default="", help="more flags for aiotcp probe, e.g. --no-facts")
    parser.add_argument("--no-summary", dest="summary", action="store_false", help="an aiotcp without --summary-json")
    parser.add_argument("--run-timeout", type=float, default=600.0, help="kill a run after this long (600 s)")
    parser.add_argument("--json", help="write every run and ratio to this file")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20):
        parser.error("--rounds 1-20: every run here is bounded")
    args.httprobe = find_httprobe(args.httprobe)
    levels = [int(level) for level in args.levels.split(",") if level]
    document: dict[str, Any] = {"machine": _machine(), "aiotcp_path": args.aiotcp_path, "suites": {}}
    for checkout in filter(None, (args.aiotcp_path, args.before_path)):
        compile_checkout(checkout)

    with targets(args.server) as (live_port, silent_port, what), tempfile.TemporaryDirectory() as tmp:
        print(f"# {document['machine']}")
        httprobe = args.httprobe or "not found (set AIOTCP_HTTPROBE)"
        print(f"# live targets: {what}; httprobe: {httprobe}; aiotcp from {args.aiotcp_path}")
        args.start = None if args.no_floor else measure_start(args, tmp)
        if args.start is not None:
            document["start_cpu_s"] = {"aiotcp": args.start[0], "floor": args.start[1]}
            print(
                f"# start-up CPU (an empty list, median of 3): aiotcp probe {args.start[0]:.3f} s,"
                f" floor {args.start[1]:.3f} s"
            )
        if args.lines:
            path = os.path.join(tmp, "targets.txt")
            write_list(path, args.lines, live_port, silent_port, args.silent)
            silent = args.silent * 100
            title = (
                f"{args.lines:,} targets (60 % live, {40 - silent:g} % refused, {silent:g} % silent),"
                f" -t {args.timeout:g}, -c {args.concurrency}"
            )
            document["suites"]["mixed"] = _suite(args, title, path, args.lines, args.concurrency, args.timeout, tmp)
        if args.live:
            path = os.path.join(tmp, "live.txt")
            write_live_list(path, args.live, live_port)
            for level in levels:
                fits = raise_fd_limit(level)
                if fits < level:
                    print(f"warning: -c {level} does not fit the open-file limit; using {fits}")
                title = f"{args.live:,} live targets, -t {args.live_timeout:g}, -c {fits}"
                document["suites"][f"live-c{fits}"] = _suite(args, title, path, args.live, fits, args.live_timeout, tmp)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(document, file, indent=2)
    return 0


def _suite(
    args: argparse.Namespace, title: str, path: str, lines: int, concurrency: int, timeout: float, tmp: str
) -> dict[str, Any]:
    print(f"\n## {title}; {args.rounds} rounds, tools alternated")
    print(f"  {'tool':<22}{'wall':>10}{'cpu':>10}{'cpu/target':>12}{'peak RSS':>11}   verdicts")
    runs: dict[str, list[Run]] = collections.defaultdict(list)
    aiotcp_name = ""
    for round_index in range(1, args.rounds + 1):
        print(f" round {round_index}")
        done = [run_aiotcp(args, path, lines, concurrency, timeout, tmp, [])]
        aiotcp_name = done[0].tool
        if args.before_path:
            done.append(run_aiotcp(args, path, lines, concurrency, timeout, tmp, [], checkout=args.before_path))
        if args.workers:
            done.append(run_aiotcp(args, path, lines, concurrency, timeout, tmp, ["--workers", str(args.workers)]))
        if not args.no_floor:
            done.append(run_floor(args, path, lines, concurrency, timeout, tmp))
        if args.httprobe:
            done.append(run_httprobe(args, path, lines, concurrency, timeout, tmp))
        for run in done:
            runs[run.tool].append(run)
            print(run.line())
    ratios = summarize(runs, aiotcp_name, args.start)
    return {
        "title": title,
        "runs": {
            tool: [vars(run) | {"cpu_us": run.cpu_us, "timeouts": run.timeouts} for run in done]
            for tool, done in runs.items()
        },
        "ratios": ratios,
    }


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, Linux {platform.release()},"
        f" load average {load:.1f} at start"
    )


if __name__ == "__main__":
    sys.exit(main())
