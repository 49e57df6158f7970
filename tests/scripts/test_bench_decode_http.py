"""scripts/bench_decode_http.py: a real server subprocess answers timed decodes over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from scripts import bench_decode_http as bench


def test_classical_decodes_over_http(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (160, 120), (90, 140, 30)).save(photo)
    assert bench.main(["--backend", "classical", "--n", "3", "--image", str(photo)]) == 0
    out = capsys.readouterr().out
    row = re.search(r"^classical\s+photo\.jpg 160x120\s+3\s+(\d+)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    assert row, out
    cold, p50, p90 = (float(g) for g in row.groups())
    assert cold > 0 and 0 < p50 <= p90


def test_missing_image_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--image", str(tmp_path / "none.jpg")]) == 2
    assert "image not found" in capsys.readouterr().err
