"""The review canvas on dense 4000 px photos in Debian's Chromium (issue 17, items 1-5, 7).

The fixture: real sample photos scaled to 4000 x 2669, each carrying 38 overlapping model
proposals (34 confident, 4 less confident) including part-inside-whole pairs, the real app
under uvicorn on a SQLite file with the classical backend. Each test logs in its own
annotator (so each gets its own image) and checks one group of behaviours through the
page: zoom / pan / minimap / screen-resolution outlines, visibility controls, labelling
that cannot hit the wrong mask, click cycling on dense images, buttons / focus / contrast
(axe-core) and the one-request undo of an accept-all. Screenshots go to /tmp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from db.migrate import upgrade
from db.models import Event, Image, Mask, Project
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user
from tests.axe import violations
from tests.conftest import SHARED_DATA
from tests.factories import make_mask
from tests.webapp import classical_segmenter, launch_chromium, require_chromium, serve, settings_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

W, H = 4000, 2669
PHOTOS = ("dog.jpg", "groceries.jpg", "dog1.jpg", "cars.jpg", "truck.jpg")
LABELS = ["dog", "cat", "person", "food", "vehicle", "bowl"]
HOTKEYS = ["person", "dog", "cat"]  # the project's own key order (not the taxonomy's)
PW = "annotator-password-1"
SHOTS = Path("/tmp/canvasA_shots")


@dataclass
class Ellipse:
    cx: float
    cy: float
    rx: float
    ry: float
    id: int = 0
    area: int = 0

    def has(self, x: float, y: float) -> bool:
        """Pixel (x, y) inside, by the same rule as ``draw`` (pixel centres)."""
        px, py = np.floor(x) + 0.5, np.floor(y) + 0.5
        return bool(((px - self.cx) / self.rx) ** 2 + ((py - self.cy) / self.ry) ** 2 <= 1.0)

    def draw(self) -> np.ndarray:
        m = np.zeros((H, W), dtype=bool)
        x0, x1 = max(0, int(self.cx - self.rx) - 1), min(W, int(self.cx + self.rx) + 2)
        y0, y1 = max(0, int(self.cy - self.ry) - 1), min(H, int(self.cy + self.ry) + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        m[y0:y1, x0:x1] = ((xx + 0.5 - self.cx) / self.rx) ** 2 + (
            (yy + 0.5 - self.cy) / self.ry
        ) ** 2 <= 1.0
        return m


@dataclass
class Dense:
    base: str
    factory: Any
    project_id: int
    shapes: dict[int, list[Ellipse]] = field(default_factory=dict)  # image id -> masks
    pairs: dict[int, list[tuple[Ellipse, Ellipse]]] = field(default_factory=dict)  # part, whole
    pw: Any = None
    browser: Any = None
    users: int = 0


def dense_shapes(rng: np.random.Generator) -> tuple[list[Ellipse], list[tuple[int, int]], int]:
    """38 ellipses: 14 wholes, a part inside each of the first 8, 12 more overlapping ones,
    4 less confident (the last 4). Returns (shapes, (part, whole) index pairs, n confident)."""
    shapes, pairs = [], []
    for i in range(14):
        whole = Ellipse(rng.uniform(500, W - 500), rng.uniform(450, H - 450),
                        rng.uniform(220, 420), rng.uniform(180, 380))  # fmt: skip
        shapes.append(whole)
        if i < 8:
            part = Ellipse(whole.cx + rng.uniform(-40, 40), whole.cy + rng.uniform(-40, 40),
                           whole.rx * 0.3, whole.ry * 0.3)  # fmt: skip
            pairs.append((len(shapes), len(shapes) - 1))
            shapes.append(part)
    while len(shapes) < 38:
        shapes.append(Ellipse(rng.uniform(150, W - 150), rng.uniform(150, H - 150),
                              rng.uniform(60, 300), rng.uniform(60, 300)))  # fmt: skip
    return shapes, pairs, 34


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dense]:
    sync_api = require_chromium()
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    shared_data = SHARED_DATA
    from annotator_ui.app import create_app
    from engine.ingest import ingest

    tmp = tmp_path_factory.mktemp("canvas")
    paths = []
    for name in PHOTOS:
        out = tmp / name
        PILImage.open(shared_data / "samples" / name).convert("RGB").resize((W, H)).save(
            out, quality=85
        )
        paths.append(out)
    url = f"sqlite:///{tmp / 'canvas.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    assert ingest(factory, project="dense", paths=paths).added == len(PHOTOS)
    rng = np.random.default_rng(17)
    shapes: dict[int, list[Ellipse]] = {}
    pairs: dict[int, list[tuple[Ellipse, Ellipse]]] = {}
    with transaction(factory) as s:
        project = s.scalars(select(Project)).one()
        project.labels = LABELS
        project.settings = {"hotkeys": HOTKEYS}
        project_id = project.id
        create_user(s, name="boss", role="admin", password=PW)
        for image in s.scalars(select(Image).order_by(Image.id)):
            found, idx, n_sure = dense_shapes(rng)
            for k, e in enumerate(found):
                m = e.draw()
                e.area = int(m.sum())
                sure = k < n_sure
                e.id = make_mask(s, image=image, mask=m, confident=sure,
                                 predicted_iou=0.95 - k * 0.002 if sure else 0.6).id  # fmt: skip
            shapes[image.id] = found
            pairs[image.id] = [(found[p], found[w]) for p, w in idx]
    app = create_app(settings_for(url, tmp), segmenter=classical_segmenter())
    SHOTS.mkdir(exist_ok=True)
    try:
        with serve(app) as base, sync_api.sync_playwright() as pw:
            d = Dense(base=base, factory=factory, project_id=project_id, shapes=shapes,
                      pairs=pairs, pw=pw, browser=launch_chromium(pw))  # fmt: skip
            yield d
            d.browser.close()
    finally:
        engine.dispose()


def open_review(d: Dense, **context: Any) -> tuple[Any, int, list[str]]:
    """A fresh annotator logs in and opens the project: (page, image id, page errors)."""
    d.users += 1
    name = f"ann{d.users}"
    with transaction(d.factory) as s:
        create_user(s, name=name, role="annotator", password=PW)
    page = d.browser.new_context(viewport={"width": 1366, "height": 768}, **context).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(d.base + "/")
    page.wait_for_selector("#login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PW)
    page.click("button[type=submit]")
    page.click(f"button[data-id='{d.project_id}']")
    page.wait_for_function("() => window.deReview && deReview.bitmap && deReview.view")
    return page, int(page.evaluate("() => deReview.image.id")), errors


def screen_of(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of full-res point (x, y) on the canvas."""
    box = page.locator("#view").bounding_box()
    sx, sy = page.evaluate(f"() => deReview.viewport.toScreen({x}, {y})")
    return box["x"] + sx, box["y"] + sy


