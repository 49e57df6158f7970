"""The Ray cluster the bulk pre-fill and embedding run on (the optional ``ray`` extra):
importing Ray with a message naming the fix, joining or starting a cluster, and the
picklable segmenter builder each model actor calls."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from engine.segment.protocol import Segmenter

log = logging.getLogger("dataengine.prefill_ray")

SegmenterBuilder = Callable[[], Segmenter]


class RayUnavailable(RuntimeError):
    """Ray is not installed; the message names the fix."""


def import_ray() -> Any:
    """``ray`` (with Ray Data), or ``RayUnavailable`` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra
    except ImportError as err:
        raise RayUnavailable(
            "Ray is not installed: pip install 'dataengine[ray]' (or 'ray[data]'), "
            "or pre-fill without --ray"
        ) from err
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """Join the Ray cluster at ``address`` ("auto", "ray://host:10001", "host:6379"), or start
    a local one (``num_cpus`` CPUs) when None; reuses a connection already made."""
    ray = import_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address:
            kwargs["address"] = address
        elif num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        for attempt in (1, 2):
            try:
                ray.init(**kwargs)
                break
            except Exception as err:  # Ray raises a bare Exception when its node starts slowly
                if attempt == 2 or "timed out during startup" not in str(err):
                    raise
                log.warning("the Ray node started too slowly (%s); trying once more", err)
                ray.shutdown()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the caller draws one from the stream
    return ray


def builder(**build_kwargs: Any) -> SegmenterBuilder:
    """A picklable ``() -> Segmenter`` running ``engine.segment.registry.build_segmenter``
    with ``build_kwargs`` (backend, model_type, checkpoint, sha256, device, cache_dir, ...)
    where it is called: in each model actor."""
    from engine.segment.registry import build_segmenter

    return functools.partial(build_segmenter, **build_kwargs)
