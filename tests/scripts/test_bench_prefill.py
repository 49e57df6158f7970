"""scripts/bench_prefill.py on one downscaled photo: both generators timed on the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import bench_prefill
from tests.conftest import SHARED_DATA


def test_small_run_compares_with_the_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    out = tmp_path / "prefill.json"
    bench_prefill.main(
        ["--images", "dog.jpg", "--samples", str(SHARED_DATA / "samples"), "--max-side", "160",
         "--points-per-side", "4", "--target-stable", "5", "--threads", "1", "--json", str(out)]
    )  # fmt: skip
    report = json.loads(out.read_text())
    th = report["thresholds"]
    assert th["pred_iou_thresh"] > 0  # the reference's IoU filter is active
    assert th["candidates"] == 3 * 4 * 4 and 0 < th["pass_iou"] < th["candidates"]
    (row,) = report["images"]
    assert max(row["size"]) == 160
    assert row["ratio"] == pytest.approx(row["ref_s"] / row["ours_s"])
    # same weights, same parameters: the same masks
    assert row["ref_masks"] == row["our_masks"]
    assert "pre-fill, vit_t random weights" in capsys.readouterr().out


def test_repeat_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_prefill.main(["--repeat", "0"])
    assert exc.value.code == 2
    assert "--repeat must be >= 1" in capsys.readouterr().err
