"""Migrations on both databases; the app refuses to start on a database that is behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from annotator_ui.app import create_app
from annotator_ui.settings import Settings
from db.errors import DatabaseBehind
from db.migrate import check_up_to_date, upgrade
from db.models import Base
from db.session import make_engine


def test_schema_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    check_up_to_date(engine)
    upgrade(db_url)  # idempotent
    engine.dispose()


def test_sqlite_pragmas(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_behind_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with pytest.raises(DatabaseBehind, match="dataengine db upgrade"):
        check_up_to_date(engine)
    engine.dispose()
    app = create_app(Settings(database_url=url), segmenter=object())
    with pytest.raises(DatabaseBehind, match="dataengine db upgrade"), TestClient(app):
        pass
