"""Model version data functions (keyword-only; raise domain errors)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.models import ModelVersion


def find_model_version(session: Session, *, model_version_id: int) -> ModelVersion | None:
    """The model version with this id, or None."""
    return session.get(ModelVersion, model_version_id)


def get_model_version(session: Session, *, model_version_id: int) -> ModelVersion:
    """The model version with this id (NotFound when there is none)."""
    mv = find_model_version(session, model_version_id=model_version_id)
    if mv is None:
        raise NotFound(f"no model version with id {model_version_id}")
    return mv


def versions_sharing_weights(session: Session, *, parent: ModelVersion) -> list[int]:
    """Ids of ``parent`` and every version of its backend with the same non-empty
    ``params["model_key"]`` (calibrated children share their parent's weights)."""
    key = (parent.params or {}).get("model_key")
    return [
        mv.id
        for mv in session.scalars(
            select(ModelVersion).where(ModelVersion.backend == parent.backend)
        )
        if mv.id == parent.id or ((mv.params or {}).get("model_key") == key and key is not None)
    ]


def versions_of_backend(session: Session, *, backend: str) -> list[ModelVersion]:
    """Every model version of ``backend``, oldest first."""
    return list(
        session.scalars(
            select(ModelVersion).where(ModelVersion.backend == backend).order_by(ModelVersion.id)
        ).all()
    )


def add_model_version(session: Session, **fields: Any) -> ModelVersion:
    """Insert a model version with these column values and flush (its id is set)."""
    mv = ModelVersion(**fields)
    session.add(mv)
    session.flush()
    return mv


def find_by_name(session: Session, *, backend: str, name: str) -> ModelVersion | None:
    """The oldest model version of ``backend`` called ``name``, or None."""
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.backend == backend, ModelVersion.name == name)
        .order_by(ModelVersion.id)
        .limit(1)
    )


def version_names(session: Session, *, ids: Collection[int] | None = None) -> dict[int, str]:
    """model version id -> name, for ``ids`` (None: every version; unknown ids left out)."""
    q = select(ModelVersion.id, ModelVersion.name)
    if ids is not None:
        if not ids:
            return {}
        q = q.where(ModelVersion.id.in_(list(ids)))
    return {int(i): n for i, n in session.execute(q).all()}
