"""COCO import -> export round trip on tiny-coco: every mask comes back pixel-exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image as ImageRow
from db.models import Mask, Project
from db.projects import get_project
from db.session import transaction
from engine.ingest import ingest
from engine.interop.exporters.atomic import write_atomically
from engine.interop.exporters.coco import export_coco
from engine.interop.importers import import_files
from engine.masks import mask_iou
from tests.factories import box_mask, make_image, make_mask, make_model_version, make_project


def _export(factory: sessionmaker[Session], project: str, out: Path, **options: object) -> dict:
    with transaction(factory) as s:
        p = get_project(s, name=project)
        counts, sha = write_atomically(
            out,
            lambda tmp: export_coco(s, project=p, out=tmp, stage=None, options=dict(options)),
        )
    assert sha  # manifest written
    return counts


def test_tiny_coco_round_trip_is_lossless(
    factory: sessionmaker[Session], shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "tiny-coco"
    # val images are ingested first (matched by file_name); train images are ingested on the fly.
    ingest(factory, project="tiny", paths=[root / "val2017"])
    report = import_files(
        factory,
        fmt="coco",
        project="tiny",
        paths=[
            root / "annotations/instances_val2017.json",
            root / "annotations/instances_train2017.json",
        ],
        image_dirs=[root / "train2017"],
    )
    assert report.rejected == []
    assert report.skipped == []
    originals = {
        "instances_val2017.json": COCO(str(root / "annotations/instances_val2017.json")),
        "instances_train2017.json": COCO(str(root / "annotations/instances_train2017.json")),
    }
    n_orig = sum(len(c.anns) for c in originals.values())
    assert report.masks == n_orig
    assert report.summary()["images_added"] == 50  # train only; val was already ingested

    out = tmp_path / "coco-out"
    counts = _export(factory, "tiny", out)
    assert counts["images"] == 100 and counts["annotations"] == n_orig
    assert counts["categories"] == 80  # the files' whole taxonomy was adopted, in order
    exported = COCO(str(out / "annotations.json"))
    with transaction(factory) as s:
        origin = {
            (m.meta["import"]["file"], m.meta["import"]["ann_id"]): m.id
            for m in s.scalars(select(Mask))
        }
    ious = []
    for fname, coco in originals.items():
        for ann_id, ann in coco.anns.items():
            new = exported.anns[origin[(fname, ann_id)]]
            want = coco.annToMask(ann).astype(bool)
            got = exported.annToMask(new).astype(bool)
            assert got.shape == want.shape
            ious.append(mask_iou(got, want))
            assert new["iscrowd"] == ann["iscrowd"]
            assert (
                exported.cats[new["category_id"]]["name"] == coco.cats[ann["category_id"]]["name"]
            )
            img_new, img_old = exported.imgs[new["image_id"]], coco.imgs[ann["image_id"]]
            assert img_new["file_name"] == img_old["file_name"]
    # photo licences travel with the images (curated exports cite them)
    with transaction(factory) as s:
        by_name = {Path(im.uri).name: im for im in s.scalars(select(ImageRow))}
        project_licences = s.scalar(select(Project).where(Project.name == "tiny")).settings
    for coco in originals.values():
        for img in coco.imgs.values():
            assert by_name[img["file_name"]].meta["license"] == img["license"]
    assert {x["id"] for x in project_licences["licenses"]} == {
        x["id"] for x in coco.dataset["licenses"]
    }
    print(
        f"tiny-coco round trip: {counts['images']} images, {len(ious)} instances, "
        f"mean IoU {np.mean(ious):.6f}, min IoU {np.min(ious):.6f}"
    )
    assert min(ious) == 1.0


def test_export_final_by_default_and_scores_on_request(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with transaction(factory) as s:
        p = make_project(s, name="scores", labels=["dog", "cat"])
        mv = make_model_version(s, name="classical-v1")
        im = make_image(s, project=p, width=64, height=48, uri="/x/a.jpg")
        make_mask(
            s,
            image=im,
            mask=box_mask(48, 64, 2, 2, 10, 10),
            source="human",
            status="accepted",
            label="cat",
        )
        make_mask(
            s,
            image=im,
            mask=box_mask(48, 64, 20, 5, 40, 30),
            status="proposed",
            predicted_iou=0.91,
            stability=0.97,
            model_version_id=mv.id,
        )
        make_mask(s, image=im, mask=box_mask(48, 64, 1, 1, 5, 5), status="rejected", label="dog")
    _export(factory, "scores", tmp_path / "final")
    doc = json.loads((tmp_path / "final/annotations.json").read_text())
    assert len(doc["annotations"]) == 1 and "score" not in doc["annotations"][0]
    assert [c["name"] for c in doc["categories"]] == ["dog", "cat"]
    assert doc["images"] == [{"id": im.id, "file_name": "a.jpg", "width": 64, "height": 48}]

    _export(factory, "scores", tmp_path / "all", include="all")
    coco = COCO(str(tmp_path / "all/annotations.json"))
    anns = sorted(coco.anns.values(), key=lambda a: a["id"])
    assert len(anns) == 2
    assert anns[1]["score"] == pytest.approx(0.91) and anns[1]["stability_score"] == pytest.approx(
        0.97
    )
    assert coco.cats[anns[1]["category_id"]]["name"] == "unlabeled"
    assert coco.annToMask(anns[1]).astype(bool).sum() == 20 * 25
    assert np.array_equal(coco.annToMask(anns[0]).astype(bool), box_mask(48, 64, 2, 2, 10, 10))
    with pytest.raises(ValueError, match="include must be one of"):
        _export(factory, "scores", tmp_path / "bad", include="everything")
    assert not (tmp_path / "bad").exists()


def test_coco_import_of_labelme_coco_export_with_subfolder_file_names(
    factory: sessionmaker[Session], shared_data: Path
) -> None:
    """labelme's own COCO export names files "JPEGImages/x.jpg" and has a _background_ category."""
    root = shared_data / "labelme-examples/examples/instance_segmentation/data_dataset_coco"
    report = import_files(
        factory, fmt="coco", project="voc", paths=[root / "annotations.json"], image_dirs=[root]
    )
    assert report.rejected == []
    assert report.masks == 12 and report.images == 3
    with transaction(factory) as s:
        labels = get_project(s, name="voc").labels
    assert "person" in labels and "_background_" not in labels


