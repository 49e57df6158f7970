"""The canvas's mask geometry (static/js/geometry.js) in Chromium, on random masks.

The review canvas draws every stored mask from ``geoFromCounts``: column runs and the
boundary loops, filled even-odd. Here random masks (holes, checkerboard corners, runs
wrapping from one column into the next, touching runs of a non-canonical RLE) go through
it in the page, and each pixel centre is checked against the mask three ways: the loops'
even-odd fill (``isPointInPath``, what the renderer fills), ``geoHas`` (the hit test) and
the brush's bit crop (``cropFromGeo``); ``geoFromCrop`` must give the same geometry back.
The module is served from the source tree (no app needed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.webapp import launch_chromium, require_chromium

pytestmark = [pytest.mark.browser]

JS = Path(__file__).resolve().parents[2] / "annotator_ui" / "static" / "js"
ORIGIN = "http://geometry.test"

CHECK = """async ([seed, n]) => {
  const g = await import('/geometry.js');
  let s = seed;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) / 0x7fffffff);
  const canvas = document.createElement('canvas').getContext('2d');
  const bad = [];
  let pixels = 0, loops = 0;
  for (let t = 0; t < n; t++) {
    const H = 1 + Math.floor(rnd() * 14), W = 1 + Math.floor(rnd() * 14), dens = rnd();
    const bits = new Uint8Array(H * W); // column-major, as COCO counts run
    for (let i = 0; i < bits.length; i++) bits[i] = rnd() < dens ? 1 : 0;
    const cnts = []; let cur = 0, run = 0;
    for (let i = 0; i < bits.length; i++) { if (bits[i] === cur) run++; else { cnts.push(run); cur = bits[i]; run = 1; } }
    cnts.push(run);
    if (t % 7 === 3 && cnts.length > 3) { // non-canonical: split a foreground run by an empty gap
      const k = cnts.findIndex((c, i) => i % 2 === 1 && c > 1);
      if (k > 0) cnts.splice(k, 1, 1, 0, cnts[k] - 1);
    }
    let x0 = W, x1 = -1, y0 = H, y1 = -1;
    for (let i = 0; i < bits.length; i++) if (bits[i]) {
      const x = Math.floor(i / H), y = i % H;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    const bbox = x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
    const geo = g.geoFromCounts(cnts, H, bbox);
    const path = new Path2D();
    for (let j = 0; j + 1 < geo.loopStart.length; j++) {
      const a = geo.loopStart[j], b = geo.loopStart[j + 1];
      path.moveTo(geo.loops[2 * a], geo.loops[2 * a + 1]);
      for (let i = a + 1; i < b; i++) path.lineTo(geo.loops[2 * i], geo.loops[2 * i + 1]);
      path.closePath();
    }
    loops += geo.loopStart.length - 1;
    const crop = g.cropFromGeo(geo);
    let area = 0;
    for (let x = 0; x < W; x++) for (let y = 0; y < H; y++) {
      const want = bits[x * H + y] === 1;
      area += want;
      const fill = canvas.isPointInPath(path, x + 0.5, y + 0.5, 'evenodd');
      const hit = g.geoHas(geo, x + 0.5, y + 0.5);
      const cx = x - crop.x0, cy = y - crop.y0;
      const inCrop = cx >= 0 && cy >= 0 && cx < crop.w && cy < crop.h && crop.bits[cy * crop.w + cx] === 1;
      if (fill !== want || hit !== want || inCrop !== want) bad.push({ t, H, W, x, y, want, fill, hit, inCrop });
      pixels++;
    }
    if (g.geoArea(geo) !== area) bad.push({ t, area, geoArea: g.geoArea(geo) });
    const back = geo.w ? g.geoFromCrop(crop) : null;
    for (const k of ['colStart', 'runs', 'loops', 'loopStart']) {
      if (back && back[k].join() !== geo[k].join()) bad.push({ t, differs: k });
    }
  }
  return { bad: bad.slice(0, 5), nBad: bad.length, pixels, loops };
}"""


def test_geometry_matches_the_mask_pixel_for_pixel() -> None:
    sync_api = require_chromium()
    with sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page()

            def serve_js(route: object) -> None:
                name = route.request.url.removeprefix(ORIGIN + "/")  # type: ignore[attr-defined]
                path = JS / name
                if "/" in name or not path.is_file():
                    route.fulfill(status=404)  # type: ignore[attr-defined]
                    return
                route.fulfill(body=path.read_text(), content_type="text/javascript")  # type: ignore[attr-defined]

            page.route(ORIGIN + "/*.js", serve_js)
            page.route(
                ORIGIN + "/",
                lambda r: r.fulfill(
                    body="<!doctype html><p>geometry</p>", content_type="text/html"
                ),
            )
            page.goto(ORIGIN + "/")
            out = page.evaluate(CHECK, [17, 400])
        finally:
            browser.close()
    assert out["nBad"] == 0, out["bad"]
    assert out["pixels"] > 10_000 and out["loops"] > 1_000  # the check saw real shapes
