"""Curation API: generalist grid, specialist detail, decisions, undo, thumbnails, agreement.

Pages: ``/static/curate_generalist.html?project=ID`` and ``/static/curate_specialist.html``.
Only curators, reviewers and admins use these routes. Thumbnails are made server-side
(JPEG, EXIF orientation applied, long side = ``size``) and cached on disk under
``<cache_dir>/thumbs`` keyed by the image's sha256, so a grid page loads in one round
of small files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from annotator_ui.deps import SessionDep, SettingsDep, require_roles
from db import captions
from db import curation as cur
from db.errors import Conflict, NotFound
from db.images import get_image, require_ok
from db.models import Image, Project, User
from db.projects import get_project
from engine.curation.agreement import agreement
from engine.curation.captions import draft_caption
from engine.curation.signal_words import describe_all, sorted_values
from engine.imageio import ImageRejected, thumbnail
from engine.storage import is_remote
from engine.uris import display_path, uri_to_path

router = APIRouter(prefix="/api/curation", tags=["curation"])
Curator = Annotated[User, Depends(require_roles("curator", "reviewer", "admin"))]
SIZES = (256, 384, 1280)
SHOWN_SIGNALS = (
    "quality",
    "sharpness",
    "noise",
    "colourfulness",
    "aspect_ratio",
    "short_side",
    "ranker",
    "aesthetic",
)


class DecisionIn(BaseModel):
    image_id: int
    stage: Literal["generalist", "specialist"]
    decision: Literal["keep", "drop"]
    rating: int | None = Field(default=None, ge=1, le=5)
    tags: list[str] = Field(default_factory=list, max_length=12)
    caption: str | None = Field(default=None, max_length=2000)


class UndoIn(BaseModel):
    project_id: int
    stage: Literal["generalist", "specialist"]


class SettingsIn(BaseModel):
    overlap_fraction: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


def _item(im: Image, stage: str, cfg: dict[str, Any]) -> dict[str, Any]:
    s = im.signals or {}
    return {
        "image_id": im.id,
        "width": im.width,
        "height": im.height,
        "thumb": f"/api/curation/images/{im.id}/thumb?size=384",
        "large": f"/api/curation/images/{im.id}/thumb?size=1280",
        "overlap": cur.in_overlap(
            im.id, stage=stage, fraction=float(cfg["overlap_fraction"]), seed=int(cfg["seed"])
        ),
        "signals": {k: s[k] for k in SHOWN_SIGNALS if isinstance(s.get(k), int | float)},
    }


@router.get("/projects")
def projects(session: SessionDep, user: Curator) -> list[dict[str, Any]]:
    """Projects with curation counts (for the pages' project picker)."""
    from sqlalchemy import select

    rows = session.scalars(select(Project).order_by(Project.name))
    return [
        {"id": p.id, "name": p.name, "counts": cur.queue_counts(session, project_id=p.id)}
        for p in rows
    ]


@router.get("/projects/{project_id}/generalist")
def generalist_page(
    project_id: int,
    session: SessionDep,
    settings: SettingsDep,
    user: Curator,
    limit: int = Query(24, ge=1, le=200),
    exclude: str = Query("", description="Comma-separated image ids already on screen."),
) -> dict[str, Any]:
    """The next page of the generalist grid (claimed for this curator), best-ranked first."""
    return _page(session, settings, user, project_id, "generalist", limit, exclude)


@router.get("/projects/{project_id}/specialist")
def specialist_page(
    project_id: int,
    session: SessionDep,
    settings: SettingsDep,
    user: Curator,
    limit: int = Query(2, ge=1, le=20),
    exclude: str = Query("", description="Comma-separated image ids already on screen."),
) -> dict[str, Any]:
    """The next generalist keeps for this specialist, with a caption draft from mask labels."""
    page = _page(session, settings, user, project_id, "specialist", limit, exclude)
    for item in page["items"]:
        masks = cur.accepted_masks(session, image_id=item["image_id"])
        item["draft_caption"] = draft_caption([m.label for m in masks], [m.area for m in masks])
        item["labels"] = sorted({m.label for m in masks if m.label})
        cap = captions.latest_caption(session, image_id=item["image_id"])
        item["caption"] = cap.text if cap is not None and cap.source == "human" else None
        s = get_image(session, image_id=item["image_id"]).signals or {}
        item["composition"] = {
            k: s[k]
            for k in ("n_masks", "subject_area", "thirds_distance", "clutter", "border_contact")
            if k in s
        }
    page["tag_categories"] = list(cur.TAG_CATEGORIES)
    return page


def _page(
    session: Any, settings: Any, user: User, project_id: int, stage: str, limit: int, exclude: str
) -> dict[str, Any]:
    project = get_project(session, project_id=project_id)
    try:
        skip = [int(x) for x in exclude.split(",") if x.strip()]
    except ValueError as err:
        raise HTTPException(
            status_code=422, detail="exclude takes comma-separated image ids"
        ) from err
    images = cur.queue(
        session, project=project, user_id=user.id, stage=stage, limit=limit,
        lease_minutes=settings.lease_minutes, exclude=skip,
    )  # fmt: skip
    cfg = cur.curation_settings(project)
    items = [_item(im, stage, cfg) for im in images]
    if (
        items
    ):  # each signal in plain words, ranked within the project (engine/curation/signal_words)
        from sqlalchemy import select

        population = sorted_values(
            session.scalars(
                select(Image.signals).where(Image.project_id == project.id, Image.status == "ok")
            )
        )
        for item, im in zip(items, images, strict=True):
            item["signal_words"] = describe_all(im.signals or {}, population, SHOWN_SIGNALS)
    out = {
        "items": items,
        "counts": cur.queue_counts(session, project_id=project.id),
    }
    session.commit()
    return out


@router.post("/decisions")
def decide(body: DecisionIn, session: SessionDep, user: Curator) -> dict[str, Any]:
    """Record keep/drop (specialists: with rating, tags and their caption)."""
    image = get_image(session, image_id=body.image_id)
    if body.stage == "specialist":
        kept = cur.effective(session, project_id=image.project_id, stage="generalist")
        if kept.get(image.id) != "keep":
            raise Conflict(
                f"image {image.id} was not kept by a generalist; only generalist keeps go to specialists"
            )
    elif body.rating is not None or body.tags or body.caption:
        raise HTTPException(
            status_code=422, detail="rating, tags and caption belong to the specialist stage"
        )
    row = cur.record_decision(
        session, image_id=image.id, stage=body.stage, decision=body.decision, user_id=user.id,
        rating=body.rating, tags=body.tags,
    )  # fmt: skip
    if body.caption is not None and body.caption.strip():
        captions.save_caption(session, image_id=image.id, text=body.caption, author_id=user.id)
    session.commit()
    return {"id": row.id, "image_id": image.id, "stage": row.stage, "decision": row.decision,
            "rating": row.rating, "tags": row.tags}  # fmt: skip


@router.post("/undo")
def undo(body: UndoIn, session: SessionDep, user: Curator) -> dict[str, Any]:
    """Take back this curator's latest decision in the stage; the image returns to the queue."""
    get_project(session, project_id=body.project_id)
    row = cur.undo_last(session, user_id=user.id, project_id=body.project_id, stage=body.stage)
    session.commit()
    return {"image_id": row.image_id if row else None, "decision": row.decision if row else None}


@router.get("/projects/{project_id}/agreement")
def project_agreement(project_id: int, session: SessionDep, user: Curator) -> dict[str, Any]:
    """Cohen's / Fleiss' kappa per human stage on overlapping images (the dashboard shows it)."""
    get_project(session, project_id=project_id)
    out: dict[str, Any] = {
        stage: agreement(cur.ratings_for_agreement(session, project_id=project_id, stage=stage))
        for stage in cur.HUMAN_STAGES
    }
    out["specialist_rating"] = agreement(
        cur.ratings_for_agreement(
            session, project_id=project_id, stage="specialist", field="rating"
        ),
        weights="quadratic",
    )
    out["human_seconds"] = cur.stage_seconds(session, project_id=project_id)
    return out


@router.get("/projects/{project_id}/settings")
def get_settings(project_id: int, session: SessionDep, user: Curator) -> dict[str, Any]:
    cfg = cur.curation_settings(get_project(session, project_id=project_id))
    return {k: v for k, v in cfg.items() if k not in ("ranker", "rules")}


@router.put("/projects/{project_id}/settings")
def put_settings(
    project_id: int,
    body: SettingsIn,
    session: SessionDep,
    user: Annotated[User, Depends(require_roles("reviewer", "admin"))],
) -> dict[str, Any]:
    """Change the overlap fraction / seed (reviewers and admins)."""
    project = get_project(session, project_id=project_id)
    values = body.model_dump(exclude_none=True)
    cfg = (
        cur.set_curation_settings(session, project=project, **values)
        if values
        else cur.curation_settings(project)
    )
    session.commit()
    return {k: v for k, v in cfg.items() if k not in ("ranker", "rules")}


def thumbnail_path(image: Image, size: int, cache_dir: Path, *, max_pixels: int) -> Path:
    """The cached JPEG thumbnail (long side ``size``) of an ``ok`` image, made on first use
    through ``engine.imageio.thumbnail`` (format allowlist, ``max_pixels`` checked from the
    header before decoding). NotFound when the file is missing or no longer decodes."""
    require_ok(image=image)
    key = image.sha256 or f"id{image.id}"
    path = cache_dir / "thumbs" / key[:2] / f"{key}_{size}.jpg"
    if path.exists():
        return path
    src: Path | str = image.uri  # an object-storage uri is read by thumbnail() itself
    if not is_remote(image.uri):
        src = Path(uri_to_path(image.uri))
        if not src.is_file():
            raise NotFound(
                f"the file of image {image.id} is missing ({display_path(src.name)}); re-ingest it"
            )
    try:
        im = thumbnail(src, size=size, max_pixels=max_pixels)
    except ImageRejected as err:
        raise NotFound(f"image {image.id} cannot be shown: {err}") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")
    im.save(tmp, format="JPEG", quality=85)
    os.replace(tmp, path)
    return path


@router.get(
    "/images/{image_id}/thumb",
    response_class=FileResponse,
    responses={200: {"description": "A JPEG thumbnail.", "content": {"image/jpeg": {}}}},
)
def thumb(
    image_id: int, session: SessionDep, settings: SettingsDep, user: Curator, size: int = 384
) -> FileResponse:
    """A cached JPEG thumbnail; ``size`` is one of 256, 384, 1280."""
    if size not in SIZES:
        raise HTTPException(
            status_code=422, detail=f"size must be one of {', '.join(map(str, SIZES))}"
        )
    image = require_ok(image=get_image(session, image_id=image_id))
    path = thumbnail_path(image, size, settings.cache_dir, max_pixels=settings.max_image_pixels)
    return FileResponse(
        path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )
