"""The real client's event log in Debian's Chromium: a hidden-page interval and tab switches
after submit. ``/api/images/{id}/effort`` and ``/api/metrics`` must agree on every image, the
hidden interval must not count, and nothing after a submit may be sent or counted.

Visibility changes are emulated the way a tab switch looks to the page: ``document.hidden`` /
``visibilityState`` overridden, then a ``visibilitychange`` event dispatched.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from db.migrate import upgrade
from db.models import Event
from db.rounds import start_round
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user
from engine.flywheel import events as ek
from tests.webapp import (
    classical_segmenter,
    launch_chromium,
    require_chromium,
    serve,
    settings_for,
    submit_anyway,
)

pytestmark = pytest.mark.browser

ADMIN_PW, ANN_PW = "admin-password-1", "annotator-password-1"
SET_HIDDEN = """(hidden) => {
  for (const [k, v] of [["hidden", hidden], ["visibilityState", hidden ? "hidden" : "visible"]]) {
    Object.defineProperty(document, k, { configurable: true, get: () => v });
  }
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def _elapse(page: object, ms: int) -> None:
    """Let ``ms`` of page time pass (polls the page clock; no fixed sleep)."""
    t0 = page.evaluate("() => performance.now()")  # type: ignore[attr-defined]
    page.wait_for_function(f"() => performance.now() - {t0} >= {ms}", polling=50)  # type: ignore[attr-defined]


def test_client_log_with_hidden_time_and_post_submit_tab_switches(
    shared_data: Path, tmp_path: Path
) -> None:
    sync_api = require_chromium()
    from annotator_ui.app import create_app
    from engine.ingest import ingest

    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    with transaction(factory) as s:
        create_user(s, name="boss", role="admin", password=ADMIN_PW)
        create_user(s, name="ann", role="annotator", password=ANN_PW)
    app = create_app(settings_for(url, tmp_path), segmenter=classical_segmenter())
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as admin:
        assert admin.post("/api/auth/login", json={"name": "boss", "password": ADMIN_PW}).is_success
        r = admin.post("/api/admin/projects", json={"name": "effort", "labels": ["dog"]})
        assert r.status_code == 201, r.text
        project_id = r.json()["id"]
        samples = [shared_data / "samples" / p for p in ("dog.jpg", "dog1.jpg")]
        assert ingest(factory, project="effort", paths=samples).added == 2
        with transaction(factory) as s:
            start_round(s, project_id=project_id, model_version_id=None)

        with sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/")
            page.wait_for_selector("#login")
            page.fill("input[name=name]", "ann")
            page.fill("input[name=password]", ANN_PW)
            page.click("button[type=submit]")
            page.click(f"button[data-id='{project_id}']")
            ready = "() => window.deReview && window.deReview.bitmap && window.deReview.view"
            page.wait_for_function(ready)
            first = page.evaluate("() => deReview.image.id")
            _elapse(page, 600)
            page.evaluate(SET_HIDDEN, True)  # the annotator looks at another tab
            _elapse(page, 2500)
            page.evaluate(SET_HIDDEN, False)
            _elapse(page, 600)
            submit_anyway(page)
            for _ in range(2):  # tab switches on the submitted page
                page.evaluate(SET_HIDDEN, True)
                _elapse(page, 1500)
                page.evaluate(SET_HIDDEN, False)
                _elapse(page, 1500)
            page.keyboard.press("n")
            page.wait_for_function(f"() => deReview.image && deReview.image.id !== {first} "
                                   "&& deReview.bitmap && deReview.view")  # fmt: skip
            second = page.evaluate("() => deReview.image.id")
            _elapse(page, 800)
            submit_anyway(page)
            page.evaluate(SET_HIDDEN, True)  # and one more switch after the last submit
            page.evaluate(SET_HIDDEN, False)
            assert page.evaluate("() => deReview.ev.drain(10000)")
            assert not errors, errors
            browser.close()

        efforts = {i: admin.get(f"/api/images/{i}/effort").json() for i in (first, second)}
        metrics = admin.get("/api/metrics", params={"project": "effort", "reps": 20}).json()

    with factory() as s:
        log = {
            i: s.scalars(
                select(Event).where(Event.image_id == i).order_by(Event.session_id, Event.seq)
            ).all()
            for i in (first, second)
        }
    for events in log.values():
        kinds = [e.kind for e in events]
        assert kinds[-1] == ek.SUBMIT, kinds  # the client sent nothing for it after its submit
        assert kinds.count(ek.SUBMIT) == 1 and ek.IMAGE_OPEN in kinds
    # the hidden interval of the first image is there, and not counted
    gaps = efforts[first]["gaps"]
    hidden = [g for g in gaps if g["reason"] == "hidden"]
    assert len(hidden) == 1 and hidden[0]["raw_s"] >= 2.5 and hidden[0]["counted_s"] == 0
    assert not [g for e in efforts.values() for g in e["gaps"] if g["reason"] == "after_submit"]
    t = {e.kind: e.client_time for e in log[first] if e.kind in (ek.IMAGE_OPEN, ek.SUBMIT)}
    open_to_submit = (t[ek.SUBMIT] - t[ek.IMAGE_OPEN]) / 1000
    seconds = {i: efforts[i]["per_image"][str(i)] for i in (first, second)}
    assert 1.0 <= seconds[first] <= open_to_submit - hidden[0]["raw_s"] + 1e-6
    assert 0.7 <= seconds[second] < 5.0
    # /effort and /api/metrics agree on every image (both done in round 1)
    from engine.flywheel.metrics_project import per_image_table

    with transaction(factory) as s:
        table = per_image_table(s, project_id=project_id)
    per_image = dict(zip(table.image_ids.tolist(), table.cols["seconds"].tolist(), strict=True))
    assert per_image == pytest.approx(seconds)
    (group,) = metrics["groups"]
    assert (group["round"], group["images_done"]) == (1, 2)
    assert group["active_seconds"] == pytest.approx(sum(seconds.values()))
    print(f"\ne2e effort: image {first} {seconds[first]:.2f} s (hidden "
          f"{hidden[0]['raw_s']:.2f} s not counted), image {second} {seconds[second]:.2f} s")  # fmt: skip
