"""SA-1B export: one JSON per image with the SA-1B annotation fields, masks pixel-exact,
readable by Datumaro's own ``segment_anything`` importer (run in its cached venv)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from pycocotools import mask as mask_utils
from sqlalchemy.orm import Session, sessionmaker

from db.projects import get_project
from db.session import transaction
from engine.interop.exporters.atomic import file_sha256, write_atomically
from engine.interop.exporters.sa1b import export_sa1b
from engine.masks import decode_rle
from tests.factories import box_mask, make_image, make_mask, make_project
from tests.tool_venvs import run_tool, tool_python

FIELDS = {"id", "segmentation", "bbox", "area", "crop_box", "point_coords"}
SCORES = {"predicted_iou", "stability_score"}

DATUMARO_READ = r"""
import hashlib, json, sys
import numpy as np
from datumaro.components.dataset import Dataset
ds = Dataset.import_from(sys.argv[1], "segment_anything")
items = []
for item in ds:
    anns = []
    for a in item.annotations:
        entry = {"id": a.id, "type": a.type.name, "attributes": a.attributes}
        if a.type.name == "mask":
            m = np.ascontiguousarray(a.image.astype(np.uint8))
            entry |= {"pixels": int(m.sum()), "sha": hashlib.sha256(m.tobytes()).hexdigest()}
        if a.type.name == "bbox":
            entry["bbox"] = [a.x, a.y, a.w, a.h]
        anns.append(entry)
    shape = list(item.media.data.shape) if item.media.has_data else None
    items.append({"id": item.id, "path": item.media.path, "shape": shape, "anns": anns})
