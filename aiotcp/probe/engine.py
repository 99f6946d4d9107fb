"""Fan-out probing: one record per target, bounded memory, whatever the length of the list.

Theory of operation
-------------------
``probe_many`` numbers the input (:mod:`.jobs`) and hands the jobs to :func:`probe_jobs`, which runs one of two
engines; both give the same records for the same options (tests/test_probe_lean.py holds them to it):

- the **lean** engine (:mod:`.fast`), when running on asyncio with llhttp: callbacks on the loop, no task per
  target; https and host names are handed, attempt by attempt, to the reference engine's exchange (and so is
  every attempt with redirects followed or through a proxy: ``engine="auto"`` then runs the reference engine,
  see :attr:`ProbeOptions.lean_direct`);
- the **reference** engine (:mod:`.prober` and the pipeline below): portable (asyncio or trio, h11 or llhttp),
  every attempt through :class:`aiotcp.Client`.

The reference pipeline is three stages joined by bounded queues, so memory grows with ``concurrency`` and
never with the number of targets:

1. A *feeder* walks the input lazily (lines, CIDR ranges, port lists) and turns it into numbered
   :class:`Job` s. A line that cannot be parsed becomes a job that already holds its ``invalid_target`` record.
2. ``concurrency`` *workers* take jobs, wait their turn under the global rate limit and the per-host cap, and
   probe: connect, one request with ``Connection: close``, the head and up to ``max_body`` bytes of the body.
   A job gives one record per path (``paths``) and, with ``all_ips``, per address of its name, probed in turn
   (:class:`~aiotcp.probe.attempts.JobRecords`).
   Transient failures are retried with jittered exponential back-off while the per-target deadline allows,
   and a guessed scheme is switched when the answer shows the other was meant (:mod:`.retry` decides).
   A failure never escapes a worker: it becomes the record's ``error`` kind. A worker takes no new job while
   the loop lags (:class:`~aiotcp.probe.pacing.LoopMonitor`).
3. The caller iterates the results, in completion order or, with ``order="input"``, re-ordered through a
   window of at most ``reorder_window`` records (the feeder blocks when the window is full).

Job numbers (``seq``, :mod:`.jobs`) depend only on the input, so they identify a target across runs:
``--resume`` and sharding rely on that.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from contextlib import ExitStack, aclosing
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .fast import lean_available, probe_jobs_lean
from .jobs import Inputs, Job, as_async_iterator, iter_jobs
from .options import WINDOW_STALL_S, ProbeOptions
from .pacing import LoadReport, LoopMonitor
from .prober import Prober
from .records import ProbeResult

__all__ = ["WINDOW_STALL_S", "ProbeOptions", "Prober", "probe_jobs", "probe_many"]

_Item = TypeVar("_Item")


# -- the pipeline ------------------------------------------------------------------------------------------


async def probe_many(
    targets: Inputs,
    options: ProbeOptions | None = None,
    *,
    skip: Callable[[int], bool] | None = None,
    report: LoadReport | None = None,
    on_window_stall: Callable[[], None] | None = None,
    **option_values: Any,
) -> AsyncGenerator[ProbeResult, None]:
    """Probe every target of ``targets``; yield one :class:`ProbeResult` per target, never raising for one.

    ``targets``: an iterable or async iterable of lines (``host``, ``host:port``, URL, ``[v6]:port``, CIDR
    range; blank lines and ``#`` comments skipped) or :class:`~aiotcp.Target` objects.

    Options, as a :class:`ProbeOptions` or as keywords: ``method`` GET|HEAD, ``concurrency`` probes in
    flight, ``timeout`` the total deadline per target (retries included; it starts when the target's turn
    comes, after any wait for a ``rate`` or ``per_host`` slot), ``connect_timeout``, ``rate`` probes
    started per second (global), ``per_host`` probes in flight per host, ``retries`` for the transient kinds
    (``reset``, ``disconnected``, ``connect_timeout``, ``local``, and ``dns`` with ``dns_rcode`` SERVFAIL or
    TIMEOUT, never NXDOMAIN) with jittered exponential ``backoff``, ``follow_redirects``, ``headers``,
    ``max_body`` bytes read for the title, ``order`` ``completion`` or ``input``, ``scheme`` http|https|auto,
    ``ports`` for lines that give no port, ``verify`` TLS certificates (off by default: a prober wants to see
    the service, not judge its certificate), ``resolver`` ``"auto"`` | ``"system"`` | a
    :class:`~aiotcp.resolution.ResolverConfig`, ``resolvers`` (``IP[:PORT]`` to query), ``all_ips`` (one
    record per address of a name, the same input line), ``proxy`` (every probe through it: ``http://``,
    ``socks5://``, ``socks5h://``...; a failure of the proxy's hop is kind ``proxy``), ``paths`` (one record per
    path on every target), ``max_host_errors`` (after that many network errors among a target's records, the
    rest are ``skipped``), ``favicon``, ``facts`` (TLS and certificate facts, hashes and counts), ``ca`` (the CA
    bundle that ``cert_verify_error`` judges against), ``keep_body`` (the body read stays on the record, for
    matchers).

    ``skip(seq)``: jobs for which it returns True are not probed and yield nothing (``--resume`` uses it).
    ``engine``: ``auto`` (lean on asyncio with llhttp, else reference), ``lean`` or ``reference``.
    ``report``: a :class:`~aiotcp.probe.pacing.LoadReport` that receives the run's own load.
    ``on_window_stall``: see :func:`probe_jobs`.

    Raises ``ValueError`` for bad options, before anything is probed. Cancelling the iteration, or leaving it
    early with ``aclose()``, stops every probe and closes every socket. Leave early only through ``aclose()``
    in the iterating task (``async with contextlib.aclosing(probe_many(...)) as results:``): a generator
    left to the garbage collector is closed from another task, where its task group cannot be exited.
    """
    if options is not None and option_values:
        raise ValueError("pass options as a ProbeOptions or as keywords, not both")
    opts = options or ProbeOptions(**option_values)
    # Both generators are closed here, in this task, when the caller leaves early: left to the garbage
    # collector, probe_jobs would be closed from another task and its task group could not exit.
    jobs = iter_jobs(targets, ports=opts.ports)
    results = probe_jobs(jobs, opts, skip=skip, report=report, on_window_stall=on_window_stall)
    async with aclosing(jobs), aclosing(results):
        async for result in results:
            yield result


def probe_jobs(
    jobs: AsyncIterable[Job] | Iterable[Job],
    options: ProbeOptions,
    *,
    skip: Callable[[int], bool] | None = None,
    report: LoadReport | None = None,
    on_window_stall: Callable[[], None] | None = None,
) -> AsyncGenerator[ProbeResult, None]:
    """Probe already numbered jobs (see :func:`iter_jobs`): the engine under :func:`probe_many`, for callers
    that number the input themselves and probe parts of it elsewhere (sharding, ``--workers``, Dask). Call it
    in the task (and on the loop) that iterates it: it picks the engine for that loop.

    The records of one job (several with ``paths`` or ``all_ips``) come one after the other.

    ``report``, when given, receives the run's own load (loop lag, concurrency; :mod:`.pacing`).
    ``on_window_stall()`` is called (from the feeding task) whenever, with ``order="input"``, the next target
    has waited :data:`WINDOW_STALL_S` for room in the re-ordering window: one slow target is holding back the
    records after it, and no new probe starts until it ends.

    Raises ``ValueError`` for ``engine="lean"`` where it cannot run (trio, or without llhttp). (A function that
    returns the engine's generator, not a generator itself: one step less for every record.)
    """
    if lean_available(options):
        return probe_jobs_lean(jobs, options, skip=skip, report=report, on_window_stall=on_window_stall)
    if options.engine == "lean":
        raise ValueError("engine 'lean' runs on an asyncio event loop (this one is not)")
    return _probe_jobs_reference(jobs, options, skip=skip, report=report, on_window_stall=on_window_stall)


async def _probe_jobs_reference(
    jobs: AsyncIterable[Job] | Iterable[Job],
    options: ProbeOptions,
    *,
    skip: Callable[[int], bool] | None,
    report: LoadReport | None,
    on_window_stall: Callable[[], None] | None,
) -> AsyncGenerator[ProbeResult, None]:
    opts = options
    prober = Prober(opts)
    report = report if report is not None else LoadReport()
    report.engine, report.concurrency = "reference", opts.concurrency
    busy = [0]  # workers with a probe in flight
    monitor = LoopMonitor(opts.timeout, opts.concurrency, report, lambda: busy[0])
    # Jobs travel with their dispatch number: contiguous even when `skip` leaves holes in `seq`, so the
    # re-ordering stage knows exactly which record comes next.
    send_jobs, receive_jobs = anyio.create_memory_object_stream[tuple[int, Job]](opts.concurrency)
    send_results, receive_results = anyio.create_memory_object_stream[tuple[int, list[ProbeResult]]](opts.concurrency)
    window = anyio.Semaphore(opts.window) if opts.order == "input" else None

    async def feed() -> None:
        with send_jobs:
            async with aclosing(as_async_iterator(jobs)) as numbered:
                index = 0
                async for job in numbered:
                    if skip is not None and skip(job.seq):
                        continue
                    if window is not None:
                        try:
                            window.acquire_nowait()  # no trip through the event loop when there is room
                        except anyio.WouldBlock:
                            await _wait_for_room(window, on_window_stall)
                    await _put(send_jobs, (index, job))
                    index += 1

    async def work(results: MemoryObjectSendStream[tuple[int, list[ProbeResult]]]) -> None:
        with results:  # the last worker to finish ends the results stream
            while True:
                await monitor.wait_room()  # while the loop lags, fewer probes in flight
                if (item := await _take(receive_jobs)) is None:
                    break
                index, job = item
                busy[0] += 1
                try:
                    records = await prober.probe_records(job)
                finally:
                    busy[0] -= 1
                    monitor.room_made()
                await _put(results, (index, records))

    with ExitStack() as streams:
        # Every stream is closed here too: a task cancelled before its first step never closes its own.
        for stream in (send_jobs, receive_jobs, send_results, receive_results):
            streams.enter_context(stream)
        clones = [streams.enter_context(send_results.clone()) for _ in range(opts.concurrency)]
        send_results.close()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(monitor.run)
                group.start_soon(feed)
                for clone in clones:
                    group.start_soon(work, clone)
                try:
                    if window is None:
                        while (done := await _take(receive_results)) is not None:
                            for result in done[1]:
                                yield result
                    else:
                        async with aclosing(_in_order(receive_results, window)) as ordered:
                            async for records in ordered:
                                for result in records:
                                    yield result
                except GeneratorExit:
                    # aclose(): leave the group normally once the workers have stopped. Left to propagate,
                    # GeneratorExit would reach the caller wrapped in an exception group.
                    return
                finally:
                    group.cancel_scope.cancel()
        finally:
            # After the group: every worker has closed its connection. Shielded: a cancelled caller still
            # gets its sockets closed.
            with anyio.CancelScope(shield=True):
                await prober.client.aclose()


async def _wait_for_room(window: anyio.Semaphore, on_stall: Callable[[], None] | None) -> None:
    if on_stall is not None:
        with anyio.move_on_after(WINDOW_STALL_S):
            await window.acquire()
            return
        on_stall()
    await window.acquire()


# anyio's send() and receive() yield to the event loop on every call, even when the item could pass at once;
# at several hand-offs per target that is a large share of a probe's cost. These wait only when they must.


async def _put(stream: MemoryObjectSendStream[_Item], item: _Item) -> None:
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


async def _take(stream: MemoryObjectReceiveStream[_Item]) -> _Item | None:
    """The next item, or None once the stream has ended."""
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        try:
            return await stream.receive()
        except anyio.EndOfStream:
            return None
    except anyio.EndOfStream:
        return None


async def _in_order(
    results: MemoryObjectReceiveStream[tuple[int, list[ProbeResult]]], window: anyio.Semaphore
) -> AsyncGenerator[list[ProbeResult], None]:
    """Yield each job's records by dispatch number, holding early ones (at most the window's size) until
    their turn."""
    held: dict[int, list[ProbeResult]] = {}
    next_index = 0
    while (item := await _take(results)) is not None:
        index, result = item
        held[index] = result
        while next_index in held:
            ready = held.pop(next_index)
            next_index += 1
            window.release()
            yield ready
