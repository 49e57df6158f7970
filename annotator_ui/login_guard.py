"""Per-process part of login throttling: bounded argon2 verifications and a lock cache.

argon2 verification costs ~50 ms of CPU. ``LoginGuard.verify`` runs at most
``max_concurrent`` of them at once (an anyio CapacityLimiter: waiting logins wait in the
event loop, holding no worker thread) and refuses (``Busy``) when more than
``max_waiting`` are already queued, so a crowd of guessers cannot take every CPU or
thread from other users. The shared, authoritative counters are in the database
(``db.login_throttle``); ``locks`` only remembers locks this process has seen, to refuse
repeated attempts without a database round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
MAX_CACHED_LOCKS = 10_000


class Busy(Exception):
    """Too many logins are waiting for a password check; retry after ``retry_after``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many logins at once; retry in {retry_after:g} s")
        self.retry_after = retry_after


class LoginGuard:
    """One per app (``app.state.login_guard``)."""

    def __init__(self, *, max_concurrent: int, max_waiting: int) -> None:
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self._limiter: anyio.CapacityLimiter | None = None
        self._locks: dict[str, float] = {}  # key -> monotonic time it unlocks

    def remember_lock(self, keys: list[str], seconds: float) -> None:
        """Refuse ``keys`` in this process for ``seconds`` without asking the database."""
        if len(self._locks) > MAX_CACHED_LOCKS:
            now = time.monotonic()
            self._locks = {k: t for k, t in self._locks.items() if t > now}
        until = time.monotonic() + seconds
        for key in keys:
            self._locks[key] = max(until, self._locks.get(key, 0.0))

    def locked_for(self, keys: list[str]) -> float:
        """Seconds until the known locks on ``keys`` end (0 when none is known)."""
        now = time.monotonic()
        return max([0.0, *(self._locks.get(k, 0.0) - now for k in keys)])

    async def verify(self, check: Callable[[], T]) -> T:
        """Run ``check`` (a password verification) on a worker thread, bounded (see module)."""
        if self.max_concurrent <= 0:
            return await anyio.to_thread.run_sync(check)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrent)
        if self._limiter.statistics().tasks_waiting >= self.max_waiting:
            raise Busy(1.0)
        return await anyio.to_thread.run_sync(check, limiter=self._limiter)
