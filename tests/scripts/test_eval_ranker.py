"""scripts/eval_ranker.py in its quick mode: both data sets evaluated, the plot written."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from scripts import eval_ranker
from tests.conftest import SHARED_DATA


def test_quick_run_prints_both_sets_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    plot = tmp_path / "ranker.png"
    code = eval_ranker.main(["--photos", "8", "--data", str(SHARED_DATA), "--plot", str(plot)])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("ranked order:") >= 2
    assert "random order:" in out
    with Image.open(plot) as img:
        assert img.size[0] > 100 and img.size[1] > 100


def test_missing_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_ranker.main(["--data", str(tmp_path / "nope")]) == 2
    assert "shared data not found" in capsys.readouterr().err
