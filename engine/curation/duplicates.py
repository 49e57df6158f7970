"""Near-duplicate clusters by perceptual hash (``engine.phash.phash``: 64-bit DCT hash, hex).

Two images are linked when the Hamming distance of their hashes is <= ``radius`` bits;
clusters are the connected components of those links (union-find). In each cluster the
image with the highest quality score is kept, the others are duplicates of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RADIUS = 10
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class Cluster:
    """One cluster of near-duplicates: ``keep`` is the best member, ``members`` all of them."""

    keep: int
    members: tuple[int, ...]
    distances: dict[int, int]  # member -> Hamming distance to ``keep``


def _as_bytes(hashes: Sequence[str]) -> np.ndarray:
    """(N, 8) uint8 array of 64-bit hex hashes."""
    try:
        return np.array([list(int(h, 16).to_bytes(8, "big")) for h in hashes], dtype=np.uint8)
    except (ValueError, OverflowError) as err:
        raise ValueError(
            f"perceptual hashes must be 16 hex characters (engine.phash.phash): {err}"
        ) from err


def hamming_matrix(hashes: Sequence[str]) -> np.ndarray:
    """(N, N) uint8 Hamming distances between 64-bit hex hashes."""
    b = _as_bytes(hashes)
    if len(b) == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    return _POPCOUNT8[b[:, None, :] ^ b[None, :, :]].sum(axis=2, dtype=np.uint16).astype(np.uint8)


def _pairs_within(b: np.ndarray, radius: int, block: int = 2048) -> list[tuple[int, int, int]]:
    """(i, j, distance) for i < j with distance <= radius, in memory blocks of ``block`` rows."""
    out: list[tuple[int, int, int]] = []
    n = len(b)
    for start in range(0, n, block):
        chunk = b[start : start + block]
        d = _POPCOUNT8[chunk[:, None, :] ^ b[None, :, :]].sum(axis=2, dtype=np.uint16)
        ii, jj = np.nonzero(d <= radius)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            if start + i < j:
                out.append((start + i, j, int(d[i, j])))
    return out


def cluster_ids(
    ids: Sequence[int],
    hashes: Sequence[str],
    quality: Sequence[float],
    *,
    radius: int = DEFAULT_RADIUS,
) -> list[Cluster]:
    """Clusters (size >= 2 only) of near-duplicate images.

    ``ids``, ``hashes`` and ``quality`` are parallel; the kept member is the one with the
    highest quality (ties: the lowest id). Clusters are sorted by their kept id.
    """
    if not (len(ids) == len(hashes) == len(quality)):
        raise ValueError("ids, hashes and quality must have the same length")
    if radius < 0 or radius > 64:
        raise ValueError(f"radius must be 0..64 bits, got {radius}")
    b = _as_bytes(hashes)
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in _pairs_within(b, radius):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(len(ids)):
        groups.setdefault(find(i), []).append(i)
    clusters = []
    for members in groups.values():
        if len(members) < 2:
            continue
        best = max(members, key=lambda k: (quality[k], -ids[k]))
        dist = {ids[k]: int(_POPCOUNT8[b[k] ^ b[best]].sum()) for k in members}
        clusters.append(
            Cluster(keep=ids[best], members=tuple(sorted(ids[k] for k in members)), distances=dist)
        )
    return sorted(clusters, key=lambda c: c.keep)


def duplicate_of(clusters: Sequence[Cluster]) -> dict[int, tuple[int, int]]:
    """image id -> (id of the kept image, Hamming distance) for every dropped duplicate."""
    out: dict[int, tuple[int, int]] = {}
    for c in clusters:
        for m in c.members:
            if m != c.keep:
                out[m] = (c.keep, c.distances[m])
    return out
