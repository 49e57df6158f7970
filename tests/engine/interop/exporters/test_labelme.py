"""labelme export: every mask comes back pixel-identical through labelme's own reader and
rasteriser (labelme in its cached venv) and through our labelme importer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, Mask
from db.projects import get_project
from db.session import transaction
from engine.interop.exporters.atomic import file_sha256, write_atomically
from engine.interop.exporters.labelme import exact_polygons, export_labelme
from engine.interop.importers import import_files
from engine.masks import decode_rle
from tests.factories import make_image, make_mask
from tests.tool_venvs import run_tool, tool_python

# labelme's own reader (imagePath resolved, image opened, sizes checked, mask PNGs decoded)
# and rasteriser, as shapes_to_label draws each shape; one mask per (label, group_id).
LABELME_READ = r"""
import hashlib, json, sys, uuid
from pathlib import Path
import numpy as np
from labelme._label_file import read_label_file
from labelme.utils import img_data_to_arr, shape_to_mask
out = {}
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    data = read_label_file(str(f))
    h, w = img_data_to_arr(data.image_data).shape[:2]
    inst = {}
    for s in data.shapes:
        key = s["description"] if s.get("group_id") is None else f"{s['label']}/{s['group_id']}"
        if s["shape_type"] == "mask":
            m = np.zeros((h, w), dtype=bool)
            (x1, y1), (x2, y2) = np.asarray(s["points"]).astype(int)
            m[y1 : y2 + 1, x1 : x2 + 1] = s["mask"]
        else:
            m = shape_to_mask((h, w), s["points"], s["shape_type"])
        inst[key] = inst.get(key, np.zeros((h, w), dtype=bool)) | m
    out[f.name] = {k: hashlib.sha256(np.ascontiguousarray(m).tobytes()).hexdigest()
                   for k, m in inst.items()}
print(json.dumps(out))
"""


def _sha(mask: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(mask.astype(bool)).tobytes()).hexdigest()


def test_exact_polygons_only_when_labelme_redraws_the_mask() -> None:
    square = np.zeros((20, 20), dtype=bool)
    square[3:9, 4:15] = True
    assert exact_polygons(square) is not None
    ring = square.copy()
    ring[5:7, 7:10] = False  # a hole: polygons cannot express it
    assert exact_polygons(ring) is None
    two = square.copy()
    two[12:18, 2:6] = True
    assert len(exact_polygons(two) or []) == 2


@pytest.mark.slow
def test_labelme_reads_every_mask_back_exactly(
    factory: sessionmaker[Session], shared_data: Path, tmp_path: Path
) -> None:
    python = tool_python("labelme", "labelme", "import labelme.utils")
    root = shared_data / "labelme-examples/examples/instance_segmentation/data_annotated"
    report = import_files(factory, fmt="labelme", project="lm", paths=[root])
    assert report.rejected == [] and report.masks == 12
    photo = tmp_path / "synthetic.png"
    PILImage.fromarray(np.full((40, 50, 3), 90, dtype=np.uint8)).save(photo)
    ring = np.zeros((40, 50), dtype=bool)
    ring[5:25, 5:30] = True
    ring[10:15, 12:20] = False  # hole
    parts = np.zeros((40, 50), dtype=bool)
    parts[30:35, 2:8] = parts[28:38, 40:48] = True  # two parts
    line = np.zeros((40, 50), dtype=bool)
    line[2, 10:45] = True  # one pixel wide
    with transaction(factory) as s:
        p = get_project(s, name="lm")
        im = make_image(
            s, project=p, uri=str(photo), sha256=file_sha256(photo), width=50, height=40
        )
        for m, label in ((ring, "person"), (parts, "person"), (line, None)):
            make_mask(s, image=im, mask=m, status="accepted", source="human", label=label)
    out = tmp_path / "out"
    with transaction(factory) as s:
        p = get_project(s, name="lm")
        counts, _ = write_atomically(
            out,
            lambda tmp: export_labelme(
                s, project=p, out=tmp, stage=None, options={"copy_images": True}
            ),
        )
    assert counts["images"] == 4 and counts["annotations"] == 15 and counts["images_copied"] == 4
    assert counts["mask_shapes"] >= 2  # the ring and the line cannot be polygons
    with transaction(factory) as s:
        want = {f"dataengine mask {m.id}": _sha(decode_rle(m.rle)) for m in s.scalars(select(Mask))}
    got = run_tool(python, LABELME_READ, str(out / "labelme"))
    assert len(got) == 4
    found: dict[str, str] = {}
    for per_file in got.values():
        for key, sha in per_file.items():
            if key.startswith("dataengine mask"):
                found[key] = sha
            else:  # a grouped instance: its shapes share the mask id as group_id
                label, group = key.split("/")
                found[f"dataengine mask {group}"] = sha
    assert found == want  # 15/15 pixel-identical as labelme draws them

    # and our own importer reads the export back to the same pixels (a round trip)
    back = import_files(factory, fmt="labelme", project="lm-back", paths=[out / "labelme"],
                        options={"add_labels": True})  # fmt: skip
    assert back.rejected == [] and back.masks == 15, back.skipped
    with transaction(factory) as s:
        proj = get_project(s, name="lm-back")
        ids = select(Image.id).where(Image.project_id == proj.id)
        again = sorted(
            _sha(decode_rle(m.rle)) for m in s.scalars(select(Mask).where(Mask.image_id.in_(ids)))
        )
    assert again == sorted(want.values())
    doc = json.loads((out / "labelme/synthetic.json").read_text())
    assert doc["imagePath"] == "synthetic.png" and doc["imageData"] is None
    print(f"labelme {len(found)}/{len(want)} masks pixel-identical; shapes {counts}")
