"""db.exports: a finished export is recorded with its path, counts and manifest hash."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.exports import add_export
from tests.factories import make_project


def test_add_export_is_flushed_with_its_fields(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        project = make_project(s)
        row = add_export(s, project_id=project.id, kind="coco", path="/tmp/out",
                         counts={"images": 2}, manifest_sha256="ab" * 32,
                         params={"stage": None})  # fmt: skip
        assert row.id is not None and row.created_at is not None
        assert (row.kind, row.path, row.counts) == ("coco", "/tmp/out", {"images": 2})
        assert (row.manifest_sha256, row.params) == ("ab" * 32, {"stage": None})
