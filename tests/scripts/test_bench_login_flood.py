"""scripts/bench_login_flood.py, one short configuration against a real server subprocess."""

from __future__ import annotations

import re

import pytest

from scripts import bench_login_flood as bench


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_short_flood_is_measured(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(
        ["--db", db, "--configs", "after", "--guessers", "2", "--accounts", "2", "--users", "1",
         "--seconds", "1"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^after\s+(none|one account|2 accounts)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+|nan)\s+([\d.]+|nan)",
        out,
        re.M,
    )
    assert [r[0] for r in rows] == ["none", "one account", "2 accounts"]
    # no guesses without a flood; the floods' guesses are checked (401) or refused (429)
    assert float(rows[0][1]) == 0 and float(rows[0][2]) == 0
    assert all(float(r[1]) + float(r[2]) > 0 for r in rows[1:])


def test_unknown_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--configs", "turbo"]) == 2
    assert "unknown config(s) ['turbo']" in capsys.readouterr().out
