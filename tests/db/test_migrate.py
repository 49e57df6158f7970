"""Migrations on both databases; the app refuses to start on a database that is behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from annotator_ui.app import create_app
from db.errors import DatabaseBehind
from db.migrate import check_up_to_date, upgrade
from db.models import Base
from db.session import make_engine
from engine.settings import Settings


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


def test_0010_backfills_name_keys_and_names_case_twins(db_url: str) -> None:
    """0010 fills user_account.name_key (NFKC, casefolded) for existing users; names that
    differ only in case stop the upgrade with the pair named and the rows kept."""
    from alembic import command

    from db.migrate import alembic_config

    cfg = alembic_config(db_url)
    command.downgrade(cfg, "0009_mask_idempotency")
    engine = make_engine(db_url)
    insert = text(
        "INSERT INTO user_account (name, role, password_hash, active, created_at) "
        "VALUES (:name, 'annotator', 'x', TRUE, CURRENT_TIMESTAMP)"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"name": "Ａlice"})  # fullwidth A
    upgrade(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name_key FROM user_account")).scalar() == "alice"
    command.downgrade(cfg, "0009_mask_idempotency")
    with engine.begin() as conn:
        conn.execute(insert, {"name": "ALICE"})
    with pytest.raises(RuntimeError, match="differ only in case.*ALICE"):
        upgrade(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM user_account")).scalar() == 2
    engine.dispose()
