"""Calibrating a project: labels from human decisions and final masks, the child version."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.models import Lease, Round, utcnow
from db.session import transaction
from engine.flywheel.calibration_project import calibrate_project
from tests.factories import (
    box_mask,
    make_image,
    make_mask,
    make_model_version,
    make_project,
    make_user,
    proposal_decisions,
)


def test_calibrate_project_registers_a_child_version(factory: sessionmaker[Session]) -> None:
    x, y = proposal_decisions(120, seed=1)
    with transaction(factory) as s:
        p, u = make_project(s), make_user(s)
        mv = make_model_version(s, params={"model_key": "classical-v1"})
        rnd = Round(project_id=p.id, number=1, model_version_id=mv.id)
        s.add(rnd)
        s.flush()
        for i in range(0, len(y), 6):
            img = make_image(s, project=p, width=64, height=48)
            s.add(Lease(image_id=img.id, user_id=u.id, stage="annotate", round_id=rnd.id,
                        arm="prefill", expires_at=utcnow() + dt.timedelta(minutes=5),
                        completed_at=utcnow()))  # fmt: skip
            for j in range(i, min(i + 6, len(y))):
                status = "accepted" if y[j] else ("rejected" if j % 2 else "superseded")
                make_mask(s, image=img, mask=box_mask(48, 64, 2, 2, 12 + j % 30, 20),
                          source="model", confident=True, model_version_id=mv.id, status=status,
                          predicted_iou=float(x[j, 0]), stability=float(x[j, 1]))  # fmt: skip
        # unshown proposals are labelled by the final masks: one matches the annotator's
        # own mask (implied accept), one overlaps nothing (implied reject); the human mask
        # itself is not a proposal and never enters the training set
        make_mask(s, image=img, source="model", confident=False, model_version_id=mv.id,
                  status="proposed", predicted_iou=0.99, stability=0.99)  # fmt: skip
        make_mask(s, image=img, mask=box_mask(48, 64, 50, 36, 60, 46), source="model",
                  confident=False, model_version_id=mv.id, status="proposed",
                  predicted_iou=0.5, stability=0.9)  # fmt: skip
        make_mask(s, image=img, source="human", status="accepted")
        # the same image finished again (a later pass): its proposals still count once
        s.add(Lease(image_id=img.id, user_id=u.id, stage="annotate", round_id=rnd.id,
                    arm="control", expires_at=utcnow() + dt.timedelta(minutes=5),
                    completed_at=utcnow()))  # fmt: skip
        project_id, mv_id = p.id, mv.id
    with transaction(factory) as s:
        child = calibrate_project(s, project_id=project_id, target_precision=0.9)
        assert child.parent_id == mv_id and child.backend == "classical"
        assert child.params["model_key"] == "classical-v1"
        cal = child.calibration
        assert cal["n"] == 122 and cal["n_shown"] == 120
        assert cal["n_positive"] == int(y.sum()) + 1
        # kept: accepted or fixed (superseded) when shown, IoU >= 0.5 with a final mask if not
        fixed = sum(1 for j in range(len(y)) if not y[j] and j % 2 == 0)
        assert cal["n_kept"] == int(y.sum()) + fixed + 1
        assert 0 < child.calibration["threshold"] < 1
        child_id = child.id
    with transaction(factory) as s:  # calibrating a calibrated version re-fits on its parent
        again = calibrate_project(s, project_id=project_id, model_version_id=child_id)
        assert again.parent_id == mv_id
        assert again.calibration["coef"] == pytest.approx(child.calibration["coef"])


def test_revealed_proposals_are_labelled_by_the_decision(factory: sessionmaker[Session]) -> None:
    """A less confident proposal the annotator revealed and rejected is a shown negative,
    even where the final masks would have implied an accept."""
    from db.models import Event
    from engine.flywheel.calibration_project import training_set

    with transaction(factory) as s:
        p, u = make_project(s), make_user(s)
        mv = make_model_version(s, params={"model_key": "classical-v1"})
        rnd = Round(project_id=p.id, number=1, model_version_id=mv.id)
        s.add(rnd)
        s.flush()
        seen, unseen = (make_image(s, project=p, width=64, height=48) for _ in range(2))
        for img in (seen, unseen):
            lease = Lease(image_id=img.id, user_id=u.id, stage="annotate", round_id=rnd.id,
                          arm="prefill", expires_at=utcnow(), completed_at=utcnow())  # fmt: skip
            s.add(lease)
            s.flush()
            make_mask(s, image=img, source="model", confident=False, model_version_id=mv.id,
                      status="rejected" if img is seen else "proposed",
                      predicted_iou=0.4, stability=0.9)  # fmt: skip
            make_mask(s, image=img, source="human", status="accepted")  # the same box
            if img is seen:
                s.add(Event(uuid=f"rv-{img.id}", user_id=u.id, image_id=img.id,
                            lease_id=lease.id, session_id="s", seq=1,
                            kind="reveal_less_confident", payload={}, client_time=0.0))  # fmt: skip
        s.flush()
        ts = training_set(s, project_id=p.id, parent=mv)
        assert ts.shown.tolist() == [True, False]  # revealed on the first image only
        assert ts.y.tolist() == [0, 1]  # the rejection wins; the unseen one is implied
