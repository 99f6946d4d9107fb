"""The memory stream (tests/memory_stream.py) against the real transports: the same peer behaviour, scripted once
for a loopback server and once for the memory peer, must read the same bytes, end with the same kind and show
pending input at the same moments -- on asyncio (the fast path, AsyncioStream) and on trio (AnyioStream).

That is what lets tests/test_connection.py and tests/test_pool.py trust the memory stream for what the
connection and the pool do with a peer that closes, resets, stays silent or sends what nobody asked for.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import pytest
from memory_stream import EOF, OK, RESET, Item, Peer
from scripted_server import CloseAfterSending, ReadRequest, Reset, ScriptedServer, Send, Sleep, Step

from aiotcp.budget import Budget
from aiotcp.config import Timeouts
from aiotcp.errors import AiotcpError
from aiotcp.streams import NetworkStream
from aiotcp.targets import parse_target
from aiotcp.transport import connect

pytestmark = pytest.mark.anyio

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
IDLE_S = 0.2  # how long the loopback server waits, after its reply, before it misbehaves while we are idle
WAIT_S = 5.0
QUICK = Timeouts(read=0.3, total=5)


@dataclass(frozen=True)
class Scenario:
    """A peer that reads one request and sends ``reply``, then (``IDLE_S`` later) ``later``; and what the
    client must see: every byte, how reading ended (``eof`` or an error kind), and whether input was pending
    right after the reply was read (asked only when the peer does something ``later``)."""

    reply: tuple[Item, ...]
    later: tuple[Item, ...]
    data: bytes
    ending: str
    timeouts: Timeouts = QUICK

    def script(self) -> list[Step]:
        """The same, for a loopback server."""
        steps: list[Step] = [ReadRequest(), *_steps(self.reply)]
        if self.later:
            steps += [Sleep(IDLE_S), *_steps(self.later)]
        return steps


def _steps(items: tuple[Item, ...]) -> list[Step]:
    steps: list[Step] = []
    for item in items:
        if item is EOF:
            steps.append(CloseAfterSending())
        elif item is RESET:
            steps += [Sleep(0.05), Reset()]  # the bytes before it are read before the RST can overtake them
        else:
            assert isinstance(item, bytes)
            steps.append(Send(item))
    return steps


SCENARIOS = {
    "fin-after-reply": Scenario((OK, EOF), (), OK, "eof"),
    "rst-after-reply": Scenario((OK, RESET), (), OK, "reset"),
    "silent": Scenario((), (), b"", "read_timeout"),
    "trickle-past-the-deadline": Scenario(
        (b"HTTP/1.1 2",), (), b"HTTP/1.1 2", "timeout", Timeouts(read=None, total=0.3)
    ),
    "stray-bytes-while-idle": Scenario((OK,), (b"stray",), OK + b"stray", "read_timeout"),
    "fin-while-idle": Scenario((OK,), (EOF,), OK, "eof"),
    "rst-while-idle": Scenario((OK,), (RESET,), OK, "reset"),
}


@dataclass
class Seen:
    data: bytes = b""
    ending: str = ""
    pending_after_reply: bool | None = None


async def exchange(stream: NetworkStream, scenario: Scenario, when_idle: Callable[[], None]) -> Seen:
    """Send the request, read the reply, wait for the peer's ``later`` while idle, then read to the end."""
    seen = Seen()
    budget = Budget.start(scenario.timeouts)
    await stream.send(REQUEST, budget)
    expected = sum(len(item) for item in scenario.reply if isinstance(item, bytes))
    try:
        while len(seen.data) < expected:
            chunk = await stream.receive(budget)
            if not chunk:
                break
            seen.data += chunk
        if scenario.later:
            seen.pending_after_reply = stream.has_pending_input()
            when_idle()
            deadline = time.monotonic() + WAIT_S
            while not stream.has_pending_input() and time.monotonic() < deadline:  # noqa: ASYNC110 - a poll
                await anyio.sleep(0.01)
            assert stream.has_pending_input()
        while chunk := await stream.receive(Budget.start(scenario.timeouts) if scenario.later else budget):
            seen.data += chunk
        seen.ending = "eof"
    except AiotcpError as exc:
        seen.ending = exc.kind
    return seen


def expected(scenario: Scenario) -> Seen:
    return Seen(scenario.data, scenario.ending, False if scenario.later else None)


@pytest.mark.parametrize("name", SCENARIOS)
async def test_memory_stream(anyio_backend: str, name: str) -> None:
    scenario = SCENARIOS[name]
    peer = Peer()
    peer.reply(*scenario.reply)
    assert await exchange(peer.stream, scenario, lambda: peer.feed(*scenario.later)) == expected(scenario)


