"""Near-duplicate clusters: copies are found, distinct photos are not merged, the best is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.curation.degrade import jpeg, resize
from engine.curation.duplicates import cluster_ids, duplicate_of, hamming_matrix
from engine.imageio import load_rgb
from engine.phash import hamming, phash


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    root = (
        Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tiny-coco" / "train2017"
    )
    if not root.is_dir():
        pytest.skip(f"shared test data not found at {root}")
    return [load_rgb(p) for p in sorted(root.glob("*.jpg"))[:20]]


def test_copies_cluster_with_their_original_and_distinct_photos_stay_apart(photos) -> None:
    ids, hashes, quality, owner = [], [], [], []
    for k, rgb in enumerate(photos):
        for q, variant in enumerate(
            [rgb, resize(rgb, 0.5), jpeg(rgb, 30), jpeg(resize(rgb, 0.4), 50)]
        ):
            ids.append(len(ids))
            hashes.append(phash(variant))
            quality.append(10.0 - q)  # the original is the best copy
            owner.append(k)
    clusters = cluster_ids(ids, hashes, quality)
    assert len(clusters) == len(photos)
    for c in clusters:
        assert len({owner[m] for m in c.members}) == 1 and len(c.members) == 4
        assert c.keep % 4 == 0  # the original (highest quality) is kept
    dropped = duplicate_of(clusters)
    assert len(dropped) == 3 * len(photos) and all(d <= 10 for _, d in dropped.values())


def test_hamming_matrix_matches_pairwise_and_validates() -> None:
    hs = ["0" * 16, "f" * 16, "0f" * 8]
    m = hamming_matrix(hs)
    assert m.tolist() == [[hamming(a, b) for b in hs] for a in hs]
    with pytest.raises(ValueError, match="16 hex"):
        hamming_matrix(["xyz"])
    with pytest.raises(ValueError, match="same length"):
        cluster_ids([1], ["0" * 16, "1" * 16], [1.0])


def test_radius_zero_only_merges_identical_hashes_and_ties_keep_lowest_id() -> None:
    clusters = cluster_ids(
        [5, 3, 9], ["00ff" * 4, "00ff" * 4, "00fe" * 4], [1.0, 1.0, 1.0], radius=0
    )
    assert [(c.keep, c.members) for c in clusters] == [(3, (3, 5))]
