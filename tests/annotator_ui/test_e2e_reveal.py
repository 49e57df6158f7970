"""End to end in Debian's Chromium: the annotator reveals the less confident proposals.

A synthetic photo with one confident and two less confident proposals (the real app under
uvicorn, SQLite). The page shows only the confident one; M (the key of the "Less confident"
button) fetches and draws the others and logs a ``reveal_less_confident`` event, so the
submit summary counts them as shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from db.migrate import upgrade
from db.models import Event, Image
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user
from engine.ingest import ingest
from tests.factories import box_mask, make_mask
from tests.webapp import (
    NoModel,
    launch_chromium,
    require_chromium,
    serve,
    settings_for,
    submit_anyway,
)

pytestmark = pytest.mark.browser
PW = "annotator-password-1"


def test_reveal_less_confident_in_chromium(tmp_path: Path) -> None:
    sync_api = require_chromium()
    url = f"sqlite:///{tmp_path / 'reveal.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    photo = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    PILImage.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(photo)
    assert ingest(factory, project="reveal", paths=[photo]).added == 1
    with transaction(factory) as s:
        create_user(s, name="ann", role="annotator", password=PW)
        image = s.scalars(select(Image)).one()
        image_id, project_id = image.id, image.project_id
        sure = make_mask(s, image=image, mask=box_mask(120, 160, 10, 10, 60, 60), confident=True,
                         predicted_iou=0.7)  # fmt: skip
        hidden = [
            make_mask(s, image=image, mask=box_mask(120, 160, x, 70, x + 30, 110),
                      confident=False, predicted_iou=0.4).id
            for x in (20, 100)
        ]  # fmt: skip
        sure_id = sure.id
    from annotator_ui.app import create_app

    app = create_app(settings_for(url, tmp_path), segmenter=NoModel())
    try:
        with serve(app) as base, sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/")
            page.wait_for_selector("#login")
            page.fill("input[name=name]", "ann")
            page.fill("input[name=password]", PW)
            page.click("button[type=submit]")
            page.click(f"button[data-id='{project_id}']")
            page.wait_for_function("() => window.deReview && deReview.bitmap && deReview.view")
            assert page.evaluate("() => deReview.visibleMasks().map((m) => m.data.id)") == [sure_id]
            assert page.is_visible("#reveal") and page.is_enabled("#reveal")
            page.keyboard.press("m")
            page.wait_for_function(
                "() => document.querySelector('#msg').textContent.includes('less confident')"
            )
            assert page.evaluate("() => deReview.visibleMasks().length") == 3
            assert page.is_disabled("#reveal")
            listed = page.evaluate("() => [...document.querySelectorAll('#masklist li')].length")
            assert listed == 3
            # the event reached the server before the reveal finished (drained at once)
            with factory() as s:
                ev = s.scalars(select(Event).where(Event.kind == "reveal_less_confident")).one()
                assert ev.image_id == image_id and sorted(ev.payload["mask_ids"]) == hidden
                assert ev.lease_id is not None
            submit_anyway(page)
            text = page.inner_text("#msg")
            assert "3 proposed" in text, text
            assert not errors, errors
            browser.close()
    finally:
        engine.dispose()