@pytest.mark.parametrize("name", SCENARIOS)
async def test_loopback_stream(anyio_backend: str, name: str) -> None:
    scenario = SCENARIOS[name]
    with ScriptedServer(scenario.script()) as server:
        stream = await connect(parse_target(server.url), Budget.start(scenario.timeouts))
        try:
            assert await exchange(stream, scenario, lambda: None) == expected(scenario)
        finally:
            await stream.aclose()


@contextlib.asynccontextmanager
async def stream_to(transport: str, reply: tuple[Item, ...]) -> AsyncIterator[NetworkStream]:
    """A stream to a peer that answers the first request with ``reply``: a memory peer or a loopback server."""
    if transport == "memory":
        peer = Peer()
        peer.reply(*reply)
        yield peer.stream
        return
    with ScriptedServer([ReadRequest(), *_steps(reply)]) as server:
        stream = await connect(parse_target(server.url), Budget.start(Timeouts(total=5)))
        try:
            yield stream
        finally:
            await stream.aclose()


@pytest.mark.parametrize("transport", ["memory", "loopback"])
@pytest.mark.parametrize(("ending", "kind"), [(EOF, None), (RESET, "reset")], ids=["fin", "rst"])
async def test_a_write_after_fin_succeeds_and_after_rst_fails(
    anyio_backend: str, transport: str, ending: Item, kind: str | None
) -> None:
    budget = Budget.start(Timeouts(read=1, total=5))
    async with stream_to(transport, (ending,)) as stream:
        await stream.send(REQUEST, budget)
        with anyio.fail_after(WAIT_S):
            while not stream.has_pending_input():  # noqa: ASYNC110 - polling the kernel
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)  # the RST is processed by the event loop, not only readable
        if kind is None:
            await stream.send(REQUEST, budget)  # TCP takes a write after the peer's FIN
            assert await stream.receive(budget) == b""
        else:
            with pytest.raises(AiotcpError) as caught:
                await stream.send(REQUEST, budget)
            assert caught.value.kind == kind
        await stream.aclose()
        assert stream.is_closed
        assert stream.has_pending_input()  # a closed stream is never safe to reuse


# -- what only the memory peer scripts ---------------------------------------------------------------------


async def test_a_peer_that_stops_reading_makes_writes_time_out(anyio_backend: str) -> None:
    peer = Peer()
    peer.stop_reading()
    with pytest.raises(AiotcpError) as caught:
        await peer.stream.send(REQUEST, Budget.start(Timeouts(write=0.05, total=5)))
    assert caught.value.kind == "write_timeout"
    assert peer.requests == []
    peer.resume_reading()
    await peer.stream.send(REQUEST, Budget.start(Timeouts(write=0.05, total=5)))
    assert peer.written == REQUEST


async def test_reads_follow_the_chunks_fed(anyio_backend: str) -> None:
    peer = Peer()
    peer.feed(b"ab", b"cdef")
    budget = Budget.start(Timeouts())
    assert [await peer.stream.receive(budget, 3), await peer.stream.receive(budget, 3)] == [b"ab", b"cde"]
    assert await peer.stream.receive(budget) == b"f"
    assert not peer.stream.has_pending_input()
    peer.close()
    assert peer.stream.has_pending_input()
    assert [await peer.stream.receive(budget) for _ in range(2)] == [b"", b""]  # EOF is sticky
    with pytest.raises(RuntimeError, match="nothing arrives after"):
        peer.feed(b"late")


async def test_replies_wait_for_the_request(anyio_backend: str) -> None:
    peer = Peer(answer=OK)
    peer.reply(b"first")
    assert not peer.stream.has_pending_input()
    budget = Budget.start(Timeouts())
    for expected_reply in (b"first", OK, OK):
        await peer.stream.send(REQUEST, budget)
        assert await peer.stream.receive(budget) == expected_reply
    assert peer.requests == [REQUEST] * 3


async def test_closing_wakes_a_reader_and_counts_once(anyio_backend: str) -> None:
    peer = Peer()
    kinds: list[str] = []

    async def read() -> None:
        try:
            await peer.stream.receive(Budget.start(Timeouts(read=None, total=None)))
        except AiotcpError as exc:
            kinds.append(exc.kind)

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        await peer.stream.aclose()
        await peer.stream.aclose()
    assert kinds == ["disconnected"]
    assert peer.stream.closes == 1
    assert repr(peer.stream) == "<MemoryStream ? peer=192.0.2.1:80 closed>"
