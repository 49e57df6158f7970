"""Calibration of a project: gather its human decisions, fit, register a child version.

``training_set`` turns every proposal of a model version on the project's finished images
into labelled rows (what the annotator did with it, or for proposals nobody saw, what they
drew instead); ``calibrate_project`` fits ``engine.flywheel.calibration.fit_calibration`` on them and
stores the result in a new child ``ModelVersion`` that the next pre-fill uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from db.errors import InvalidInput, NotFound
from db.models import Event, Image, Mask, ModelVersion
from db.rounds import current_round
from engine.flywheel import events as ek
from engine.flywheel.calibration import DEFAULT_FEATURES, feature_matrix, fit_calibration
from engine.flywheel.metrics import done_leases, per_image_table
from engine.masks import rle_iou

IMPLIED_ACCEPT_IOU = 0.85  # an unshown proposal this close to a final mask "would be accepted"
IMPLIED_KEEP_IOU = 0.5  # ... and this close "would have been fixed into" that final mask


@dataclass
class TrainingSet:
    """One row per proposal of the parent's weights on the project's finished images."""

    x: np.ndarray  # (N, F) float64 features
    y: np.ndarray  # (N,) int: accepted as-is (or, unshown, implied by the final masks)
    kept: np.ndarray  # (N,) int: became a final mask: accepted or fixed (unshown: implied)
    shown: np.ndarray  # (N,) bool: on a pre-fill-arm image, confident or revealed
    image_id: np.ndarray  # (N,) int
    prefill: np.ndarray  # (N,) bool: on a pre-fill-arm image
    names: list[str]

    def parent_kept(self) -> float | None:
        """Kept proposals the parent's rule showed, per pre-fill image, times all images
        here (the contribution a new rule must keep); None without pre-fill images."""
        n_prefill = len(np.unique(self.image_id[self.prefill]))
        if n_prefill == 0:
            return None
        per_image = float(self.kept[self.shown].sum()) / n_prefill
        return per_image * len(np.unique(self.image_id))


def training_set(
    session: Session,
    *,
    project_id: int,
    parent: ModelVersion,
    implied_accept_iou: float = IMPLIED_ACCEPT_IOU,
    implied_keep_iou: float = IMPLIED_KEEP_IOU,
) -> TrainingSet:
    """Every proposal of ``parent``'s weights on finished images of the project.

    Shown proposals (prefill arm: confident, or less confident on an image where the annotator
    revealed them, a ``reveal_less_confident`` event) carry the annotator's decision: ``accepted``
    -> y 1, anything else (rejected, fixed, left) -> 0; kept 1 when accepted or fixed
    (``superseded`` by the annotator's edit). Proposals nobody saw (not confident, or on
    control-arm images) are labelled by what the annotator drew instead: y 1 when the
    proposal's IoU with one of the image's final masks reaches ``implied_accept_iou``, kept 1
    when it reaches ``implied_keep_iou``. Labelling the unseen ones is what lets the
    calibrated rule show *more* than the rule it replaces, not only a subset of it.
    """
    key = (parent.params or {}).get("model_key")
    same = [
        mv.id
        for mv in session.scalars(
            select(ModelVersion).where(ModelVersion.backend == parent.backend)
        )
        if mv.id == parent.id or ((mv.params or {}).get("model_key") == key and key is not None)
    ]
    leases = done_leases(project_id).subquery()
    done = (  # one row per finished image ("prefill" wins if it was done in both arms)
        select(leases.c.image_id, func.max(leases.c.arm).label("arm"))
        .group_by(leases.c.image_id)
        .subquery()
    )
    rows = session.execute(
        select(Mask.image_id, Mask.predicted_iou, Mask.stability, Mask.area, Mask.bbox,
               Mask.status, Mask.confident, Mask.rle, done.c.arm, Image.height, Image.width)
        .join(Image, Image.id == Mask.image_id)
        .join(done, done.c.image_id == Mask.image_id)
        .where(Mask.source == "model", Mask.model_version_id.in_(same))
        .order_by(Mask.id)
    ).all()  # fmt: skip
    names = DEFAULT_FEATURES
    n = len(rows)
    if n == 0:
        none = np.zeros(0, dtype=np.int64)
        return TrainingSet(np.zeros((0, len(names))), none, none, none.astype(bool), none,
                           none.astype(bool), names)  # fmt: skip
    image_id = np.array([r.image_id for r in rows], dtype=np.int64)
    revealed = set(
        session.scalars(
            select(Event.image_id)
            .join(leases, and_(leases.c.image_id == Event.image_id,
                               or_(Event.lease_id.is_(None), Event.lease_id == leases.c.lease_id)))
            .where(Event.kind == ek.REVEAL_LESS_CONFIDENT)
        )
    )  # fmt: skip
    prefill = np.array([r.arm == "prefill" for r in rows], dtype=bool)
    shown = np.array([bool(r.confident) or r.image_id in revealed for r in rows], dtype=bool)
    shown &= prefill
    y = np.zeros(n, dtype=np.int64)
    kept = np.zeros(n, dtype=np.int64)
    finals: dict[int, list[Any]] = {int(i): [] for i in np.unique(image_id)}
    for img, rle in session.execute(
        select(Mask.image_id, Mask.rle).where(Mask.image_id.in_(list(finals)),
                                              Mask.status == "accepted")
    ):  # fmt: skip
        finals[img].append(rle)
    unseen: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        if shown[k]:
            y[k] = r.status == "accepted"
            kept[k] = r.status in ("accepted", "superseded")
        else:
            unseen.setdefault(r.image_id, []).append(k)
    for img, ks in unseen.items():
        if finals[img]:
            best = rle_iou([rows[k].rle for k in ks], finals[img]).max(axis=1)
            y[ks] = best >= implied_accept_iou
            kept[ks] = best >= implied_keep_iou
    x = feature_matrix(
        names,
        np.array([r.predicted_iou or 0.0 for r in rows], dtype=np.float64),
        np.array([r.stability or 0.0 for r in rows], dtype=np.float64),
        np.array([r.area for r in rows], dtype=np.float64),
        np.array([r.bbox for r in rows], dtype=np.float64),
        np.array([[r.height, r.width] for r in rows], dtype=np.float64),
    )
    return TrainingSet(x, y, kept, shown, image_id, prefill, names)


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
    parent = session.get(ModelVersion, model_version_id)
    if parent is None:
        raise NotFound(f"no model version with id {model_version_id}")
    base = parent
    if parent.calibration and parent.parent_id is not None:
        base = session.get(ModelVersion, parent.parent_id) or parent
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
    child = ModelVersion(
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
    session.add(child)
    session.flush()
    return child
