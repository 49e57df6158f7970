"""scripts/bench_scale.py in tiny mode on PostgreSQL: the figures add up and the claims
run computes nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import bench_scale


@pytest.mark.postgres
@pytest.mark.slow
def test_tiny_bench_prints_the_table(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    args = ["--images", "3000", "--work-images", "3", "--side", "40", "--json", str(out)]
    figures = bench_scale.main(["--database-url", postgres_url, *args])
    printed = capsys.readouterr().out
    assert "images computed twice by 2 workers" in printed and "idle pass" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(figures))
    workers, passes = figures["workers"], figures["passes"]
    assert workers["images"] == 3
    for run in ("one", "two", "two_reference"):
        assert workers[run]["stored"] == 3
        assert workers[run]["computes"] >= 3 and workers[run]["seconds"] > 0
    assert workers["two"]["twice"] == 0 and workers["one"]["twice"] == 0
    assert passes["pending-before"]["rows"] == passes["pending-after"]["rows"] == 3000
    assert passes["idle-before"]["rows"] == passes["idle-after"]["rows"] == 0
    for mode in ("pending-before", "pending-after", "idle-before", "idle-after"):
        assert passes[mode]["peak_kb"] >= passes[mode]["base_kb"] > 0


def test_bench_refuses_sqlite(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_scale.main(["--database-url", "sqlite:///x.db"])
    assert "PostgreSQL" in capsys.readouterr().err
