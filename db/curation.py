"""Curation data functions: decisions, queues with overlap, effort and ratings (captions:
``db.captions``).

Stages: ``auto`` (decisions ``pass``/``fail``, by the rules job), ``generalist`` and
``specialist`` (``keep``/``drop``, by people). A new decision by the same user (for auto:
any earlier auto decision) on the same image and stage supersedes the old one; undo
supersedes the user's latest decision without a replacement. Superseded rows are kept.

Effective decision of an image in a stage (``effective``):
- auto: the active one;
- generalist: ``keep`` if ANY active generalist decision keeps it (the stage is for recall);
- specialist: ``keep`` only if EVERY active specialist decision keeps it (precision).

Overlap: a seeded fraction of images (``project.settings["curation"]["overlap_fraction"]``,
``seed``) is shown to two curators in each human stage so agreement can be measured.
Queue pages are claimed with ``Lease`` rows (stage ``generalist``/``specialist``) so two
curators do not get the same image unless it is an overlap image.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.errors import InvalidInput, NotFound
from db.models import CurationDecision, Image, Lease, Mask, Project, utcnow

HUMAN_STAGES = ("generalist", "specialist")
DECISIONS = {
    "auto": ("pass", "fail"),
    "generalist": ("keep", "drop"),
    "specialist": ("keep", "drop"),
}
TAG_CATEGORIES = ("composition", "lighting", "colour", "subject", "background", "sharpness")
TAG_VALUES = ("good", "bad")
DEFAULTS: dict[str, Any] = {"overlap_fraction": 0.1, "seed": 0, "idle_seconds": 30.0}


def curation_settings(project: Project) -> dict[str, Any]:
    """The project's curation settings with defaults filled in; a stored value of the wrong
    type (written before settings were validated) falls back to its default."""
    stored = (project.settings or {}).get("curation", {})
    cfg = {**DEFAULTS, **(stored if isinstance(stored, dict) else {})}
    for key, default in DEFAULTS.items():
        value = cfg[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or value != value or value in (float("inf"), float("-inf")):
            cfg[key] = default
    return cfg


def set_curation_settings(session: Session, *, project: Project, **values: Any) -> dict[str, Any]:
    """Update ``project.settings["curation"]`` (e.g. overlap_fraction=0.2, seed=1)."""
    frac = values.get("overlap_fraction")
    if frac is not None and not 0.0 <= float(frac) <= 1.0:
        raise InvalidInput(f"overlap_fraction must be within 0..1, got {frac}")
    settings = dict(project.settings or {})
    settings["curation"] = {**settings.get("curation", {}), **values}
    project.settings = settings  # reassign so the JSON column is marked dirty
    session.flush()
    return curation_settings(project)


def in_overlap(image_id: int, *, stage: str, fraction: float, seed: int) -> bool:
    """Deterministic, seeded choice of the images shown to two curators in ``stage``."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{stage}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def validate_tags(tags: Sequence[str]) -> list[str]:
    """Sorted unique ``category:good|bad`` tags; InvalidInput names the allowed ones."""
    out = set()
    for tag in tags:
        cat, _, value = str(tag).partition(":")
        if cat not in TAG_CATEGORIES or value not in TAG_VALUES:
            raise InvalidInput(
                f"unknown tag {tag!r}; use <category>:<good|bad> with category one of "
                f"{', '.join(TAG_CATEGORIES)}"
            )
        out.add(f"{cat}:{value}")
    return sorted(out)


def _active_q(image_id: int, stage: str, user_id: int | None) -> Any:
    q = select(CurationDecision).where(
        CurationDecision.image_id == image_id,
        CurationDecision.stage == stage,
        CurationDecision.superseded.is_(False),
    )
    if stage != "auto":
        q = q.where(CurationDecision.user_id == user_id)
    return q


