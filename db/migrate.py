"""Alembic, driven from code: upgrade a database and tell whether it is behind."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from db.errors import DatabaseBehind
from db.session import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at this package's migrations and ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Create or upgrade the database at ``url`` to ``revision`` (default: latest)."""
    make_engine(url).dispose()  # creates the SQLite folder if needed
    command.upgrade(alembic_config(url), revision)


def script_heads(url: str) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def current_heads(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def check_up_to_date(engine: Engine) -> None:
    """Raise ``DatabaseBehind`` naming the fix when the schema is not at the latest revision."""
    url = engine.url.render_as_string(hide_password=False)
    want, have = script_heads(url), current_heads(engine)
    if want != have:
        shown = engine.url.render_as_string(hide_password=True)
        raise DatabaseBehind(
            f"database {shown} is at revision {sorted(have) or 'none'}, the code needs "
            f"{sorted(want)}: run `dataengine db upgrade` (same DATAENGINE_DATABASE_URL) first"
        )
