"""A scripted event log with known durations: every flywheel figure checked exactly, both databases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import EffortCache, Event, Lease, Mask, Round, utcnow
from db.session import transaction
from engine.flywheel import events as ek
from engine.flywheel.effort import derive_effort
from engine.flywheel.metrics_project import project_metrics
from tests.factories import (
    box_mask,
    make_image,
    make_mask,
    make_model_version,
    make_project,
    make_user,
)

H, W = 48, 64


class Log:
    """Appends events to one session with explicit client times (ms)."""

    def __init__(self, s: Session, user_id: int, image_id: int, lease_id: int | None) -> None:
        self.s, self.user_id, self.image_id, self.lease_id = s, user_id, image_id, lease_id
        self.session_id = uuid.uuid4().hex
        self.seq = 0

    def __call__(self, t_ms: float, kind: str, mask_id: int | None = None, visible: bool = True,
                 lease_id: Any = "same", **payload: Any) -> None:  # fmt: skip
        self.seq += 1
        self.s.add(
            Event(
                uuid=str(uuid.uuid4()), user_id=self.user_id, image_id=self.image_id,
                mask_id=mask_id, lease_id=self.lease_id if lease_id == "same" else lease_id,
                session_id=self.session_id, seq=self.seq, kind=kind, payload=payload,
                client_time=t_ms, visible=visible,
            )
        )  # fmt: skip


def _lease(s: Session, image: Any, user: Any, rnd: Round, arm: str, done: bool = True) -> Lease:
    now = utcnow()
    lease = Lease(
        image_id=image.id, user_id=user.id, stage="annotate", round_id=rnd.id, arm=arm,
        expires_at=now + dt.timedelta(minutes=30), completed_at=now if done else None,
    )  # fmt: skip
    s.add(lease)
    s.flush()
    return lease


def _mask(s: Session, image: Any, box: tuple[int, int, int, int], **kw: Any) -> Any:
    return make_mask(s, image=image, mask=box_mask(H, W, *box), **kw)


def build(factory: sessionmaker[Session]) -> dict[str, Any]:
    """Round 1: A, B prefill + C control (+ D not done); round 2: E prefill."""
    with transaction(factory) as s:
        p = make_project(s)
        u = make_user(s)
        mv1, mv2 = make_model_version(s), make_model_version(s, name="calibrated")
        r1 = Round(project_id=p.id, number=1, model_version_id=mv1.id, control_fraction=0.3)
        s.add(r1)
        s.flush()
        a, b, c, d = (make_image(s, project=p, width=W, height=H) for _ in range(4))
        la, lb, _lc = (
            _lease(s, a, u, r1, "prefill"),
            _lease(s, b, u, r1, "prefill"),
            _lease(s, c, u, r1, "control"),
        )
        ld = _lease(s, d, u, r1, "prefill", done=False)
        other = Lease(image_id=a.id, user_id=u.id, stage="generalist", expires_at=utcnow())
        s.add(other)
        s.flush()
        model = {"source": "model", "model_version_id": mv1.id, "confident": True}

        # Image A: accept, reject, fix (IoU 0.5), one added mask, an idle gap, a hidden spell.
        p1 = _mask(s, a, (0, 0, 10, 10), status="accepted", **model)
        p2 = _mask(s, a, (20, 0, 30, 10), status="rejected", **model)
        p3 = _mask(s, a, (0, 20, 10, 30), status="superseded", **model)
        _mask(s, a, (40, 20, 60, 40), status="proposed", source="model", confident=False)
        f3 = _mask(s, a, (0, 20, 20, 30), status="accepted", source="model_edited", parent_id=p3.id)
        h1 = _mask(s, a, (40, 30, 50, 40), status="accepted", source="human")
        ev = Log(s, u.id, a.id, la.id)
        ev(0, ek.SESSION_START)
        ev(1000, ek.IMAGE_OPEN)
        ev(3000, ek.MASK_ACCEPT, p1.id)  # 2
        ev(4000, ek.MASK_REJECT, p2.id)  # 1
        ev(5000, ek.FIX_START, mask_id=p3.id)  # 1
        ev(7500, ek.PROMPT_CLICK, x=1.0, y=2.0, positive=True)  # 2.5 (fix)
        ev(8500, ek.OBJECT_COMMIT, f3.id, parent_id=p3.id, clicks=1)  # 1 (fix) -> fix 3.5 s
        ev(60000, ek.PROMPT_CLICK)  # 51.5 capped to 30 (before the first prompt: not H1's)
        ev(61000, ek.SUBMIT, lease_id=other.id)  # another stage's lease: ignored by metrics
        ev(62000, ek.PROMPT_CLICK)  # 2
        ev(63000, ek.OBJECT_COMMIT, h1.id, parent_id=None, clicks=2)  # 1 -> H1 3 s, 2 clicks
        ev(64000, ek.VISIBILITY, visible=False)  # 1
        ev(200000, ek.VISIBILITY, visible=True)  # hidden: 0
        ev(201000, ek.SUBMIT)  # 1
        # A: 2+1+1+2.5+1+30+2+1+1+0+1 = 42.5 s

        # Image B: accept, a cancelled object, a box + click object.
        q1 = _mask(s, b, (0, 0, 10, 10), status="accepted", **model)
        h2 = _mask(s, b, (20, 20, 30, 30), status="accepted", source="human")
        ev = Log(s, u.id, b.id, lb.id)
        ev(0, ek.IMAGE_OPEN)
        ev(4000, ek.MASK_ACCEPT, q1.id)  # 4
        ev(5000, ek.PROMPT_CLICK)  # 1
        ev(6000, ek.OBJECT_CANCEL)  # 1
        ev(8000, ek.PROMPT_BOX, box=[20, 20, 30, 30])  # 2
        ev(9000, ek.PROMPT_CLICK)  # 1
        ev(12000, ek.OBJECT_COMMIT, h2.id, clicks=2)  # 3 -> H2 4 s, 2 clicks
        ev(13000, ek.SUBMIT)  # 1  -> B: 13 s

        # Image C (control): a confident proposal exists but is not shown; two added masks.
        _mask(s, c, (0, 0, 10, 10), status="proposed", **model)
        h3 = _mask(s, c, (20, 20, 30, 30), status="accepted", source="human")
        h4 = _mask(s, c, (40, 20, 50, 30), status="accepted", source="human")
        ev = Log(s, u.id, c.id, None)  # events without a lease id count for the image's lease
        ev(0, ek.IMAGE_OPEN)
        ev(2000, ek.PROMPT_CLICK)  # 2
        ev(4000, ek.PROMPT_CLICK)  # 2
        ev(5000, ek.OBJECT_COMMIT, h3.id)  # 1 -> H3 3 s, 2 clicks
        ev(10000, ek.PROMPT_CLICK)  # 5
        ev(11000, ek.OBJECT_COMMIT, h4.id)  # 1 -> H4 1 s, 1 click
        ev(12000, ek.SUBMIT)  # 1 -> C: 12 s

        # Image D: not done: its 9 s are released_s, outside every figure.
        _mask(s, d, (0, 0, 10, 10), status="accepted", **model)
        ev = Log(s, u.id, d.id, ld.id)
        ev(0, ek.IMAGE_OPEN)
        ev(9000, ek.MASK_ACCEPT)

        r1.ended_at = utcnow()
        r2 = Round(project_id=p.id, number=2, model_version_id=mv2.id)
        s.add(r2)
        s.flush()
        e = make_image(s, project=p, width=W, height=H)
        le = _lease(s, e, u, r2, "prefill")
        m2 = {"source": "model", "model_version_id": mv2.id, "confident": True}
        s1 = _mask(s, e, (0, 0, 10, 10), status="accepted", **m2)
        s2 = _mask(s, e, (20, 0, 30, 10), status="accepted", **m2)
        ev = Log(s, u.id, e.id, le.id)
        ev(0, ek.IMAGE_OPEN)
        ev(1500, ek.MASK_ACCEPT, s1.id)
        ev(3000, ek.MASK_ACCEPT, s2.id)
        ev(4000, ek.SUBMIT)  # E: 4 s
        return {
            "project_id": p.id,
            "a": a.id,
            "f3": f3.id,
            "h1": h1.id,
            "p1": p1.id,
            "other": other.id,
        }


def _groups(m: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(g["round"], g["arm"]): g for g in m["groups"]}


def test_every_figure_exact(factory: sessionmaker[Session]) -> None:
    ids = build(factory)
    with factory() as s:
        m = project_metrics(s, project_id=ids["project_id"], reps=200, seed=3)
    g = _groups(m)
    assert sorted(g) == [(1, "control"), (1, "prefill"), (2, "prefill")]

    pre = g[(1, "prefill")]
    assert pre["images_done"] == 2
    f = {k: v["value"] for k, v in pre["figures"].items()}
    assert f == {
        "final_masks_per_image": 5 / 2,
        "prefill_precision": 2 / 4,
        "prefill_contribution": 3 / 5,
        "seconds_per_image": 55.5 / 2,
        "seconds_per_final_mask": 55.5 / 5,
        "seconds_per_added_mask": 7.0 / 2,
        "clicks_per_added_mask": 4 / 2,
        "fixed_iou": 0.5,
        "masks_per_annotator_hour": 5 / 55.5 * 3600,
    }
    assert pre["active_seconds"] == 55.5
    assert (pre["released_s"], pre["images_unfinished"], pre["imported_s"]) == (9.0, 1, 0.0)

    ctl = g[(1, "control")]
    assert ctl["images_done"] == 1
    f = {k: v["value"] for k, v in ctl["figures"].items()}
    assert f == {
        "final_masks_per_image": 2.0,
        "prefill_precision": None,
        "prefill_contribution": 0.0,
        "seconds_per_image": 12.0,
        "seconds_per_final_mask": 6.0,
        "seconds_per_added_mask": 4 / 2,
        "clicks_per_added_mask": 3 / 2,
        "fixed_iou": None,
        "masks_per_annotator_hour": 2 / 12 * 3600,
    }
    assert ctl["figures"]["prefill_precision"]["lo"] is None

    r2 = g[(2, "prefill")]
    f = {k: v["value"] for k, v in r2["figures"].items()}
    assert f["prefill_precision"] == 1.0 and f["seconds_per_final_mask"] == 2.0
    assert f["seconds_per_added_mask"] is None and f["masks_per_annotator_hour"] == 2 / 4 * 3600
    # One image: every resample is that image, so each interval collapses onto the value.
    for name, v in r2["figures"].items():
        if v["value"] is not None:
            assert v["lo"] == pytest.approx(v["value"]) and v["hi"] == pytest.approx(v["value"]), (
                name
            )

    # Two images: the interval spans the two images' own ratios, and is seeded.
    spi = pre["figures"]["seconds_per_image"]
    assert 13.0 <= spi["lo"] <= spi["value"] <= spi["hi"] <= 42.5
    assert spi["lo"] < spi["hi"]
    with factory() as s:
        again = project_metrics(s, project_id=ids["project_id"], reps=200, seed=3)
    assert again["groups"] == m["groups"]


def test_idle_limit_recomputes_from_raw_events(factory: sessionmaker[Session]) -> None:
    ids = build(factory)
    with factory() as s:
        m = project_metrics(s, project_id=ids["project_id"], idle_s=10.0, reps=50)
    pre = _groups(m)[(1, "prefill")]
    assert pre["active_seconds"] == 55.5 - 20.0  # A's 51.5 s gap now caps at 10 s


def test_derivation_matches_the_hand_computed_log(factory: sessionmaker[Session]) -> None:
    ids = build(factory)
    with factory() as s:
        events = [
            e for e in s.query(Event).filter(Event.image_id == ids["a"]).all()
            if e.lease_id != ids["other"]
        ]  # fmt: skip
    eff = derive_effort(events)
    assert eff.per_image == {ids["a"]: 42.5}
    assert eff.per_mask[ids["f3"]].seconds == 3.5 and eff.per_mask[ids["f3"]].clicks == 1
    assert eff.per_mask[ids["h1"]].seconds == 3.0 and eff.per_mask[ids["h1"]].clicks == 2
    assert eff.per_mask[ids["p1"]].seconds == 2.0


def test_effort_cache_follows_new_events_and_idle_changes(factory: sessionmaker[Session]) -> None:
    ids = build(factory)
    pid = ids["project_id"]
    with transaction(factory) as s:
        first = _groups(project_metrics(s, project_id=pid, reps=20))[(1, "prefill")]
    assert first["active_seconds"] == 55.5
    with transaction(factory) as s:  # a later visit to image A: 5 s more
        user_id = s.get(Lease, s.query(Lease).filter(Lease.image_id == ids["a"]).first().id).user_id
        lease_id = (
            s.query(Lease).filter(Lease.image_id == ids["a"], Lease.stage == "annotate").one().id
        )
        ev = Log(s, user_id, ids["a"], lease_id)
        ev(0, ek.IMAGE_OPEN)
        ev(5000, ek.MASK_SELECT)
    with transaction(factory) as s:
        again = _groups(project_metrics(s, project_id=pid, reps=20))
    assert again[(1, "prefill")]["active_seconds"] == 60.5
    assert again[(1, "control")]["active_seconds"] == 12.0
    with transaction(factory) as s:
        capped = _groups(project_metrics(s, project_id=pid, idle_s=10.0, reps=20))
    assert capped[(1, "prefill")]["active_seconds"] == 60.5 - 20.0


def test_cache_follows_mask_edits_long_after_its_derivation(
    factory: sessionmaker[Session],
) -> None:
    """A reviewer rejects H1 an hour after the cache was derived: every mask figure follows."""
    ids = build(factory)
    pid = ids["project_id"]
    with transaction(factory) as s:
        first = _groups(project_metrics(s, project_id=pid, reps=20))[(1, "prefill")]
    assert first["final_masks"] == 5 and first["added_masks"] == 2
    hour_ago = utcnow() - dt.timedelta(hours=1)
    with transaction(factory) as s:  # as if derived and checked long ago, masks unchanged since
        s.execute(update(EffortCache).values(computed_at=hour_ago, masks_checked_at=hour_ago))
        s.execute(update(Mask).values(updated_at=hour_ago - dt.timedelta(minutes=5)))
        s.execute(update(Event).values(server_time=hour_ago - dt.timedelta(minutes=5)))
    with transaction(factory) as s:
        s.get(Mask, ids["h1"]).status = "rejected"  # the ORM stamps updated_at
    with transaction(factory) as s:
        again = _groups(project_metrics(s, project_id=pid, reps=20))[(1, "prefill")]
    assert again["final_masks"] == 4 and again["added_masks"] == 1
    f = again["figures"]
    assert f["seconds_per_added_mask"]["value"] == 4.0  # H2 only
    assert f["clicks_per_added_mask"]["value"] == 2.0
    assert f["seconds_per_final_mask"]["value"] == 55.5 / 4
    with transaction(factory) as s:  # the check moved on: no mask edit left to find
        checked = s.scalars(select(EffortCache.masks_checked_at)).all()
    assert min(checked) > hour_ago


def test_less_confident_proposals_count_only_once_revealed(factory: sessionmaker[Session]) -> None:
    """Pre-fill precision and contribution count what the annotator was shown: confident
    proposals, plus the less confident ones only on an image where they were revealed."""
    with transaction(factory) as s:
        p = make_project(s)
        u = make_user(s)
        mv = make_model_version(s)
        rnd = Round(project_id=p.id, number=1, model_version_id=mv.id, control_fraction=0.0)
        s.add(rnd)
        s.flush()
        a, b = (make_image(s, project=p, width=W, height=H) for _ in range(2))
        la, lb = _lease(s, a, u, rnd, "prefill"), _lease(s, b, u, rnd, "prefill")
        sure = {"source": "model", "model_version_id": mv.id, "confident": True}
        unsure = {"source": "model", "model_version_id": mv.id, "confident": False}
        # A: never revealed; one confident accepted, two hidden proposals, one added object
        a1 = _mask(s, a, (0, 0, 10, 10), status="accepted", **sure)
        _mask(s, a, (20, 0, 30, 10), status="proposed", **unsure)
        _mask(s, a, (20, 20, 30, 30), status="proposed", **unsure)
        _mask(s, a, (40, 20, 60, 40), status="accepted", source="human")
        ev = Log(s, u.id, a.id, la.id)
        ev(0, ek.IMAGE_OPEN)
        ev(2000, ek.MASK_ACCEPT, a1.id)
        ev(3000, ek.SUBMIT)
        # B: revealed; confident accepted, one revealed accepted, one revealed rejected
        b1 = _mask(s, b, (0, 0, 10, 10), status="accepted", **sure)
        b2 = _mask(s, b, (20, 0, 30, 10), status="accepted", **unsure)
        b3 = _mask(s, b, (20, 20, 30, 30), status="rejected", **unsure)
        ev = Log(s, u.id, b.id, lb.id)
        ev(0, ek.IMAGE_OPEN)
        ev(1000, ek.MASK_ACCEPT, b1.id)
        ev(2000, ek.REVEAL_LESS_CONFIDENT, mask_ids=[b2.id, b3.id])
        ev(3000, ek.MASK_ACCEPT, b2.id)
        ev(4000, ek.MASK_REJECT, b3.id)
        ev(5000, ek.SUBMIT)
        project_id, a_id, round_id = p.id, a.id, rnd.id
    with factory() as s:
        g = _groups(project_metrics(s, project_id=project_id, reps=50))[(1, "prefill")]
    assert g["shown"] == 1 + 3
    prec = g["figures"]["prefill_precision"]
    assert (prec["num"], prec["den"]) == (3, 4)  # a1, b1, b2 accepted of a1, b1, b2, b3
    contrib = g["figures"]["prefill_contribution"]
    assert (contrib["num"], contrib["den"]) == (3, 4)  # the human mask is the fourth

    # a reveal under another lease of the image (someone else's session) does not count
    with transaction(factory) as s:
        other = make_user(s, name="other")
        stale = Lease(image_id=a_id, user_id=other.id, stage="annotate", round_id=round_id,
                      arm="prefill", expires_at=utcnow())  # fmt: skip
        s.add(stale)
        s.flush()
        Log(s, other.id, a_id, stale.id)(0, ek.REVEAL_LESS_CONFIDENT)
    with factory() as s:
        g = _groups(project_metrics(s, project_id=project_id, reps=50))[(1, "prefill")]
    assert g["figures"]["prefill_precision"]["den"] == 4
