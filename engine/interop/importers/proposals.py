"""Imported masks stored as a model's pre-fill: confident proposals with a score, in a round.

``dataengine import -f coco --as-proposals`` uses this so that a COCO file (a detector's
output, or ground truth standing in for one) gives the review page, the tests and
``scripts/bench_canvas.py`` SAM-like pre-fill density without SAM weights.

What is written, per file:
- one ``ModelVersion`` named ``import:<file name>`` (backend ``import``), reused when the
  same file name is imported again;
- round 1 with that model version when the project never had a round (the round that is
  open otherwise keeps its own model version);
- per image one ``Prefill`` row (status ``done``, counts of proposals) so that the image
  reads as pre-filled, exactly as ``engine.flywheel.prefill`` records a model pass;
- per annotation one ``Mask`` row: ``source="model"``, ``status="proposed"``,
  ``confident=True``, ``predicted_iou`` = the score (the annotation's ``score`` field,
  else the ``--score`` default, 1.0 unless given), ``model_version_id`` and ``round_id``.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from db.model_versions import add_model_version, find_by_name
from db.models import Image, Project
from db.prefills import add_imported_proposals
from db.rounds import current_round, ensure_first_round
from engine.mask_payload import MaskPayloadError, check_score

IMPORT_BACKEND = "import"  # ModelVersion.backend of imported proposals
DEFAULT_SCORE = 1.0


def check_default_score(score: Any) -> float:
    """The ``--score`` default: a finite number in [0, 1]; ValueError naming the fix otherwise."""
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ValueError(f"--score must be a number between 0 and 1, got {score!r}")
    value = float(score)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"--score must be a number between 0 and 1, got {score!r}")
    return value


def annotation_score(ann: dict[str, Any], default: float) -> tuple[float | None, str | None]:
    """(score, None) from the annotation's ``score`` field (``default`` when absent), or
    (None, reason) when the field is not a finite number in [0, 1]."""
    raw = ann.get("score")
    if raw is None:
        return default, None
    try:
        value = check_score(raw)
    except MaskPayloadError as err:
        return None, f"bad score: {err}"
    if value is None or not 0.0 <= value <= 1.0:
        return None, f"bad score: {raw!r} is not between 0 and 1"
    return value, None


class ProposalRound:
    """The model version and round that one file's proposals are stored under.

    ``prepare`` is called once per file, ``mark_prefilled`` once per image that got at
    least one proposal (adds or updates its ``Prefill`` row).
    """

    def __init__(self, session: Session, *, project: Project, file_name: str) -> None:
        self.session = session
        name = f"{IMPORT_BACKEND}:{file_name}"[:200]
        mv = find_by_name(session, backend=IMPORT_BACKEND, name=name)
        if mv is None:
            mv = add_model_version(
                session,
                name=name,
                backend=IMPORT_BACKEND,
                model_type=None,
                params={"model_key": name, "file": file_name},
            )
        self.model_version_id: int = mv.id
        rnd = current_round(session, project_id=project.id)
        if rnd is None:
            rnd = ensure_first_round(session, project_id=project.id, model_version_id=mv.id)
            if rnd is None:  # another process opened it meanwhile
                rnd = current_round(session, project_id=project.id)
        self.round_id: int | None = rnd.id if rnd is not None else None

    def mask_fields(self, score: float) -> dict[str, Any]:
        """The ``Mask`` columns that make a row a confident model proposal of this round."""
        return {
            "source": "model",
            "status": "proposed",
            "confident": True,
            "predicted_iou": score,
            "model_version_id": self.model_version_id,
            "round_id": self.round_id,
        }

    def mark_prefilled(self, image: Image, *, proposals: int) -> None:
        """Record ``image`` as pre-filled by this model version with ``proposals`` masks."""
        add_imported_proposals(
            self.session,
            image_id=image.id,
            model_version_id=self.model_version_id,
            proposals=proposals,
        )
