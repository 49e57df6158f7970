"""Export selection: keyset pages give exactly the whole-project selection, page by page."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from db.models import CurationDecision
from db.projects import get_project
from db.session import transaction
from engine.interop.exporters import selection
from engine.interop.exporters.atomic import write_atomically
from engine.interop.exporters.coco import export_coco
from engine.interop.exporters.labelme import export_labelme
from engine.interop.exporters.sa1b import export_sa1b
from tests.factories import box_mask, make_image, make_mask, make_project


def _project(factory: sessionmaker[Session]) -> dict[str, list[int]]:
    """9 images (one rejected), masks of every status, 'specialist' decisions on some."""
    kept, all_ok = [], []
    with transaction(factory) as s:
        p = make_project(s, name="pg")
        for k in range(9):
            im = make_image(s, project=p, uri=f"/d/{k % 4}/img{k % 3}.jpg",
                            status="rejected" if k == 4 else "ok")  # fmt: skip
            if k == 4:
                continue
            all_ok.append(im.id)
            make_mask(s, image=im, mask=box_mask(48, 64, k, k, k + 9, k + 7),
                      status="accepted", source="human", label=["dog", None, "kite"][k % 3])  # fmt: skip
            make_mask(s, image=im, status="proposed", predicted_iou=0.5 + k / 100)
            make_mask(s, image=im, status="rejected")
            decisions = ["keep", "drop"] if k % 2 else ["drop", "keep"]
            for d in decisions:  # the latest one counts
                s.add(CurationDecision(image_id=im.id, stage="specialist", decision=d))
            if k % 2 == 0:
                kept.append(im.id)
            s.flush()
    return {"kept": kept, "ok": all_ok}


def test_pages_equal_the_whole_selection(factory: sessionmaker[Session]) -> None:
    ids = _project(factory)
    with transaction(factory) as s:
        p = get_project(s, name="pg")
        for stage, want in ((None, ids["ok"]), ("specialist", ids["kept"])):
            got = list(selection.pages(s, project=p, stage=stage, options={"include": "all"},
                                       page_size=3))  # fmt: skip
            assert all(len(page.images) <= 3 for page in got)
            assert [im.id for page in got for im in page.images] == want
            for page in got:
                for im in page.images:
                    statuses = [m.status for m in page.masks[im.id]]
                    assert statuses == ["accepted", "proposed"]
        with pytest.raises(ValueError, match="include must be one of"):
            next(selection.pages(s, project=p, stage=None, options={"include": "x"}))
        plan = selection.survey(s, project=p, stage=None, options={})
        assert plan.images == 8 and set(plan.labels) == {"dog", None, "kite"}


@pytest.mark.parametrize("exporter", [export_coco, export_sa1b, export_labelme])
def test_exports_are_byte_identical_whatever_the_page_size(
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exporter: object,
) -> None:
    """Page size 2 and 10,000 give the same bytes; every image query is a LIMITed page."""
    _project(factory)

    def run(size: int) -> tuple[str, list[str]]:
        monkeypatch.setattr(selection, "PAGE_SIZE", size)
        statements: list[str] = []

        def seen(conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001
            statements.append(statement)

        with transaction(factory) as s:
            p = get_project(s, name="pg")
            event.listen(s.get_bind(), "before_cursor_execute", seen)
            try:
                _, digest = write_atomically(
                    tmp_path / f"o{size}",
                    lambda tmp: exporter(  # type: ignore[operator]
                        s, project=p, out=tmp, stage=None, options={"include": "all"}
                    ),
                )
            finally:
                event.remove(s.get_bind(), "before_cursor_execute", seen)
        return digest, statements

    small, statements = run(2)
    image_queries = [q for q in statements if "FROM image" in q and "image.uri" in q]
    assert len(image_queries) >= 4 and all("LIMIT" in q for q in image_queries)
    assert run(10_000)[0] == small
