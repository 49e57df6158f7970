"""Fixtures of the command tests: the CLI pointed at a fresh, migrated database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def cli_db(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``db_url`` (SQLite, then PostgreSQL) as DATAENGINE_DATABASE_URL, a data folder under
    ``tmp_path`` and ``tmp_path`` as the working folder (no stray .env)."""
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    return db_url
