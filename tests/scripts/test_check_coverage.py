"""scripts/check_coverage.py: per-package totals from a real coverage data file, floors, exits.

A throw-away repository in tmp with two packages; coverage measures a known share of each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.check_coverage import PackageCoverage, below_floors, main, package_coverage

ENGINE = """
def used(x):
    y = x + 1
    return y


def unused(x):
    a = x * 2
    b = a + 3
    return b
"""  # 7 statements (2 defs + 5 lines), 4 run when only ``used`` is called

DB = """
def f():
    return 1
"""  # 2 statements, both run


@pytest.fixture
def measured(tmp_path: Path) -> Path:
    """Coverage data of a child interpreter that ran ``engine.mod.used`` and ``db.mod.f`` of a
    throw-away repository (its own process: the real packages stay untouched)."""
    root = tmp_path / "repo"
    for pkg, text in (("engine", ENGINE), ("db", DB)):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
        (root / pkg / "mod.py").write_text(text)
    (root / "pyproject.toml").write_text("[tool.coverage.run]\nsource = ['engine', 'db']\n")
    data = tmp_path / "cov.data"
    code = (
        "import coverage\n"
        f"cov = coverage.Coverage(data_file={str(data)!r}, config_file='pyproject.toml')\n"
        "cov.start()\n"
        "import engine.mod, db.mod\n"
        "engine.mod.used(1); db.mod.f()\n"
        "cov.stop(); cov.save()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    env["PYTHONPATH"] = str(root)
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True)
    return data


def test_totals_per_package(measured: Path) -> None:
    root = measured.parent / "repo"
    got = package_coverage(data_file=measured, root=root, packages=("engine", "db", "scripts"))
    assert (got["engine"].statements, got["engine"].missed) == (7, 3)
    assert got["engine"].percent == pytest.approx(100 * 4 / 7)
    assert (got["db"].statements, got["db"].missed) == (2, 0)
    assert got["scripts"].statements == 0 and got["scripts"].percent == 0.0  # nothing measured


def test_floors() -> None:
    results = {"engine": PackageCoverage("engine", 100, 5), "db": PackageCoverage("db", 10, 2)}
    assert below_floors(results, {"engine": 90}) == []
    assert below_floors(results, {"engine": 96, "db": 80, "scripts": 75}) == [
        ("engine", 95.0, 96),
        ("scripts", 0.0, 75),
    ]


def test_main_exit_codes(measured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(measured.parent / "repo")
    args = ["--data-file", str(measured), "--root", root]
    assert main([*args, "--floor", "engine=50", "--floor", "db=100", "--floor", "scripts=0"]) == 0
    out = capsys.readouterr().out
    assert "engine" in out and "57.1%" in out and "coverage floors met" in out
    assert main([*args, "--floor", "engine=60", "--floor", "scripts=0"]) == 1
    assert "FAIL engine: 57.1 % is under its floor of 60 %" in capsys.readouterr().err
    assert main(["--data-file", str(measured.parent / "missing"), "--root", root]) == 2
    assert "run `pytest --cov` first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--floor", "engine"])