# canvas pixels differing from the bare photo drawn under the same view, from the same level
# of the renderer's photo pyramid (sum |dRGB| > 30)
CHANGED = """() => {
  const r = deReview, v = r.viewport, c = r.canvas;
  const plain = document.createElement('canvas');
  plain.width = c.width; plain.height = c.height;
  const g = plain.getContext('2d');
  v.apply(g); g.imageSmoothingEnabled = v.s < 2;
  g.drawImage(r.renderer.level(r.bitmap, v.s), 0, 0, r.W, r.H);
  const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const b = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < a.length; i += 4) {
    if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 30) n++;
  }
  return n;
}"""

# [start x, width] of the runs of changed pixels along screen row y
ROW_RUNS = """(y) => {
  const r = deReview, v = r.viewport, c = r.canvas;
  const plain = document.createElement('canvas');
  plain.width = c.width; plain.height = c.height;
  const g = plain.getContext('2d');
  v.apply(g); g.imageSmoothingEnabled = v.s < 2;
  g.drawImage(r.renderer.level(r.bitmap, v.s), 0, 0, r.W, r.H);
  const a = c.getContext('2d').getImageData(0, y, c.width, 1).data;
  const b = g.getImageData(0, y, c.width, 1).data;
  const runs = []; let run = 0;
  for (let x = 0; x < c.width; x++) {
    const i = 4 * x;
    const on = Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 40;
    if (on) run++; else if (run) { runs.push([x - run, run]); run = 0; }
  }
  if (run) runs.push([c.width - run, run]);
  return runs;
}"""


