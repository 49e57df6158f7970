"""Switches that turn pieces of the SAM CPU fast path off, for the ablation benchmark.

Each piece of the fast path has a simple fallback that computes the same thing the way
``segment_anything`` does; ``fast_path_disabled({"lowrank", ...})`` makes the pieces named
fall back while the block runs, so ``scripts/bench_sam_ablation.py`` can time the automatic
mask generator with one piece removed at a time and show what each one earns.

Components (``COMPONENTS``):

* ``encoder``: BatchNorm folding + channels-last (``encoder.inference_encoder``) -> the
  model's own image encoder;
* ``decoder``: ``FastMaskDecoder``'s shared-image re-association (``decoder.py``, with the
  low-rank decoder built on it) -> SAM's ``MaskDecoder`` transformer and upscaling;
* ``lowrank``: the low-rank per-prompt image tokens (``decoder_lowrank.py``) ->
  ``FastMaskDecoder`` with materialised image tokens;
* ``upsample``: full-resolution statistics without full-resolution logits
  (``upsample.FullResStats``) -> the reference's two bilinear interpolations.

The switch is process-wide (the generator's worker threads must see it), read when a
generator is built and on every call; it is a benchmarking tool, not a setting to serve
with. Outside the block every piece is on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

COMPONENTS = ("encoder", "decoder", "lowrank", "upsample")

_lock = threading.Lock()
_disabled: frozenset[str] = frozenset()


def is_disabled(component: str) -> bool:
    """Whether ``component`` (one of ``COMPONENTS``) currently runs its simple fallback."""
    return component in _disabled


@contextmanager
def fast_path_disabled(components: Iterable[str]) -> Iterator[frozenset[str]]:
    """Run the block with ``components`` falling back to their simple paths.

    Raises ValueError naming the valid components for an unknown name. Blocks do not
    nest across threads: the set is restored to what it was when the block was entered.
    """
    global _disabled
    names = frozenset(components)
    unknown = sorted(names - set(COMPONENTS))
    if unknown:
        raise ValueError(
            f"unknown fast-path component(s) {unknown}; choose from {', '.join(COMPONENTS)}"
        )
    with _lock:
        before = _disabled
        _disabled = before | names
    try:
        yield _disabled
    finally:
        with _lock:
            _disabled = before
