"""scripts/bench_decode.py on one small photo: every backend timed, the JSON written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts import bench_decode
from tests.conftest import SHARED_DATA


def test_two_prompts_per_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    img = Image.open(SHARED_DATA / "samples" / "dog.jpg").convert("RGB")
    img.thumbnail((200, 200))
    img.save(tmp_path / "small.jpg")
    out = tmp_path / "decode.json"
    bench_decode.main(
        ["--images", "small.jpg", "--samples", str(tmp_path), "--n", "2", "--threads", "1",
         "--json", str(out)]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["images"] == ["small.jpg"]
    backends = {r["backend"]: r for r in report["rows"]}
    assert set(backends) == {"sam vit_t (ours)", "sam vit_t (SamPredictor)", "classical"}
    for row in backends.values():
        assert row["n"] == 2
        assert 0 < row["p50_ms"] <= row["p95_ms"]
    assert "click-to-mask latency" in capsys.readouterr().out


def test_summarise_reports_percentiles() -> None:
    rows = bench_decode.summarise({"a": [1.0, 2.0, 3.0, 10.0]})
    assert rows[0]["backend"] == "a" and rows[0]["n"] == 4
    assert rows[0]["p50_ms"] == pytest.approx(2.5)
    assert rows[0]["p95_ms"] == pytest.approx(np.percentile([1, 2, 3, 10], 95))
    assert rows[0]["mean_ms"] == pytest.approx(4.0)