def test_zoom_pan_minimap_and_outlines_at_screen_resolution(dense: Dense) -> None:
    page, image_id, errors = open_review(dense)
    view = "() => [deReview.viewport.s, deReview.viewport.ox, deReview.viewport.oy]"
    fit_s, _, _ = page.evaluate(view)
    assert fit_s < 0.3 and page.evaluate("() => deReview.viewport.whole()")
    assert page.is_hidden("#minimap")  # the whole photo is on screen
    # the wheel zooms at the cursor: the image point under it stays put
    part, whole = dense.pairs[image_id][0]
    px, py = screen_of(page, part.cx, part.cy)
    page.mouse.move(px, py)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => deReview.viewport.s > {fit_s * 1.5}")
    box = page.locator("#view").bounding_box()
    fx, fy = page.evaluate(f"() => deReview.viewport.toFull({px - box['x']}, {py - box['y']})")
    assert abs(fx - part.cx) < 1.5 and abs(fy - part.cy) < 1.5, (fx, fy)
    assert page.is_visible("#minimap")
    # keys: + / - zoom, Z is 1:1, 0 fits
    s0 = page.evaluate(view)[0]
    page.keyboard.press("+")
    assert page.evaluate(view)[0] == pytest.approx(s0 * 1.5)
    page.keyboard.press("-")
    assert page.evaluate(view)[0] == pytest.approx(s0)
    page.keyboard.press("z")
    assert page.evaluate(view)[0] == 1
    # space+drag pans and draws no box; the middle button pans too
    _, ox, oy = page.evaluate(view)
    px, py = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # clear of the minimap
    page.keyboard.down("Space")
    page.mouse.move(px, py)
    page.mouse.down()
    page.mouse.move(px - 150, py - 80, steps=5)
    page.mouse.up()
    page.keyboard.up("Space")
    _, ox2, oy2 = page.evaluate(view)
    assert (ox2 - ox, oy2 - oy) == (pytest.approx(-150, abs=1), pytest.approx(-80, abs=1))
    assert page.evaluate("() => deReview.draft === null && !deReview.drag")
    page.mouse.move(px, py)
    page.mouse.down(button="middle")
    page.mouse.move(px + 100, py, steps=3)
    page.mouse.up(button="middle")
    assert page.evaluate(view)[1] == pytest.approx(ox2 + 100, abs=1)
    assert page.evaluate("() => deReview.draft === null")
    # the minimap: a click centres the view there
    mm = page.locator("#minimap").bounding_box()
    page.mouse.click(mm["x"] + mm["width"] / 2, mm["y"] + mm["height"] / 2)
    cx, cy = page.evaluate(
        "() => deReview.viewport.toFull(deReview.canvas.width / 2, deReview.canvas.height / 2)"
    )
    assert abs(cx - W / 2) < 30 and abs(cy - H / 2) < 30, (cx, cy)
    # drawing only what is visible: at 1:1 on a corner most masks are skipped
    shown = page.evaluate("() => deReview.shownMasks().length")
    assert page.evaluate("() => deReview.renderer.drawn") < shown
    page.keyboard.press("0")
    assert page.evaluate("() => deReview.viewport.whole() && deReview.renderer.drawn") == shown
    # outlines stay a couple of screen pixels wide at 1:1 and at 8x (outline-only mode)
    page.keyboard.press("Escape")
    page.keyboard.press("o")
    page.mouse.move(2, 2)  # no hover highlight
    runs_by_scale = {}
    for scale in (1, 8):
        page.evaluate(
            f"() => {{ deReview.viewport.zoomTo({scale}, 0, 0); "
            f"deReview.viewport.centreOn({whole.cx - whole.rx}, {whole.cy}); deReview.viewChanged(); }}"
        )
        ex, ey = page.evaluate(
            f"() => deReview.viewport.toScreen({whole.cx - whole.rx}, {whole.cy}).map(Math.round)"
        )
        runs = page.evaluate(ROW_RUNS, ey)  # the run crossing the edge is the one nearest ex
        runs_by_scale[scale] = min(runs, key=lambda r: abs(r[0] + r[1] / 2 - ex)) if runs else None
        if scale == 1:
            page.screenshot(path=str(SHOTS / "zoom_1to1_edge.png"))
    for scale, run in runs_by_scale.items():
        assert run, f"no outline crossed at {scale}x"
        assert 1 <= run[1] <= 6, runs_by_scale  # a scaled bitmap would be >= 8 px wide at 8x
    timings = page.evaluate("() => deReview.timings")
    marks = page.evaluate(
        "() => performance.getEntriesByType('mark').map((m) => m.name).filter((n) => n.startsWith('de:'))"
    )
    assert "de:canvas-ready" in marks and timings["ready_ms"] > 0
    assert page.evaluate("() => deReview.decoder.workers.length") >= 1  # decoded in workers
    print(
        f"\ncanvas: ready {timings['ready_ms']:.0f} ms, worker decode {timings['decode_ms']:.0f} ms"
    )
    assert not errors, errors


