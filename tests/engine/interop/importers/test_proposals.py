"""COCO import ``as_proposals``: confident model proposals with scores, in a pre-fill round."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.mask_listing import list_masks
from db.models import Image, Mask, ModelVersion, Prefill, Round
from db.projects import create_project
from db.session import transaction
from engine.interop.dense_coco import coverage, dense_coco, dense_masks
from engine.interop.importers import import_files
from engine.interop.importers.proposals import annotation_score, check_default_score


def _photo(folder: Path, w: int = 96, h: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "photo.png"
    PILImage.fromarray(np.full((h, w, 3), 120, dtype=np.uint8)).save(path)
    return path


def test_dense_fixture_is_dense_and_seeded() -> None:
    masks = dense_masks(160, 120, n=56, seed=3)
    assert len(masks) == 56 and all(m.shape == (120, 160) and m.any() for m in masks)
    assert 0.25 < coverage(masks) < 0.6
    again = dense_masks(160, 120, n=56, seed=3)
    assert all((a == b).all() for a, b in zip(masks, again, strict=True))
    with pytest.raises(ValueError, match="at least 8"):
        dense_masks(4, 4)


def test_scores_are_checked() -> None:
    assert annotation_score({}, 0.7) == (0.7, None)
    assert annotation_score({"score": 0.5}, 1.0) == (0.5, None)
    for bad in (1.5, -0.1, "high", float("nan")):
        score, why = annotation_score({"score": bad}, 1.0)
        assert score is None and why and "score" in why
    with pytest.raises(ValueError, match="--score"):
        check_default_score(2.0)


def test_coco_as_proposals_stores_confident_scored_proposals_in_a_round(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    photo = _photo(tmp_path / "images")
    doc = dense_coco(photo.name, 96, 64, n=12, seed=1)
    doc["annotations"][0].pop("score")  # takes the default
    doc["annotations"][1]["score"] = 7.0  # out of range: skipped with a reason
    ann_file = tmp_path / "dense.json"
    ann_file.write_text(json.dumps(doc))
    with transaction(factory) as s:
        create_project(s, name="p", labels=[])
    report = import_files(
        factory,
        fmt="coco",
        project="p",
        paths=[ann_file],
        image_dirs=[photo.parent],
        options={"as_proposals": True, "score": 0.9},
    )
    assert report.masks == 11 and report.images == 1
    assert [why for _, _, why in report.skipped] == ["bad score: 7.0 is not between 0 and 1"]
    with factory() as s:
        mv = s.scalars(select(ModelVersion)).one()
        assert (mv.name, mv.backend) == ("import:dense.json", "import")
        rnd = s.scalars(select(Round)).one()
        assert (rnd.number, rnd.model_version_id) == (1, mv.id)
        masks = s.scalars(select(Mask).order_by(Mask.id)).all()
        assert {(m.source, m.status, m.confident) for m in masks} == {("model", "proposed", True)}
        assert {m.model_version_id for m in masks} == {mv.id}
        assert {m.round_id for m in masks} == {rnd.id}
        assert masks[0].predicted_iou == 0.9
        want = [a["score"] for a in doc["annotations"][2:]]
        assert [m.predicted_iou for m in masks[1:]] == want
        image = s.scalars(select(Image)).one()
        pre = s.scalars(select(Prefill)).one()
        assert (pre.image_id, pre.status, pre.n_proposals, pre.n_confident) == (
            image.id,
            "done",
            11,
            11,
        )
        # the review page lists them as pre-filled proposals
        assert len(list_masks(s, image_id=image.id)) == 11


def test_without_the_option_masks_stay_human(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    photo = _photo(tmp_path / "images")
    ann_file = tmp_path / "plain.json"
    ann_file.write_text(json.dumps(dense_coco(photo.name, 96, 64, n=4)))
    import_files(factory, fmt="coco", project="q", paths=[ann_file], image_dirs=[photo.parent])
    with factory() as s:
        rows = s.scalars(select(Mask)).all()
        assert {(m.source, m.status) for m in rows} == {("human", "accepted")}
        assert s.scalars(select(Prefill)).first() is None


def test_a_model_prefill_after_an_import_uses_its_own_model_version(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from engine.flywheel.prefill import prefill_project
    from engine.segment.registry import build_segmenter

    photo = _photo(tmp_path / "images", 128, 96)
    ann_file = tmp_path / "dense.json"
    ann_file.write_text(json.dumps(dense_coco(photo.name, 128, 96, n=5)))
    import_files(
        factory,
        fmt="coco",
        project="p",
        paths=[ann_file],
        image_dirs=[photo.parent],
        options={"as_proposals": True},
    )
    with factory() as s:
        pid = s.scalars(select(Image.project_id)).one()
    summary = prefill_project(
        factory, project_id=pid, segmenter=build_segmenter("classical"), model_version_id=None
    )
    assert summary.done == 1 and summary.failed == 0
    with factory() as s:
        mv = s.get(ModelVersion, summary.model_version_id)
        assert mv is not None and mv.backend == "classical"
