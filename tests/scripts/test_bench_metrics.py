"""scripts/bench_metrics.py at a few images, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from scripts import bench_metrics
from tests.conftest import PG_URL


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_few_images_are_generated_and_timed(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    only = ["--no-postgres"] if db == "sqlite" else ["--no-sqlite", "--postgres", PG_URL]
    bench_metrics.main(
        ["--images", "12", "--repeats", "1", "--reps", "20", "--touched", "2", *only]
    )
    out = capsys.readouterr().out
    name = "sqlite" if db == "sqlite" else "postgresql"
    row = re.search(rf"^{name}\s+12\s+(\d+)\s+(\d+)\s", out, re.M)
    assert row, out
    masks, events = (int(g) for g in row.groups())
    assert masks == 12 * 50
    assert events > 12 * 30
    assert re.search(rf"^{name}: target < 1 s for a warm query: (met|NOT met)", out, re.M)
