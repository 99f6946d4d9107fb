"""The prober's own limits: a global start rate and a cap on probes in flight per host."""

from __future__ import annotations

from collections import deque

import anyio

__all__ = ["HostLimiter", "RateLimiter"]


class RateLimiter:
    """Starts at most ``rate`` probes per second on an absolute schedule (no burst after a stall)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = anyio.current_time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await anyio.sleep(slot - now)


class HostLimiter:
    """At most ``limit`` probes in flight per host. Holds state only for hosts with a probe in flight.

    A released slot is handed straight to the oldest waiter for that host, so a waiter cannot be overtaken
    and a wake-up cannot be lost (a waiter cancelled after the hand-off passes the slot on).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[str, int] = {}
        self._waiters: dict[str, deque[anyio.Event]] = {}

    def __repr__(self) -> str:
        return f"<HostLimiter limit={self.limit} busy_hosts={len(self._busy)} waiting_hosts={len(self._waiters)}>"

    async def acquire(self, host: str) -> None:
        busy = self._busy.get(host, 0)
        if busy < self.limit:
            self._busy[host] = busy + 1
            return
        event = anyio.Event()
        queue = self._waiters.setdefault(host, deque())
        queue.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release(host)
            else:
                queue.remove(event)
                if not queue and self._waiters.get(host) is queue:
                    del self._waiters[host]
            raise

    def release(self, host: str) -> None:
        queue = self._waiters.get(host)
        if queue:
            event = queue.popleft()
            if not queue:
                del self._waiters[host]
            event.set()  # the slot changes hands; the busy count stays
            return
        busy = self._busy[host] - 1
        if busy:
            self._busy[host] = busy
        else:
            del self._busy[host]