def test_visibility_controls(dense: Dense) -> None:
    page, image_id, errors = open_review(dense)
    page.mouse.move(2, 2)
    page.keyboard.press("Escape")  # nothing selected: only the masks themselves are drawn
    normal = page.evaluate(CHANGED)
    page.check("#outline")
    outline = page.evaluate(CHANGED)
    page.screenshot(path=str(SHOTS / "dense_outline_only.png"))
    assert 0 < outline < normal * 0.5, (outline, normal)
    page.uncheck("#outline")
    page.fill("#opacity", "0")
    page.dispatch_event("#opacity", "input")
    assert page.evaluate(CHANGED) < normal * 0.5
    page.fill("#opacity", "90")
    page.dispatch_event("#opacity", "input")
    assert page.evaluate(CHANGED) > normal
    page.fill("#opacity", "40")
    page.dispatch_event("#opacity", "input")
    # H held hides everything; released, all is back
    page.locator("#view").focus()
    page.keyboard.down("h")
    assert page.evaluate(CHANGED) < 20
    page.keyboard.up("h")
    assert page.evaluate(CHANGED) == pytest.approx(normal, rel=0.02)
    # per-mask visibility from the list
    biggest = max(dense.shapes[image_id][:34], key=lambda e: e.area)
    drawn = page.evaluate("() => deReview.renderer.drawn")
    page.click(f"#masklist li[data-mask='{biggest.id}'] button.eye")
    assert page.evaluate("() => deReview.renderer.drawn") == drawn - 1
    assert page.evaluate(CHANGED) < normal
    assert "off" in (page.get_attribute(f"#masklist li[data-mask='{biggest.id}']", "class") or "")
    page.click(f"#masklist li[data-mask='{biggest.id}'] button.eye")
    assert page.evaluate("() => deReview.renderer.drawn") == drawn
    # confident vs less confident: the button reveals the 4 others, drawn dashed, listed so
    with dense.factory() as s:
        hidden = s.scalars(
            select(Mask.id).where(
                Mask.image_id == image_id, Mask.status == "proposed", Mask.confident.is_(False)
            )
        ).all()
    assert len(hidden) == 4
    shown = page.evaluate("() => deReview.shownMasks().map((m) => m.data.id)")
    assert not set(hidden) & set(shown)
    page.click("#reveal")
    page.wait_for_function("() => deReview.revealed")
    less = page.evaluate(
        "() => deReview.shownMasks().filter((m) => m.data.status === 'proposed' && !m.data.confident).length"
    )
    assert less == 4
    assert page.locator("#masklist .sw.dashed").count() == 4
    assert page.locator(".legend .sw.dashed").count() == 1
    assert page.evaluate("() => deReview.ev.drain(5000)")
    with dense.factory() as s:
        kinds = s.scalars(select(Event.kind).where(Event.image_id == image_id)).all()
    assert "reveal_less_confident" in kinds
    assert not errors, errors


