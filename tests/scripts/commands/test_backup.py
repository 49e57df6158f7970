"""`dataengine backup --json` and its refusal to overwrite (the copy itself: tests/db)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.cli import app

runner = CliRunner()


def test_backup_json_then_refusal(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", sqlite_url)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "copy.db"
    result = runner.invoke(app, ["backup", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert Path(doc["backup"]) == out and doc["bytes"] == out.stat().st_size > 0
    with closing(sqlite3.connect(out)) as conn:
        assert conn.execute("select count(*) from alembic_version").fetchone() == (1,)
    again = runner.invoke(app, ["backup", "-o", str(out)])
    assert again.exit_code == 1 and "never overwrite" in again.output
