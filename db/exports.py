"""Export records: one ``export`` row per finished export (keyword-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.models import Export


def add_export(
    session: Session,
    *,
    project_id: int,
    kind: str,
    path: str,
    counts: dict[str, Any],
    manifest_sha256: str,
    params: dict[str, Any],
) -> Export:
    """Record a finished export of ``project_id`` written to ``path`` (flushed: it has an id)."""
    row = Export(
        project_id=project_id,
        kind=kind,
        path=path,
        counts=counts,
        manifest_sha256=manifest_sha256,
        params=params,
    )
    session.add(row)
    session.flush()
    return row
