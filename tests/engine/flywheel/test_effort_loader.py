"""One effort definition on both databases: a scripted log per rule, derived by the loader
(``GET /api/images/{id}/effort``) and by the metrics (``/api/metrics``, the CLI, the report),
checked against hand-computed seconds; both surfaces must agree on every image."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Lease, Round, utcnow
from db.session import transaction
from engine.flywheel import events as ek
from engine.flywheel.effort_loader import image_effort
from engine.flywheel.metrics_project import per_image_table, project_metrics
from tests.factories import make_image, make_mask, make_project, make_user


class World:
    """A project, a user, optional rounds; events appended with explicit client times (ms)."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.project = make_project(s)
        self.user = make_user(s)

    def round(self, number: int = 1, control: float = 0.0) -> Round:
        r = Round(project_id=self.project.id, number=number, control_fraction=control)
        self.s.add(r)
        self.s.flush()
        return r

    def lease(self, image: Any, rnd: Round | None, *, done: bool, stage: str = "annotate",
              arm: str = "prefill") -> Lease:  # fmt: skip
        now = utcnow()
        lease = Lease(
            image_id=image.id, user_id=self.user.id, stage=stage, arm=arm,
            round_id=rnd.id if rnd else None, expires_at=now + dt.timedelta(minutes=5),
            completed_at=now if done else None,
        )  # fmt: skip
        self.s.add(lease)
        self.s.flush()
        return lease

    def log(self, image: Any, lease: Lease | None, rows: list[tuple[Any, ...]],
            session_id: str | None = None) -> None:  # fmt: skip
        """rows: (t_ms, kind[, mask_id[, visible[, payload]]])."""
        sid = session_id or uuid.uuid4().hex
        for seq, (t, kind, *rest) in enumerate(rows):
            self.s.add(Event(
                uuid=str(uuid.uuid4()), user_id=self.user.id, image_id=image.id,
                mask_id=rest[0] if rest else None, lease_id=lease.id if lease else None,
                session_id=sid, seq=seq, kind=kind, client_time=t,
                visible=rest[1] if len(rest) > 1 else True,
                payload=rest[2] if len(rest) > 2 else {},
            ))  # fmt: skip
        self.s.flush()


def agree(
    factory: sessionmaker[Session], project_id: int, idle_s: float = 30.0
) -> dict[int, float]:
    """image id -> seconds, after checking /effort's derivation equals the metrics' table."""
    with transaction(factory) as s:
        table = per_image_table(s, project_id=project_id, idle_s=idle_s)
        metric = {
            int(i): float(table.cols["seconds"][k] + table.cols["released_s"][k])
            for k, i in enumerate(table.image_ids)
        }
        single = {i: image_effort(s, image_id=i, idle_s=idle_s).per_image.get(i, 0.0)
                  for i in metric}  # fmt: skip
    assert single == pytest.approx(metric), (single, metric)
    return metric


def groups(factory: sessionmaker[Session], project_id: int, **kw: Any) -> dict[Any, dict]:
    with transaction(factory) as s:
        m = project_metrics(s, project_id=project_id, reps=20, **kw)
    return {(g["round"], g["arm"]): g for g in m["groups"]} | {"notes": m["notes"]}


