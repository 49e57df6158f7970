"""scripts/eval_proposals.py: the confident-threshold sweep and the pick rule, on hand-made
scores (the full run over ../shared/data is the script's output, docs/prefill.md)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scripts.eval_proposals import Scored, main, pick, sweep, wilson


def _scored(name: str, preds: list[float], best: list[float]) -> Scored:
    light = [
        SimpleNamespace(predicted_iou=p, stability=0.97, area=400, bbox=[10.0 * i, 0.0, 8.0, 8.0])
        for i, p in enumerate(preds)
    ]
    return Scored(name, light, np.asarray(best, dtype=np.float64), (100, 200), np.zeros(0))


def test_sweep_counts_precision_and_photos() -> None:
    gt = [
        _scored("a", [0.9, 0.7, 0.5], [0.8, 0.2, 0.6]),
        _scored("b", [0.75, 0.65], [0.55, 0.1]),
    ]
    photos = [_scored("p1", [0.9, 0.8, 0.7, 0.6], []), _scored("p2", [0.62, 0.5], [])]
    rows = sweep(gt, photos, [0.6, 0.72], stability=[0.95, 0.99], correct_iou=0.5, several=2)
    by = {(r["stability_thresh"], r["pred_iou_thresh"]): r for r in rows}
    r = by[(0.95, 0.6)]
    assert r["confident"] == 4 and r["precision"] == pytest.approx(2 / 4)  # 0.8, 0.55 correct
    assert r["per_photo"] == {"p1": 4, "p2": 1} and r["photos_with_several"] == 1
    assert by[(0.95, 0.72)]["precision"] == pytest.approx(2 / 2)  # 0.9 and 0.75 only
    assert by[(0.99, 0.6)]["confident"] == 0  # every stability is 0.97
    lo, hi = r["precision_lo"], r["precision_hi"]
    assert (lo, hi) == pytest.approx(wilson(2, 4)) and lo < 0.5 < hi
    # the pick: most precise among thresholds giving several masks on >= half the photos
    assert pick(rows, n_photos=2, share=0.5)["pred_iou_thresh"] == 0.72
    assert pick(rows, n_photos=2, share=1.0) is None


def test_wilson_interval() -> None:
    lo, hi = wilson(12, 100)
    assert 0.06 < lo < 0.12 < hi < 0.21
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert all(np.isnan(wilson(0, 0)))


# --- the whole script on a tiny data root (one Penn-Fudan image, one small photo) -------------


@pytest.fixture
def tiny_root(shared_data: Path, tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "data"
    (root / "penn-fudan-sample").mkdir(parents=True)
    for f in (shared_data / "penn-fudan-sample").glob("*.png"):
        shutil.copy(f, root / "penn-fudan-sample" / f.name)
    (root / "samples").mkdir()
    with Image.open(shared_data / "samples" / "dog.jpg") as im:
        im.convert("RGB").resize((96, 64)).save(root / "samples" / "dog.jpg")
    return root


def test_tiny_run_sweeps_picks_and_writes_json(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "sweep.json"
    result = main(["--datasets", "penn-fudan", "--data-root", str(tiny_root), "--thresholds",
                   "0.0,0.99", "--several", "1", "--photos-share", "0", "--pick",
                   "--json", str(out)])  # fmt: skip
    summary = result["summary"]
    assert summary["backend"] == "classical" and summary["images"] == 1
    assert summary["gt_instances"] >= 1 and summary["proposals/image"] > 0
    assert [r["pred_iou_thresh"] for r in result["sweep"]] == [0.0, 0.99]
    assert result["sweep"][0]["confident"] >= result["sweep"][1]["confident"]
    assert json.loads(out.read_text())["summary"]["images"] == 1
    printed = capsys.readouterr().out
    assert "confident rule sweep: 1 images with ground truth, 1 sample photos" in printed
    if result["picked"] is None:
        assert "no threshold gives several confident masks" in printed
    else:
        assert f"picked pred_iou_thresh {result['picked']['pred_iou_thresh']:.2f}" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--thresholds", "0.5,high"], "must be numbers separated by commas"),
        (["--datasets", "imagenet"], "unknown dataset 'imagenet'"),
    ],
)
def test_bad_options_name_the_fix(tiny_root: Path, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(message)):
        main([*argv, "--data-root", str(tiny_root)])


def test_missing_data_root(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="shared data not found at .*set --data-root"):
        main(["--data-root", str(tmp_path / "nope")])