def record_decision(
    session: Session,
    *,
    image_id: int,
    stage: str,
    decision: str,
    user_id: int | None = None,
    rating: int | None = None,
    tags: Sequence[str] = (),
    reasons: Sequence[Any] = (),
    now: dt.datetime | None = None,
) -> CurationDecision:
    """Store a decision, superseding this user's (auto: any) earlier one on the image+stage.

    Human stages need ``user_id``; ``rating`` (1..5) and ``tags`` belong to the specialist
    stage. Completes the user's live lease on the image in that stage, if any.
    """
    if stage not in DECISIONS:
        raise InvalidInput(f"unknown stage {stage!r}; choose one of {', '.join(DECISIONS)}")
    if decision not in DECISIONS[stage]:
        raise InvalidInput(
            f"stage {stage} takes decisions {' or '.join(DECISIONS[stage])}, not {decision!r}"
        )
    if stage in HUMAN_STAGES and user_id is None:
        raise InvalidInput(f"a {stage} decision needs the curator (user_id)")
    if rating is not None and (stage != "specialist" or not 1 <= int(rating) <= 5):
        raise InvalidInput("rating is 1..5 and only for the specialist stage")
    clean_tags = validate_tags(tags) if stage == "specialist" else []
    if tags and stage != "specialist":
        raise InvalidInput("tags are only for the specialist stage")
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image with id {image_id}")
    now = now or utcnow()
    for old in session.scalars(_active_q(image_id, stage, user_id)):
        old.superseded = True
    row = CurationDecision(
        image_id=image_id,
        user_id=user_id,
        stage=stage,
        decision=decision,
        rating=int(rating) if rating is not None else None,
        tags=clean_tags,
        reasons=list(reasons),
        created_at=now,
    )
    session.add(row)
    if user_id is not None:
        leases = session.scalars(
            select(Lease).where(
                Lease.image_id == image_id,
                Lease.user_id == user_id,
                Lease.stage == stage,
                Lease.completed_at.is_(None),
            )
        )
        for lease in leases:
            lease.completed_at = now
    session.flush()
    return row


def undo_last(
    session: Session, *, user_id: int, project_id: int, stage: str
) -> CurationDecision | None:
    """Withdraw the user's latest active decision in the stage (the image returns to the
    user's queue); returns it, or None when there is nothing to undo."""
    q = (
        select(CurationDecision)
        .join(Image, Image.id == CurationDecision.image_id)
        .where(
            Image.project_id == project_id,
            CurationDecision.user_id == user_id,
            CurationDecision.stage == stage,
            CurationDecision.superseded.is_(False),
        )
        .order_by(CurationDecision.id.desc())
        .limit(1)
    )
    row = session.scalars(q).first()
    if row is not None:
        row.superseded = True
        session.flush()
    return row


def active_decisions(session: Session, *, project_id: int, stage: str) -> list[CurationDecision]:
    """Active (not superseded) decisions of a stage, oldest first."""
    q = (
        select(CurationDecision)
        .join(Image, Image.id == CurationDecision.image_id)
        .where(
            Image.project_id == project_id,
            CurationDecision.stage == stage,
            CurationDecision.superseded.is_(False),
        )
        .order_by(CurationDecision.id)
    )
    return list(session.scalars(q))


def effective(session: Session, *, project_id: int, stage: str) -> dict[int, str]:
    """image id -> effective decision in ``stage`` (see the module docstring)."""
    by_image: dict[int, list[str]] = {}
    for d in active_decisions(session, project_id=project_id, stage=stage):
        by_image.setdefault(d.image_id, []).append(d.decision)
    if stage == "auto":
        return {i: ds[-1] for i, ds in by_image.items()}
    if stage == "generalist":
        return {i: "keep" if "keep" in ds else "drop" for i, ds in by_image.items()}
    return {i: "keep" if all(d == "keep" for d in ds) else "drop" for i, ds in by_image.items()}


def _order_key(image: Image) -> tuple[float, int]:
    s = image.signals or {}
    score = s.get("ranker", s.get("quality", 0.0))
    return (-float(score) if isinstance(score, int | float) else 0.0, image.id)


