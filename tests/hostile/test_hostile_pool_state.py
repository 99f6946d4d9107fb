"""A stateful test of the keep-alive pool: a connection with leftover bytes or in error is never handed out.

hypothesis drives a real :class:`~aiotcp.Client` (one parser per run, on asyncio through a blocking portal)
against a scripted loopback server whose every connection plays :class:`~scripted_server.Dispatch`: the path
of each request names what the server does with it -- answer cleanly, answer with stray bytes in the same
write or a moment later, answer a HEAD with a body, answer badly, cut the body short, answer too late, or
answer and then close (FIN or RST) the idle connection. After every step:

* every request got the answer it asked for (its route's body, or the route's error kind), never bytes
  meant for another (the stray bytes say ``forged``);
* on the server, no request ever arrived on a connection after one that tainted it (stray bytes, an error,
  a HEAD body, a close): the pool never handed such a connection out again;
* no request is in flight, so every open connection of the pool is idle (an idle one the server closed is
  found out when next taken, not before), and the limit holds.

What the server sends after a reply is waited for (letting the event loop run) before the next step: bytes
that have not arrived cannot be detected by any client. The busy-loop variant of that race is a row of the
behaviour table (``extra-bytes-while-loop-busy``).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, cast

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from helpers import INSTALLED_PARSERS
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from scripted_server import CloseAfterSending, Dispatch, Reset, ScriptedServer, Send, Sleep, Step, response

from aiotcp import AiotcpError, Client, Limits, Timeouts

FORGED = response(200, b"forged")


def ok(route: str) -> bytes:
    return response(200, route.encode())


# route -> (method, what the server does, what the client must get: "body" or an error kind, taints?)
ROUTES: dict[str, tuple[str, list[Step], str, bool]] = {
    "ok": ("GET", [Send(ok("ok"))], "body", False),
    "ok-head": ("HEAD", [Send(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")], "empty", False),
    "leftover": ("GET", [Send(ok("leftover") + FORGED)], "body", True),
    "late-leftover": ("GET", [Send(ok("late-leftover")), Sleep(0.02), Send(FORGED)], "body", True),
    "head-body": ("HEAD", [Send(ok("head-body"))], "empty", True),
    "no-content-body": ("GET", [Send(b"HTTP/1.1 204 No Content\r\n\r\n" + FORGED)], "empty", True),
    "bad": ("GET", [Send(b"HTTP/1.1 OK\r\n\r\n")], "protocol", True),
    "short": ("GET", [Send(response(200, b"abc", content_length=10)), CloseAfterSending()], "disconnected", True),
    "late": ("GET", [Sleep(0.2), Send(ok("late"))], "read_timeout", True),
    "close": ("GET", [Send(response(200, b"close", close=True)), CloseAfterSending()], "body", True),
    "fin-idle": ("GET", [Send(ok("fin-idle")), CloseAfterSending()], "body", True),
    "rst-idle": ("GET", [Send(ok("rst-idle")), Sleep(0.01), Reset()], "body", True),
}
SCRIPT = [Dispatch({f"/{name}".encode(): steps for name, (_, steps, _, _) in ROUTES.items()}, 1000)]
TIMEOUTS = Timeouts(connect=2, read=0.15, write=2, pool=2, total=3)


def path_of(request: bytes) -> str:
    return request.split(b" ", 2)[1].decode().lstrip("/")


class PoolMachine(RuleBasedStateMachine):
    """One example: a fresh client against the server and event loop the test started for all examples."""

    portal: ClassVar[BlockingPortal]
    server: ClassVar[ScriptedServer]
    examples: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.client: Client | None = None
        type(self).examples += 1

    @initialize(parser=st.sampled_from(INSTALLED_PARSERS), max_connections=st.sampled_from([1, 2, 4]))
    def start(self, parser: str, max_connections: int) -> None:
        self.client = Client(http=parser, timeout=TIMEOUTS, limits=Limits(max_connections=max_connections))

    def teardown(self) -> None:
        if self.client is not None:
            self.portal.call(self.client.aclose)

    async def _request(self, route: str) -> tuple[str, bytes]:
        assert self.client is not None
        method = ROUTES[route][0]
        try:
            reply = await self.client.request(method, f"{self.server.url}/{route}")
        except AiotcpError as exc:
            return exc.kind, b""
        return "ok", reply.content

    def _check(self, route: str, outcome: tuple[str, bytes]) -> None:
        kind, _ = outcome
        expect = ROUTES[route][2]
        if expect == "body":
            assert outcome == ("ok", route.encode()), (route, outcome)
        elif expect == "empty":
            assert outcome == ("ok", b""), (route, outcome)
        else:
            assert kind == expect, (route, outcome)

    def _settle(self) -> None:
        # Wait until the server has nothing more to send (each connection is closed or waits for its next
        # request), then let our event loop read what it sent: bytes not yet sent cannot be seen by any client.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all(self.server.quiet(i) for i in range(self.server.connections_accepted)):
                break
            time.sleep(0.005)
        self.portal.call(anyio.sleep, 0.02)

    @rule(route=st.sampled_from(sorted(ROUTES)))
    def request(self, route: str) -> None:
        outcome = self.portal.call(self._request, route)
        self._check(route, outcome)
        self._settle()

    # Concurrent requests share connections as soon as one is released: a route that sends its stray bytes
    # only after a pause would answer whichever request took its connection next -- bytes no client can see
    # coming. Those routes run alone (the rule above, which waits for them).
    @rule(routes=st.lists(st.sampled_from(sorted(set(ROUTES) - {"late-leftover"})), min_size=2, max_size=3))
    def concurrently(self, routes: list[str]) -> None:
        outcomes: dict[int, tuple[str, bytes]] = {}

        async def run_all() -> None:
            async def one(index: int, route: str) -> None:
                outcomes[index] = await self._request(route)

            async with anyio.create_task_group() as group:
                for index, route in enumerate(routes):
                    group.start_soon(one, index, route)

        self.portal.call(run_all)
        for index, route in enumerate(routes):
            self._check(route, outcomes[index])
        self._settle()

    @invariant()
    def tainted_connections_are_never_reused(self) -> None:
        for index in range(self.server.connections_accepted):
            routes = [path_of(request) for request in self.server.requests(index)]
            for position, route in enumerate(routes[:-1]):
                assert not ROUTES[route][3], f"connection {index} carried {routes[position + 1 :]} after {route}"

    @invariant()
    def nothing_busy_between_steps(self) -> None:
        if self.client is None:
            return
        pool = self.client.pool
        assert pool.open_connections == pool.idle_connections, pool
        assert pool.open_connections <= pool.limits.max_connections, pool


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_pool_never_hands_out_a_tainted_connection(backend: str, reliability: Any) -> None:
    with start_blocking_portal(backend) as portal, ScriptedServer(SCRIPT) as server:
        machine = cast(
            "type[PoolMachine]",
            type(f"PoolMachine_{backend}", (PoolMachine,), {"portal": portal, "server": server, "examples": 0}),
        )
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=30 if backend == "asyncio" else 12,
                stateful_step_count=8,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                # No shrinking: every step is real network traffic, and pytest-timeout's failure would only be
                # one more failing example to shrink. A failure prints its steps as they were.
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
            ),
        )
        assert not server.errors, server.errors
    reliability.fuzz_examples += machine.examples
