"""Aesthetic heads on the stored reference CLIP embeddings: scores increase with rating."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from engine.curation.aesthetic import ClipEncoder, head_from_state_dict, load_head


def _embeddings(shared: Path, model: str) -> np.ndarray:
    folder = shared / "aesthetic" / "laion-linear" / f"{model}_embeddings"
    return np.vstack([np.load(folder / f"rating{i}.npy") for i in range(10)])


@pytest.mark.parametrize(
    "head,model",
    [
        ("laion-linear/sa_0_4_vit_b_32_linear.pth", "vit_b_32"),
        ("laion-linear/sa_0_4_vit_l_14_linear.pth", "vit_l_14"),
        ("sac-demo/models/sac_public_2022_06_29_vit_b_32_linear.pth", "vit_b_32"),
        ("sac-demo/models/sac_public_2022_06_29_vit_l_14_linear.pth", "vit_l_14"),
    ],
)
def test_linear_heads_increase_strictly_with_rating(
    shared_data: Path, head: str, model: str
) -> None:
    scores = load_head(shared_data / "aesthetic" / head).score(_embeddings(shared_data, model))
    assert np.all(np.diff(scores) > 0), scores


@pytest.mark.parametrize(
    "head", ["sac+logos+ava1-l14-linearMSE.pth", "ava+logos-l14-linearMSE.pth"]
)
def test_laion_mlp_ranks_rating_buckets(shared_data: Path, head: str) -> None:
    h = load_head(shared_data / "aesthetic" / "laion-mlp" / head)
    assert h.kind == "laion-mlp" and h.dim == 768
    scores = h.score(_embeddings(shared_data, "vit_l_14"))
    assert spearmanr(np.arange(10), scores).statistic > 0.9
    assert scores[-1] > scores[0] + 0.5 and 1.0 < scores.mean() < 10.0


def test_wrong_dimension_and_unknown_state_dict(shared_data: Path) -> None:
    import torch

    h = load_head(shared_data / "aesthetic" / "laion-linear" / "sa_0_4_vit_l_14_linear.pth")
    with pytest.raises(ValueError, match=r"\(N, 768\)"):
        h.score(np.zeros((2, 512)))
    with pytest.raises(ValueError, match="not a known aesthetic head"):
        head_from_state_dict({"fc.weight": torch.zeros(1, 4)})
    with pytest.raises(FileNotFoundError, match="aesthetic-head"):
        load_head(shared_data / "nope.pth")


def test_clip_encoder_never_downloads(tmp_path: Path) -> None:
    with pytest.raises((RuntimeError, FileNotFoundError), match="open_clip|not found"):
        ClipEncoder("ViT-L-14", tmp_path / "missing.pt")
