"""Prefill data functions: pending pages and counts, claims of other workers, done rows."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Mask, Prefill, PrefillClaim, utcnow
from db.prefills import (
    add_imported_proposals,
    add_prefill,
    add_prefill_unless_done,
    any_prefill,
    count_embeddable,
    count_pending,
    forget_failed_prefills,
    pending_images,
    prefill_exists,
    todo_ids,
    todo_rows,
)
from tests.factories import make_image, make_model_version, make_project


def test_pending_pages_counts_and_done_rows(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p = make_project(s)
        mv = make_model_version(s)
        imgs = [make_image(s, project=p) for _ in range(5)]
        ids = [im.id for im in imgs]
        assert count_pending(s, project_id=p.id, model_version_id=mv.id) == (5, 5)
        page = pending_images(s, project_id=p.id, model_version_id=mv.id, limit=2)
        assert [r[0] for r in page] == ids[:2] and page[0][1] == imgs[0].uri
        nxt = pending_images(s, project_id=p.id, model_version_id=mv.id, after_id=ids[1], limit=2)
        assert [r[0] for r in nxt] == ids[2:4]

        add_prefill(s, image_id=ids[0], model_version_id=mv.id, reason=None, n_confident=0,
                    seconds=0.5, mask_rows=[{"image_id": ids[0], "rle": {"size": [1, 1],
                    "counts": "1"}, "bbox": [0, 0, 1, 1], "area": 1, "source": "model",
                    "status": "proposed", "model_version_id": mv.id}])  # fmt: skip
        add_prefill(s, image_id=ids[1], model_version_id=mv.id, reason="corrupt", n_confident=0,
                    seconds=0.1, mask_rows=[])  # fmt: skip
        assert prefill_exists(s, image_id=ids[0], model_version_id=mv.id)
        assert not prefill_exists(s, image_id=ids[2], model_version_id=mv.id)
        assert s.scalar(select(Prefill.status).where(Prefill.image_id == ids[1])) == "failed"
        assert len(s.scalars(select(Mask).where(Mask.image_id == ids[0])).all()) == 1
        assert count_pending(s, project_id=p.id, model_version_id=mv.id) == (5, 3)
        assert count_pending(s, project_id=p.id, model_version_id=mv.id, image_ids=ids[:2]) == (
            2,
            0,
        )
        s.add(PrefillClaim(image_id=ids[2], model_version_id=mv.id, worker_id="other",
                           expires_at=utcnow() + dt.timedelta(minutes=5)))  # fmt: skip
        s.flush()
        mine = pending_images(s, project_id=p.id, model_version_id=mv.id, worker_id="me")
        assert [r[0] for r in mine] == ids[3:]  # the other worker's live claim is left to it
        theirs = pending_images(s, project_id=p.id, model_version_id=mv.id, worker_id="other")
        assert [r[0] for r in theirs] == ids[2:]

        forget_failed_prefills(s, project_id=p.id, model_version_id=mv.id)
        assert not prefill_exists(s, image_id=ids[1], model_version_id=mv.id)
        assert prefill_exists(s, image_id=ids[0], model_version_id=mv.id)
        with pytest.raises(IntegrityError), s.begin_nested():
            add_prefill(s, image_id=ids[0], model_version_id=mv.id, reason=None, n_confident=0,
                        seconds=0.0, mask_rows=[])  # fmt: skip


def test_todo_pages_and_insert_unless_done(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p = make_project(s)
        mv = make_model_version(s)
        imgs = [make_image(s, project=p) for _ in range(3)]
        make_image(s, project=p, sha256=None)  # not embeddable, still pending for a prefill
        make_image(s, project=p, status="rejected")
        ids = [im.id for im in imgs]
        assert count_embeddable(s, project_id=p.id) == 3
        assert todo_ids(s, project_id=p.id, model_version_id=None, limit=2) == ids[:2]
        assert len(todo_ids(s, project_id=p.id, model_version_id=mv.id)) == 4
        rows = [{"image_id": ids[0], "rle": {"size": [1, 1], "counts": "1"},
                 "bbox": [0, 0, 1, 1], "area": 1, "source": "model", "status": "proposed",
                 "model_version_id": mv.id}]  # fmt: skip
        kw = {"model_version_id": mv.id, "n_proposals": 1, "n_confident": 0, "seconds": 0.2}
        won = add_prefill_unless_done(
            s, image_id=ids[0], failed=False, reason=None, mask_rows=rows, **kw
        )
        assert won is not None
        again = add_prefill_unless_done(
            s, image_id=ids[0], failed=False, reason=None, mask_rows=rows, **kw
        )
        assert again is None  # the first writer's row stays; its masks are not doubled
        assert len(s.scalars(select(Mask).where(Mask.image_id == ids[0])).all()) == 1
        failed = add_prefill_unless_done(
            s, image_id=ids[1], failed=True, reason="corrupt", mask_rows=rows, **kw
        )
        assert failed is not None
        assert s.scalar(select(Prefill.reason).where(Prefill.id == failed)) == "corrupt"
        assert s.scalars(select(Mask).where(Mask.image_id == ids[1])).all() == []
        assert todo_ids(s, project_id=p.id, model_version_id=mv.id, after_id=ids[0]) == [
            ids[2],
            ids[2] + 1,
        ]
        between = todo_rows(s, project_id=p.id, model_version_id=mv.id, lo=ids[0], hi=ids[2])
        assert between == [(ids[2], imgs[2].uri, imgs[2].sha256)]
        embeddable = todo_rows(s, project_id=p.id, model_version_id=None, lo=0, hi=ids[2] + 9)
        assert [r[0] for r in embeddable] == ids


def test_any_prefill_and_imported_proposal_counts(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p = make_project(s)
        mv = make_model_version(s)
        img = make_image(s, project=p)
        assert not any_prefill(s, image_id=img.id)
        add_imported_proposals(s, image_id=img.id, model_version_id=mv.id, proposals=2)
        row = add_imported_proposals(s, image_id=img.id, model_version_id=mv.id, proposals=3)
        s.flush()
        assert (row.status, row.n_proposals, row.n_confident) == ("done", 5, 5)
        assert any_prefill(s, image_id=img.id)
        assert len(s.scalars(select(Prefill).where(Prefill.image_id == img.id)).all()) == 1
