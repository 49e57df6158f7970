"""Effort cache rows: found stale, replaced with SQL mask sums, read back, checked forward."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.effort_cache import (
    CACHED_COLS,
    effort_rows,
    final_fixes,
    mark_checked,
    replace_effort_rows,
    stale_images,
    superseded_lineage,
)
from db.models import EffortObject, Lease, Mask, Round, utcnow
from db.worked_images import worked_images
from tests.factories import make_image, make_mask, make_project, make_user


def _base(lease_id: int, now: Any) -> dict[str, Any]:
    return {"lease_id": lease_id, "idle_s": 30.0, "watermark": 0, "seconds": 12.5,
            "computed_at": now, "masks_checked_at": now, "imported_s": 0.0}  # fmt: skip


def test_rows_are_stale_until_replaced_then_read_with_sql_sums(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s:
        p, u = make_project(s), make_user(s)
        rnd = Round(project_id=p.id, number=1)
        s.add(rnd)
        s.flush()
        img = make_image(s, project=p)
        lease = Lease(image_id=img.id, user_id=u.id, stage="annotate", round_id=rnd.id,
                      arm="prefill", expires_at=utcnow(), completed_at=utcnow())  # fmt: skip
        s.add(lease)
        s.flush()
        proposal = make_mask(s, image=img, source="model", confident=True, status="superseded")
        fix = make_mask(s, image=img, source="model_edited", status="accepted",
                        parent_id=proposal.id)  # fmt: skip
        human = make_mask(s, image=img, source="human", status="accepted")
        hour_ago = utcnow() - dt.timedelta(hours=1)  # masks unchanged since: settled
        s.execute(update(Mask).values(updated_at=hour_ago))
        done = worked_images(project_id=p.id).subquery("done")

        scan = stale_images(s, done=done, idle_s=30.0)
        assert scan.todo == [img.id] and scan.leases == {img.id: lease.id}
        assert scan.low is None and scan.oldest_check is None  # no rows yet
        assert [r.id for r in final_fixes(s, mask_ids=[fix.id, human.id])] == [fix.id]
        assert final_fixes(s, mask_ids=[]) == []
        assert set(superseded_lineage(s, image_ids={img.id})) == {proposal.id}

        objects = [{"image_id": img.id, "mask_id": human.id, "seconds": 4.0, "clicks": 3,
                    "iou": None},
                   {"image_id": img.id, "mask_id": fix.id, "seconds": 2.0, "clicks": 1,
                    "iou": None}]  # fmt: skip
        asked: list[list[int]] = []

        def root_ious(finals: Any) -> dict[int, tuple[int, float]]:
            asked.append([r.id for r in finals])
            return {r.id: (r.image_id, 0.75) for r in finals}

        ok = replace_effort_rows(s, done=done, ids=[img.id], objects=objects,
                                 base={img.id: _base(lease.id, scan.now)},
                                 root_ious=root_ious)  # fmt: skip
        assert ok and asked == [[fix.id]]  # the fix's object carries no IoU
        assert len(s.scalars(select(EffortObject)).all()) == 2
        (row,) = effort_rows(s, done=done)
        vals = dict(zip(CACHED_COLS, row[4:], strict=True))
        assert (row.image_id, row.round, row.arm, row.lease_id) == (img.id, 1, "prefill", lease.id)
        assert (vals["final"], vals["added"], vals["fixed"]) == (2, 1, 1)
        assert (vals["shown"], vals["accepted_as_is"], vals["from_proposal"]) == (1, 0, 1)
        assert (vals["added_seconds"], vals["added_clicks"], vals["added_timed"]) == (4.0, 3, 1)
        assert (vals["fixed_iou_sum"], vals["seconds"]) == (0.75, 12.5)

        again = stale_images(s, done=done, idle_s=30.0)
        assert again.todo == [] and again.low == -again.margin  # watermark 0, less the margin
        assert stale_images(s, done=done, idle_s=10.0).todo == [img.id]  # another idle cap
        mark_checked(s, done=done, scan=again)  # nothing to advance: no error, no change
        assert stale_images(s, done=done, idle_s=30.0).todo == []
