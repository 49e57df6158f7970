"""Curation by mouse in Debian's Chromium (issue 17, item 9): tile Keep/Drop buttons, the
tile-size slider, the lightbox (Enlarge, Keep from it), the Undo button; the specialist page
shows signals in plain words with the project percentile, not raw numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.curation import active_decisions
from db.migrate import upgrade
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user
from tests.curation_helpers import add_photos
from tests.factories import make_project
from tests.webapp import NoModel, launch_chromium, require_chromium, serve, settings_for

pytestmark = pytest.mark.browser
PW = "curator-password-1"


def test_generalist_by_mouse_and_specialist_words(shared_data: Path, tmp_path: Path) -> None:
    sync_api = require_chromium()
    from annotator_ui.app import create_app

    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        create_user(s, name="cur", role="curator", password=PW)
        p = make_project(s)
        images = add_photos(s, p, shared_data, 4)
        for k, im in enumerate(images):  # grid order = images order; sharpness 400, 300, ...
            im.signals = {"quality": 10.0 - k, "sharpness": 400.0 - 100 * k}
        pid, ids = p.id, [im.id for im in images]

    def decisions() -> dict[int, str]:
        with transaction(factory) as s:
            return {
                d.image_id: d.decision
                for d in active_decisions(s, project_id=pid, stage="generalist")
            }

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
            page.wait_for_function("() => document.querySelectorAll('.tile img').length === 4")

            # the size slider makes tiles larger
            small = page.locator(".tile").first.bounding_box()["width"]
            page.locator("#tilesize").fill("480")
            page.wait_for_function(
                f"() => document.querySelector('.tile').getBoundingClientRect().width > {small + 100}"
            )

            # mouse only: Drop on the second tile, Keep on the first
            page.click(f".tile[data-id='{ids[1]}'] button[data-act='drop']")
            page.click(f".tile[data-id='{ids[0]}'] button[data-act='keep']")
            page.wait_for_function("() => document.querySelectorAll('.tile.keep').length === 1")
            # Enlarge the third: the lightbox shows it at 1280 px; Keep from there
            page.click(f".tile[data-id='{ids[2]}'] button[data-act='enlarge']")
            page.wait_for_selector("#lightbox[open]")
            page.wait_for_function(
                "() => { const i = document.querySelector('#lightbox img'); return i.complete && i.naturalWidth > 384; }"
            )
            page.screenshot(
                path=str(
                    Path(__file__).resolve().parents[2] / "artifacts" / "e2e_curation_lightbox.png"
                )
            )
            page.click("#lb-keep")
            page.wait_for_function(
                f"() => document.querySelector(\".tile[data-id='{ids[2]}']\").classList.contains('keep')"
            )
            page.click("#lb-close")
            # the Undo button takes the last decision back
            page.wait_for_function(
                "() => !document.querySelector('#status').innerText.includes('saving')"
            )
            page.click("#undo")
            page.wait_for_selector("#status:has-text('undid keep')")
            assert decisions() == {ids[0]: "keep", ids[1]: "drop"}

            # the specialist page: plain words ranked within the project
            page.goto(f"{base}/static/curate_specialist.html?project={pid}")
            page.wait_for_selector(".sigword")
            words = page.inner_text(".signals")
            assert "Sharp: top 25 % of this project" in words, words
            assert "400.00" not in words and "sharpness" not in words
            assert not errors, errors
            browser.close()
    finally:
        engine.dispose()
