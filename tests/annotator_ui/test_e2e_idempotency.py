"""In Debian's Chromium: the client's mask add / fix survive a lost answer without a second mask.

The real app under uvicorn; the page's own ``/static/js/api.js`` sends the request, the
browser forwards it to the server (which stores the mask) and then drops the answer, as a
flaky network would. The client resends with the same ``Idempotency-Key``; the server
answers with the first mask. A fresh key per logical action is a new mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from db.models import Image, Mask
from db.session import transaction
from engine.masks import encode_rle
from tests.factories import PASSWORD, box_mask, make_image, make_mask, make_project
from tests.webapp import NoModel, launch_chromium, require_chromium, serve, start_web, submit_anyway

pytestmark = pytest.mark.browser
H, W = 48, 64

CALL = """async ([url, body, key]) => {
  const { api } = await import("/static/js/api.js");
  const m = await api("POST", url, body, { idempotencyKey: key });
  return m;
}"""


def test_lost_answers_are_retried_with_the_same_key(sqlite_url: str, tmp_path: Path) -> None:
    sync_api = require_chromium()
    with start_web(sqlite_url, tmp_path, segmenter=NoModel()) as web:
        with transaction(web.factory) as s:
            p = make_project(s, labels=[])
            im = make_image(s, project=p, width=W, height=H)
            old = make_mask(s, image=im, mask=box_mask(H, W, 2, 2, 12, 12), confident=True)
            ids = {"image": im.id, "mask": old.id}
        with serve(web.app) as base, sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page()
            page.goto(base + "/static/index.html")
            r = page.request.post(
                base + "/api/auth/login", data={"name": "admin1", "password": PASSWORD}
            )
            assert r.ok, r.text()
            seen: list[dict[str, Any]] = []

            def drop_first_answer(route: Any) -> None:
                """Forward to the server, then lose the answer the first time per key."""
                request = route.request
                key = request.headers.get("idempotency-key")
                response = route.fetch()
                seen.append({"key": key, "status": response.status})
                if sum(1 for s in seen if s["key"] == key) == 1:
                    route.abort("connectionreset")
                else:
                    route.fulfill(response=response)

            page.route("**/api/images/*/masks", drop_first_answer)
            page.route("**/api/masks/*/fix", drop_first_answer)

            add = {"rle": encode_rle(box_mask(H, W, 20, 20, 30, 30))}
            first = page.evaluate(CALL, [f"/api/images/{ids['image']}/masks", add, "add-1"])
            assert [s["key"] for s in seen] == ["add-1", "add-1"]  # resent with the same key
            assert [s["status"] for s in seen] == [200, 200]
            fix = {"rle": encode_rle(box_mask(H, W, 3, 3, 14, 14)), "version": 1}
            fixed = page.evaluate(CALL, [f"/api/masks/{ids['mask']}/fix", fix, "fix-1"])
            assert fixed["parent_id"] == ids["mask"]
            assert [s["key"] for s in seen[2:]] == ["fix-1", "fix-1"]
            second = page.evaluate(CALL, [f"/api/images/{ids['image']}/masks", add, "add-2"])
            browser.close()
        assert second["id"] != first["id"]
        with web.factory() as s:
            assert s.scalar(select(func.count(Mask.id)).where(Mask.source == "human")) == 2
            assert s.scalar(select(func.count(Mask.id)).where(Mask.client_key == "add-1")) == 1
            assert s.scalar(select(func.count(Mask.id)).where(Mask.parent_id == ids["mask"])) == 1


def test_review_page_commit_and_submit_survive_lost_answers(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The review page itself: an object committed with Enter and the submit, each losing
    its first answer, end as one mask and one completed lease."""
    sync_api = require_chromium()
    from PIL import Image as PILImage

    from db.models import Lease
    from engine.ingest import ingest

    rgb = np.full((150, 200, 3), 30, dtype=np.uint8)
    rgb[40:110, 60:150] = (230, 200, 40)
    photo = tmp_path / "photo.png"
    PILImage.fromarray(rgb).save(photo)
    with start_web(sqlite_url, tmp_path) as web:  # the classical backend decodes the clicks
        assert ingest(web.factory, project="retry", paths=[photo]).added == 1
        with web.factory() as s:
            project_id = s.scalar(select(Image.project_id))
        with serve(web.app) as base, sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            seen: list[tuple[str, str | None]] = []

            def drop_first_answer(route: Any) -> None:
                if route.request.method != "POST":  # the page's GET of the mask list
                    route.continue_()
                    return
                key = route.request.headers.get("idempotency-key")
                response = route.fetch()
                seen.append((route.request.url.rsplit("/", 1)[-1], key))
                if len(seen) in (1, 3):  # the first add and the first submit
                    route.abort("connectionreset")
                else:
                    route.fulfill(response=response)

            page.route("**/api/images/*/masks", drop_first_answer)
            page.route("**/api/tasks/*/submit", drop_first_answer)
            page.goto(base + "/")
            page.wait_for_selector("#login")
            page.fill("input[name=name]", "annotator1")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.click(f"button[data-id='{project_id}']")
            page.wait_for_function(
                "() => window.deReview && window.deReview.bitmap && window.deReview.view"
            )
            box = page.locator("#view").bounding_box()
            scale, ox, oy = page.evaluate(
                "() => [deReview.view.s, deReview.view.ox, deReview.view.oy]"
            )
            for n, (x, y) in enumerate([(100, 70), (120, 80)], start=1):
                page.mouse.click(box["x"] + ox + x * scale, box["y"] + oy + y * scale)
                page.wait_for_function(
                    f"() => deReview.draft && deReview.draft.points.length === {n} "
                    "&& deReview.decoded === deReview.decodeSeq"
                )
            page.keyboard.press("Enter")
            page.wait_for_function("() => deReview.draft === null && deReview.selected !== null")
            added = page.evaluate("() => deReview.selected")
            submit_anyway(page)
            assert not errors, errors
            browser.close()
    adds = [key for what, key in seen if what == "masks"]
    assert len(adds) == 2 and adds[0] and adds[0] == adds[1]  # resent with the same key
    assert [what for what, _ in seen].count("submit") == 2
    with web.factory() as s:
        humans = s.scalars(select(Mask).where(Mask.source == "human")).all()
        assert [m.id for m in humans] == [added] and humans[0].client_key == adds[0]
        (lease,) = s.scalars(select(Lease)).all()
        assert lease.completed_at is not None and lease.submit_result is not None