def test_no_time_after_submit_until_the_next_image_opens(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        w = World(s)
        r1 = w.round()
        im = make_image(s, project=w.project)
        lease = w.lease(im, r1, done=True)
        w.log(im, lease, [
            (0, ek.IMAGE_OPEN), (2000, ek.MASK_SELECT), (3000, ek.SUBMIT),  # 3 s
            (9000, ek.VISIBILITY, None, False),  # tab switches after submit: 0
            (39000, ek.VISIBILITY, None, True), (45000, ek.HEARTBEAT),
            (50000, ek.VISIBILITY, None, False), (80000, ek.VISIBILITY, None, True),
            (81000, ek.IMAGE_OPEN), (83000, ek.MASK_SELECT), (84000, ek.SUBMIT),  # reopened: 3 s
            (90000, ek.MASK_SELECT),
        ])  # fmt: skip
        pid, iid = w.project.id, im.id
    assert agree(factory, pid) == {iid: 6.0}
    with factory() as s:
        reasons = [g.reason for g in image_effort(s, image_id=iid).gaps]
    assert reasons.count("after_submit") == 6 and reasons.count("clock_restart") == 1
    assert groups(factory, pid)[(1, "prefill")]["active_seconds"] == 6.0


def test_released_work_counts_for_the_image_and_unfinished_work_is_shown(
    factory: sessionmaker[Session],
) -> None:
    """7 s under a released lease + 5 s under the submitting one = 12 s on both surfaces;
    an image nobody finished shows as released_s, outside every figure."""
    with transaction(factory) as s:
        w = World(s)
        r1 = w.round(control=0.0)
        a, b = make_image(s, project=w.project), make_image(s, project=w.project)
        released = w.lease(a, r1, done=False)
        w.log(a, released, [(0, ek.IMAGE_OPEN), (3000, ek.PROMPT_CLICK), (7000, ek.OBJECT_CANCEL)])
        finisher = w.lease(a, r1, done=True)
        w.log(a, finisher, [(0, ek.IMAGE_OPEN), (4000, ek.MASK_SELECT), (5000, ek.SUBMIT)])
        other_stage = w.lease(a, None, done=True, stage="generalist")  # curation: not counted
        w.log(a, other_stage, [(0, ek.IMAGE_OPEN), (20000, ek.MASK_SELECT)])
        gone = w.lease(b, r1, done=False)
        w.log(b, gone, [(0, ek.IMAGE_OPEN), (9000, ek.MASK_SELECT)])
        pid, ia, ib, rid, fid = w.project.id, a.id, b.id, released.id, finisher.id
    assert agree(factory, pid) == {ia: 12.0, ib: 9.0}
    with factory() as s:
        per_lease = image_effort(s, image_id=ia).per_lease
    assert per_lease == {(ia, rid): 7.0, (ia, fid): 5.0}
    g = groups(factory, pid)[(1, "prefill")]
    assert (g["images_done"], g["active_seconds"], g["released_s"]) == (1, 12.0, 9.0)
    assert g["images_unfinished"] == 1
    assert g["figures"]["seconds_per_image"]["value"] == 12.0


def test_refined_object_keeps_its_creation_effort(factory: sessionmaker[Session]) -> None:
    """Added in 15 s / 5 clicks, then refined with F in 6 s / 2 clicks: the final mask costs
    21 s / 7 clicks; a withdrawal of another object never adds to an object's own time."""
    with transaction(factory) as s:
        w = World(s)
        r1 = w.round()
        im = make_image(s, project=w.project)
        lease = w.lease(im, r1, done=True)
        first = make_mask(s, image=im, source="human", status="superseded")
        final = make_mask(s, image=im, source="human", status="accepted", parent_id=first.id)
        other = make_mask(s, image=im, source="human", status="rejected")
        w.log(im, lease, [
            (0, ek.IMAGE_OPEN),
            (2000, ek.PROMPT_CLICK), (5000, ek.PROMPT_CLICK), (8000, ek.PROMPT_CLICK),
            (11000, ek.PROMPT_CLICK), (14000, ek.PROMPT_CLICK),
            (17000, ek.OBJECT_COMMIT, first.id, True, {"parent_id": None}),  # 15 s, 5 clicks
            (19000, ek.FIX_START, first.id),
            (22000, ek.PROMPT_CLICK), (24000, ek.PROMPT_CLICK),
            (25000, ek.OBJECT_COMMIT, final.id, True, {"parent_id": first.id}),  # 6 s, 2 clicks
            (26000, ek.PROMPT_CLICK), (28000, ek.OBJECT_COMMIT, other.id),  # 2 s, 1 click
            (30000, ek.MASK_REJECT, other.id, True, {"withdraw": True}),  # review time, 2 s
            (31000, ek.SUBMIT),
        ])  # fmt: skip
        pid, iid, fid, oid = w.project.id, im.id, final.id, other.id
    assert agree(factory, pid) == {iid: 31.0}
    with factory() as s:
        eff = image_effort(s, image_id=iid)
    f, o = eff.per_mask[fid], eff.per_mask[oid]
    assert (f.seconds, f.clicks, f.cost_s, f.cost_clicks) == (6.0, 2, 21.0, 7)
    assert (o.seconds, o.review_s, o.cost_s) == (2.0, 2.0, 2.0)
    g = groups(factory, pid)[(1, "prefill")]["figures"]
    assert g["seconds_per_added_mask"]["value"] == 21.0
    assert g["clicks_per_added_mask"]["value"] == 7.0


def test_imported_lead_time_is_shown_beside_never_mixed(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        w = World(s)
        r1 = w.round()
        im = make_image(s, project=w.project)
        lease = w.lease(im, r1, done=True)
        w.log(
            im, None, [(0, ek.IMPORT_LEAD_TIME, None, True, {"seconds": 42.5})], "label-studio:1:1"
        )
        w.log(im, lease, [(0, ek.IMAGE_OPEN), (4000, ek.SUBMIT)])
        pid, iid = w.project.id, im.id
    assert agree(factory, pid) == {iid: 4.0}
    with factory() as s:
        assert image_effort(s, image_id=iid).imported == {iid: 42.5}
    g = groups(factory, pid)[(1, "prefill")]
    assert (g["active_seconds"], g["imported_s"]) == (4.0, 42.5)


def test_idle_cap_recomputes_on_both_surfaces(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        w = World(s)
        r1 = w.round()
        im = make_image(s, project=w.project)
        lease = w.lease(im, r1, done=True)
        w.log(im, lease, [(0, ek.IMAGE_OPEN), (50000, ek.MASK_SELECT), (52000, ek.SUBMIT)])
        pid, iid = w.project.id, im.id
    assert agree(factory, pid) == {iid: 32.0}
    assert agree(factory, pid, idle_s=10.0) == {iid: 12.0}
    assert groups(factory, pid, idle_s=60.0)[(1, "prefill")]["active_seconds"] == 52.0


def test_work_without_a_round_is_its_own_row_with_a_note(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        w = World(s)
        im = make_image(s, project=w.project)
        lease = w.lease(im, None, done=True)
        w.log(im, lease, [(0, ek.IMAGE_OPEN), (6000, ek.SUBMIT)])
        pid, iid, name = w.project.id, im.id, w.project.name
    assert agree(factory, pid) == {iid: 6.0}
    g = groups(factory, pid)
    row = g[(None, "prefill")]
    assert (row["images_done"], row["active_seconds"]) == (1, 6.0)
    assert row["figures"]["seconds_per_image"]["value"] == 6.0
    assert any("dataengine round start" in n and name in n for n in g["notes"])
    with transaction(factory) as s:
        empty = make_project(s, name="empty").id
    assert groups(factory, empty)["notes"] and len(groups(factory, empty)) == 1
