"""Per-origin keep-alive pool with limits per origin and in total.

Every operation is O(1) in the number of pooled connections: idle connections sit in a per-origin stack
(most recently used first: the least likely to have been closed by the server) and in one global LRU order
(for evicting the oldest idle connection when the total limit is reached). Bookkeeping changes happen in sync
code before any ``await``, so a cancelled task can never leave a slot counted twice or lost; connections are
closed afterwards, shielded.

A slot is counted from the moment a connection is being opened until it is closed, so ``max_connections``
bounds sockets, not just requests.

Idle connections are closed when they expire (``Limits.keepalive_expiry``), not when next asked for: a server
counts an idle connection against its own limit (waitress serves 100 connections at a time), so one left open
past its expiry can keep another request waiting in the server's backlog. A *sweeper* does it: one task per
pool, running only while there are idle connections, asleep until the oldest of them expires (the idle LRU
order is also expiry order). Giving a connection back costs one flag test; the sweeper wakes about once per
``keepalive_expiry`` on a busy pool. It is a task of the event loop, not of the caller: an asyncio task on
asyncio (uvloop included), a trio system task on trio, so a pool needs no task group of its own and
:meth:`ConnectionPool.aclose` cancels it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

import anyio

from .budget import Budget
from .config import Limits
from .connection import ConnectionState, HTTPConnection

__all__ = ["ConnectionPool"]

Opener = Callable[[], Awaitable[HTTPConnection]]

# The sweeper closes together the idle connections that expire within this many seconds of the oldest (at
# most a tenth of keepalive_expiry): one wake-up for a burst of connections given back together.
_SWEEP_BATCH = 0.05


class ConnectionPool:
    """Hands out connections per key (scheme, host, port, TLS settings) and takes them back."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._idle: dict[Hashable, list[HTTPConnection]] = {}
        self._idle_order: OrderedDict[HTTPConnection, None] = OrderedDict()
        self._open_total = 0
        self._open_by_key: dict[Hashable, int] = {}
        self._waiters: list[anyio.Event] = []
        self._closed = False
        self._sweeping = False  # a sweeper runs (or is about to): see the module docstring
        self._sweep_scope: anyio.CancelScope | None = None
        self._sweep_task: asyncio.Task[None] | None = None  # asyncio keeps only a weak reference to tasks
        self.opened = 0  # connections ever opened, for stats and tests
        self.reused = 0

    def __repr__(self) -> str:
        return (
            f"<ConnectionPool open={self._open_total} idle={len(self._idle_order)}"
            f" waiting={len(self._waiters)} opened={self.opened} reused={self.reused}"
            f" sweeping={self._sweeping}>"
        )

    @property
    def open_connections(self) -> int:
        """Connections open or being opened, busy or idle."""
        return self._open_total

    @property
    def idle_connections(self) -> int:
        return len(self._idle_order)

    def is_closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    # -- sync bookkeeping -----------------------------------------------------------------------------------

    def _per_host_limit(self) -> int:
        return self.limits.max_per_host or self.limits.max_connections

    def take_idle(self, key: Hashable) -> HTTPConnection | None:
        """The most recently used idle connection for ``key``, if it is usable, without waiting; else ``None``
        (then :meth:`acquire` discards what is unusable and opens or waits as needed)."""
        stack = self._idle.get(key)
        if not stack:
            return None
        connection = stack[-1]
        if connection.has_expired(time.monotonic(), self.limits.keepalive_expiry) or not connection.is_safe_to_reuse():
            return None
        stack.pop()
        del self._idle_order[connection]
        connection.mark_active()
        self.reused += 1
        return connection

    def _take_idle(self, key: Hashable, discard: list[HTTPConnection]) -> HTTPConnection | None:
        while True:
            connection = self.take_idle(key)
            stack = self._idle.get(key)
            if connection is not None or not stack:
                return connection
            unusable = stack.pop()
            del self._idle_order[unusable]
            self._forget(unusable)
            discard.append(unusable)

    def _forget(self, connection: HTTPConnection) -> None:
        """Free the slot of a connection that is about to be closed."""
        self._unreserve(connection.key)

    def _reserve(self, key: Hashable) -> None:
        self._open_total += 1
        self._open_by_key[key] = self._open_by_key.get(key, 0) + 1

    def _unreserve(self, key: Hashable) -> None:
        self._open_total -= 1
        remaining = self._open_by_key[key] - 1
        if remaining:
            self._open_by_key[key] = remaining
        else:
            del self._open_by_key[key]
            # The origin's idle stack goes with its last connection (not each time it empties: a busy origin
            # would make a new one per request), so the pool stays O(origins with connections open).
            self._idle.pop(key, None)
        self._wake_waiters()

    def _evict_oldest_idle(self, discard: list[HTTPConnection]) -> bool:
        if not self._idle_order:
            return False
        self._evict_idle(next(iter(self._idle_order)), discard)
        return True

    def _evict_idle(self, connection: HTTPConnection, discard: list[HTTPConnection]) -> None:
        del self._idle_order[connection]
        self._idle[connection.key].remove(connection)
        self._forget(connection)
        discard.append(connection)

    def _has_room(self, key: Hashable) -> bool:
        return self._open_by_key.get(key, 0) < self._per_host_limit() and self._open_total < self.limits.max_connections

    def _wake_waiters(self) -> None:
        # Limits are per origin as well as in total, so which waiter a freed slot suits depends on its key:
        # wake them all and let each re-check. Waiters exist only while the pool is saturated.
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for event in waiters:
                event.set()

    # -- async API ------------------------------------------------------------------------------------------

    async def acquire(self, key: Hashable, budget: Budget, opener: Opener, *, fresh: bool = False) -> HTTPConnection:
        """An idle connection for ``key`` if a usable one exists (unless ``fresh``), else a new one from
        ``opener()``. Waits for a free slot when the limits are reached.

        Raises ``pool_timeout`` (or ``timeout``) if no slot frees in time, and whatever ``opener`` raises.
        """
        while True:
            if self._closed:
                raise RuntimeError("the pool is closed")
            discard: list[HTTPConnection] = []
            connection = None if fresh else self._take_idle(key, discard)
            if fresh and self._idle.get(key) and not self._has_room(key):
                # A fresh connection is wanted and this origin's idle ones hold the slots: make room by closing
                # one of them rather than waiting for a slot that only we could free.
                self._evict_idle(self._idle[key][0], discard)
            opening = False
            if (
                connection is None
                and self._open_by_key.get(key, 0) < self._per_host_limit()
                and (self._open_total < self.limits.max_connections or self._evict_oldest_idle(discard))
            ):
                self._reserve(key)
                opening = True
            if discard:
                await _close_all(discard, "expired or unusable while idle")
            if connection is not None:
                return connection
            if opening:
                try:
                    connection = await opener()
                except BaseException:
                    self._unreserve(key)
                    raise
                self.opened += 1
                return connection
            await self._wait_for_slot(budget)

    async def _wait_for_slot(self, budget: Budget) -> None:
        event = anyio.Event()
        self._waiters.append(event)
        try:
            with anyio.move_on_after(budget.limit("pool")) as scope:
                await event.wait()
        finally:
            if not event.is_set():
                self._waiters.remove(event)
        if scope.cancelled_caught:
            raise budget.expired("pool")

    def give_back(self, connection: HTTPConnection, reusable: bool) -> bool:
        """Take a connection back after its response, without waiting: kept if ``reusable`` and the pool is
        open. Returns True when the caller must close it (``await connection.aclose()``)."""
        if connection.is_closed() or connection.is_idle():
            return False  # released already
        if reusable and not self._closed:
            connection.mark_idle()
            stack = self._idle.get(connection.key)
            if stack is None:
                self._idle[connection.key] = [connection]
            else:
                stack.append(connection)
            self._idle_order[connection] = None
            self._wake_waiters()
            if not self._sweeping and self.limits.keepalive_expiry is not None:
                self._start_sweeper()
            return False
        self._forget(connection)
        connection.state = ConnectionState.CLOSED  # counted out now; the socket closes in the caller
        return True

    async def release(self, connection: HTTPConnection, reusable: bool) -> None:
        """:meth:`give_back`, closing the connection (shielded) when it is not kept."""
        if self.give_back(connection, reusable):
            await _close_all([connection], "not reusable")

    # -- the sweeper ----------------------------------------------------------------------------------------

    def _start_sweeper(self) -> None:
        """Start :meth:`_sweep` on the running event loop, outside the caller's task."""
        self._sweeping = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: anyio's other backend
            import trio  # optional: present whenever the caller runs on it

            trio.lowlevel.spawn_system_task(self._sweep, name=f"aiotcp pool sweeper {id(self):#x}")
        else:
            self._sweep_task = loop.create_task(self._sweep(), name=f"aiotcp pool sweeper {id(self):#x}")

    async def _sweep(self) -> None:
        """Close idle connections as they expire; return when none is idle (:meth:`give_back` starts another).

        Never raises but for cancellation: a trio system task that raised would end the whole run.
        """
        expiry = self.limits.keepalive_expiry
        assert expiry is not None
        batch = min(_SWEEP_BATCH, expiry / 10)
        idle = self._idle_order
        try:
            with anyio.CancelScope() as scope:
                self._sweep_scope = scope
                # `idle` is tested and `_sweeping` cleared (finally) with no await between: a connection given
                # back after the test finds no sweeper running and starts one.
                while idle and not self._closed:
                    due = next(iter(idle)).idle_since + expiry
                    now = time.monotonic()
                    if due > now + batch:
                        await anyio.sleep(due - now)
                        continue
                    discard: list[HTTPConnection] = []
                    while idle:
                        oldest = next(iter(idle))
                        if oldest.idle_since + expiry > now + batch:
                            break
                        self._evict_idle(oldest, discard)
                    await _close_all(discard, "expired while idle")
        finally:
            self._sweeping = False
            self._sweep_scope = self._sweep_task = None

    async def aclose(self) -> None:
        """Close every idle connection and refuse new acquisitions. Busy ones close on release."""
        self._closed = True
        if self._sweep_scope is not None:
            self._sweep_scope.cancel()
        discard: list[HTTPConnection] = []
        while self._evict_oldest_idle(discard):
            pass
        self._wake_waiters()
        await _close_all(discard, "pool closed")


async def _close_all(connections: list[HTTPConnection], why: str) -> None:
    if connections:
        with anyio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose(why)
