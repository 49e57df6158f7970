"""Calibration of a project: gather its human decisions, fit, register a child version.

Orchestration over ``db/`` functions and the pure code: ``training_set`` reads every proposal
of a model version on the project's finished images (``db.proposal_outcomes``) and labels it
(``engine.flywheel.training_set``: what the annotator did with it, or for proposals nobody
saw, what they drew instead); ``calibrate_project`` fits
``engine.flywheel.calibration.fit_calibration`` on them and stores the result in a new child
``ModelVersion`` that the next pre-fill uses.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.errors import InvalidInput
from db.model_versions import (
    add_model_version,
    find_model_version,
    get_model_version,
    versions_sharing_weights,
)
from db.models import ModelVersion
from db.proposal_outcomes import final_masks, proposal_rows, revealed_images
from db.rounds import current_round
from engine.flywheel.calibration import fit_calibration
from engine.flywheel.metrics_project import per_image_table
from engine.flywheel.training_set import (
    IMPLIED_ACCEPT_IOU,
    IMPLIED_KEEP_IOU,
    TrainingSet,
    label_proposals,
)


def training_set(
    session: Session,
    *,
    project_id: int,
    parent: ModelVersion,
    implied_accept_iou: float = IMPLIED_ACCEPT_IOU,
    implied_keep_iou: float = IMPLIED_KEEP_IOU,
) -> TrainingSet:
    """Every proposal of ``parent``'s weights (``parent`` and the versions sharing its
    ``model_key``) on finished images of the project, labelled as
    ``engine.flywheel.training_set.label_proposals`` describes."""
    same = versions_sharing_weights(session, parent=parent)
    rows = proposal_rows(session, project_id=project_id, model_version_ids=same)
    if not rows:
        return label_proposals(rows, revealed=set(), finals={})
    return label_proposals(
        rows,
        revealed=revealed_images(session, project_id=project_id),
        finals=final_masks(session, image_ids={r.image_id for r in rows}),
        implied_accept_iou=implied_accept_iou,
        implied_keep_iou=implied_keep_iou,
    )


def measured_add_seconds(session: Session, *, project_id: int, min_masks: int = 5) -> float | None:
    """Mean active seconds per human-added mask on the project's done images (None: < min)."""
    table = per_image_table(session, project_id=project_id)
    timed = float(table.cols["added_timed"].sum())
    if timed < min_masks:
        return None
    return float(table.cols["added_seconds"].sum()) / timed


def calibrate_project(
    session: Session,
    *,
    project_id: int,
    model_version_id: int | None = None,
    target_precision: float = 0.90,
    reject_s: float = 1.0,
    seed: int = 0,
) -> ModelVersion:
    """Fit on the project's decisions and register the calibrated child model version.

    When the target precision is out of reach, the threshold is the most precise one that
    keeps what the parent's rule contributed (``TrainingSet.parent_kept``). When that is
    unreachable too, or the parent contributed nothing, the threshold minimises annotator
    time: an accepted proposal saves the project's measured seconds per human-added mask
    less one verification (``reject_s``, also the cost of a rejected one); with fewer than
    5 timed added masks the precision-lift rule is used. See ``fit_calibration``.

    The parent is ``model_version_id`` or the current round's model version. Its calibrated
    ancestor's parent is used when the parent is itself a calibration (no chains of chains).
    """
    if model_version_id is None:
        rnd = current_round(session, project_id=project_id)
        if rnd is None or rnd.model_version_id is None:
            raise InvalidInput(
                "no model version to calibrate: pass --model-version, or start a round with one"
            )
        model_version_id = rnd.model_version_id
    parent = get_model_version(session, model_version_id=model_version_id)
    base = parent
    if parent.calibration and parent.parent_id is not None:
        base = find_model_version(session, model_version_id=parent.parent_id) or parent
    ts = training_set(session, project_id=project_id, parent=base)
    added_s = measured_add_seconds(session, project_id=project_id)
    cal = fit_calibration(
        ts.x,
        ts.y,
        features=ts.names,
        target_precision=target_precision,
        seed=seed,
        base_precision=float(ts.y[ts.shown].mean()) if ts.shown.any() else None,
        kept=ts.kept,
        base_kept=ts.parent_kept(),
        gain_s=None if added_s is None else max(added_s - reject_s, 0.0),
        reject_s=reject_s,
    )
    cal["n_shown"] = int(ts.shown.sum())
    return add_model_version(
        session,
        name=f"{base.name}+cal{target_precision:.2f}"[:200],
        backend=base.backend,
        model_type=base.model_type,
        checkpoint_path=base.checkpoint_path,
        checkpoint_sha256=base.checkpoint_sha256,
        parent_id=base.id,
        params=dict(base.params or {}),
        calibration=cal,
        metrics={"calibration": {k: cal[k] for k in ("n", "n_positive", "fitted_precision",
                                                     "fitted_recall", "target_met")},
                 "calibrated_from": parent.id},
        promoted=True,
    )  # fmt: skip
