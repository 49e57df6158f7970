"""Decoder fine-tuning with random vit_t weights on a handful of small synthetic images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput
from db.models import ModelVersion
from db.session import transaction
from engine.flywheel.finetune_decoder import FinetuneConfig, finetune_project, improved
from engine.segment.sam.models import build_sam, file_sha256, load_checkpoint
from tests.factories import box_mask, make_image, make_mask, make_project


@pytest.fixture(scope="module")
def vit_t_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random_vit_t.pth"
    torch.save(build_sam("vit_t").state_dict(), path)
    return path, file_sha256(path)


def _project(
    factory: sessionmaker[Session], tmp_path: Path, ckpt: tuple[Path, str]
) -> tuple[int, int]:
    rng = np.random.default_rng(0)
    with transaction(factory) as s:  # fixed sha256 per synthetic image: the cache key
        p = make_project(s)
        for k in range(3):
            img = np.full((64, 80, 3), 40, np.uint8) + rng.integers(
                0, 20, (64, 80, 3), dtype=np.uint8
            )
            boxes = [(8 + k, 10, 36 + k, 40), (48, 20 + k, 72, 56)]
            for x0, y0, x1, y1 in boxes:
                img[y0:y1, x0:x1] = (200, 60 + 30 * k, 40)
            path = tmp_path / f"im{k}.png"
            PILImage.fromarray(img).save(path)
            row = make_image(
                s, project=p, uri=str(path), width=80, height=64, sha256=f"synthetic{k:055d}"
            )
            for b in boxes:
                make_mask(
                    s, image=row, mask=box_mask(64, 80, *b), source="human", status="accepted"
                )
        mv = ModelVersion(name="random-vit_t", backend="sam", model_type="vit_t",
                          checkpoint_path=str(ckpt[0]), checkpoint_sha256=ckpt[1])  # fmt: skip
        s.add(mv)
        s.flush()
        return p.id, mv.id


def _run(factory: Any, tmp_path: Path, ckpt: tuple[Path, str], **cfg: Any) -> dict[str, Any]:
    project_id, mv_id = _project(factory, tmp_path, ckpt)
    config = FinetuneConfig(holdout=0.34, eval_clicks=2, seed=0, **cfg)
    # Same images and weights in every test: the encoder runs once (disk embedding cache).
    return finetune_project(factory, project_id=project_id, model_version_id=mv_id,
                            models_dir=tmp_path / "models", config=config,
                            cache_dir=ckpt[0].parent / "cache")  # fmt: skip


def test_loss_falls_and_checkpoint_round_trips(
    sqlite_url: str, tmp_path: Path, vit_t_checkpoint: tuple[Path, str]
) -> None:
    from db.session import make_engine, make_session_factory

    factory = make_session_factory(make_engine(sqlite_url))
    out = _run(factory, tmp_path, vit_t_checkpoint, steps=16, lr=1e-3)
    losses = out["losses"]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert Path(out["checkpoint"]).parent == (tmp_path / "models").resolve()
    tuned = load_checkpoint("vit_t", Path(out["checkpoint"]), out["sha256"])
    base = load_checkpoint("vit_t", vit_t_checkpoint[0], vit_t_checkpoint[1])
    tsd, bsd = tuned.state_dict(), base.state_dict()
    assert all(torch.equal(tsd[k], bsd[k]) for k in tsd if not k.startswith("mask_decoder."))
    assert any(not torch.equal(tsd[k], bsd[k]) for k in tsd if k.startswith("mask_decoder."))
    with factory() as s:
        child = s.get(ModelVersion, out["model_version_id"])
        assert child.parent_id is not None and child.checkpoint_sha256 == out["sha256"]
        assert child.promoted == improved(out["before"], out["after"])
        assert child.metrics["heldout_before"]["n"] == 2  # one held-out image, two masks


def test_promotion_refused_when_heldout_does_not_improve(
    factory: sessionmaker[Session], tmp_path: Path, vit_t_checkpoint: tuple[Path, str]
) -> None:
    out = _run(factory, tmp_path, vit_t_checkpoint, steps=1, lr=0.0)  # weights cannot move
    assert out["after"] == out["before"]
    assert out["promoted"] is False
    with factory() as s:
        assert s.get(ModelVersion, out["model_version_id"]).promoted is False


def test_improved_rule_and_bad_inputs(factory: sessionmaker[Session], tmp_path: Path) -> None:
    assert improved({"noc": 5, "miou1": 0.5}, {"noc": 5, "miou1": 0.6})
    assert not improved({"noc": 5, "miou1": 0.5}, {"noc": 6, "miou1": 0.6})
    assert improved({"noc": 5, "miou1": 0.5}, {"noc": 4, "miou1": 0.5})
    assert not improved({"noc": 5, "miou1": 0.5}, {"noc": 5, "miou1": 0.5})
    with transaction(factory) as s:
        p = make_project(s)
        mv = ModelVersion(name="classical", backend="classical")
        s.add(mv)
        s.flush()
        ids = (p.id, mv.id)
    with pytest.raises(InvalidInput, match="needs a sam model version"):
        finetune_project(factory, project_id=ids[0], model_version_id=ids[1], models_dir=tmp_path)
