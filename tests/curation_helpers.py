"""Shared setup for the curation tests: a project of real tiny-coco photos with decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.captions import save_caption
from db.curation import record_decision
from db.models import Image, Project
from engine.imageio import probe
from tests.factories import make_image, make_mask, make_project, make_user


def coco_licences(shared: Path) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """file name -> COCO licence id, and the licence table, of tiny-coco val2017."""
    data = json.loads((shared / "tiny-coco/annotations/instances_val2017.json").read_text())
    return {im["file_name"]: im["license"] for im in data["images"]}, data["licenses"]


def add_photos(session: Session, project: Project, shared: Path, n: int) -> list[Image]:
    """``n`` tiny-coco val photos as ok images (real sha256, size, phash, COCO licence id)."""
    lic, _ = coco_licences(shared)
    out = []
    for path in sorted((shared / "tiny-coco/val2017").glob("*.jpg"))[:n]:
        res = probe(path)
        out.append(
            make_image(
                session,
                project=project,
                uri=str(path),
                sha256=res.sha256,
                width=res.width,
                height=res.height,
                phash=res.phash,
                meta={"license": lic[path.name]},
            )  # fmt: skip
        )
    return out


def curated_project(session: Session, shared: Path, n: int = 6) -> dict[str, Any]:
    """A project with ``n`` photos: all pass auto; generalists keep all but the last;
    specialists keep the first four (rated, tagged, captioned by a person except #3,
    whose caption is drafted from its accepted 'dog' masks) and drop the fifth."""
    _, table = coco_licences(shared)
    project = make_project(session, settings={"licenses": table})
    images = add_photos(session, project, shared, n)
    gen = make_user(session, role="curator")
    spec = make_user(session, role="curator")
    for im in images:
        record_decision(session, image_id=im.id, stage="auto", decision="pass")
    for im in images[:-1]:
        record_decision(
            session, image_id=im.id, stage="generalist", decision="keep", user_id=gen.id
        )
    record_decision(
        session, image_id=images[-1].id, stage="generalist", decision="drop", user_id=gen.id
    )
    for k, im in enumerate(images[:4]):
        record_decision(
            session, image_id=im.id, stage="specialist", decision="keep", user_id=spec.id,
            rating=5 - k % 2, tags=["lighting:good", "composition:good"] if k == 0 else [],
        )  # fmt: skip
        if k != 2:
            save_caption(
                session, image_id=im.id, text=f"a curated photo number {k}", author_id=spec.id
            )
    for _ in range(2):
        make_mask(session, image=images[2], status="accepted", label="dog")
    record_decision(
        session, image_id=images[4].id, stage="specialist", decision="drop", user_id=spec.id
    )
    return {"project": project, "images": images, "generalist": gen, "specialist": spec}


def run_cli(args: list[str], db_url: str, monkeypatch: Any) -> Any:
    """Run ``dataengine ARGS`` against ``db_url``; the CLI's engine is disposed afterwards."""
    from typer.testing import CliRunner

    import scripts.commands.curate as curate_module
    from scripts.cli import app

    made: list[Any] = []
    real = curate_module.open_db
    monkeypatch.setattr(curate_module, "open_db", lambda st: made.append(real(st)) or made[-1])
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    try:
        return CliRunner().invoke(app, args)
    finally:
        for f in made:
            f.kw["bind"].dispose()
