"""Background embedding precompute: an annotator should never wait for the encoder.

``Precomputer`` owns one daemon thread and a bounded, de-duplicated queue of
``(image sha256, file path)``. ``submit`` returns at once; the thread loads each image
(``engine.imageio.load_rgb``) and stores its embedding through a ``CachedSegmenter``
(``engine.segment.registry``), so the request that later opens the image finds it in the
embedding cache. When the queue is full the oldest pending item is dropped (the newest
submissions are the images a user will open next).

Web app integration (one line, before the app starts)::

    from engine.segment.precompute import attach_precompute
    attach_precompute(app)            # app.state.precomputer is set in the lifespan

and, when a user's next images are known::

    from engine.segment.precompute import schedule
    schedule(request.app, [(image.sha256, image.uri) for image in upcoming])
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from engine.imageio import ImageRejected, load_rgb

log = logging.getLogger("dataengine.precompute")


class Precomputer:
    """Embeds queued images in a background thread.

    segmenter: a ``CachedSegmenter`` (anything with ``embed_cached(sha256, load_image)``
    and ``is_cached(sha256)``). max_pending: queue bound. load_image: path -> HWC uint8 RGB.
    """

    def __init__(
        self,
        segmenter: Any,
        *,
        max_pending: int = 64,
        load_image: Callable[[str], np.ndarray] = load_rgb,
    ):
        if not hasattr(segmenter, "embed_cached"):
            raise TypeError(
                "Precomputer needs a cached segmenter: build it with "
                "build_segmenter(..., cache_dir=...) or engine.segment.registry.with_cache(seg, dir)"
            )
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.segmenter = segmenter
        self.max_pending = max_pending
        self.load_image = load_image
        self._pending: OrderedDict[str, str] = OrderedDict()  # sha256 -> path, oldest first
        self._running: str | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._counts = {"submitted": 0, "done": 0, "cached": 0, "failed": 0, "dropped": 0}
        self._seconds = 0.0
        self._last_error: str | None = None

    def start(self) -> Precomputer:
        """Start the worker thread (idempotent). Returns self."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop = False
            self._thread = threading.Thread(
                target=self._run, name="embedding-precompute", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Drop pending work, let the image in flight finish (up to ``timeout`` s), stop."""
        with self._cond:
            self._stop = True
            self._counts["dropped"] += len(self._pending)
            self._pending.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def submit(self, sha256: str, path: str | Path) -> bool:
        """Queue one image; False if it is already queued, running or cached."""
        if not sha256:
            raise ValueError("submit needs the image's sha256 (the embedding cache key)")
        with self._cond:
            if sha256 in self._pending or sha256 == self._running:
                return False
        if self.segmenter.is_cached(sha256):
            with self._cond:
                self._counts["cached"] += 1
            return False
        with self._cond:
            if sha256 in self._pending or sha256 == self._running:
                return False
            self._pending[sha256] = str(path)
            self._counts["submitted"] += 1
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
                self._counts["dropped"] += 1
            self._cond.notify()
        return True

    def submit_many(self, items: Iterable[tuple[str | None, str | Path]]) -> int:
        """Queue ``(sha256, path)`` pairs in order (None sha256 skipped); returns how many."""
        return sum(self.submit(sha, path) for sha, path in items if sha)

    def status(self) -> dict[str, Any]:
        """Counters: pending, running (sha256 or None), submitted, done, cached, failed,
        dropped, mean_seconds (per embedded image), last_error, alive."""
        with self._cond:
            done = self._counts["done"]
            return {
                "pending": len(self._pending),
                "running": self._running,
                **self._counts,
                "mean_seconds": (self._seconds / done) if done else None,
                "last_error": self._last_error,
                "alive": self._thread is not None and self._thread.is_alive(),
            }

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until nothing is pending or running (tests, CLI); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                sha256, path = self._pending.popitem(last=False)
                self._running = sha256
            t0 = time.perf_counter()
            outcome, error = "done", None
            try:
                self.segmenter.embed_cached(sha256, lambda p=path: self.load_image(p))
            except (ImageRejected, OSError, ValueError) as err:
                outcome, error = "failed", f"{Path(path).name}: {err}"
            except Exception as err:  # noqa: BLE001 - a model error must not kill the thread
                outcome, error = "failed", f"{Path(path).name}: {type(err).__name__}: {err}"
                log.exception("precompute of %s failed", path)
            with self._cond:
                self._running = None
                self._counts[outcome] += 1
                if outcome == "done":
                    self._seconds += time.perf_counter() - t0
                else:
                    self._last_error = error
                    log.warning("precompute failed: %s", error)
                self._cond.notify_all()


def attach_precompute(app: Any, *, max_pending: int = 64) -> None:
    """Start a ``Precomputer`` in the app's lifespan (``app.state.startup_hooks``).

    Sets ``app.state.precomputer`` (None when the loaded segmenter has no embedding
    cache) and stops it at shutdown.
    """

    def hook(app_: Any) -> Callable[[], None] | None:
        seg = getattr(app_.state, "segmenter", None)
        if seg is None or not hasattr(seg, "embed_cached"):
            log.info("no cached segmenter loaded; embedding precompute disabled")
            app_.state.precomputer = None
            return None
        pre = Precomputer(seg, max_pending=max_pending).start()
        app_.state.precomputer = pre
        return pre.stop

    app.state.precomputer = None
    app.state.startup_hooks.append(hook)


def schedule(app: Any, items: Iterable[tuple[str | None, str | Path]]) -> int:
    """Queue ``(sha256, path)`` pairs on the app's precomputer; 0 when there is none."""
    pre = getattr(app.state, "precomputer", None)
    return pre.submit_many(items) if pre is not None else 0
