"""Migrations on both databases; the app refuses to start on a database that is behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.engine import make_url

import db.models
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


@pytest.mark.postgres
def test_a_refused_start_leaves_no_connection_open(postgres_url: str, tmp_path: Path) -> None:
    from alembic import command

    from db.migrate import alembic_config
    from tests.conftest import _admin_engine

    command.downgrade(alembic_config(postgres_url), "-1")
    app = create_app(Settings(database_url=postgres_url, data_dir=tmp_path), segmenter=object())
    with pytest.raises(DatabaseBehind), TestClient(app):
        pass
    admin = _admin_engine()
    with admin.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db"),
            {"db": make_url(postgres_url).database},
        ).scalar()
    admin.dispose()
    assert left == 0  # the pool that checked the revision was disposed


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


def test_0012_widens_ids_on_a_populated_database(db_url: str) -> None:
    """0012 keeps every row of a populated database; on PostgreSQL the ids that grow with
    images, masks and events become BIGINT (sequences too) and take ids past 2^31."""
    from alembic import command

    from db.migrate import alembic_config
    from db.models import Event, Lease, Mask, Prefill
    from db.session import make_session_factory, transaction
    from tests.factories import make_image, make_model_version, make_project, make_user

    cfg = alembic_config(db_url)
    command.downgrade(cfg, "0011_skip_and_flags")
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        project = make_project(s, name="old")
        user = make_user(s)
        mv = make_model_version(s)
        images = [make_image(s, project=project) for _ in range(3)]
        masks = [
            Mask(
                image_id=im.id,
                rle={"size": [4, 4], "counts": "0"},
                bbox=[0, 0, 1, 1],
                area=1,
                source="model",
                model_version_id=mv.id,
            )  # fmt: skip
            for im in images
        ]
        s.add_all(masks)
        s.flush()
        s.add(Prefill(image_id=images[0].id, model_version_id=mv.id, n_proposals=1))
        lease = Lease(image_id=images[1].id, user_id=user.id, stage="annotate",
                      expires_at=db.models.utcnow())  # fmt: skip
        s.add(lease)
        s.flush()
        s.add(Event(uuid="e" * 36, user_id=user.id, image_id=images[1].id, mask_id=masks[1].id,
                    lease_id=lease.id, session_id="s", kind="click", client_time=1.0))  # fmt: skip
    before = _dump(engine)
    upgrade(db_url)
    assert _dump(engine) == before
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            types = dict(
                conn.execute(
                    text(
                        "SELECT table_name || '.' || column_name, data_type FROM "
                        "information_schema.columns WHERE table_schema = 'public' AND "
                        "(column_name IN ('id', 'image_id', 'mask_id', 'lease_id', 'parent_id'))"
                    )
                ).all()
            )
        for col in ("image.id", "mask.id", "mask.image_id", "mask.parent_id", "event.id",
                    "event.mask_id", "event.lease_id", "lease.id", "prefill.image_id",
                    "prefill_claim.image_id", "effort_object.mask_id"):  # fmt: skip
            assert types[col] == "bigint", col
        with engine.begin() as conn:  # the sequences count past 2^31 - 1 too
            for table in ("image", "mask", "event"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), :v)"),
                             {"v": 2**31 + 10})  # fmt: skip
    with transaction(factory) as s:
        project = s.scalars(select(db.models.Project)).one()
        big = make_image(s, project=project)
        if engine.dialect.name == "sqlite":
            big = make_image(s, project=project, id=2**31 + 11)
        mask = Mask(image_id=big.id, rle={"size": [4, 4], "counts": "0"}, bbox=[0, 0, 1, 1],
                    area=1, source="human")  # fmt: skip
        s.add(mask)
        s.flush()
        assert big.id > 2**31 and mask.image_id == big.id
    with factory() as s:
        assert s.get(db.models.Image, big.id) is not None
    engine.dispose()


def _dump(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tables 0011 touches, ordered by id (values only)."""
    out = {}
    with engine.connect() as conn:
        for table in ("project", "image", "mask", "prefill", "lease", "event", "user_account"):
            rows = conn.execute(text(f'SELECT * FROM "{table}" ORDER BY id')).all()
            out[table] = [tuple(r) for r in rows]
    return out
