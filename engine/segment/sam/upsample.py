"""Mask statistics at full resolution without materialising full-resolution logits.

SAM upsamples 256x256 low-res logits to the padded 1024 input (bilinear), crops the
valid part and upsamples again to the original HxW (bilinear, align_corners=False). Both
steps are separable, so each full-res pixel is ``sum_jk wr[y,j] wc[x,k] L[ry+j, cx+k]``
with K<=3 taps per axis (the composite of the two 1-D interpolation matrices).

``FullResStats`` evaluates that sum in one fused, compiled pass per mask (numba) and keeps
only what the reference derives from the full-res tensor: the pixel counts above
``thr - offset`` and ``thr + offset`` (stability score) and the XYXY box of ``> thr``.
Results equal the reference's up to float32 rounding of pixels lying exactly on a
threshold (a few pixels in millions). ``FullResStats.mask`` thresholds one map at full
resolution the same way (interactive decode, final AMG masks), skipping blocks far from
the threshold.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numba
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

from engine.segment.sam.fast_path import is_disabled


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in matrix of torch's bilinear (align_corners=False) 1-D interpolation."""
    scale = n_in / n_out
    dst = np.arange(n_out, dtype=np.float64)
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m


def composite_taps(
    n_low: int, n_pad: int, n_valid: int, n_out: int
) -> tuple[np.ndarray, np.ndarray]:
    """low-res -> pad (bilinear) -> crop to n_valid -> n_out (bilinear) as per-output taps.

    Returns (lo n_out int64: first low-res index, w n_out x K float32: tap weights).
    """
    comp = _interp_matrix(n_valid, n_out) @ _interp_matrix(n_low, n_pad)[:n_valid]
    nz = comp > 0
    first = nz.argmax(axis=1)
    last = n_low - 1 - nz[:, ::-1].argmax(axis=1)
    k = int((last - first).max()) + 1
    lo = np.minimum(first, n_low - k)
    w = np.stack([comp[np.arange(n_out), lo + j] for j in range(k)], axis=1)
    return lo.astype(np.int64), w.astype(np.float32)


BLOCK = 32  # output pixels per block side for the skip test


def block_ranges(lo: np.ndarray, k: int, n_out: int, block: int = BLOCK) -> np.ndarray:
    """(nblocks, 4) int64: output [start, stop) and the low-res [first, last] it reads.

    Used by ``FullResStats.mask``: bilinear weights are non-negative and sum to one, so
    a full-res pixel lies between the min and max of the low-res values it reads; blocks
    whose footprint is entirely above or below the threshold are filled without
    evaluating their pixels. (The stability counts stay dense: low-res logits of many
    masks straddle the +-offset thresholds almost everywhere, and skipping then costs more
    than it saves.)
    """
    starts = np.arange(0, n_out, block)
    stops = np.minimum(starts + block, n_out)
    return np.stack([starts, stops, lo[starts], lo[stops - 1] + k - 1], axis=1).astype(np.int64)


@numba.njit(inline="always", cache=True)
def _columns(src, clo, cw, xa, w, dst):  # pragma: no cover
    """dst[:w] = low-res row ``src`` interpolated at output columns xa .. xa+w-1."""
    for x in range(w):
        dst[x] = 0.0
    for k in range(cw.shape[1]):
        for x in range(w):
            dst[x] += cw[xa + x, k] * src[clo[xa + x] + k]


@numba.njit(inline="always", cache=True)
def _rows(t, rlo, rw, y, w, row):  # pragma: no cover
    """row[:w] = output row ``y`` from the column-interpolated low-res rows ``t``."""
    r0 = rlo[y]
    wk = rw[y, 0]
    for x in range(w):
        row[x] = wk * t[r0, x]
    for k in range(1, rw.shape[1]):
        wk = rw[y, k]
        for x in range(w):
            row[x] += wk * t[r0 + k, x]


