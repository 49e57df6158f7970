"""Rounds and the control arm: which model version pre-fills a project now, and which images
are served without pre-fill (a seeded, deterministic fraction)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.errors import InvalidInput
from db.models import Round, utcnow

ARMS = ("prefill", "control")


def open_round_id(*, project_id: int) -> Any:
    """SQL scalar: the id of the project's open round with the highest number (NULL if none)."""
    return (
        select(Round.id)
        .where(Round.project_id == project_id, Round.ended_at.is_(None))
        .order_by(Round.number.desc())
        .limit(1)
        .scalar_subquery()
    )


def current_round(session: Session, *, project_id: int) -> Round | None:
    """The project's open round with the highest number, or None."""
    return session.scalars(
        select(Round).where(Round.id == open_round_id(project_id=project_id))
    ).first()


def project_rounds(session: Session, *, project_id: int) -> list[Row[Any]]:
    """(number, id, model_version_id, control_fraction, seed, started_at, ended_at) of every
    round of the project, by number."""
    return list(
        session.execute(
            select(Round.number, Round.id, Round.model_version_id, Round.control_fraction,
                   Round.seed, Round.started_at, Round.ended_at)
            .where(Round.project_id == project_id).order_by(Round.number)
        ).all()
    )  # fmt: skip


def start_round(
    session: Session,
    *,
    project_id: int,
    model_version_id: int | None,
    control_fraction: float = 0.0,
    seed: int = 0,
) -> Round:
    """Close the open round (if any) and open the next one."""
    if not 0.0 <= control_fraction <= 1.0:
        raise InvalidInput("control_fraction must be between 0 and 1")
    now = utcnow()
    for r in session.scalars(
        select(Round).where(Round.project_id == project_id, Round.ended_at.is_(None))
    ):
        r.ended_at = now
    last = session.scalar(select(func.max(Round.number)).where(Round.project_id == project_id))
    rnd = Round(
        project_id=project_id,
        number=(last or 0) + 1,
        model_version_id=model_version_id,
        control_fraction=control_fraction,
        seed=seed,
        started_at=now,
    )
    session.add(rnd)
    session.flush()
    return rnd


def ensure_first_round(
    session: Session, *, project_id: int, model_version_id: int | None
) -> Round | None:
    """Open round 1 (no control arm) when the project never had a round; returns it, else
    None (an existing round, open or closed, is left alone: ``start_round`` starts the next).

    The first pre-fill and ``dataengine up`` call this so work is measured in a round from
    the start; a control arm needs ``dataengine round start --control-fraction F``.
    """
    if session.scalar(select(Round.id).where(Round.project_id == project_id).limit(1)):
        return None
    try:  # two workers' first pre-fills race: the unique (project, number) picks one
        with session.begin_nested():
            return start_round(session, project_id=project_id, model_version_id=model_version_id)
    except IntegrityError:
        return None


def arm_for_image(rnd: Round | None, image_id: int) -> str:
    """``"control"`` for a seeded ``control_fraction`` of images, else ``"prefill"``.

    Deterministic in (round seed, image id), so every server process agrees.
    """
    if rnd is None or rnd.control_fraction <= 0:
        return "prefill"
    digest = hashlib.sha256(f"{rnd.seed}:{image_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "control" if u < rnd.control_fraction else "prefill"