def test_labelling_cannot_hit_the_wrong_mask(dense: Dense) -> None:
    page, image_id, errors = open_review(dense)
    chips = page.locator("#toplabels button.chip").all_inner_texts()
    assert [c.split()[-1] for c in chips] == HOTKEYS  # the project's hotkey list, in order
    first = page.evaluate("() => deReview.selected")
    page.keyboard.press("a")
    page.wait_for_function(f"() => deReview.masks.get({first}).data.status === 'accepted'")
    assert page.evaluate("() => deReview.selected") == first  # the selection stayed
    nxt = page.evaluate("() => deReview.nextTarget")
    assert nxt not in (None, first)
    assert "next" in (page.get_attribute(f"#masklist li[data-mask='{nxt}']", "class") or "")
    page.keyboard.press("1")  # labels the mask just accepted: hotkey 1 is "person"
    page.wait_for_function(f"() => deReview.masks.get({first}).data.label === 'person'")
    # with nothing selected a number key labels nothing (and sets no hidden label)
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    page.wait_for_function(
        "() => document.querySelector('#msg').textContent.includes('select a mask')"
    )
    # a chip is a button: J goes to the marked next proposal, the chip labels it
    page.keyboard.press("j")
    assert page.evaluate("() => deReview.selected") == nxt
    page.click("#toplabels button.chip[data-label='dog']")
    page.wait_for_function(f"() => deReview.masks.get({nxt}).data.label === 'dog'")
    # new objects take the explicit "label for new objects", never the last label used
    assert page.input_value("#newlabel") == ""
    page.select_option("#newlabel", "cat")
    part, _ = dense.pairs[image_id][1]
    x, y = screen_of(page, part.cx, part.cy)
    page.keyboard.down("Shift")
    page.mouse.click(x, y)  # Shift+click: a new object on top of the masks
    page.keyboard.up("Shift")
    page.wait_for_function(
        "() => deReview.draft && deReview.decoded === deReview.decodeSeq", timeout=60000
    )
    assert "label: cat" in page.inner_text("#mode")
    page.keyboard.press("Enter")
    page.wait_for_function("() => deReview.draft === null && deReview.selected !== null")
    added = page.evaluate("() => deReview.selected")
    assert page.evaluate("() => deReview.ev.drain(5000)")
    with dense.factory() as s:
        labels = dict(s.execute(select(Mask.id, Mask.label).where(Mask.image_id == image_id)).all())
    assert labels[first] == "person" and labels[nxt] == "dog" and labels[added] == "cat"
    assert sum(v is not None for v in labels.values()) == 3  # nothing else was labelled
    assert not errors, errors


def test_dense_clicks_cycle_part_whole_then_new_object(dense: Dense) -> None:
    page, image_id, errors = open_review(dense)
    shapes = [e for e in dense.shapes[image_id] if e.id][:34]

    def under_centre(part: Ellipse) -> list[Ellipse]:
        return sorted((e for e in shapes if e.has(part.cx, part.cy)), key=lambda e: e.area)

    # a pair whose part is the smallest mask under its centre (random overlaps aside)
    part, whole = next((p, w) for p, w in dense.pairs[image_id] if under_centre(p)[0] is p)
    x, y = part.cx, part.cy
    under = under_centre(part)
    assert under[0] is part and whole in under
    assert page.evaluate(f"() => deReview.under([{x}, {y}])") == [e.id for e in under]
    sx, sy = screen_of(page, x, y)
    for e in under:  # part first, then each larger mask under the cursor
        page.mouse.click(sx, sy)
        assert page.evaluate("() => deReview.selected") == e.id
        assert page.evaluate("() => deReview.draft") is None
        # the list shows the selection (scrolled into view) with its label column
        row = page.locator(f"#masklist li[data-mask='{e.id}']")
        assert "sel" in (row.get_attribute("class") or "") and "no label" in row.inner_text()
        inside = page.evaluate(
            f"""() => {{ const ul = document.querySelector('#masklist').getBoundingClientRect();
              const li = document.querySelector("#masklist li[data-mask='{e.id}']").getBoundingClientRect();
              return li.top >= ul.top - 1 && li.bottom <= ul.bottom + 1; }}"""
        )
        assert inside, e.id
        # badges: only for the hovered / selected / next masks, never all 34
        assert page.evaluate("() => deReview.renderer.badges") <= 3
    page.mouse.click(sx, sy)  # once more: a new object starts here
    page.wait_for_function("() => deReview.draft && deReview.draft.points.length === 1")
    page.keyboard.press("Escape")
    # the "New object" button: the next click starts an object even on a mask
    page.click(".toolbar button[data-act='new-object']")
    page.mouse.click(sx, sy)
    page.wait_for_function("() => deReview.draft && deReview.draft.points.length === 1")
    page.keyboard.press("Escape")
    help_text = page.inner_text("#help")
    assert "Shift+click" in help_text and "New object" in help_text
    assert not errors, errors


