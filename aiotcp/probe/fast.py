"""The lean engine: probes driven by callbacks on the running asyncio loop, llhttp through httptools.

Theory of operation
-------------------
A plain-http attempt at an IP address (most of any list) is a non-blocking socket and a few callbacks: the
socket is created and ``connect_ex`` issued, and the request sent at once (where the handshake is already
done when connect returns -- loopback, a LAN -- it goes out; elsewhere ``send`` says EAGAIN and the socket is
watched for writing). Readiness comes from an epoll set of our own, which the loop watches as one fd (one
``epoll_ctl`` per target; nothing to undo, closing the socket drops it). Each ``recv`` goes to
:class:`ResponseReader`: llhttp alone while :class:`~aiotcp.http11.PlainResponseParser` vouches for the
response, :class:`~aiotcp.http11.HttptoolsProtocol` (every read replayed) from its first doubt -- the parser
the reference engine uses, so every guard and verdict of the hostile suite holds. No task, no future, no
stream, no pool, no timer per target (the deadlines of all probes are one queue, looked at every tick of the
loop monitor): the record is filled once, from the head and the first ``max_body`` bytes (decoded, when a
server compresses though asked for ``identity``), by the function the reference engine fills it with
(:func:`~aiotcp.probe.records.fill_from_head`: fingerprints, quirks, the body kept for matchers), and the
socket closed.

Every other attempt -- https, a host name (DNS, happy eyeballs) -- is handed to the reference engine's
:meth:`~aiotcp.probe.prober.Prober.exchange` in a task, with the same budget; a target can switch paths between
attempts (an http guess answered by TLS goes on as https). So are the favicon's requests after a lean page
(:meth:`~aiotcp.probe.prober.Prober.fetch_favicon`) and, with ``all_ips``, the whole job of a name
(:meth:`~aiotcp.probe.prober.Prober.probe_records`). With ``follow_redirects`` or a ``proxy`` every attempt is
the client's (:attr:`~aiotcp.probe.options.ProbeOptions.lean_direct`): ``engine="auto"`` then runs the
reference engine instead (:func:`lean_available`). What happens between attempts (the error recorded, retry,
scheme switch) is :class:`~aiotcp.probe.attempts.TargetAttempts`, and between the records of a job (paths,
``skipped`` after ``max_host_errors``) :class:`~aiotcp.probe.attempts.JobRecords`, both shared with the
reference engine, so the two make the same records from the same events (tests/test_probe_lean.py).

Pipeline. A feeder task takes numbered jobs and starts probes while the probes in flight are under the cap of
the :class:`~aiotcp.probe.pacing.LoopMonitor` (``concurrency``, lowered while the loop lags) and there is
room in the input-order window; it starts at most :data:`LAUNCH_BATCH` per loop iteration, so a free
``-c 10000`` never issues 10,000 connects before reading a single answer. A job's records (one per path) are
probed one after the other and go out together; finished records go to a queue that the generator yields
from.

Deadlines measure the network, not our loop:

- the clock of a target starts when its turn comes (after our per-host and rate limits), and each phase's
  deadline is set when that phase starts;
- a deadline is extended by the stall credit that accrued during the probe (the loop's lateness beyond its
  stall tolerance: our CPU, a hog, a garbage collection; at most one more ``timeout``);
- before a deadline judges, the probe looks at what the kernel already holds: a connect that completed, bytes
  that arrived. Only what is still missing then is a timeout, and the record says in which phase
  (``timeout_phase``: connect, write or read).

A deadline is judged at the first tick of the monitor after it (every :data:`~aiotcp.probe.pacing.TICK_S`):
at most 10 ms late, which the record's ``time_ms`` shows.

A cost to know of: each system call here (``connect``, ``send``, ``recv``, ``close``) is a Python call that lets
go of the GIL, where uvloop's transports make theirs in C holding it. In a process with a thread that keeps the
GIL busy, the loop waits a switch interval (5 ms by default) at each: about 20 ms per target. The verdicts stay
true (the deadlines above), only slower; the reference engine (``engine="reference"``) waits once per loop
iteration instead, and in the same situation reports live targets as timed out (tests/test_probe_lean.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import itertools
import os
import random
import select
import socket
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from typing import Any, Final, Literal

import anyio

from ..budget import Budget
from ..client import Client
from ..config import Limits
from ..decoding import BodyDecoder, make_decoder
from ..error_mapping import map_connect_error, map_stream_error
from ..errors import AiotcpError
from ..http11 import HttptoolsProtocol, PlainResponseParser, Request, ResponseEnd, ResponseHead
from ..targets import Target
from .attempts import JobRecords, TargetAttempts
from .jobs import Job, as_async_iterator
from .options import WINDOW_STALL_S, ProbeOptions
from .pacing import LoadReport, LoopMonitor
from .prober import Prober
from .records import ProbeResult, fill_from_head, is_ip, now_iso
from .retry import Retry, Stop, Switch

__all__ = ["LAUNCH_BATCH", "ResponseReader", "content_encoding", "lean_available", "probe_jobs_lean"]

#: Probes started per loop iteration at most (then the loop reads what came back before starting more).
LAUNCH_BATCH: Final = 64
_READ_SIZE: Final = 64 * 1024
# Reads a deadline makes of what the kernel holds before it judges (a flood cannot keep it from judging).
_DRAIN_READS: Final = 16
_SLACK: Final = 1e-3  # the loop's timers keep milliseconds: one may fire a hair early
_CONNECTING: Final = (0, errno.EINPROGRESS)
# What send() says on a socket whose connect is still under way (Linux: EAGAIN; BSDs: ENOTCONN).
_STILL_CONNECTING: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOTCONN, errno.EINPROGRESS})
_NONBLOCK: Final = getattr(socket, "SOCK_NONBLOCK", 0)
_EPOLLIN: Final = getattr(select, "EPOLLIN", 1)
_EPOLLOUT: Final = getattr(select, "EPOLLOUT", 4)
_EPOLL_ERR: Final = getattr(select, "EPOLLERR", 8) | getattr(select, "EPOLLHUP", 16)
_EPOLLIN_OR_ERR: Final = _EPOLLIN | _EPOLL_ERR
_EPOLLOUT_OR_ERR: Final = _EPOLLOUT | _EPOLL_ERR
_STREAM: Final = socket.SOCK_STREAM | _NONBLOCK
_SAMPLE_TARGET: Final = Target("http", "127.0.0.1", 80, "/")
Phase = Literal["connect", "write", "read"]


def lean_available(options: ProbeOptions) -> bool:
    """Whether the lean engine runs these options here: on an asyncio loop, parsing with llhttp, unless
    ``engine="auto"`` and it would make no attempt itself (:attr:`ProbeOptions.lean_direct`)."""
    if options.engine == "reference" or options.backend != "httptools":
        return False
    if options.engine == "auto" and not options.lean_direct:
        return False
    try:
        asyncio.get_running_loop()  # trio runs none
    except RuntimeError:
        return False
    return True


def _ms(since: float, until: float) -> float:
    return round((until - since) * 1000.0, 3)


class _Requests:
    """The request bytes of a lean attempt: what :meth:`Client.build_request` gives, from a template.

    Requests differ only in their path and Host, so the headers after Host are encoded once; with a Host of
    the user's own (``-H 'Host: ...'``) every request is built in full.
    """

    def __init__(self, client: Client, method: str) -> None:
        self._client = client
        self._method = method
        #: The request the parser is told about (method and ``Connection: close``: all it looks at).
        self.sample: Request = client.build_request(method=method, target=_SAMPLE_TARGET)
        wire = self.sample.encode()
        self._start = method.upper().encode("ascii") + b" "
        head = self._start + b"/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        self._tail: bytes | None = wire[len(head) :] if wire.startswith(head) else None

    def wire(self, target: Target) -> bytes:
        if self._tail is None:
            return self._client.build_request(method=self._method, target=target).encode()
        # A Target's path and authority are validated printable ASCII: what Request would check again.
        return b"".join(
            (
                self._start,
                target.path.encode("ascii"),
                b" HTTP/1.1\r\nHost: ",
                target.authority.encode("ascii"),
                b"\r\n",
                self._tail,
            )
        )


class ResponseReader:
    """The response of one lean attempt, sans I/O: what the reference engine makes of the same reads.

    The reads go to :class:`~aiotcp.http11.PlainResponseParser` (llhttp alone) while it vouches for the
    response; at its first doubt every read so far is replayed into a fresh
    :class:`~aiotcp.http11.HttptoolsProtocol`, which then reads the rest. The events are taken as
    :meth:`Prober.exchange <aiotcp.probe.prober.Prober.exchange>` takes them through the client: the head, then
    the body until it ends or reaches ``max_body`` bytes (then reading stops: what would come after is never
    looked at). With ``decode``, a body sent with a ``Content-Encoding`` the client decodes (a server that
    compresses though asked for ``identity``) goes through the client's decoder
    (:func:`~aiotcp.decoding.make_decoder`, without caps, as the prober's client has none) and ``max_body``
    counts decoded bytes, as ``Response.stream()`` gives them to the reference engine.
    """

    __slots__ = (
        "_body",
        "_decode",
        "_decoder",
        "_fed",
        "_head",
        "_limits",
        "_max_body",
        "_parser",
        "_plain",
        "_reads",
        "_request",
    )

    def __init__(self, limits: Limits, request: Request, max_body: int, *, plain: bool, decode: bool) -> None:
        self._limits = limits
        self._request = request  # the parser reads its method and Connection: close
        self._max_body = max_body
        self._decode = decode
        self._plain: PlainResponseParser | None = PlainResponseParser() if plain else None
        self._reads: list[bytes] = []  # while plain: every read so far (for the replay)
        self._parser: HttptoolsProtocol | None = None if plain else self._new_parser()
        self._head: ResponseHead | None = None  # once the body is being read
        self._decoder: BodyDecoder | None = None
        self._fed = 0  # while plain, with a decoder: the bytes of the plain parser's body decoded so far
        self._body = bytearray()

    def __repr__(self) -> str:
        by = "llhttp" if self._plain is not None else "HttptoolsProtocol"
        decoding = f" decoding={self._decoder.encoding}" if self._decoder is not None else ""
        return f"<ResponseReader by {by} head={self._head is not None} body_bytes={len(self._body)}{decoding}>"

    @property
    def by_llhttp_alone(self) -> bool:
        """Whether llhttp alone has read the response so far (PlainResponseParser vouched for all of it)."""
        return self._plain is not None

    def _new_parser(self) -> HttptoolsProtocol:
        parser = HttptoolsProtocol(self._limits)
        parser.send_request(self._request)
        return parser

    def feed(self, data: bytes) -> tuple[ResponseHead, bytes] | None:
        """Take one read (``b""``: the peer closed). The head and the body (at most ``max_body`` bytes) once
        the response is read as far as the prober reads it; None while more is needed.

        Raises the :class:`~aiotcp.errors.AiotcpError` the reference engine would (``protocol``,
        ``too_large``, ``disconnected``; ``protocol`` for a body that does not decode); after a result or an
        error, feed no more.
        """
        plain = self._plain
        if plain is None:
            return self._feed_parser(data)
        if plain.feed(data, self._limits):
            head = plain.head
            assert head is not None
            if self._head is None:
                self._start_body(head)
            if self._decoder is None:
                if plain.complete or len(plain.body) >= self._max_body:
                    return head, bytes(plain.body[: self._max_body])
            elif (done := self._decode_plain(plain)) is not None:
                return done
            self._reads.append(data)
            return None
        # llhttp alone cannot vouch for this response: HttptoolsProtocol reads it from the start.
        plain.close()
        reads, self._reads, self._plain = self._reads, [], None
        reads.append(data)
        self._parser = self._new_parser()
        self._head, self._decoder, self._fed, self._body = None, None, 0, bytearray()
        for read in reads:
            if (done := self._feed_parser(read)) is not None:
                return done
        return None

    def close(self) -> None:
        """The attempt is over: let go of llhttp (see :meth:`PlainResponseParser.close`)."""
        if self._plain is not None:
            self._plain.close()

    def _decode_plain(self, plain: PlainResponseParser) -> tuple[ResponseHead, bytes] | None:
        head = self._head
        assert head is not None
        raw = plain.body
        if len(raw) > self._fed:
            fresh = bytes(raw[self._fed :])
            self._fed = len(raw)
            if self._take(fresh):
                return head, bytes(self._body[: self._max_body])
        if plain.complete:
            self._finish_body()
            return head, bytes(self._body[: self._max_body])
        return None

    def _feed_parser(self, data: bytes) -> tuple[ResponseHead, bytes] | None:
        parser = self._parser
        assert parser is not None
        parser.receive_data(data)
        max_body = self._max_body
        head = self._head
        if head is None:
            event = parser.next_event()
            if event is None:
                return None
            assert isinstance(event, ResponseHead)
            if not max_body:
                return event, b""
            head = self._start_body(event)
        while (event := parser.next_event()) is not None:
            if isinstance(event, ResponseEnd):
                self._finish_body()
                return head, bytes(self._body[:max_body])
            assert isinstance(event, bytes)
            if self._take(event):
                return head, bytes(self._body[:max_body])  # enough for a title
        return None

    def _start_body(self, head: ResponseHead) -> ResponseHead:
        """The head came: the body is read from here, through a decoder when the client would decode it."""
        self._head = head
        if self._decode and self._max_body:
            encoding = content_encoding(head.headers)
            if encoding is not None:
                self._decoder = make_decoder(encoding, None, None)
        return head

    def _take(self, raw: bytes) -> bool:
        """Body bytes as read (decoded here when they must be); True once ``max_body`` bytes are in."""
        decoder = self._decoder
        if decoder is None:
            self._body += raw
        else:
            for piece in decoder.feed(raw):
                self._body += piece
        return len(self._body) >= self._max_body

    def _finish_body(self) -> None:
        """The body ended: the decoder's last bytes."""
        if self._decoder is not None:
            for piece in self._decoder.end():
                self._body += piece


def content_encoding(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The ``Content-Encoding`` of a head as the client reads it (repeated fields joined with ``", "``), or
    None."""
    encoding: bytes | None = None
    for name, value in headers:
        if len(name) == 16 and name.lower() == b"content-encoding":
            encoding = value if encoding is None else encoding + b", " + value
    return None if encoding is None else encoding.decode("latin-1")


class _LoopWatch:
    """Readiness of the probes' sockets through the loop's own ``add_reader`` / ``add_writer``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __repr__(self) -> str:
        return "<_LoopWatch through the loop's add_reader/add_writer>"

    def set(self, probe: _Probe, read: bool, write: bool) -> None:
        """Watch ``probe.fd`` for reading and/or writing (both False: for nothing)."""
        loop, fd = self.loop, probe.fd
        # The reader first: on uvloop, dropping the last interest of an fd closes its watch and the next
        # interest opens a new one (two system calls more).
        if read and not probe.reading:
            loop.add_reader(fd, probe.on_readable)
        if write and not probe.writing:
            loop.add_writer(fd, probe.on_writable)
        if not write and probe.writing:
            loop.remove_writer(fd)
        if not read and probe.reading:
            loop.remove_reader(fd)
        probe.reading, probe.writing = read, write

    def close(self) -> None:
        pass


class _EpollWatch:
    """Readiness of the probes' sockets through an epoll set of our own, which the loop watches as one fd.

    Per probe that is one ``epoll_ctl`` (ADD; a MOD if the connect had to be waited for), and none to leave:
    closing a socket (never ``dup()``-ed) drops it from the set. Through the loop's ``add_reader`` /
    ``add_writer`` (libuv's poll handles) the same costs six ``epoll_ctl`` and an ``ioctl``. An event for an
    fd that was closed and opened again during the same dispatch is stale and skipped (level-triggered: the
    new socket's own events come at the next poll).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._probes: dict[int, _Probe] = {}
        self._fresh: set[int] = set()  # fds (re)registered during the dispatch under way
        self._dispatching = False
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    def __repr__(self) -> str:
        return f"<_EpollWatch fd={self._epoll.fileno()} watched={len(self._probes)}>"

    def set(self, probe: _Probe, read: bool, write: bool) -> None:
        """Watch ``probe.fd`` for reading and/or writing (both False: for nothing)."""
        fd = probe.fd
        mask = (_EPOLLIN if read else 0) | (_EPOLLOUT if write else 0)
        if probe.reading or probe.writing:
            if mask:
                self._epoll.modify(fd, mask)
            else:
                self._epoll.unregister(fd)
                del self._probes[fd]
        elif mask:
            self._epoll.register(fd, mask)
            self._probes[fd] = probe
            if self._dispatching:
                self._fresh.add(fd)
        probe.reading, probe.writing = read, write

    def forget(self, probe: _Probe) -> None:
        """``probe.fd`` is about to be closed (which takes it out of the set)."""
        if probe.reading or probe.writing:
            del self._probes[probe.fd]
            probe.reading = probe.writing = False

    def _dispatch(self) -> None:
        probes = self._probes
        self._dispatching = True
        try:
            for fd, events in self._epoll.poll(0):
                probe = probes.get(fd)
                if probe is None or fd in self._fresh:
                    continue
                if probe.writing and events & _EPOLLOUT_OR_ERR:
                    probe.on_writable()
                    if probes.get(fd) is not probe:
                        continue
                if probe.reading and events & _EPOLLIN_OR_ERR:
                    probe.on_readable()
        finally:
            self._dispatching = False
            self._fresh.clear()

    def close(self) -> None:
        self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()


def _watch(loop: asyncio.AbstractEventLoop) -> _EpollWatch | _LoopWatch:
    """An epoll set of our own where there is epoll (Linux) and a descriptor left for it; the loop's own
    watches otherwise (with no descriptor left, every probe then fails as ``local``, not the run)."""
    if hasattr(select, "epoll"):
        with contextlib.suppress(OSError):
            return _EpollWatch(loop)
    return _LoopWatch(loop)


class _Deadline:
    """When a probe's current phase is judged. Small on purpose: it waits in the queue until then, and lets go
    of its probe the moment the probe moves on (a finished probe is freed at once)."""

    __slots__ = ("probe", "when")

    def __init__(self, when: float, probe: _Probe) -> None:
        self.when = when
        self.probe: _Probe | None = probe

    def __repr__(self) -> str:
        return f"<_Deadline at {self.when:.3f} {'live' if self.probe is not None else 'dropped'}>"


class _Run:
    """One call of :func:`probe_jobs_lean`: the shared state of its probes and its two queues."""

    def __init__(
        self, options: ProbeOptions, report: LoadReport, on_window_stall: Callable[[], None] | None = None
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.options = options
        self.prober = Prober(options)
        self.requests = _Requests(self.prober.client, options.method)
        self.lean_ok = options.lean_direct
        # PlainResponseParser vouches only for answers to a GET (a HEAD reply has no body, whatever it says);
        # and only a GET's body is decoded (as the client does) and has a favicon fetched after it.
        self.plain_ok = self.get = options.method.upper() == "GET"
        self.favicon = options.favicon and self.get
        # With all_ips, a name's job (resolved first, then each address) is the reference engine's, whole.
        self.whole_jobs = options.all_ips
        self.on_window_stall = on_window_stall
        self.report = report
        report.engine = "lean"
        report.concurrency = options.concurrency
        self.monitor = LoopMonitor(
            options.timeout, options.concurrency, report, self._count, self._wake_feeder, on_tick=self.sweep
        )
        # The deadlines of the probes' phases: almost all come in time order (now + the same timeout), so a
        # queue takes them and a heap the few that do not. An entry whose probe moved on has no probe.
        self.deadlines: deque[_Deadline] = deque()
        self.odd_deadlines: list[tuple[float, int, _Deadline]] = []
        self._armed = itertools.count()
        self.watch = _watch(self.loop)
        self.probes: set[_Probe] = set()
        self.in_flight = 0
        self.window = options.window if options.order == "input" else None
        self.dispatched = 0  # jobs started
        self.yielded = 0  # records taken by the consumer
        self.next_index = 0  # input order: the job whose records come next (the window runs from here)
        self.held: dict[int, list[ProbeResult]] = {}  # input order: jobs' records waiting for an earlier job
        self.ready: deque[ProbeResult] = deque()
        self.fed_all = False
        self.failure: BaseException | None = None  # see fail()
        self._consumer: asyncio.Future[None] | None = None
        self._feeder: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<lean run in_flight={self.in_flight} ready={len(self.ready)} {self.monitor!r}>"

    def _count(self) -> int:
        return self.in_flight

    def arm(self, probe: _Probe, when: float) -> None:
        """Judge ``probe`` at ``when`` (the loop's clock), in place of any deadline it had."""
        probe.disarm()
        deadline = probe.deadline = _Deadline(when, probe)
        deadlines = self.deadlines
        if not deadlines or when >= deadlines[-1].when:
            deadlines.append(deadline)
        else:
            heapq.heappush(self.odd_deadlines, (when, next(self._armed), deadline))

    def sweep(self) -> None:
        """At every tick of the monitor: the probes whose deadline came. A queue of every probe's deadline
        instead of a timer each (making and cancelling a timer costs more than the rest of a short probe);
        a deadline is judged at the first tick after it, at most :data:`~aiotcp.probe.pacing.TICK_S` late."""
        now = self.loop.time() + _SLACK
        due: list[_Deadline] = []
        deadlines, odd = self.deadlines, self.odd_deadlines
        while deadlines and deadlines[0].when <= now:
            due.append(deadlines.popleft())
        while odd and odd[0][0] <= now:
            due.append(heapq.heappop(odd)[2])
        for deadline in due:
            probe = deadline.probe
            if probe is not None:
                probe.deadline = deadline.probe = None
                probe.on_deadline()

    def new_budget(self) -> Budget:
        """A target's budget, on the loop's clock (what ``Budget.start`` gives, without looking the loop up)."""
        timeouts = self.prober.timeouts
        clock = self.loop.time
        return Budget(timeouts, None if timeouts.total is None else clock() + timeouts.total, clock)

    # -- the two waits ---------------------------------------------------------------------------------------

    def _wake_feeder(self) -> None:
        waiter = self._feeder
        if waiter is not None:
            self._feeder = None
            if not waiter.done():
                waiter.set_result(None)

    def wake_consumer(self) -> None:
        waiter = self._consumer
        if waiter is not None:
            self._consumer = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_records(self) -> None:
        self._consumer = self.loop.create_future()
        await self._consumer

    def may_launch(self) -> bool:
        if self.in_flight >= self.monitor.cap:  # (the cap is -c but while the loop lags)
            return False
        if self.window is None:
            # Records nobody has taken yet hold the feeder back too: a caller that stops reading for a while
            # (a full pipe, a slow disk) must not make us hold every record the meantime finishes.
            return len(self.ready) < self.options.window
        return not self._window_full()

    def _window_full(self) -> bool:
        """Input order: jobs in flight or held, and records not taken yet, fill the window."""
        assert self.window is not None
        return self.dispatched - self.next_index + len(self.ready) >= self.window

    async def feed(self, jobs: AsyncIterable[Job] | Iterable[Job], skip: Callable[[int], bool] | None) -> None:
        """Start a probe for every job (but those ``skip`` names), as slots, window and admission allow."""
        launched = 0
        try:
            # (An async iterable is taken as it is, its owner closes it; a sync one through a wrapper.)
            numbered = jobs if isinstance(jobs, AsyncIterable) else as_async_iterator(jobs)
            async for job in numbered:
                if skip is not None and skip(job.seq):
                    continue
                if not self.may_launch():
                    self.report.launch_waits += 1
                    # Waiting on the window (a slow target holds back the records after it): said after a
                    # while, as the reference engine says it.
                    stall = (
                        self.loop.call_later(WINDOW_STALL_S, self.on_window_stall)
                        if self.on_window_stall is not None and self.window is not None and self._window_full()
                        else None
                    )
                    try:
                        while not self.may_launch():
                            self._feeder = self.loop.create_future()
                            await self._feeder
                    finally:
                        if stall is not None:
                            stall.cancel()
                    launched = 0
                self.launch(job)
                launched += 1
                if launched >= LAUNCH_BATCH:
                    launched = 0
                    self.report.launch_yields += 1
                    await asyncio.sleep(0)  # let the loop read what came back before starting more
        finally:
            self.fed_all = True
            self.wake_consumer()

    # -- probes ------------------------------------------------------------------------------------------------

    def launch(self, job: Job) -> None:
        index = self.dispatched
        self.dispatched += 1
        self.in_flight += 1
        if job.result is not None:  # a line that did not parse: its record is ready
            job.result.timestamp = now_iso()
            self.completed(None, index, [job.result])
            return
        probe = _Probe(self, job, index)
        self.probes.add(probe)
        assert job.spec is not None
        if self.whole_jobs and not is_ip(job.spec.host):
            probe.delegate_job()
        else:
            probe.next_record()

    def completed(self, probe: _Probe | None, index: int, records: list[ProbeResult]) -> None:
        """Job ``index`` has all its records (they go out one after the other)."""
        if probe is not None:
            self.probes.discard(probe)
        self.in_flight -= 1
        if self.window is None:
            if len(records) == 1:
                self.ready.append(records[0])
            else:
                self.ready.extend(records)
        else:
            held = self.held
            held[index] = records
            next_index = self.next_index
            while next_index in held:
                self.ready.extend(held.pop(next_index))
                next_index += 1
            self.next_index = next_index
        self.wake_consumer()
        if self._feeder is not None and self.may_launch():
            self._wake_feeder()

    def fail(self, exc: BaseException) -> None:
        """The run cannot go on (a bug): the consumer raises ``exc``."""
        if self.failure is None:
            self.failure = exc
        self.wake_consumer()

    def took(self) -> None:
        """The consumer took a record (the input-order window moves; the queue of records shrinks)."""
        self.yielded += 1
        if self._feeder is not None and self.may_launch():
            self._wake_feeder()

    def abort(self) -> None:
        """Stop every probe now and close its socket (leaving early, cancellation)."""
        for probe in list(self.probes):
            probe.abort()
        self.probes.clear()


class _Probe:
    """One job: its records one after the other (:class:`~aiotcp.probe.attempts.JobRecords`), each record's
    attempts lean (callbacks) or handed to the reference engine (a task)."""

    __slots__ = (
        "attempts",
        "budget",
        "connect_ms",
        "connected_at",
        "deadline",
        "due",
        "fd",
        "finished",
        "index",
        "job",
        "parts",
        "phase",
        "reader",
        "reading",
        "run",
        "sock",
        "stall0",
        "started",
        "task",
        "timer",
        "ttfb_ms",
        "unsent",
        "writing",
    )

    def __init__(self, run: _Run, job: Job, index: int) -> None:
        self.run = run
        self.job = job
        self.index = index
        self.parts: JobRecords | None = None  # with paths: the job's records (see next_record)
        self.attempts: TargetAttempts | None = None  # the record under way
        self.budget: Budget | None = None
        self.stall0 = 0.0
        self.timer: asyncio.Handle | None = None  # a wait: a slot, a rate slot, a retry's pause, the next record
        self.deadline: _Deadline | None = None  # when the current phase is judged (see _Run.arm)
        self.task: asyncio.Task[Any] | None = None
        self.sock: socket.SocketType | None = None
        self.fd = -1
        self.reading = self.writing = False
        self.reader: ResponseReader | None = None
        self.phase: Phase = "connect"
        self.due = 0.0  # when the current phase's timer judges (the loop's clock), before stall credit
        self.started = 0.0  # time.perf_counter() at the start of the attempt
        self.connected_at = 0.0
        self.connect_ms: float | None = None
        self.ttfb_ms: float | None = None
        self.unsent = b""
        self.finished = False  # the record under way is done (or the run is being left)

    def __repr__(self) -> str:
        state = "finished" if self.finished else "delegated" if self.task is not None else self.phase
        attempts = self.attempts.result.attempts if self.attempts is not None else 0
        return f"<lean probe {self.job.text!r} {state} attempts={attempts}>"

    # -- the job's records ------------------------------------------------------------------------------------

    def next_record(self) -> None:
        """Start the job's next record, or hand the job's records to the run once it has them all."""
        self.timer = None
        options = self.run.options
        if not options.paths:  # the usual job: one record, no JobRecords to keep
            if self.attempts is None:
                self.attempts = TargetAttempts(self.job, options.scheme)
                self._start()
            else:
                self.run.completed(self, self.index, [self.attempts.finish()])
            return
        if self.parts is None:
            self.parts = JobRecords(self.job, options)
        elif self.attempts is not None:
            self.parts.done(self.attempts.finish())
        self.attempts = self.parts.next()
        if self.attempts is None:
            self.run.completed(self, self.index, self.parts.records)
            return
        self.finished = False
        self._start()

    def delegate_job(self) -> None:
        """The whole job is the reference engine's (:meth:`Prober.probe_records`): a name under ``all_ips``."""
        task = self.task = self.run.loop.create_task(self.run.prober.probe_records(self.job))
        task.add_done_callback(self._job_delegated)

    def _job_delegated(self, task: asyncio.Task[list[ProbeResult]]) -> None:
        self.task = None
        if task.cancelled() or self.finished:
            return
        self.finished = True
        exc = task.exception()
        if exc is not None:  # a bug (probe_records never raises for the target): the run's, as on the reference
            self.run.fail(exc)
            return
        self.run.completed(self, self.index, task.result())

    # -- a record's turn: per-host slot, rate slot, then the attempts -----------------------------------------

    def _start(self) -> None:
        hosts = self.run.prober.hosts
        if hosts is not None:
            assert self.job.spec is not None
            if not hosts.try_acquire(self.job.spec.host):
                hosts.wait_turn(self.job.spec.host, self._turn_soon)
                return
        self._turn()

    def _turn_soon(self) -> None:
        # Called from another probe's release(): start on the next iteration, not inside its callback.
        self.timer = self.run.loop.call_soon(self._turn)

    def _turn(self) -> None:
        self.timer = None
        rate = self.run.prober.rate
        if rate is not None:
            delay = rate.reserve(self.run.loop.time())
            if delay > 0:
                self.timer = self.run.loop.call_later(delay, self._go)
                return
        self._go()

    def _go(self) -> None:
        # The record's clock starts now: our own limits were not its time.
        self.timer = None
        assert self.attempts is not None
        self.attempts.started = time.perf_counter()
        self.budget = self.run.new_budget()
        self.stall0 = self.run.monitor.stalled_now()
        self._attempt()

    def _next_attempt(self) -> None:
        self.timer = None
        rate = self.run.prober.rate
        if rate is not None:
            delay = rate.reserve(self.run.loop.time())
            if delay > 0:
                self.timer = self.run.loop.call_later(delay, self._attempt)
                return
        self._attempt()

    def _attempt(self) -> None:
        self.timer = None
        assert self.attempts is not None
        try:
            target = self.attempts.begin()
            if self.run.lean_ok and target.scheme == "http" and target.is_ip:
                self._open(target)
            else:
                self._delegate()
        except Exception as exc:
            self._failed(exc)

    def _target(self) -> Target:
        """The URL of the attempt under way."""
        assert self.attempts is not None
        target = self.attempts.target
        assert target is not None
        return target

    # -- a lean attempt --------------------------------------------------------------------------------------

    def _open(self, target: Target) -> None:
        self.reader = None
        self.connect_ms = self.ttfb_ms = None
        self.phase = "connect"
        self.started = time.perf_counter()
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        try:
            # The C socket type, not socket.socket: its Python layer (__init__, close(), the reference counts of
            # makefile()) costs more than the two system calls, and none of it is used here.
            sock = socket.SocketType(family, _STREAM)
        except OSError as exc:
            self._failed(map_connect_error(exc, target.url, phase="tcp"))
            return
        if not _STREAM & _NONBLOCK:
            sock.setblocking(False)  # pragma: no cover - where SOCK_NONBLOCK does not exist
        self.sock, self.fd = sock, sock.fileno()
        code = sock.connect_ex((target.host, target.port))
        if code not in _CONNECTING:
            self._failed(map_connect_error(OSError(code, os.strerror(code)), target.url, phase="tcp"))
            return
        budget = self.budget
        assert budget is not None
        loop = self.run.loop
        # Try the request at once: where the handshake is done before connect returns (loopback, a LAN), this
        # saves a wait and a change of what the loop watches. A socket still connecting says EAGAIN.
        wire = self.run.requests.wire(target)
        try:
            sent = sock.send(wire)
        except (BlockingIOError, InterruptedError):
            sent = -1
        except OSError as exc:
            if exc.errno not in _STILL_CONNECTING:
                self._failed(map_connect_error(exc, target.url, phase="tcp"))  # the connect failed (refused...)
                return
            sent = -1
        if sent < 0:
            self.unsent = wire
            self.run.watch.set(self, read=False, write=True)
            self.due = loop.time() + budget.limit("connect")
            self.run.arm(self, self.due)
            return
        self._sending(wire, sent)
        deadline = budget.deadline
        assert deadline is not None
        self.due = deadline
        self.run.arm(self, deadline)

    def _sending(self, wire: bytes, sent: int) -> None:
        """The connect is done and ``sent`` bytes of the request went out: watch for the answer (and for room
        to write the rest)."""
        self.connected_at = now = time.perf_counter()
        self.connect_ms = _ms(self.started, now)
        run = self.run
        self.reader = ResponseReader(
            run.prober.limits, run.requests.sample, run.options.max_body, plain=run.plain_ok, decode=run.get
        )
        if sent < len(wire):
            self.unsent = wire[sent:]
            self.phase = "write"
        else:
            self.unsent = b""
            self.phase = "read"
        run.watch.set(self, read=True, write=self.phase == "write")

    def on_writable(self) -> None:
        try:
            if self.phase == "connect":
                self._connected()
            else:
                self._send_rest()
        except Exception as exc:
            self._failed(exc)

    def _connected(self, code: int | None = None) -> None:
        """The connect ended (the socket is writable, or a timer found it so): send the request. ``code``: the
        socket's error, if the caller read it already."""
        sock = self.sock
        assert sock is not None
        target = self._target()
        if code is None:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._failed(map_connect_error(OSError(code, os.strerror(code)), target.url, phase="tcp"))
            return
        wire = self.unsent
        try:
            sent = sock.send(wire)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._failed(map_stream_error(exc, target.url, phase="write"))
            return
        self._sending(wire, sent)
        budget = self.budget
        assert budget is not None
        deadline = budget.deadline
        assert deadline is not None
        if self.due != deadline:  # the connect had a timeout of its own: now the total deadline runs
            self.due = deadline
            self.run.arm(self, deadline)

    def _send_rest(self) -> None:
        sock = self.sock
        assert sock is not None
        try:
            sent = sock.send(self.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            target = self._target()
            self._failed(map_stream_error(exc, target.url, phase="write"))
            return
        self.unsent = self.unsent[sent:]
        if not self.unsent:
            self.phase = "read"
            self.run.watch.set(self, read=True, write=False)

    def on_readable(self) -> None:
        try:
            self._read()
        except Exception as exc:
            self._failed(exc)

    def _read(self) -> bool:
        """Read once and parse; False when the kernel had nothing for us."""
        sock = self.sock
        assert sock is not None
        try:
            data = sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            target = self._target()
            self._failed(map_stream_error(exc, target.url, phase="read"))
            return True
        if data and self.ttfb_ms is None:
            self.ttfb_ms = int((time.perf_counter() - self.started) * 1e6 + 0.5) / 1000.0  # as Client times it
        reader = self.reader
        assert reader is not None
        try:
            done = reader.feed(data)
        except AiotcpError as exc:
            self._failed(exc)
            return True
        if done is not None:
            self._done(*done)
        return True

    def _done(self, head: ResponseHead, body: bytes) -> None:
        """The attempt got its response: unless it says the guessed scheme was wrong, fill the record (then the
        favicon, if asked for), close, finish."""
        attempts = self.attempts
        assert attempts is not None
        target = attempts.target
        assert target is not None
        assert self.sock is not None
        ip = self.sock.getpeername()[0] if ":" in target.host else target.host  # as the kernel writes it
        self._close()
        if attempts.answered(head.status_code, body) is not None:
            self._next_attempt()  # a plaintext request reached a TLS port: https next
            return
        options = self.run.options
        result = attempts.result
        fill_from_head(
            result,
            url=target.url,
            ip=str(ip),
            status_code=head.status_code,
            reason=head.reason.decode("latin-1"),
            http_version=head.http_version.decode("ascii", "replace"),
            headers=head.headers,
            quirks=head.quirks,
            body=body,
            dns_ms=0.0,  # an address: no lookup
            connect_ms=self.connect_ms,
            tls_ms=None,
            ttfb_ms=self.ttfb_ms,
            fingerprints=options.facts,
            keep_body=options.keep_body,
        )
        if self.run.favicon:
            budget = self.budget
            assert budget is not None
            favicon = self.run.prober.fetch_favicon(result, target.url, result.content_type, body, budget)
            task = self.task = self.run.loop.create_task(favicon)
            task.add_done_callback(self._delegated)
            return
        attempts.succeeded()
        self._end()

    def on_deadline(self) -> None:
        """A phase's deadline came (:meth:`_Run.sweep`): judge, unless our own stall owes the probe time or the
        kernel holds its answer."""
        try:
            run = self.run
            loop = run.loop
            credit = run.monitor.stalled_now() - self.stall0
            if credit > run.options.timeout:
                credit = run.options.timeout
            due = self.due + credit
            if loop.time() < due - _SLACK:
                run.arm(self, due)
                return
            phase = self.phase
            sock = self.sock
            assert sock is not None
            if phase == "connect":
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # (reading it clears it)
                if code or _is_connected(sock):
                    self._connected(code)  # it ended while our loop was busy: go on (or fail) as it says
                    return
            elif phase == "read":
                for _ in range(_DRAIN_READS):
                    if self.finished or self.sock is not sock or not self._read():
                        break
                if self.finished or self.sock is not sock:
                    return
            target = self._target()
            budget = self.budget
            assert budget is not None
            error = budget.expired(phase, target.url)
            error.timeout_phase = phase
            self._failed(error)
        except Exception as exc:
            self._failed(exc)

    # -- an attempt the reference engine does ------------------------------------------------------------------

    def _delegate(self) -> None:
        """This attempt is the reference engine's (:meth:`Prober.exchange`), in a task, on the same budget."""
        budget = self.budget
        assert budget is not None
        assert self.attempts is not None
        task = self.task = self.run.loop.create_task(self.run.prober.exchange(self.attempts, budget))
        task.add_done_callback(self._delegated)

    def _delegated(self, task: asyncio.Task[Switch | None]) -> None:
        """The reference engine's attempt (or the favicon after a lean one) ended."""
        self.task = None
        if task.cancelled() or self.finished:
            return
        exc = task.exception()
        if exc is None:
            if task.result() is not None:
                self._next_attempt()  # a plaintext request reached a TLS port: https next
                return
            assert self.attempts is not None
            self.attempts.succeeded()
            self._end()
        elif isinstance(exc, Exception):
            self._failed(exc)
        else:  # pragma: no cover - KeyboardInterrupt, SystemExit: not a target's record
            raise exc

    # -- between attempts, and the end ---------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        """The attempt failed: record it and do what :func:`~aiotcp.probe.retry.decide` says."""
        if self.finished:
            return
        self._close()
        options = self.run.options
        budget = self.budget
        assert self.attempts is not None
        decision = self.attempts.failed(
            exc,
            retries=options.retries,
            backoff=options.backoff,
            remaining=budget.remaining() if budget is not None else 0.0,
            jitter=random.uniform(0.5, 1.5),
        )
        if isinstance(decision, Stop):
            self._end()
        elif isinstance(decision, Retry):
            self.timer = self.run.loop.call_later(decision.pause, self._next_attempt)
        else:
            self._next_attempt()

    def disarm(self) -> None:
        """Drop the current deadline (its queue entry lets go of this probe)."""
        if self.deadline is not None:
            self.deadline.probe = None
            self.deadline = None

    def _close(self) -> None:
        """Close the attempt's socket and drop its deadline, its wait and its parser (idempotent). (A finished
        probe stays referenced by the deadline queue until its deadline: it must hold little by then.)"""
        self.disarm()
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        watch = self.run.watch
        if isinstance(watch, _EpollWatch):
            watch.forget(self)
        else:
            watch.set(self, read=False, write=False)
        sock.close()

    def _end(self) -> None:
        """The record under way is done: give back its per-host slot, then on to the job's next record (on the
        next iteration when there may be one: a job of many paths that fail at once must not recurse)."""
        self.finished = True
        run = self.run
        hosts = run.prober.hosts
        if hosts is not None:
            assert self.job.spec is not None
            hosts.release(self.job.spec.host)
        if run.options.paths:
            self.timer = run.loop.call_soon(self.next_record)
        else:
            self.next_record()  # the job's only record

    def abort(self) -> None:
        """Stop now, without a record (the run is being left)."""
        self.finished = True
        self._close()
        if self.task is not None:
            self.task.cancel()
        hosts = self.run.prober.hosts
        if hosts is not None and self.job.spec is not None:
            with contextlib.suppress(ValueError):
                hosts.cancel_wait(self.job.spec.host, self._turn_soon)


def _is_connected(sock: socket.SocketType) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


async def probe_jobs_lean(
    jobs: AsyncIterable[Job] | Iterable[Job],
    options: ProbeOptions,
    *,
    skip: Callable[[int], bool] | None = None,
    report: LoadReport | None = None,
    on_window_stall: Callable[[], None] | None = None,
) -> AsyncGenerator[ProbeResult, None]:
    """:func:`aiotcp.probe.probe_jobs` on the lean engine (see the module docstring); on an asyncio loop.

    ``report`` receives the run's load figures (:class:`~aiotcp.probe.pacing.LoadReport`);
    ``on_window_stall`` is told when the input-order window has held new probes back for
    :data:`~aiotcp.probe.options.WINDOW_STALL_S`. Leaving early (``aclose()``) or cancelling stops every probe
    and closes every socket before returning.
    """
    run = _Run(options, report if report is not None else LoadReport(), on_window_stall)
    loop = run.loop
    feeder = loop.create_task(run.feed(jobs, skip))
    feeder.add_done_callback(lambda _: run.wake_consumer())
    run.monitor.start(loop)
    try:
        while True:
            ready = run.ready
            while ready:
                result = ready.popleft()
                run.took()
                yield result
            if run.failure is not None:
                raise run.failure
            if feeder.done():
                failure = None if feeder.cancelled() else feeder.exception()
                if failure is not None:
                    raise failure
                if run.fed_all and not run.in_flight and not run.ready:
                    return
            await run.wait_for_records()
    finally:
        run.monitor.stop()
        feeder.cancel()
        tasks = [feeder, *(probe.task for probe in run.probes if probe.task is not None)]
        run.abort()
        run.watch.close()
        # Shielded: a cancelled caller still gets every socket closed before we return.
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)
            await run.prober.client.aclose()
