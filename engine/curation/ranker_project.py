"""The ranker on a project: labels from the human stages, scores written to the images.

Orchestration over ``db/`` functions and the pure ``engine.curation.ranker``: reads the
project's effective generalist / specialist decisions, trains, stores the model in the
project's curation settings and each ok image's score in ``signals["ranker"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db.curation import effective, set_curation_settings
from db.images import image_page, images_by_id
from db.models import Image, Project
from engine.curation.ranker import train_ranker

SCORE_PAGE = 1000  # images scored per keyset page


def project_labels(session: Session, *, project_id: int) -> dict[int, int]:
    """image id -> 1 kept / 0 dropped, from the human stages (specialist overrides generalist)."""
    labels = {
        i: int(d == "keep")
        for i, d in effective(session, project_id=project_id, stage="generalist").items()
    }
    for i, d in effective(session, project_id=project_id, stage="specialist").items():
        labels[i] = int(d == "keep")
    return labels


def _embeddings(images: Sequence[Image]) -> np.ndarray | None:
    vecs = [(im.meta or {}).get("clip_embedding") for im in images]
    if (
        not vecs
        or any(not isinstance(v, list) or not v for v in vecs)
        or len({len(v) for v in vecs}) != 1
    ):  # type: ignore[arg-type]
        return None
    return np.asarray(vecs, dtype=np.float64)


def train_project_ranker(session: Session, *, project: Project) -> dict[str, Any]:
    """Train on the project's human decisions, store the model in ``project.settings`` and
    write every ok image's score to ``signals["ranker"]`` (the queues sort by it).

    Returns ``{"n_train", "n_keep", "scored", "uses_embeddings", "top_features"}``.
    ``ValueError`` when there are too few decisions.
    """
    labels = project_labels(session, project_id=project.id)
    train = images_by_id(session, ids=labels)
    emb = _embeddings(train)
    model = train_ranker(
        [im.signals or {} for im in train], [labels[im.id] for im in train], embeddings=emb
    )
    set_curation_settings(session, project=project, ranker=model.to_dict())
    scored, last = 0, 0
    while True:  # keyset pages: memory is one page of images, whatever the project's size
        page = image_page(session, project_id=project.id, after_id=last, limit=SCORE_PAGE)
        if not page:
            break
        scores = model.score(
            [im.signals or {} for im in page], _embeddings(page) if emb is not None else None
        )
        for im, sc in zip(page, scores, strict=True):
            im.signals = {**(im.signals or {}), "ranker": round(float(sc), 6)}
        session.flush()
        last, scored = page[-1].id, scored + len(page)
        for im in page:
            session.expunge(im)  # flushed: the transaction holds the change, not the session
    order = np.argsort(-np.abs(model.coef[: len(model.features)]))[:5]
    return {
        "n_train": model.n_train,
        "n_keep": model.n_keep,
        "scored": scored,
        "uses_embeddings": bool(model.embedding_dim),
        "top_features": [(model.features[i], round(float(model.coef[i]), 3)) for i in order],
    }