def test_buttons_focus_contrast_and_one_request_undo(dense: Dense) -> None:
    page, image_id, errors = open_review(dense, bypass_csp=True)
    acts = set(page.evaluate(
        "() => [...document.querySelectorAll('.toolbar button')].map((b) => b.dataset.act)"
    ))  # fmt: skip
    assert {"accept", "reject", "accept-all", "undo", "redo", "brush", "erase", "fix", "commit",
            "cancel", "zoom-in", "zoom-out", "fit", "actual", "new-object"} <= acts  # fmt: skip
    sel = page.evaluate("() => deReview.selected")
    page.click(".toolbar button[data-act='accept']")
    page.wait_for_function(f"() => deReview.masks.get({sel}).data.status === 'accepted'")
    page.click(".toolbar button[data-act='undo']")
    page.wait_for_function(f"() => deReview.masks.get({sel}).data.status === 'proposed'")
    page.click(".toolbar button[data-act='brush']")
    assert page.evaluate("() => deReview.tool") == "brush"
    assert page.get_attribute(".toolbar button[data-act='brush']", "aria-pressed") == "true"
    page.click(".toolbar button[data-act='brush']")
    page.click(".toolbar button[data-act='actual']")
    assert page.evaluate("() => deReview.viewport.s") == 1
    page.click(".toolbar button[data-act='fit']")
    assert page.evaluate("() => deReview.viewport.whole()")
    # Tab leaves the canvas (no keyboard trap)
    page.locator("#view").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement !== deReview.canvas")
    # contrast on the review page
    found = violations(page)
    assert found == [], found
    # accept-all, then one undo: a single request puts every mask back
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.locator("#view").focus()
    page.keyboard.press("Shift+A")
    page.wait_for_function(
        "() => /confident proposal\\(s\\) accepted/.test(document.querySelector('#msg').textContent)"
    )
    with dense.factory() as s:
        accepted = s.scalars(
            select(Mask.id).where(Mask.image_id == image_id, Mask.status == "accepted")
        ).all()
    assert len(accepted) == 34
    requests.clear()
    page.keyboard.press("Control+z")
    page.wait_for_function("() => /undone/.test(document.querySelector('#msg').textContent)")
    mask_calls = [r for r in requests if "/api/masks" in r or "/masks/" in r]
    assert len(mask_calls) == 1 and mask_calls[0].endswith("/masks/bulk-status"), mask_calls
    assert page.evaluate("() => deReview.ev.drain(5000)")
    with dense.factory() as s:
        statuses = s.scalars(select(Mask.status).where(Mask.id.in_(accepted))).all()
        kinds = s.scalars(
            select(Event.kind).where(Event.image_id == image_id).order_by(Event.seq)
        ).all()
    assert set(statuses) == {"proposed"}
    assert kinds.count("accept_all_confident") == 1 and kinds[-1] == "undo", kinds
    assert not errors, errors
    # contrast on the other pages: login, dashboard, both curation pages
    ctx = dense.browser.new_context(viewport={"width": 1366, "height": 768}, bypass_csp=True)
    other = ctx.new_page()
    other.goto(dense.base + "/")
    other.wait_for_selector("#login")
    found = violations(other)
    assert found == [], found
    other.fill("input[name=name]", "boss")
    other.fill("input[name=password]", PW)
    other.click("button[type=submit]")
    other.wait_for_selector("#nav-dashboard:not([hidden])")
    for path in ("dashboard.html", f"curate_generalist.html?project={dense.project_id}",
                 f"curate_specialist.html?project={dense.project_id}"):  # fmt: skip
        other.goto(f"{dense.base}/static/{path}")
        other.wait_for_load_state("networkidle")
        found = violations(other)
        assert found == [], (path, found)
    ctx.close()
