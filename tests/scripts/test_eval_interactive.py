"""scripts/eval_interactive.py end to end on a few real GrabCut images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from engine.masks import mask_iou
from scripts.eval_interactive import load_dataset, main, mask_objects, read_mask


def test_grabcut_subset(shared_data, tmp_path, capsys):
    out = tmp_path / "res.json"
    result = main(
        [
            "--dataset",
            "grabcut",
            "--limit",
            "2",
            "--max-clicks",
            "6",
            "--json",
            str(out),
            "--data-root",
            str(shared_data),
        ]
    )
    s = result["summary"]
    assert s["objects"] == 2
    assert set(s) >= {
        "noc85",
        "noc90",
        "miou@1",
        "miou@3",
        "miou@5",
        "failures",
        "latency_p50_ms",
        "latency_p95_ms",
    }
    assert 1 <= s["noc85"] <= s["noc90"] <= 6
    assert 0.0 <= s["miou@1"] <= s["miou@5"] + 0.2 and s["miou@5"] <= 1.0
    assert 0 <= s["failures"] <= 2
    assert 0 < s["latency_p50_ms"] <= s["latency_p95_ms"]
    saved = json.loads(out.read_text())
    assert saved["summary"] == s and len(saved["per_object"]) == 2
    assert all(len(p["ious"]) >= 5 for p in saved["per_object"])
    assert '"noc90"' in capsys.readouterr().out


def test_coco_json_mode(shared_data, tmp_path):
    ann = shared_data / "tiny-coco" / "annotations" / "instances_val2017.json"
    result = main(["--dataset", str(ann), "--limit", "1", "--max-clicks", "5", "--quiet"])
    assert result["summary"]["objects"] >= 1
    assert all(":" in p["name"] for p in result["per_object"])


# --- palette / id masks, Berkeley a/b pairs, empty ground truth (built here) ---------------


def _scene(h: int = 72, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with three flat-coloured rectangles and their instance ids 1..3."""
    rng = np.random.default_rng(0)
    img = np.full((h, w, 3), 25, np.uint8) + rng.integers(0, 6, (h, w, 3), dtype=np.uint8)
    ids = np.zeros((h, w), np.uint8)
    for v, (x0, y0, x1, y1, colour) in enumerate(
        [
            (4, 6, 30, 40, (220, 40, 40)),
            (38, 10, 62, 60, (40, 200, 60)),
            (68, 30, 92, 66, (40, 70, 230)),
        ],
        start=1,
    ):
        img[y0:y1, x0:x1] = colour
        ids[y0:y1, x0:x1] = v
    return img, ids


def _palette(ids: np.ndarray) -> PILImage.Image:
    im = PILImage.fromarray(ids, mode="P")
    pal = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0, 0, 0] * 251 + [224, 224, 192]
    im.putpalette(pal)
    return im


def _palette_folder(root: Path) -> tuple[Path, np.ndarray]:
    """images/0001.jpg with a DAVIS-style palette mask (ids 1..3, a 2 px void band of 255
    around object 1), images/0002.png with Berkeley a/b binary masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img, ids = _scene()
    void = ids.copy()
    band = np.zeros_like(ids, bool)
    band[4:42, 2:32] = True
    band[8:38, 6:28] = False
    void[band & (ids != 2)] = 255
    PILImage.fromarray(img).save(root / "images" / "0001.jpg", quality=95)
    _palette(void).save(root / "masks" / "0001.png")
    PILImage.fromarray(img).save(root / "images" / "0002.png")
    PILImage.fromarray(((ids == 1) * 255).astype(np.uint8)).save(root / "masks" / "0002a.png")
    PILImage.fromarray(((ids == 3) * 255).astype(np.uint8)).save(root / "masks" / "0002b.png")
    return root, void


def test_palette_masks_per_instance_and_merged(tmp_path: Path) -> None:
    root, void = _palette_folder(tmp_path / "davis")
    assert read_mask(root / "masks" / "0001.png")[1] == "ids"
    assert read_mask(root / "masks" / "0002a.png")[1] == "binary"
    items = load_dataset(str(root))
    by_image = {it.image_path.name: it for it in items}
    assert set(by_image) == {"0001.jpg", "0002.png"}  # the a/b pair found its image
    names = [o[0] for o in by_image["0001.jpg"].objects]
    assert names == ["0001:1", "0001:2", "0001:3"]
    for _, gt, ignore in by_image["0001.jpg"].objects:
        assert ignore is not None and np.array_equal(ignore, void == 255)
        assert not (gt & ignore).any()  # void is never object
    assert [o[0] for o in by_image["0002.png"].objects] == ["0002a", "0002b"]
    merged = load_dataset(str(root), instances="merged")
    (one,) = {it.image_path.name: it for it in merged}["0001.jpg"].objects
    assert one[1].sum() == sum(int((void == v).sum()) for v in (1, 2, 3))

    result = main(["--dataset", str(root), "--max-clicks", "5", "--quiet"])
    per = {p["name"]: p for p in result["per_object"]}
    assert set(per) == {"0001:1", "0001:2", "0001:3", "0002a", "0002b"}
    assert result["summary"]["objects"] == 5
    assert all(max(p["ious"]) > 0.5 for p in per.values())  # real objects, not empty GT
    merged_result = main(
        ["--dataset", str(root), "--max-clicks", "5", "--quiet", "--instances", "merged"]
    )
    assert merged_result["summary"]["objects"] == 3


def test_void_ignored_in_iou(tmp_path: Path) -> None:
    """A prediction that differs from the GT only inside the void band scores IoU 1."""
    root, void = _palette_folder(tmp_path / "davis")
    (name, gt, ignore), *_ = mask_objects(root / "masks" / "0001.png")
    assert name == "0001:1"
    pred = gt | ignore  # claims every void pixel
    assert mask_iou(pred, gt, ignore) == 1.0
    assert mask_iou(pred, gt, None) < 0.9


def test_all_void_ground_truth_fails_loudly(tmp_path: Path) -> None:
    root, _ = _palette_folder(tmp_path / "davis")
    img, ids = _scene()
    PILImage.fromarray(img).save(root / "images" / "0003.jpg")
    _palette(np.full_like(ids, 255)).save(root / "masks" / "0003.png")
    with pytest.raises(SystemExit) as err:
        main(["--dataset", str(root), "--max-clicks", "3", "--quiet"])
    message = str(err.value.code)
    assert "0003.png" in message and "decodes empty" in message and "\n" not in message
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.eval_interactive", "--dataset", str(root), "--quiet"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr.strip().count("\n") == 0
    assert "decodes empty" in proc.stderr


def test_binary_mask_with_no_object_fails_loudly(tmp_path: Path) -> None:
    root, _ = _palette_folder(tmp_path / "berkeley")
    PILImage.fromarray(np.zeros((72, 96), np.uint8)).save(root / "masks" / "0002c.png")
    with pytest.raises(SystemExit, match="0002c.png: the ground truth decodes empty"):
        load_dataset(str(root))
