"""The model version a pre-fill runs as: found or registered for a segmenter, and checked.

A model version is a backend plus its weights (``params["model_key"]``); calibrated children
share their parent's weights and carry a ``calibration`` the scorer must be able to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db.errors import InvalidInput
from db.model_versions import add_model_version, versions_of_backend
from db.models import ModelVersion
from engine.flywheel.confident_rule import ConfidentRule, score
from engine.segment.protocol import Proposal, Segmenter


def ensure_model_version(
    session: Session,
    *,
    segmenter: Segmenter,
    checkpoint_path: str | Path | None = None,
    checkpoint_sha256: str | None = None,
) -> ModelVersion:
    """The model version for this segmenter (backend + ``model_key``), created if missing.

    When several match (e.g. calibrated children with the same weights) the oldest is
    returned; pick a calibrated one explicitly (``model_version_id``) or via the round.
    """
    key = segmenter.model_key
    for mv in versions_of_backend(session, backend=segmenter.name):
        if (mv.params or {}).get("model_key") == key:
            return mv
    model_type = getattr(segmenter, "model_type", None)
    return add_model_version(
        session,
        name=f"{segmenter.name}:{model_type or key}"[:200],
        backend=segmenter.name,
        model_type=model_type,
        checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
        checkpoint_sha256=checkpoint_sha256 or getattr(segmenter, "checkpoint_sha256", None),
        params={"model_key": key},
    )


def check_model_version(mv: ModelVersion, segmenter: Segmenter) -> None:
    """InvalidInput when ``mv`` is not the loaded segmenter's backend and weights."""
    key = (mv.params or {}).get("model_key")
    if mv.backend != segmenter.name or (key is not None and key != segmenter.model_key):
        raise InvalidInput(
            f"model version {mv.id} is {mv.backend} ({key or mv.model_type}) but the loaded "
            f"segmenter is {segmenter.name} ({segmenter.model_key}); load the matching "
            "backend/checkpoint or choose another --model-version"
        )


def check_calibration(calibration: dict[str, Any], mv_id: int) -> None:
    """Fail fast (InvalidInput) on a calibration the scorer cannot read, before any image."""
    probe = Proposal(
        mask=np.ones((4, 4), bool), predicted_iou=0.9, stability=0.9, bbox=[0, 0, 4, 4], area=16
    )
    try:
        score([probe], (8, 8), ConfidentRule(), calibration)
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInput(
            f"model version {mv_id} has an unreadable calibration ({err}); recalibrate it "
            "or pre-fill with its parent model version"
        ) from err
