"""Shared fixtures: a fresh migrated database per test on SQLite and on PostgreSQL.

PostgreSQL tests run against the server at ``DATAENGINE_TEST_POSTGRES_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test gets
its own database cloned from a migrated template, so tests (and parallel runs)
never see each other's rows. They are skipped, with the reason, only when the
server is unreachable; ``.ci/run`` makes sure it is running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.session import make_engine, make_session_factory

PG_URL = os.environ.get(
    "DATAENGINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_pg_state: dict[str, str | None] = {}


def _admin_engine() -> Engine:
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def _pg_template() -> str:
    """Name of a migrated template database for this run, or skip if PostgreSQL is down."""
    if "error" in _pg_state:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {_pg_state['error']}")
    if "template" in _pg_state:
        return str(_pg_state["template"])
    name = f"de_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as err:
        _pg_state["error"] = str(err.orig).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {_pg_state['error']}")
    finally:
        admin.dispose()
    upgrade(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    _pg_state["template"] = name
    return name


def _drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", autouse=True)
def _cleanup_pg_template() -> Iterator[None]:
    yield
    if _pg_state.get("template"):
        admin = _admin_engine()
        _drop_database(admin, str(_pg_state["template"]))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'dataengine.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    template = _pg_template()
    name = f"de_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database URL: once on SQLite, once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    """Session factory on a fresh migrated database (both backends)."""
    return make_session_factory(engine)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the repository; skips when absent (a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