print(json.dumps({"items": items}))
"""


def _export(factory: sessionmaker[Session], out: Path, **options: object) -> dict:
    with transaction(factory) as s:
        p = get_project(s, name="sa")
        counts, _ = write_atomically(
            out, lambda tmp: export_sa1b(s, project=p, out=tmp, stage=None, options=dict(options))
        )
    return counts


def test_sa1b_files(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with transaction(factory) as s:
        p = make_project(s, name="sa")
        a = make_image(s, project=p, width=64, height=48, uri="/data/a.jpg")
        b = make_image(s, project=p, width=32, height=32, uri="/data/b.jpg")
        human = make_mask(
            s, image=a, mask=box_mask(48, 64, 3, 4, 20, 30), source="human", status="accepted"
        )
        prop = make_mask(
            s,
            image=a,
            mask=box_mask(48, 64, 30, 10, 60, 40),
            status="proposed",
            predicted_iou=0.88,
            stability=0.95,
            point_coords=[[45.0, 25.0]],
            crop_box=[0.0, 0.0, 64.0, 48.0],
        )
        ids = {"a": a.id, "b": b.id, "human": human.id, "prop": prop.id}

    counts = _export(factory, tmp_path / "final")
    assert counts == {"images": 2, "annotations": 1}
    doc = json.loads((tmp_path / f"final/sa1b/sa_{ids['a']}.json").read_text())
    assert doc["image"] == {"image_id": ids["a"], "width": 64, "height": 48, "file_name": "a.jpg"}
    (ann,) = doc["annotations"]
    # a human mask has no model scores: the fields are left out, never null
    assert set(ann) == FIELDS and ann["id"] == ids["human"]
    assert ann["point_coords"] == [] and ann["crop_box"] == [0, 0, 64, 48]
    empty = json.loads((tmp_path / f"final/sa1b/sa_{ids['b']}.json").read_text())
    assert empty["annotations"] == [] and empty["image"]["file_name"] == "b.jpg"
    # the manifest sits outside the annotation folder (readers parse every *.json there)
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == ["manifest.json", "sa1b"]
    manifest = json.loads((tmp_path / "final/manifest.json").read_text())
    assert set(manifest["files"]) == {f"sa1b/sa_{ids['a']}.json", f"sa1b/sa_{ids['b']}.json"}

    _export(factory, tmp_path / "all", include="all")
    doc = json.loads((tmp_path / f"all/sa1b/sa_{ids['a']}.json").read_text())
    by_id = {x["id"]: x for x in doc["annotations"]}
    prop_ann = by_id[ids["prop"]]
    assert set(prop_ann) == FIELDS | SCORES
    assert isinstance(prop_ann["predicted_iou"], float)
    assert prop_ann["predicted_iou"] == pytest.approx(0.88)
    assert prop_ann["stability_score"] == pytest.approx(0.95)
    assert prop_ann["point_coords"] == [[45.0, 25.0]]
    assert prop_ann["crop_box"] == [0.0, 0.0, 64.0, 48.0]
    assert prop_ann["bbox"] == [30.0, 10.0, 30.0, 30.0] and prop_ann["area"] == 900
    decoded = mask_utils.decode(prop_ann["segmentation"]).astype(bool)  # str counts, as SA-1B
    assert np.array_equal(decoded, box_mask(48, 64, 30, 10, 60, 40))
    assert isinstance(prop_ann["segmentation"]["counts"], str)
    assert prop_ann["segmentation"]["size"] == [48, 64]


def _photo(path: Path, w: int, h: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    PILImage.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return file_sha256(path)


@pytest.mark.slow
def test_datumaro_reads_the_export_with_copied_images(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    python = tool_python("datumaro", "datumaro", "import datumaro")
    src = tmp_path / "src"
    src.mkdir()
    want: dict[int, tuple[np.ndarray, dict]] = {}  # mask id -> (pixels, attributes)
    with transaction(factory) as s:
        p = make_project(s, name="sa")
        rng = np.random.default_rng(3)
        for k, (w, h) in enumerate([(64, 48), (40, 56), (33, 21)]):
            path = src / f"photo{k}.png"
            im = make_image(s, project=p, width=w, height=h, uri=str(path),
                            sha256=_photo(path, w, h, k))  # fmt: skip
            for j in range(k + 1):
                m = rng.random((h, w)) < 0.3  # ragged masks: many runs, holes
                model = j % 2 == 1
                row = make_mask(
                    s, image=im, mask=m, label="dog",
                    source="model" if model else "human", status="accepted",
                    predicted_iou=0.75 if model else None, stability=0.5 if model else None,
                )  # fmt: skip
                want[row.id] = (m, {"model": model})
        # a mask not in the final export
        make_mask(s, image=im, mask=box_mask(h, w, 1, 1, 5, 5), status="rejected")
    counts = _export(factory, tmp_path / "out", copy_images=True)
    assert counts == {
        "images": 3, "annotations": len(want), "images_copied": 3, "images_not_copied": 0
    }  # fmt: skip
    got = run_tool(python, DATUMARO_READ, str(tmp_path / "out" / "sa1b"))
    items = {it["id"]: it for it in got["items"]}
    assert sorted(items) == ["photo0", "photo1", "photo2"]
    n_masks = 0
    for k, (w, h) in enumerate([(64, 48), (40, 56), (33, 21)]):
        item = items[f"photo{k}"]
        assert item["shape"][:2] == [h, w]  # the copied image opens
        for a in item["anns"]:
            pixels, info = want[a["id"]]
            attrs = a["attributes"]
            assert attrs["predicted_iou"] == (0.75 if info["model"] else 0.0)  # omitted -> 0.0
            if a["type"] == "mask":
                n_masks += 1
                u8 = np.ascontiguousarray(pixels.astype(np.uint8))
                assert a["pixels"] == int(pixels.sum())
                assert a["sha"] == hashlib.sha256(u8.tobytes()).hexdigest()
    assert n_masks == len(want)
    # and the stored RLE is what Datumaro decoded (pixel check against the database too)
    with transaction(factory) as s:
        from db.models import Mask

        for mid, (pixels, _) in want.items():
            assert np.array_equal(decode_rle(s.get(Mask, mid).rle), pixels)
    print(f"Datumaro segment_anything read: {len(items)} items, {n_masks} masks pixel-identical")
