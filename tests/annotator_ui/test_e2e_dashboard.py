"""The flywheel dashboard in Debian's Chromium shows curation agreement (kappa) per stage
and the pre-fill workers' heartbeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.curation import record_decision
from db.migrate import upgrade
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user
from db.workers import record_heartbeat
from tests.factories import make_image, make_project
from tests.webapp import NoModel, launch_chromium, require_chromium, serve, settings_for

PASSWORD = "dashboard-pass"


@pytest.mark.browser
def test_dashboard_shows_curation_kappa(tmp_path: Path) -> None:
    sync_api = require_chromium()
    from annotator_ui.app import create_app

    url = f"sqlite:///{tmp_path / 'dash.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    # two curators judge the same 6 images: they disagree on exactly one
    a_votes = ["keep", "keep", "drop", "drop", "keep", "drop"]
    b_votes = ["keep", "keep", "drop", "drop", "drop", "drop"]
    with transaction(factory) as s:
        project = make_project(s, name="dash")
        create_user(s, name="boss", role="admin", password=PASSWORD)
        a = create_user(s, name="cur-a", role="curator", password=PASSWORD)
        b = create_user(s, name="cur-b", role="curator", password=PASSWORD)
        for va, vb in zip(a_votes, b_votes, strict=True):
            image = make_image(s, project=project)
            record_decision(s, image_id=image.id, stage="generalist", decision=va, user_id=a.id)
            record_decision(s, image_id=image.id, stage="generalist", decision=vb, user_id=b.id)
        record_heartbeat(s, worker_id="gpu1:42:abcd", hostname="gpu1", pid=42, backend="sam",
                         model_key="sam:vit_b", passes=2, images_done=17, images_failed=1)  # fmt: skip
    # Cohen's kappa: p_o = 5/6, p_e = (3/6)(2/6) + (3/6)(4/6) = 1/2 -> kappa = 2/3
    app = create_app(settings_for(url, tmp_path / "var"), segmenter=NoModel())
    try:
        with serve(app) as base, sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"{base}/")
            page.fill("input[name=name]", "boss")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#nav-dashboard:not([hidden])")
            page.click("#nav-dashboard")
            page.wait_for_selector("#agreement table")
            row = page.locator("#agreement tbody tr").first
            cells = [c.strip() for c in row.locator("td").all_inner_texts()]
            assert cells[0] == "generalist keep/drop"
            assert cells[1:3] == ["6", "2"]
            assert cells[4] == "0.667"  # Cohen's kappa of the one pair
            assert cells[5] == "0.833"  # percent agreement
            page.wait_for_selector("#workers table")
            worker = page.locator("#workers tbody tr").first
            cells = [c.strip() for c in worker.locator("td").all_inner_texts()]
            assert cells[:3] == ["gpu1:42:abcd", "sam", "alive"]
            assert cells[4:8] == ["2", "17", "1", "0"]
            shot = Path("artifacts") / "e2e_dashboard.png"
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            print(f"\ndashboard screenshot: {shot.resolve()}")
            browser.close()
    finally:
        engine.dispose()
