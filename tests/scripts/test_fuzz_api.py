"""The schemathesis fuzzer (``scripts/fuzz_api.py``), bounded profile, on both databases:
every operation, anonymously and as each role, valid and invalid input: no 5xx and no
response outside the OpenAPI schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.fuzz_api import ROLES_FUZZED, fuzz, world

pytestmark = pytest.mark.slow


def test_fuzz_every_operation_every_role(db_url: str, tmp_path: Path) -> None:
    with world(db_url, tmp_path) as w:
        assert {"image_id", "mask_id", "project_id", "lease_id"} <= set(w.ids)
        report = fuzz(w, examples=3)
    assert report.operations > 40
    assert set(report.cases) == set(ROLES_FUZZED)
    assert min(report.cases.values()) >= report.operations
    shown = "\n".join(f"{f.operation} [{f.role}/{f.mode}] {f.checks}: {f.request}"
                      for f in report.failures if f.request)  # fmt: skip
    assert report.failures == [], shown


# --- the command line around the fuzzer: options, report, scratch databases ------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--examples", "0"], "--examples must be at least 1"),
        (["--modes", "positive,sideways"], "unknown mode(s) ['sideways']"),
    ],
)
def test_bad_options_stop_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.fuzz_api import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


def test_report_groups_failures_by_operation(capsys: pytest.CaptureFixture[str]) -> None:
    from collections import Counter

    from scripts.fuzz_api import Failure, FuzzReport, print_report

    report = FuzzReport(
        cases=Counter({"anonymous": 7, "admin": 5}),
        failures=[
            Failure("GET /api/x", "admin", "negative", 500, ["not_a_server_error"], "curl x"),
            Failure("GET /api/x", "admin", "positive", 500, ["not_a_server_error"], ""),
        ],
        statuses=Counter({200: 9, 500: 2, 422: 1}),
        operations=3,
    )
    print_report(report, "sqlite")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "FAIL GET /api/x: not_a_server_error x2"
    assert out[1] == "  e.g. [admin/negative] curl x"
    assert "sqlite    anonymous          7" in out
    assert out[-1] == "sqlite: 3 operations, 12 cases, 2 failures, 2 responses with status >= 500"
    assert report.as_dict()["failures"][0]["status"] == 500


@pytest.mark.postgres
def test_scratch_postgres_database_is_dropped(postgres_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from scripts.fuzz_api import database

    def exists(name: str) -> bool:
        admin = create_engine(postgres_url)
        try:
            with admin.connect() as conn:
                sql = text("select 1 from pg_database where datname = :n")
                return conn.execute(sql, {"n": name}).first() is not None
        finally:
            admin.dispose()

    with database("postgres", tmp_path, postgres_url) as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith("de_fuzz_") and exists(name)
    assert not exists(name)
    with database("sqlite", tmp_path, postgres_url) as url:
        assert url == f"sqlite:///{tmp_path / 'fuzz.db'}"


def test_progress_bar_counts_and_stops() -> None:
    from scripts.fuzz_api import _bar

    bar = _bar(3, True)
    bar.update(2)
    bar.update(1)
    bar.close()
    quiet = _bar(3, False)
    quiet.update(1)
    quiet.close()
    assert type(quiet).__name__ == "_NoBar" and type(bar).__name__ == "Bar"