def _coco_eval_segm(gt: COCO, anns: list[dict]) -> float:
    """COCOeval segm AP of ``anns`` (given score 1) against ``gt``."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([{**a, "score": 1.0} for a in anns])
        ev = COCOeval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.mark.slow
def test_export_keeps_source_ids_and_scores_ap_1_against_the_source(
    factory: sessionmaker[Session], shared_data: Path, tmp_path: Path
) -> None:
    """COCO's category ids are sparse (1..90 for 80 names): they, the image ids, the
    supercategories and the licences come back, and COCOeval (segm) against the source
    files with their own ids gives AP 1.000."""
    root = shared_data / "tiny-coco"
    files = [
        root / "annotations/instances_val2017.json",
        root / "annotations/instances_train2017.json",
    ]
    report = import_files(
        factory, fmt="coco", project="ids", paths=files,
        image_dirs=[root / "val2017", root / "train2017"],
    )  # fmt: skip
    assert report.rejected == [] and report.skipped == []
    out = tmp_path / "coco-ids"
    counts = _export(factory, "ids", out, copy_images=True)
    assert counts["images_copied"] == 100 and counts["images_not_copied"] == 0
    exported = json.loads((out / "annotations.json").read_text())
    for path in files:
        src = COCO(str(path))
        src_cats = {c["id"]: c for c in src.dataset["categories"]}
        out_cats = {c["id"]: c for c in exported["categories"]}
        assert set(src_cats) <= set(out_cats)
        assert max(src_cats) > len(src_cats)  # the source really is sparse
        for cid, c in src_cats.items():
            assert (out_cats[cid]["name"], out_cats[cid]["supercategory"]) == (
                c["name"], c["supercategory"]
            )  # fmt: skip
        out_imgs = {im["id"]: im for im in exported["images"]}
        for iid, im in src.imgs.items():
            assert out_imgs[iid]["file_name"] == im["file_name"]
            assert out_imgs[iid]["license"] == im["license"]
            assert out_imgs[iid]["coco_url"] == im["coco_url"]
            # the copied image is the source's file, byte for byte
            split = root / ("val2017" if "val" in path.name else "train2017")
            assert (out / "data" / im["file_name"]).read_bytes() == (
                split / im["file_name"]
            ).read_bytes()
        assert exported["licenses"] == sorted(src.dataset["licenses"], key=lambda x: str(x["id"]))
        mine = [a for a in exported["annotations"] if a["image_id"] in src.imgs]
        assert len(mine) == len(src.anns)
        ap = _coco_eval_segm(src, mine)
        print(f"{path.name}: {len(mine)} masks, COCOeval segm AP {ap:.3f} with source ids")
        assert ap == pytest.approx(1.0, abs=1e-9)


def test_mixed_source_and_new_ids_never_clash(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Images/labels without a source id are numbered above the kept ones."""
    with transaction(factory) as s:
        p = make_project(s, name="mixed", labels=["dog", "kite"])
        p.settings = {
            "coco_categories": [{"id": 7, "name": "kite", "supercategory": "sports"}],
            "licenses": [{"id": 3, "name": "CC BY", "url": "http://x"}],
        }
        a = make_image(s, project=p, uri="/x/a.jpg", meta={"coco": {"id": 5, "file": "f"}})
        b = make_image(s, project=p, uri="/y/a.jpg")  # same basename, no source id
        for im in (a, b):
            make_mask(s, image=im, status="accepted", label="dog")
            make_mask(s, image=im, status="accepted", label="kite")
    _export(factory, "mixed", tmp_path / "o")
    coco = COCO(str(tmp_path / "o/annotations.json"))
    assert {c["name"]: (c["id"], c["supercategory"]) for c in coco.dataset["categories"]} == {
        "kite": (7, "sports"),
        "dog": (8, ""),
    }
    assert {im["id"]: im["file_name"] for im in coco.dataset["images"]} == {
        5: f"{a.id}_a.jpg",
        6: f"{b.id}_a.jpg",
    }
    assert coco.dataset["licenses"] == [{"id": 3, "name": "CC BY", "url": "http://x"}]
    assert sorted(len(coco.getAnnIds(imgIds=[i])) for i in (5, 6)) == [2, 2]
