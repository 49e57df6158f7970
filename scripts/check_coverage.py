"""Coverage per package from a pytest --cov run, and a floor per package.

    .venv/bin/pytest -q --cov --cov-report=          # writes .coverage (config: pyproject)
    .venv/bin/python scripts/check_coverage.py       # prints the table, exit 1 below a floor
    .venv/bin/python scripts/check_coverage.py --data-file /tmp/.coverage --floor scripts=60

Packages are the top-level folders of the repository (``engine``, ``db``, ``annotator_ui``,
``scripts``); lines excluded in ``[tool.coverage.report]`` (e.g. ``if __name__ ==
"__main__":``) do not count. Default floors: engine and db 90 %, scripts 75 % (see
``DEFAULT_FLOORS``); annotator_ui is reported without a floor unless one is given.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "db", "annotator_ui", "scripts")
# scripts: every script and CLI command has tests now (tiny modes of the benchmarks, error
# paths of the commands); tests/scripts alone measured >= 75 % on 2026-12-03 (see README).
DEFAULT_FLOORS: dict[str, float] = {"engine": 90.0, "db": 90.0, "scripts": 75.0}


@dataclass(frozen=True)
class PackageCoverage:
    """Statements and missed statements of one package (``percent`` in 0..100)."""

    package: str
    statements: int
    missed: int

    @property
    def percent(self) -> float:
        """Covered share of the statements; 0 when nothing of the package was measured."""
        if self.statements == 0:
            return 0.0
        return 100.0 * (self.statements - self.missed) / self.statements


def package_coverage(
    *, data_file: Path, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES
) -> dict[str, PackageCoverage]:
    """Per-package totals from the coverage data file ``data_file`` (files under ``root``).

    Raises FileNotFoundError naming the fix when the data file is missing.
    """
    import coverage

    if not Path(data_file).is_file():
        raise FileNotFoundError(
            f"no coverage data at {data_file}: run `pytest --cov` first (see `make test`)"
        )
    config = root / "pyproject.toml"
    cov = coverage.Coverage(
        data_file=str(data_file), config_file=str(config) if config.is_file() else False
    )
    cov.load()
    totals = {p: [0, 0] for p in packages}
    for name in cov.get_data().measured_files():
        try:
            rel = Path(name).resolve().relative_to(root.resolve())
        except ValueError:
            continue  # a file outside the repository (another checkout, site-packages)
        if rel.parts[0] not in totals or not Path(name).is_file():
            continue
        _, statements, _, missing, _ = cov.analysis2(name)
        totals[rel.parts[0]][0] += len(statements)
        totals[rel.parts[0]][1] += len(missing)
    return {p: PackageCoverage(p, n, m) for p, (n, m) in totals.items()}


def below_floors(
    results: dict[str, PackageCoverage], floors: dict[str, float]
) -> list[tuple[str, float, float]]:
    """(package, percent, floor) for every package under its floor (unknown ones count as 0 %)."""
    out = []
    for package, floor in floors.items():
        got = results[package].percent if package in results else 0.0
        if got < floor:
            out.append((package, got, floor))
    return out


def _parse_floor(text: str) -> tuple[str, float]:
    package, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError(text)
        return package, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--floor takes PACKAGE=PERCENT (e.g. scripts=75), got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Print the table; 0 when every floor is met, 1 when one is not, 2 without data."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-file", type=Path, default=ROOT / ".coverage")
    ap.add_argument("--root", type=Path, default=ROOT, help="the repository the data is for")
    ap.add_argument(
        "--floor",
        type=_parse_floor,
        action="append",
        default=[],
        help="PACKAGE=PERCENT, overrides a default floor (repeatable)",
    )
    args = ap.parse_args(argv)
    floors = {**DEFAULT_FLOORS, **dict(args.floor)}
    try:
        results = package_coverage(data_file=args.data_file, root=args.root)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{'package':<14}{'statements':>11}{'missed':>8}{'cover':>8}  floor")
    for r in results.values():
        floor = f"{floors[r.package]:.0f} %" if r.package in floors else "-"
        print(f"{r.package:<14}{r.statements:>11}{r.missed:>8}{r.percent:>7.1f}%  {floor}")
    failed = below_floors(results, floors)
    for package, got, floor in failed:
        print(f"FAIL {package}: {got:.1f} % is under its floor of {floor:.0f} %", file=sys.stderr)
    if not failed:
        print("coverage floors met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
