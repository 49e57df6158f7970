"""End to end in Debian's Chromium: a curator logs in on the generalist grid, keeps, drops and
undoes with the keyboard; then, as a specialist, rates, tags, writes a caption and keeps.
The database must hold exactly those decisions and the caption."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.captions import latest_caption
from db.curation import active_decisions
from db.migrate import upgrade
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user
from tests.curation_helpers import add_photos
from tests.factories import make_mask, make_project
from tests.webapp import NoModel, launch_chromium, require_chromium, serve, settings_for

pytestmark = pytest.mark.browser
PW = "curator-password-1"


def test_generalist_and_specialist_in_chromium(shared_data: Path, tmp_path: Path) -> None:
    sync_api = require_chromium()
    from annotator_ui.app import create_app

    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        create_user(s, name="cur", role="curator", password=PW)
        p = make_project(s)
        images = add_photos(s, p, shared_data, 3)
        for k, im in enumerate(images):
            im.signals = {"quality": 10.0 - k}  # grid order = images order
        make_mask(s, image=images[0], status="accepted", label="dog")
        pid, ids = p.id, [im.id for im in images]
    app = create_app(settings_for(url, tmp_path), segmenter=NoModel())
    try:
        with serve(app) as base, sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/static/curate_generalist.html?project={pid}")
            page.fill("input[name=name]", "cur")
            page.fill("input[name=password]", PW)
            page.click("button[type=submit]")
            page.wait_for_selector(".tile img")
            page.wait_for_function(
                "() => document.querySelectorAll('.tile img').length === 3 && [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            page.keyboard.press("k")
            page.keyboard.press("d")
            page.keyboard.press("k")
            page.keyboard.press("u")  # takes back the third decision
            page.wait_for_selector("#status:has-text('undid keep')")
            with transaction(factory) as s:
                got = {
                    d.image_id: d.decision
                    for d in active_decisions(s, project_id=pid, stage="generalist")
                }
            assert got == {ids[0]: "keep", ids[1]: "drop"}
            with page.expect_response(
                lambda r: r.url.endswith("/api/curation/decisions") and r.request.method == "POST"
            ) as posted:
                page.keyboard.press("k")
            assert posted.value.ok, posted.value.text()
            assert len(_decisions(factory, pid, "generalist")) == 2 + 1

            page.goto(f"{base}/static/curate_specialist.html?project={pid}")
            page.wait_for_selector("#large")
            assert page.input_value("#caption") == "a photo of a dog"  # drafted from the mask label
            page.keyboard.press("4")
            page.click(".tags button[data-tag='lighting:good']")
            page.fill("#caption", "a brown dog resting on a sofa")
            page.click("body")
            page.keyboard.press("k")
            page.wait_for_selector("#status:has-text('keep image')")
            assert not errors, errors
            browser.close()
    finally:
        with transaction(factory) as s:
            spec = _decisions(factory, pid, "specialist")
            cap = latest_caption(s, image_id=ids[0])
        engine.dispose()
    assert [(d[0], d[1], d[2], d[3]) for d in spec] == [(ids[0], "keep", 4, ["lighting:good"])]
    assert cap is not None and cap.text == "a brown dog resting on a sofa" and cap.source == "human"


def _decisions(factory, pid: int, stage: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    with transaction(factory) as s:
        return [
            (d.image_id, d.decision, d.rating, d.tags)
            for d in active_decisions(s, project_id=pid, stage=stage)
        ]
