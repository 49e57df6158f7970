"""scripts/check_signals.py on a few shared photos, and its exit status without data."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import check_signals
from tests.conftest import SHARED_DATA


def test_few_photos_run_both_checks(capsys: pytest.CaptureFixture[str]) -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    code = check_signals.main(["--limit", "6", "--data", str(SHARED_DATA)])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert ("all targets met" in out) == (code == 0)
    assert ("SOME TARGETS MISSED" in out) == (code == 1)
    for word in ("sharpness", "blockiness", "quality", "recall"):
        assert word in out


def test_missing_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_signals.main(["--data", str(tmp_path / "nope")]) == 2
    assert "shared data not found" in capsys.readouterr().err