@numba.njit(parallel=True, cache=True)
def _stats_kernel(lg, rlo, rw, clo, cw, lo_t, hi_t, thr, counts, boxes):  # pragma: no cover
    m, nlow, _ = lg.shape
    h = rw.shape[0]
    w = cw.shape[0]
    for i in numba.prange(m):
        t = np.empty((nlow, w), dtype=np.float32)
        for r in range(nlow):
            _columns(lg[i, r], clo, cw, 0, w, t[r])
        row = np.empty(w, dtype=np.float32)
        n_lo = 0
        n_hi = 0
        x0, y0, x1, y1 = w, h, -1, -1
        for y in range(h):
            _rows(t, rlo, rw, y, w, row)
            c_lo = 0
            c_hi = 0
            for x in range(w):
                c_lo += row[x] > lo_t
                c_hi += row[x] > hi_t
            n_lo += c_lo
            n_hi += c_hi
            if c_lo > 0:  # box of > thr: scan in from both ends, stop at the first hit
                first = -1
                for x in range(w):
                    if row[x] > thr:
                        first = x
                        break
                if first >= 0:
                    last = first
                    for x in range(w - 1, first, -1):
                        if row[x] > thr:
                            last = x
                            break
                    x0 = min(x0, first)
                    x1 = max(x1, last)
                    y0 = min(y0, y)
                    y1 = max(y1, y)
        counts[i, 0] = n_lo
        counts[i, 1] = n_hi
        if y1 >= 0:
            boxes[i, 0] = x0
            boxes[i, 1] = y0
            boxes[i, 2] = x1
            boxes[i, 3] = y1


@numba.njit(parallel=True, cache=True)
def _mask_kernel(lg, rlo, rw, clo, cw, rb, cb, thr, out):  # pragma: no cover
    """One low-res logit map -> the full-res boolean mask ``> thr`` (same block skipping)."""
    nby = rb.shape[0]
    nbx = cb.shape[0]
    nlow = lg.shape[0]
    for by in numba.prange(nby):
        ya, yb, ra, rz = rb[by, 0], rb[by, 1], rb[by, 2], rb[by, 3]
        t = np.empty((nlow, cb[0, 1] - cb[0, 0]), dtype=np.float32)
        row = np.empty(cb[0, 1] - cb[0, 0], dtype=np.float32)
        for bx in range(nbx):
            xa, xb = cb[bx, 0], cb[bx, 1]
            bmin = lg[ra, cb[bx, 2]]
            bmax = bmin
            for r in range(ra, rz + 1):
                for c in range(cb[bx, 2], cb[bx, 3] + 1):
                    bmin = min(bmin, lg[r, c])
                    bmax = max(bmax, lg[r, c])
            margin = np.float32(1e-4) + np.float32(1e-5) * max(abs(bmin), abs(bmax))
            if bmin > thr + margin or bmax < thr - margin:
                fill = bmin > thr + margin
                for y in range(ya, yb):
                    for x in range(xa, xb):
                        out[y, x] = fill
                continue
            w = xb - xa
            for r in range(ra, rz + 1):
                _columns(lg[r], clo, cw, xa, w, t[r])
            for y in range(ya, yb):
                _rows(t, rlo, rw, y, w, row)
                for x in range(w):
                    out[y, xa + x] = row[x] > thr


# the same kernel, one thread: for callers that already run one per core (AMG workers)
_stats_kernel_serial = numba.njit(nogil=True, cache=True)(_stats_kernel.py_func)

# numba's parallel kernels must not be entered by two threads at once under its
# "workqueue" threading layer (the fallback without TBB or OpenMP); AMG worker threads and
# concurrent HTTP decodes both call them, so every kernel call takes this lock.
_KERNEL_LOCK = threading.Lock()


