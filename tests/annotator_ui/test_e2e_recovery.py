"""Nothing lost, in Debian's Chromium on the dense fixture (issue 17, item 6).

Sample photos carry 27 confident proposals each, imported with ``as_proposals`` (what
``dataengine import -f coco --as-proposals`` does). One test per theme, each on its own
server and SQLite file:
- the submit warning (screenshot), restore of a rejected mask, per-click undo, errors as
  sentences with "Try again" (a real version conflict), no internal words on screen;
- skip gives a different image, flag (reason; the reviewers' Flagged page, screenshot),
  previous reopens the skipped image with the object that was being drawn;
- a session expiry keeps the object being drawn and returns to the image after login; a
  change refused on a lost reservation is re-applied when the image is opened again;
  offline changes are queued and replayed when back online.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.models import Event, ImageFlag, Lease, Mask
from db.projects import create_project
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user
from engine.imageio import probe
from engine.interop.dense_coco import dense_coco
from engine.interop.importers import import_files
from tests.webapp import classical_segmenter, launch_chromium, require_chromium, serve, settings_for

pytestmark = pytest.mark.browser

PHOTOS = ("dog.jpg", "groceries.jpg", "truck.jpg")
ANN_PW, REV_PW = "annotator-password-1", "reviewer-password-1"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@dataclass
class Setup:
    base: str
    factory: sessionmaker[Session]
    project_id: int
    image_ids: list[int]


@contextmanager
def dense_app(shared_data: Path, tmp_path: Path) -> Iterator[Setup]:
    """The app on a fresh SQLite file: three photos, 27 confident proposals each."""
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        create_user(s, name="ann", role="annotator", password=ANN_PW)
        create_user(s, name="rev", role="reviewer", password=REV_PW)
        pid = create_project(s, name="dense", labels=["thing", "part", "small"]).id
    images = []
    for i, name in enumerate(PHOTOS):
        photo = shared_data / "samples" / name
        res = probe(photo)
        w, h = res.image_columns()["width"], res.image_columns()["height"]
        ann = tmp_path / f"{name}.json"
        ann.write_text(json.dumps(dense_coco(name, w, h, n=27, seed=i)))
        report = import_files(
            factory,
            fmt="coco",
            project="dense",
            paths=[ann],
            image_dirs=[photo.parent],
            options={"as_proposals": True},
        )
        assert report.masks == 27, report.summary()
    with factory() as s:
        images = sorted({m.image_id for m in s.scalars(select(Mask))})
    from annotator_ui.app import create_app

    app = create_app(settings_for(url, tmp_path), segmenter=classical_segmenter())
    try:
        with serve(app) as base:
            yield Setup(base, factory, pid, images)
    finally:
        engine.dispose()


def login(page: Any, name: str = "ann", password: str = ANN_PW) -> None:
    page.wait_for_selector("#login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("#login button[type=submit]")


def open_review(page: Any, st: Setup) -> int:
    page.goto(st.base + f"/#/review/{st.project_id}")
    if page.locator("#login").count():
        login(page)
    page.wait_for_function("() => window.deReview && deReview.view && deReview.masks.size > 0")
    return int(page.evaluate("() => deReview.image.id"))


FREE = """() => {
  const r = deReview, step = Math.max(4, Math.round(Math.min(r.W, r.H) / 60)), out = [];
  for (let y = step * 2; y < r.H - step * 2; y += step) for (let x = step * 2; x < r.W - step * 2; x += step) {
    if (r.hit([x, y]) === null && r.hit([x + 12, y + 8]) === null) out.push([x, y]);
  }
  return out[Math.floor(out.length / 2)];
}"""


def click_full(page: Any, x: float, y: float) -> None:
    box = page.locator("#view").bounding_box()
    s, ox, oy = page.evaluate("() => [deReview.view.s, deReview.view.ox, deReview.view.oy]")
    page.mouse.click(box["x"] + ox + x * s, box["y"] + oy + y * s)


def draw_points(page: Any, n: int) -> list[float]:
    x, y = page.evaluate(FREE)
    for i in range(n):
        click_full(page, x + 12 * i, y + 8 * i)
        page.wait_for_function(
            f"() => deReview.draft && deReview.draft.points.length === {i + 1} "
            "&& deReview.decoded === deReview.decodeSeq"
        )
    return [x, y]


def visible_text(page: Any) -> str:
    return str(page.evaluate("() => document.body.innerText"))


def test_submit_warning_restore_undo_and_plain_errors(shared_data: Path, tmp_path: Path) -> None:
    sync_api = require_chromium()
    with dense_app(shared_data, tmp_path) as st, sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        image_id = open_review(page, st)
        text = visible_text(page).lower()
        assert "lease" not in text and "prefill" not in text, text

        # reject the selected proposal, then restore it from the list
        rejected = page.evaluate("() => deReview.selected")
        page.keyboard.press("x")
        page.wait_for_function(f"() => deReview.masks.get({rejected}).data.status === 'rejected'")
        page.click(f"#masklist li[data-mask='{rejected}'] button.restore")
        page.wait_for_function(f"() => deReview.masks.get({rejected}).data.status === 'proposed'")

        # per-click undo while drawing: Ctrl+Z drops the last click only
        draw_points(page, 3)
        page.keyboard.press("Control+z")
        page.wait_for_function(
            "() => deReview.draft && deReview.draft.points.length === 2 "
            "&& deReview.decoded === deReview.decodeSeq"
        )
        page.keyboard.press("Control+z")
        page.wait_for_function("() => deReview.draft && deReview.draft.points.length === 1")
        page.keyboard.press("Control+z")  # the last click: the object goes
        page.wait_for_function("() => deReview.draft === null")

        # a real version conflict: a reviewer accepts the selected mask behind the page's back
        target = page.evaluate("() => deReview.selected")
        with httpx.Client(base_url=st.base, timeout=30) as rev:
            assert rev.post("/api/auth/login", json={"name": "rev", "password": REV_PW})
            ver = rev.get(f"/api/images/{image_id}/masks").json()["masks"]
            version = next(m["version"] for m in ver if m["id"] == target)
            r = rev.patch(f"/api/masks/{target}", json={"version": version, "label": "part"})
            assert r.status_code == 200, r.text
        page.keyboard.press("a")
        page.wait_for_selector("#msg .error")
        msg = page.inner_text("#msg")
        assert "Someone changed this image" in msg and "Try again" in msg, msg
        for raw in ("version", "Failed to fetch", "lease", "409"):
            assert raw not in msg, msg
        page.click("#msg button.retry")  # fetches the latest state, then accepts
        page.wait_for_function(f"() => deReview.masks.get({target}).data.status === 'accepted'")

        # submit with unreviewed confident proposals: the warning, "Go back" keeps the image
        left = page.evaluate(
            "() => deReview.visibleMasks().filter((m) => m.data.status === 'proposed').length"
        )
        assert left >= 20
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#navdialog[open]")
        title = page.inner_text("#navdialog-title")
        assert title == f"{left} suggestions not reviewed yet", title
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e_submit_warning.png"))
        page.click("#navdialog-cancel")
        page.wait_for_selector("#navdialog:not([open])", state="attached")
        assert page.evaluate("() => deReview.submitted") is False
        page.click("#submit")
        page.wait_for_selector("#navdialog[open]")
        page.click("#navdialog-ok")
        page.wait_for_function("() => deReview.submitted")
        assert page.evaluate("() => deReview.ev.drain(10000)")
        assert not errors, errors
        browser.close()
    with st.factory() as s:
        # the restored mask came back as a proposal (then took the conflict test's accept
        # when it was still the selection)
        assert s.get(Mask, rejected).status == ("accepted" if target == rejected else "proposed")
        assert s.get(Mask, target).status == "accepted"
        kinds = [
            (e.kind, e.mask_id)
            for e in s.scalars(select(Event).where(Event.image_id == image_id).order_by(Event.id))
        ]
        lease = s.scalars(select(Lease).where(Lease.image_id == image_id)).one()
    assert ("mask_restore", rejected) in kinds
    assert sum(k == "prompt_undo" for k, _ in kinds) == 2
    assert lease.completed_at is not None


def test_skip_flag_previous(shared_data: Path, tmp_path: Path) -> None:
    sync_api = require_chromium()
    with dense_app(shared_data, tmp_path) as st, sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        first = open_review(page, st)
        assert first == st.image_ids[0]
        drawn = draw_points(page, 2)
        page.click("#skip")
        page.wait_for_function(
            f"() => window.deReview && deReview.image && deReview.image.id !== {first} && deReview.view"
        )
        second = page.evaluate("() => deReview.image.id")
        assert second == st.image_ids[1]

        # flag the second image with a reason: it is skipped too
        page.click("#flag")
        page.wait_for_selector("#navdialog[open]")
        page.fill("#navdialog-reason", "two bags are merged into one mask")
        page.click("#navdialog-ok")
        page.wait_for_function(
            f"() => deReview.image && deReview.image.id !== {second} && deReview.view"
        )
        assert page.evaluate("() => deReview.image.id") == st.image_ids[2]

        # previous: back to the flagged image (the one finished last)
        page.click("#previous")
        page.wait_for_function(
            f"() => deReview.image && deReview.image.id === {second} && deReview.view"
        )
        # skip it and the third: the first image (skipped longest ago) comes back, with the
        # object that was being drawn when it was skipped
        page.click("#skip")
        page.wait_for_function(
            f"() => deReview.image && deReview.image.id === {st.image_ids[2]} && deReview.view"
        )
        page.click("#skip")
        page.wait_for_function(
            f"() => deReview.image && deReview.image.id === {first} && deReview.view "
            "&& deReview.draft && deReview.draft.points.length === 2"
        )
        page.wait_for_function(
            "() => document.querySelector('#msg').innerText.includes('unfinished object is back')"
        )
        back = page.evaluate("() => deReview.draft.points[0]")
        assert abs(back[0] - drawn[0]) < 1 and abs(back[1] - drawn[1]) < 1

        # the reviewer's Flagged page shows the image with the reason
        rev_page = browser.new_page(viewport={"width": 1200, "height": 800})
        rev_page.goto(st.base + f"/static/flags.html?project={st.project_id}")
        login(rev_page, "rev", REV_PW)
        rev_page.wait_for_selector("#flags li[data-flag]")
        card = rev_page.inner_text("#flags li[data-flag]")
        assert "two bags are merged into one mask" in card and "flagged by ann" in card
        rev_page.wait_for_function(
            "() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        rev_page.screenshot(path=str(ARTIFACTS / "e2e_flagged_view.png"))
        rev_page.click("button[data-resolve]")
        rev_page.wait_for_function(
            "() => document.querySelector('#flags').innerText.includes('No flagged images')"
        )
        browser.close()
    with st.factory() as s:
        flag = s.scalars(select(ImageFlag)).one()
        assert (flag.image_id, flag.reason) == (second, "two bags are merged into one mask")
        assert flag.resolved_at is not None
        skipped = s.scalars(select(Lease).where(Lease.image_id == first)).all()
        assert skipped[0].skipped_at is not None
        assert len(skipped[0].draft["object"]["points"]) == 2


def test_expiry_lost_reservation_and_offline(shared_data: Path, tmp_path: Path) -> None:
    sync_api = require_chromium()
    with dense_app(shared_data, tmp_path) as st, sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        image_id = open_review(page, st)

        # session expiry while drawing: the object survives the login, on the same image
        draw_points(page, 1)
        x, y, _ = page.evaluate("() => deReview.draft.points[0]")
        context.clear_cookies()
        click_full(page, x + 12, y + 8)  # the decode answers 401: off to the login page
        page.wait_for_selector("#login")
        page.evaluate("() => { window.deReview = null; }")  # wait for the review made after login
        login(page)
        page.wait_for_function(
            f"() => window.deReview && deReview.image && deReview.image.id === {image_id} "
            "&& deReview.draft && deReview.draft.points.length === 2"
        )
        page.wait_for_function(
            "() => document.querySelector('#msg').innerText.includes('unfinished object is back')"
        )
        page.keyboard.press("Enter")
        page.wait_for_function("() => deReview.draft === null && !deReview.busy")

        # offline: an accept is queued, and sent when the browser is back online
        offline_target = page.evaluate(
            "() => deReview.visibleMasks().find((m) => m.data.status === 'proposed').data.id"
        )
        page.evaluate(f"() => deReview.select({offline_target}, false)")
        context.set_offline(True)
        page.keyboard.press("a")
        page.wait_for_function(
            "() => document.querySelector('#msg').innerText.includes(\"can't be reached\")"
        )
        assert (
            page.evaluate(
                "() => JSON.parse(localStorage.getItem('dataengine.offline_queue.v1')).length"
            )
            == 1
        )
        context.set_offline(False)
        page.wait_for_function(
            f"() => deReview.masks.get({offline_target}).data.status === 'accepted'"
        )

        # a lost reservation: the refused reject is kept and re-applied on reopening
        lost_target = page.evaluate(
            "() => deReview.visibleMasks().find((m) => m.data.status === 'proposed').data.id"
        )
        page.evaluate(f"() => deReview.select({lost_target}, false)")
        with transaction(st.factory) as s:
            s.execute(
                update(Lease)
                .where(Lease.image_id == image_id)
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
            )
        page.keyboard.press("x")
        page.wait_for_selector("#msg .error")
        page.reload()
        page.wait_for_function(
            f"() => window.deReview && deReview.view && deReview.image.id === {image_id} "
            f"&& deReview.masks.get({lost_target}).data.status === 'rejected'"
        )
        page.wait_for_function(
            "() => document.querySelector('#msg').innerText.includes('re-applied')"
        )
        browser.close()
    with st.factory() as s:
        assert s.get(Mask, offline_target).status == "accepted"
        assert s.get(Mask, lost_target).status == "rejected"
        humans = s.scalars(
            select(Mask).where(Mask.image_id == image_id, Mask.source == "human")
        ).all()
        assert len(humans) == 1  # the object drawn across the login, saved once
