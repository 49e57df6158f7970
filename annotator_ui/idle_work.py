"""Work a request leaves behind, done only while this app process answers no request.

Two things used to run right after a response, in the request's process and threadpool: the
embedding precompute of the images an annotator is about to open (``POST /api/tasks/next``)
and the image's metrics cache row (``POST /api/tasks/{id}/submit``). Under load they took
CPU (and the GIL) from the requests themselves. Now each is a job handed to ``IdleWork``:

- one daemon thread per app process runs the jobs, oldest first, each only after the process
  has had no request in flight for ``quiet_s`` (``InFlightMiddleware`` counts them);
- jobs are keyed: a job already queued under the same key is not queued twice;
- the queue is bounded (``max_pending``): past it the oldest job is dropped (counted in
  ``status()["dropped"]``). Both kinds are optional: an image without an embedding is
  embedded when first decoded, an image without a fresh metrics row is derived by the next
  metrics query.

When nobody works (a quiet app) the jobs run at once, as before; when the app is saturated
they wait for a pause, and requests keep the CPU. ``wait_idle()`` lets tests and scripts
wait until the queue is empty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.imageio import ImageRejected

log = logging.getLogger("dataengine.idle_work")

Job = Callable[[], None]
EXPECTED_FAILURES = (SQLAlchemyError, ImageRejected, OSError, ValueError)


class InFlight:
    """Requests in flight in this process and when the last one ended (monotonic s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.last_end = time.monotonic()

    def enter(self) -> None:
        with self._lock:
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1
            self.last_end = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the last request ended; 0.0 while one is in flight."""
        with self._lock:
            return 0.0 if self.count else time.monotonic() - self.last_end


class InFlightMiddleware:
    """Pure ASGI: counts HTTP requests in flight on ``in_flight``."""

    def __init__(self, app: ASGIApp, *, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.leave()


class IdleWork:
    """A bounded, keyed queue of jobs run by one thread while the process is idle."""

    def __init__(
        self, in_flight: InFlight, *, quiet_s: float = 0.25, max_pending: int = 10_000
    ) -> None:
        if max_pending < 1 or quiet_s < 0:
            raise ValueError("IdleWork needs max_pending >= 1 and quiet_s >= 0")
        self.in_flight = in_flight
        self.quiet_s = quiet_s
        self.max_pending = max_pending
        self._jobs: OrderedDict[Hashable, Job] = OrderedDict()
        self._running = False
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._counts = {"submitted": 0, "done": 0, "failed": 0, "dropped": 0}

    def start(self) -> IdleWork:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="idle-work", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Drop what is queued, let a running job finish (up to ``timeout`` s), stop."""
        with self._cond:
            self._stop = True
            self._counts["dropped"] += len(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def submit(self, key: Hashable, job: Job) -> bool:
        """Queue ``job`` under ``key``; False when a job with that key is already queued."""
        with self._cond:
            if key in self._jobs:
                return False
            self._jobs[key] = job
            self._counts["submitted"] += 1
            while len(self._jobs) > self.max_pending:
                self._jobs.popitem(last=False)
                self._counts["dropped"] += 1
            self._cond.notify_all()
        return True

    def status(self) -> dict[str, Any]:
        """pending, running, submitted, done, failed, dropped."""
        with self._cond:
            return {"pending": len(self._jobs), "running": self._running, **self._counts}

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no job is queued or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _next_job(self) -> Job | None:
        """The oldest job once the process is quiet; None when stopping."""
        with self._cond:
            while True:
                if self._stop:
                    return None
                if self._jobs:
                    quiet = self.in_flight.quiet_for()
                    if quiet >= self.quiet_s:
                        self._running = True
                        return self._jobs.popitem(last=False)[1]
                    self._cond.wait(max(self.quiet_s - quiet, 0.01))
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            outcome = "done"
            try:
                job()
            except EXPECTED_FAILURES as err:
                outcome = "failed"
                log.warning("background job failed: %s: %s", type(err).__name__, err)
            except Exception:  # noqa: BLE001 - one bad job must not stop the others
                outcome = "failed"
                log.exception("background job failed")
            with self._cond:
                self._running = False
                self._counts[outcome] += 1
                self._cond.notify_all()


def attach(app: Any, *, quiet_s: float = 0.25) -> None:
    """Count requests in flight and run ``app.state.idle_work`` for the app's lifetime
    (started in the lifespan, stopped at shutdown). Call once, in ``create_app``."""
    in_flight = InFlight()
    work = IdleWork(in_flight, quiet_s=quiet_s)
    app.add_middleware(InFlightMiddleware, in_flight=in_flight)
    app.state.idle_work = work

    def hook(_app: Any) -> Callable[[], None]:
        work.start()
        return work.stop

    app.state.startup_hooks.append(hook)
