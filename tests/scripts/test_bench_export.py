"""scripts/bench_export.py: a tiny project exported paged and whole, one row per run."""

from __future__ import annotations

import re

import pytest

from engine.interop.exporters import selection
from scripts import bench_export

ROW = re.compile(r"^(\w+) +(\d+) +(\d+\.\d) +(\d+\.\d\d)$")


def _rows(out: str) -> dict[tuple[str, int], tuple[float, float]]:
    rows = {}
    for line in out.splitlines():
        if m := ROW.match(line):
            rows[(m[1], int(m[2]))] = (float(m[3]), float(m[4]))
    return rows


def test_tiny_run_on_temporary_sqlite(capsys: pytest.CaptureFixture[str]) -> None:
    default = selection.PAGE_SIZE
    bench_export.main(["--images", "3", "--masks", "2", "--formats", "coco,labelme"])
    out = capsys.readouterr().out
    assert out.startswith("project: 3 images x 2 masks")
    rows = _rows(out)
    assert set(rows) == {("coco", default), ("coco", 4), ("labelme", default), ("labelme", 4)}
    assert all(peak > 0 for peak, _ in rows.values())
    assert re.search(r"^coco +peak memory whole / paged = \d+\.\dx$", out, re.M)
    assert re.search(r"^labelme +peak memory whole / paged = \d+\.\dx$", out, re.M)
    assert default == selection.PAGE_SIZE, "the page size is restored after the run"


@pytest.mark.postgres
def test_given_postgres_database(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    bench_export.main(["--images", "2", "--masks", "1", "--formats", "sa1b",
                       "--database-url", postgres_url])  # fmt: skip
    rows = _rows(capsys.readouterr().out)
    assert {fmt for fmt, _ in rows} == {"sa1b"} and len(rows) == 2


def test_blob_is_a_filled_boolean_shape() -> None:
    import numpy as np

    mask = bench_export.blob(np.random.default_rng(3), size=128)
    assert mask.shape == (128, 128) and mask.dtype == bool
    assert 0 < mask.sum() < 128 * 128