class FullResStats:
    """Stability scores and boxes of SAM low-res logits as seen at the original resolution.

    ``input_size`` (h, w) is the resized image inside the 1024 square, ``original_size``
    (H, W) the crop/image the masks belong to. Low-res logits are Mx256x256 float32.
    Requires offset >= 0 (as the reference's stability score does implicitly).
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
        low: int = 256,
        pad: int = 1024,
    ) -> None:
        self.rlo, self.rw = composite_taps(low, pad, input_size[0], original_size[0])
        self.clo, self.cw = composite_taps(low, pad, input_size[1], original_size[1])
        self.rb = block_ranges(self.rlo, self.rw.shape[1], original_size[0])
        self.cb = block_ranges(self.clo, self.cw.shape[1], original_size[1])
        self.original_size = original_size

    def __call__(
        self, logits: torch.Tensor, offset: float, threshold: float = 0.0, parallel: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """logits Mx256x256 -> (stability M float32, boxes Mx4 int64 XYXY of logits > threshold).

        Stability = #(> threshold + offset) / #(> threshold - offset), NaN when empty, as
        ``segment_anything.utils.amg.calculate_stability_score``. ``parallel=False`` runs
        on the calling thread only, without the kernel lock (callers that keep every core
        busy with their own threads: parallel kernels there only queue on the lock).
        """
        if offset < 0:
            raise ValueError("stability offset must be >= 0")
        lg = np.ascontiguousarray(logits.detach().cpu().numpy(), dtype=np.float32)
        m = lg.shape[0]
        counts = np.zeros((m, 2), dtype=np.int64)
        boxes = np.zeros((m, 4), dtype=np.int64)
        if m:
            args = (
                lg,
                self.rlo,
                self.rw,
                self.clo,
                self.cw,
                np.float32(threshold - offset),
                np.float32(threshold + offset),
                np.float32(threshold),
                counts,
                boxes,
            )
            if parallel:
                with _KERNEL_LOCK:
                    _stats_kernel(*args)
            else:
                _stats_kernel_serial(*args)
        with np.errstate(invalid="ignore", divide="ignore"):
            stab = counts[:, 1].astype(np.float32) / counts[:, 0].astype(np.float32)
        return torch.from_numpy(stab), torch.from_numpy(boxes)

    def mask(self, logits: torch.Tensor | np.ndarray, threshold: float = 0.0) -> np.ndarray:
        """One 256x256 low-res logit map -> HxW bool mask of full-res logits > threshold.

        What ``Sam.postprocess_masks`` then ``> threshold`` gives, without the two
        full-size interpolations: blocks far from the threshold are filled, the rest is
        evaluated exactly (pixels within float32 rounding of the threshold may differ).
        """
        lg = logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else logits
        lg = np.ascontiguousarray(np.asarray(lg, dtype=np.float32).reshape(lg.shape[-2:]))
        out = np.empty(self.original_size, dtype=np.bool_)
        with _KERNEL_LOCK:
            _mask_kernel(
                lg,
                self.rlo,
                self.rw,
                self.clo,
                self.cw,
                self.rb,
                self.cb,
                np.float32(threshold),
                out,
            )
        return out


class ReferenceStats:
    """``FullResStats``'s interface computed as the reference does: full-res logits first.

    The fallback when the ``upsample`` fast path is disabled (``fast_path``): each block of
    ``block`` masks is interpolated to the padded 1024 square, cropped to ``input_size`` and
    interpolated to ``original_size`` (``Sam.postprocess_masks``), then thresholded
    (``calculate_stability_score``, ``batched_mask_to_box``). Same outputs, Mx H x W float32
    intermediates.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
        pad: int = 1024,
        block: int = 8,
    ) -> None:
        self.input_size = input_size
        self.original_size = original_size
        self.pad = pad
        self.block = block

    def _full(self, logits: torch.Tensor) -> torch.Tensor:
        """Mx256x256 low-res logits -> MxHxW full-res logits (float32, CPU)."""
        x = F.interpolate(logits[:, None].float().cpu(), (self.pad, self.pad), mode="bilinear")
        x = x[..., : self.input_size[0], : self.input_size[1]]
        return F.interpolate(x, self.original_size, mode="bilinear")[:, 0]

    def __call__(
        self, logits: torch.Tensor, offset: float, threshold: float = 0.0, parallel: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``FullResStats.__call__`` (``parallel`` is ignored)."""
        if offset < 0:
            raise ValueError("stability offset must be >= 0")
        stab, boxes = [torch.zeros(0)], [torch.zeros(0, 4, dtype=torch.int64)]
        for i in range(0, len(logits), self.block):
            full = self._full(logits[i : i + self.block])
            stab.append(calculate_stability_score(full, threshold, offset).float())
            boxes.append(batched_mask_to_box(full > threshold))
        return torch.cat(stab), torch.cat(boxes)

    def mask(self, logits: torch.Tensor | np.ndarray, threshold: float = 0.0) -> np.ndarray:
        """As ``FullResStats.mask``: one 256x256 logit map -> HxW bool mask."""
        lg = torch.as_tensor(logits, dtype=torch.float32)
        return (self._full(lg.reshape(1, *lg.shape[-2:]))[0] > threshold).numpy()


@lru_cache(maxsize=32)
def _cached_stats(input_size: tuple[int, int], original_size: tuple[int, int]) -> FullResStats:
    return FullResStats(input_size, original_size)


def full_res_stats(
    input_size: tuple[int, int], original_size: tuple[int, int]
) -> FullResStats | ReferenceStats:
    """The ``FullResStats`` of one geometry, built once (its taps cost a dense product).

    ``ReferenceStats`` when the ``upsample`` fast path is disabled (``fast_path``).
    """
    if is_disabled("upsample"):
        return ReferenceStats(tuple(input_size), tuple(original_size))
    return _cached_stats(tuple(input_size), tuple(original_size))
