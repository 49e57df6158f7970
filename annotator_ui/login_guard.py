"""Per-process part of login throttling: bounded argon2 verifications and a lock cache.

argon2 verification costs ~50 ms of CPU on several threads (its lanes). ``LoginGuard.verify``
runs at most ``max_concurrent`` of them at once (an anyio CapacityLimiter: waiting logins
wait in the event loop, holding no worker thread), on dedicated threads whose scheduling
priority is lowered by ``nice`` (Linux: per thread, inherited by argon2's lane threads), and
refuses (``Busy``) when more than ``max_waiting`` are already queued. So a crowd of
guessers cannot take every CPU or thread from other users' requests. The shared, authoritative counters are in the database
(``db.login_throttle``); ``locks`` only remembers locks this process has seen, to refuse
repeated attempts without a database round trip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
MAX_CACHED_LOCKS = 10_000
log = logging.getLogger("dataengine.login")


def _lower_priority(nice: int) -> None:
    """Thread initializer: lower this thread's CPU priority (Linux nice is per thread)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as err:  # not permitted here: checks run at normal priority
        log.warning("could not lower the password-check thread priority: %s", err)


class Busy(Exception):
    """Too many logins are waiting for a password check; retry after ``retry_after``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many logins at once; retry in {retry_after:g} s")
        self.retry_after = retry_after


class LoginGuard:
    """One per app (``app.state.login_guard``)."""

    def __init__(self, *, max_concurrent: int, max_waiting: int, nice: int = 10) -> None:
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.nice = nice
        self._limiter: anyio.CapacityLimiter | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._locks: dict[str, float] = {}  # key -> monotonic time it unlocks

    def close(self) -> None:
        """Stop the password-check threads (app shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

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

    def busy(self) -> bool:
        """True when a new check would be refused (the waiting queue is full)."""
        if self.max_concurrent <= 0 or self._limiter is None:
            return False
        stats = self._limiter.statistics()
        full = stats.borrowed_tokens >= self.max_concurrent
        return full and stats.tasks_waiting >= self.max_waiting

    async def verify(self, check: Callable[[], T]) -> T:
        """Run ``check`` (a password verification) on a worker thread, bounded (see module)."""
        if self.max_concurrent <= 0:
            return await anyio.to_thread.run_sync(check)
        if self._limiter is None or self._pool is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrent)
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_concurrent,
                thread_name_prefix="password-check",
                initializer=_lower_priority,
                initargs=(self.nice,),
            )
        if self.busy():
            raise Busy(1.0)
        async with self._limiter:
            return await asyncio.wrap_future(self._pool.submit(check))
