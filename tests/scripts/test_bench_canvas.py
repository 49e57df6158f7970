"""scripts/bench_canvas.py in its tiny mode: it builds its fixture, drives Chromium and prints
every row with a figure for both image sizes."""

from __future__ import annotations

import re

import pytest

from tests.webapp import require_chromium

pytestmark = pytest.mark.browser


def test_tiny_run_prints_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    require_chromium()
    from scripts import bench_canvas

    assert bench_canvas.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    assert "320x214" in out and "800x534" in out
    for row in bench_canvas.ROWS:
        line = next((ln for ln in out.splitlines() if ln.startswith(row)), None)
        assert line is not None, f"row {row!r} missing:\n{out}"
        figures = re.findall(r"\d+(?:\.\d+)?", line[len(row) :])
        assert len(figures) == 3, line  # two sizes and the ratio
        if "requests" in row:
            assert float(figures[0]) >= 1, line