def _serialise_claims(session: Session, *, project_id: int, stage: str) -> None:
    """Make concurrent page claims of one project and stage take turns.

    PostgreSQL: a transaction-scoped advisory lock (released at commit). SQLite: the
    write lock taken by ``BEGIN IMMEDIATE`` (db/session.py) already serialises writers.
    """
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"curation-queue:{project_id}:{stage}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def queue(
    session: Session,
    *,
    project: Project,
    user_id: int,
    stage: str,
    limit: int = 24,
    lease_minutes: float = 30.0,
    exclude: Sequence[int] = (),
    now: dt.datetime | None = None,
) -> list[Image]:
    """The user's next page of images in a human stage, claimed with leases.

    Candidates: generalist = ok images not failed by the auto stage; specialist = images the
    generalists kept. Excluded: images this user decided; images already decided or claimed
    by enough others (2 curators for overlap images, else 1). Order: the ranker score
    (``signals["ranker"]``), else ``signals["quality"]``, best first; then id. Images the
    user already holds a live lease on come first (a reload shows the same page);
    ``exclude`` leaves out ids the client is showing already (to preload the next page).
    """
    if stage not in HUMAN_STAGES:
        raise InvalidInput(f"queue stage must be one of {', '.join(HUMAN_STAGES)}")
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be 1..500")
    now = now or utcnow()
    _serialise_claims(session, project_id=project.id, stage=stage)
    cfg = curation_settings(project)
    images = list(
        session.scalars(
            select(Image)
            .where(Image.project_id == project.id, Image.status == "ok")
            .order_by(Image.id)
        )
    )
    if stage == "generalist":
        auto = effective(session, project_id=project.id, stage="auto")
        images = [im for im in images if auto.get(im.id) != "fail"]
    else:
        kept = effective(session, project_id=project.id, stage="generalist")
        images = [im for im in images if kept.get(im.id) == "keep"]
    deciders: dict[int, set[int]] = {}
    for d in active_decisions(session, project_id=project.id, stage=stage):
        deciders.setdefault(d.image_id, set()).add(int(d.user_id or 0))
    claims: dict[int, set[int]] = {}
    live = session.scalars(
        select(Lease)
        .join(Image, Image.id == Lease.image_id)
        .where(
            Image.project_id == project.id,
            Lease.stage == stage,
            Lease.completed_at.is_(None),
            Lease.expires_at > now,
        )
    )
    for lease in live:
        claims.setdefault(lease.image_id, set()).add(lease.user_id)
    mine, free = [], []
    skip = set(exclude)
    for im in images:
        if im.id in skip:
            continue
        done = deciders.get(im.id, set())
        if user_id in done:
            continue
        holders = claims.get(im.id, set())
        if user_id in holders:
            mine.append(im)
            continue
        need = (
            2
            if in_overlap(
                im.id, stage=stage, fraction=float(cfg["overlap_fraction"]), seed=int(cfg["seed"])
            )
            else 1
        )
        if len(done | holders) < need:
            free.append(im)
    mine.sort(key=_order_key)
    free.sort(key=_order_key)
    page = (mine + free)[:limit]
    expires = now + dt.timedelta(minutes=lease_minutes)
    held = {im.id for im in mine}
    for im in page:
        if im.id not in held:
            session.add(
                Lease(
                    image_id=im.id,
                    user_id=user_id,
                    stage=stage,
                    created_at=now,
                    heartbeat_at=now,
                    expires_at=expires,
                )
            )
    session.flush()
    return page


def queue_counts(session: Session, *, project_id: int) -> dict[str, int]:
    """Numbers for a progress line: images, auto pass/fail, generalist and specialist keeps/drops."""
    total = len(
        session.scalars(
            select(Image.id).where(Image.project_id == project_id, Image.status == "ok")
        ).all()
    )
    out = {"images": total}
    for stage in ("auto", "generalist", "specialist"):
        for value in effective(session, project_id=project_id, stage=stage).values():
            out[f"{stage}_{value}"] = out.get(f"{stage}_{value}", 0) + 1
    return out


def accepted_masks(session: Session, *, image_id: int) -> list[Mask]:
    """The image's accepted masks, by id."""
    return list(
        session.scalars(
            select(Mask)
            .where(Mask.image_id == image_id, Mask.status == "accepted")
            .order_by(Mask.id)
        )
    )


def stage_seconds(
    session: Session, *, project_id: int, idle_seconds: float = 30.0
) -> dict[str, float]:
    """Human seconds per stage from decision times (superseded rows included: the work happened).

    Per user and stage, decisions are sorted by time; each gap to the previous decision is
    charged, capped at ``idle_seconds`` (``docs/effort.md``). A session's first decision
    has no previous one and is charged nothing.
    """
    rows = session.execute(
        select(CurationDecision.stage, CurationDecision.user_id, CurationDecision.created_at)
        .join(Image, Image.id == CurationDecision.image_id)
        .where(Image.project_id == project_id, CurationDecision.stage.in_(HUMAN_STAGES))
        .order_by(CurationDecision.created_at, CurationDecision.id)
    ).all()
    last: dict[tuple[str, int], dt.datetime] = {}
    out = dict.fromkeys(HUMAN_STAGES, 0.0)
    for stage, user_id, at in rows:
        key = (stage, int(user_id or 0))
        if key in last:
            out[stage] += min(idle_seconds, max(0.0, (at - last[key]).total_seconds()))
        last[key] = at
    return {k: round(v, 3) for k, v in out.items()}


def ratings_for_agreement(
    session: Session, *, project_id: int, stage: str, field: str = "decision"
) -> list[tuple[int, int, Any]]:
    """(image id, user id, value) of active human decisions; ``field`` is decision or rating."""
    if field not in ("decision", "rating"):
        raise InvalidInput("field must be decision or rating")
    out = []
    for d in active_decisions(session, project_id=project_id, stage=stage):
        value = getattr(d, field)
        if d.user_id is not None and value is not None:
            out.append((d.image_id, d.user_id, value))
    return out
