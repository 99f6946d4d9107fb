"""The prober's own limits: a global start rate and a cap on probes in flight per host.

Both have a synchronous core that the lean engine calls from its callbacks (:meth:`RateLimiter.reserve`,
:meth:`HostLimiter.try_acquire` / :meth:`HostLimiter.wait_turn` / :meth:`HostLimiter.release`) and an async
face for the reference engine's coroutines (:meth:`RateLimiter.wait`, :meth:`HostLimiter.acquire`): one
schedule, one queue, whichever engine waits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio

__all__ = ["HostLimiter", "RateLimiter"]


class RateLimiter:
    """Starts at most ``rate`` probes per second on an absolute schedule (no burst after a stall)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    def __repr__(self) -> str:
        return f"<RateLimiter interval={self.interval:g}s next={self._next:.3f}>"

    def reserve(self, now: float) -> float:
        """Take the next start slot; the seconds from ``now`` (the event loop's clock) until it comes."""
        slot = max(now, self._next)
        self._next = slot + self.interval
        return slot - now

    async def wait(self) -> None:
        """Wait for the next start slot."""
        delay = self.reserve(anyio.current_time())
        if delay > 0:
            await anyio.sleep(delay)


class HostLimiter:
    """At most ``limit`` probes in flight per host. Holds state only for hosts with a probe in flight.

    A released slot is handed straight to the oldest waiter for that host (its ``wake`` is called), so a waiter
    cannot be overtaken and a wake-up cannot be lost (a waiter cancelled after the hand-off passes the slot
    on).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[str, int] = {}
        self._waiters: dict[str, deque[Callable[[], object]]] = {}

    def __repr__(self) -> str:
        return f"<HostLimiter limit={self.limit} busy_hosts={len(self._busy)} waiting_hosts={len(self._waiters)}>"

    def try_acquire(self, host: str) -> bool:
        """Take a slot for ``host`` if one is free."""
        busy = self._busy.get(host, 0)
        if busy < self.limit:
            self._busy[host] = busy + 1
            return True
        return False

    def wait_turn(self, host: str, wake: Callable[[], object]) -> None:
        """Queue for the next slot of ``host``: ``wake()`` is called, from :meth:`release`, once it is ours."""
        self._waiters.setdefault(host, deque()).append(wake)

    def cancel_wait(self, host: str, wake: Callable[[], object]) -> None:
        """Leave the queue of ``host`` (``wake`` not called yet)."""
        queue = self._waiters.get(host)
        if queue is not None:
            queue.remove(wake)
            if not queue:
                del self._waiters[host]

    async def acquire(self, host: str) -> None:
        """Wait for a slot for ``host``."""
        if self.try_acquire(host):
            return
        event = anyio.Event()
        self.wait_turn(host, event.set)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release(host)
            else:
                self.cancel_wait(host, event.set)
            raise

    def release(self, host: str) -> None:
        """Give back a slot of ``host``: to its oldest waiter, if any."""
        queue = self._waiters.get(host)
        if queue:
            wake = queue.popleft()
            if not queue:
                del self._waiters[host]
            wake()  # the slot changes hands; the busy count stays
            return
        busy = self._busy[host] - 1
        if busy:
            self._busy[host] = busy
        else:
            del self._busy[host]
