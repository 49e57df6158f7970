"""scripts/bench_sam_ablation.py in its tiny mode: a real run, every row filled and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import bench_sam_ablation as bench
from tests.conftest import SHARED_DATA


@pytest.fixture
def samples() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA / "samples"


def test_tiny_run_measures_every_component(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ablation.json"
    report = bench.main(
        ["--tiny", "--photos", "dog.jpg", "--samples", str(samples), "--json", str(out)]
    )
    assert json.loads(out.read_text()) == report
    names = [r["component"] for r in report["components"]]
    assert names == ["encoder", "decoder", "lowrank", "upsample"]  # 1 thread: no row
    for row in report["components"]:
        assert row["seconds"] > 0
        assert row["lines"] > 0
        assert row["speedup_when_removed"] == pytest.approx(
            row["seconds"] / report["all_on_seconds"]
        )
        assert row["verdict"] == (
            "remove" if row["speedup_when_removed"] < 1.15 else "keeps its lines"
        )
        # a disabled component falls back to an equivalent path: the same masks
        assert row["masks"] == report["masks"]["all on"]
    assert report["reference_speedup"] == pytest.approx(
        report["reference_seconds"] / report["all_on_seconds"]
    )
    assert max(report["sizes"][0]) == 96
    printed = capsys.readouterr().out
    assert "SAM fast-path ablation" in printed
    assert "everything on" in printed and "reference" in printed


def test_component_lines_count_the_files() -> None:
    lines = bench.component_lines()
    sam = Path(bench.__file__).resolve().parents[1] / "engine" / "segment" / "sam"
    assert lines["encoder"] == len((sam / "encoder.py").read_text().splitlines())
    assert lines["decoder"] > lines["lowrank"]  # decoder.py carries the low-rank decoder
    assert 10 < lines["threads"] < 100


def test_missing_photo_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="nope.jpg not found"):
        bench.main(["--tiny", "--photos", "nope.jpg", "--samples", str(tmp_path)])


def test_bad_grid_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--points-per-side", "0"])
    assert exc.value.code == 2
    assert "--points-per-side and --threads must be >= 1" in capsys.readouterr().err


def test_unknown_component_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--components", "encoder,turbo"])
    assert exc.value.code == 2
    assert "--components takes encoder," in capsys.readouterr().err


def test_subset_without_reference(samples: Path) -> None:
    report = bench.main(
        ["--tiny", "--photos", "dog.jpg", "--samples", str(samples), "--components", "encoder",
         "--no-reference"]
    )  # fmt: skip
    assert [r["component"] for r in report["components"]] == ["encoder"]
    assert report["reference_seconds"] is None and report["reference_speedup"] is None
    assert set(report["masks"]) == {"all on", "encoder"}
