"""The review canvas in Chromium on SAM-density pre-fills: a 640 px and a 4000 x 2669 photo.

    python scripts/bench_canvas.py            # 5 repetitions, 56 masks, 640 px and 4000 px
    python scripts/bench_canvas.py --tiny     # 1 repetition, 8 masks, small images (a smoke run)

Builds everything itself in a temporary folder: a SQLite database, a photo from
``../shared/data/samples`` (or scikit-image's astronaut) resized to 640 px wide and
upscaled to 4000 x 2669, a dense COCO file per photo (``engine.interop.dense_coco``)
imported with ``as_proposals`` (exactly what ``dataengine import -f coco --as-proposals``
does), the real app under uvicorn with the weight-free classical backend, and Debian's
Chromium (headless, the project's flags) driven by Playwright as an annotator.

Per size, medians of the repetitions of:
- ready: the review route opened -> the image and every mask on the canvas
  (``performance.mark("de:canvas-ready")`` if the page sets it, else the page state);
- preview: a click in free space -> the decoded preview drawn (``de:preview`` mark if any);
- commit: Enter -> the object saved and drawn (``de:commit`` mark if any), with its requests;
- brush move: one mousemove of a brush stroke, the handler's synchronous time;
- undo accept-all: Ctrl+Z after Shift+A -> every mask back to proposed, with the number
  of API requests it took.
The issue's targets (4000 px): ready <= 400 ms, preview <= 100 ms, commit <= 150 ms,
brush move <= 16 ms, undo of accept-all in one request. Time is bounded: each wait has a
timeout and the whole default run takes about 1-2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
PASSWORD = "bench-canvas-password-1"
ROWS = ("ready ms", "preview ms", "commit ms", "commit requests", "brush move ms",
        "undo accept-all ms", "undo accept-all requests")  # fmt: skip


def make_photos(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """One JPEG per (width, height): a sample photo resized (upscaled for large sizes)."""
    from PIL import Image

    src = ROOT.parent / "shared" / "data" / "samples" / "dog.jpg"
    if src.exists():
        base = Image.open(src).convert("RGB")
    else:
        from skimage import data

        base = Image.fromarray(data.astronaut())
    out = []
    for w, h in sizes:
        path = folder / f"photo_{w}x{h}.jpg"
        base.resize((w, h), Image.Resampling.LANCZOS).save(path, quality=90)
        out.append(path)
    return out


def build(tmp: Path, sizes: list[tuple[int, int]], n_masks: int) -> tuple[str, list[int]]:
    """The database (url) with one project per size, each holding one pre-filled photo."""
    from db.migrate import upgrade
    from db.projects import create_project
    from db.session import make_engine, make_session_factory, transaction
    from db.users import create_user
    from engine.interop.dense_coco import dense_coco
    from engine.interop.importers import import_files

    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        create_user(s, name="annotator", role="annotator", password=PASSWORD)
    project_ids = []
    for photo, (w, h) in zip(make_photos(tmp, sizes), sizes, strict=True):
        name = f"bench-{w}"
        with transaction(factory) as s:
            project_ids.append(create_project(s, name=name, labels=["thing", "part", "small"]).id)
        ann = tmp / f"dense_{w}.json"
        ann.write_text(json.dumps(dense_coco(photo.name, w, h, n=n_masks, seed=w)))
        report = import_files(
            factory,
            fmt="coco",
            project=name,
            paths=[ann],
            image_dirs=[tmp],
            options={"as_proposals": True},
        )
        if report.masks != n_masks:
            raise SystemExit(f"import of {ann} gave {report.masks} masks, expected {n_masks}")
    engine.dispose()
    return url, project_ids


def serve(url: str, data_dir: Path) -> tuple[Any, str]:
    """The app under uvicorn in a thread; returns (server, base url)."""
    import socket

    import uvicorn

    from annotator_ui.app import create_app
    from engine.segment.registry import build_segmenter, with_cache
    from engine.settings import Settings

    settings = Settings(database_url=url, data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, segmenter=with_cache(build_segmenter("classical"), None, 8))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the app did not start (see the log above)")
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


# JS helpers (run in the page)
MARK = """(name) => { const e = performance.getEntriesByName(name); return e.length ? e[e.length - 1].startTime : null; }"""
READY = "(n) => window.deReview && deReview.bitmap && deReview.view && deReview.masks.size >= n"
FREE_POINT = """() => {
  const r = deReview, step = Math.max(4, Math.round(Math.min(r.W, r.H) / 60));
  let best = null;
  for (let y = step; y < r.H - step; y += step) for (let x = step; x < r.W - step; x += step) {
    const h = step / 2; // free around it too: the click lands within a screen pixel of it
    if ([[0, 0], [h, 0], [-h, 0], [0, h], [0, -h]].some(([dx, dy]) => r.hit([x + dx, y + dy]) !== null)) continue;
    const bb = r.canvas.getBoundingClientRect(); // not under the minimap or another overlay
    if (document.elementFromPoint(bb.left + r.view.ox + x * r.view.s, bb.top + r.view.oy + y * r.view.s) !== r.canvas) continue;
    const d = Math.min(x, y, r.W - x, r.H - y);
    if (!best || d > best[2]) best = [x, y, d];
  }
  return best;
}"""
BRUSH = """async ([x, y, n]) => {
  const r = deReview, c = r.canvas, box = c.getBoundingClientRect(), v = r.view;
  const at = (fx, fy) => ({clientX: box.left + v.ox + fx * v.s, clientY: box.top + v.oy + fy * v.s, bubbles: true, button: 0});
  c.dispatchEvent(new MouseEvent('mousedown', at(x, y)));
  const times = [];
  for (let i = 1; i <= n; i++) {
    const t = performance.now();
    c.dispatchEvent(new MouseEvent('mousemove', at(x + i * 3 / v.s, y + i * 2 / v.s)));
    times.push(performance.now() - t);
    await new Promise((done) => requestAnimationFrame(() => done()));
  }
  window.dispatchEvent(new MouseEvent('mouseup', at(x + n * 3 / v.s, y + n * 2 / v.s)));
  return times;
}"""


def _since(page: Any, t0: float, mark: str) -> float:
    """ms from ``t0`` (page clock) to the ``mark`` if the page set one after t0, else to now."""
    at = page.evaluate(MARK, mark)
    if at is not None and at >= t0:
        return float(at - t0)
    return float(page.evaluate("performance.now()") - t0)


def measure(
    page: Any, base: str, project_id: int, n_masks: int, reps: int
) -> dict[str, list[float]]:
    """Run the repetitions on one project's image; returns row -> values."""
    api_calls: list[str] = []

    def on_request(req: Any) -> None:
        if "/api/" in req.url and "/api/events" not in req.url and "heartbeat" not in req.url:
            api_calls.append(f"{req.method} {req.url}")

    page.on("request", on_request)
    out: dict[str, list[float]] = {row: [] for row in ROWS}
    timeout = 60_000
    for _ in range(reps):
        page.evaluate("() => { location.hash = '#/queue'; }")
        page.wait_for_selector(f"button[data-id='{project_id}']", timeout=timeout)
        t0 = page.evaluate(
            f"() => {{ window.deReview = null; const t = performance.now(); location.hash = '#/review/{project_id}'; return t; }}"
        )
        page.wait_for_function(READY, arg=n_masks, timeout=timeout, polling="raf")
        out["ready ms"].append(_since(page, t0, "de:canvas-ready"))
        phases = page.evaluate("() => deReview.timings || null")
        if phases:  # where the ready time went (the page's own figures)
            print(
                "  phases: "
                + json.dumps(
                    {k: round(v) for k, v in phases.items() if isinstance(v, int | float)}
                ),
                file=sys.stderr,
            )

        # click in free space -> preview
        x, y, _d = page.evaluate(FREE_POINT)
        box = page.locator("#view").bounding_box()
        s, ox, oy = page.evaluate("() => [deReview.view.s, deReview.view.ox, deReview.view.oy]")
        t0 = page.evaluate("performance.now()")
        page.mouse.click(box["x"] + ox + x * s, box["y"] + oy + y * s)
        try:
            page.wait_for_function(
                "() => deReview.draft && deReview.decoded === deReview.decodeSeq"
                " && (deReview.draft.geo || (deReview.draft.crop && deReview.draft.crop.w > 0))",
                timeout=timeout,
                polling="raf",
            )
        except Exception:
            state = "() => [!!deReview.draft, deReview.decoded, deReview.decodeSeq, deReview.selected, document.querySelector('#msg').textContent]"
            print(
                f"no preview after a click at ({x}, {y}): {page.evaluate(state)}", file=sys.stderr
            )
            raise
        out["preview ms"].append(_since(page, t0, "de:preview"))

        # Enter -> committed
        before = len(api_calls)
        t0 = page.evaluate("performance.now()")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => deReview.draft === null && !deReview.busy", timeout=timeout, polling="raf"
        )
        out["commit ms"].append(_since(page, t0, "de:commit"))
        out["commit requests"].append(float(len(api_calls) - before))
        page.keyboard.press(
            "Control+z"
        )  # take the object back: the next repetition sees the same image
        page.wait_for_function("() => !deReview.busy", timeout=timeout)

        # brush: per-move handler time
        page.keyboard.press("b")
        times = page.evaluate(BRUSH, [x, y, 20])
        out["brush move ms"].append(statistics.median(times))
        page.keyboard.press("Escape")
        page.keyboard.press("b")

        # accept all, then undo it
        page.keyboard.press("Shift+A")
        page.wait_for_function(
            "() => !deReview.busy && [...deReview.masks.values()].every((m) => m.data.status !== 'proposed')",
            timeout=timeout,
        )
        before = len(api_calls)
        t0 = page.evaluate("performance.now()")
        page.keyboard.press("Control+z")
        page.wait_for_function(
            "(n) => !deReview.busy && [...deReview.masks.values()].filter((m) => m.data.status === 'proposed').length >= n",
            arg=n_masks,
            timeout=timeout,
            polling="raf",
        )
        out["undo accept-all ms"].append(float(page.evaluate("performance.now()") - t0))
        out["undo accept-all requests"].append(float(len(api_calls) - before))
    page.remove_listener("request", on_request)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Review canvas timings in Chromium (medians).")
    ap.add_argument("--tiny", action="store_true", help="1 repetition, 8 masks, small images")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; --tiny: 1)")
    ap.add_argument("--masks", type=int, default=None, help="masks per image (default 56)")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.tiny else 5)
    n_masks = args.masks or (8 if args.tiny else 56)
    sizes = [(320, 214), (800, 534)] if args.tiny else [(640, 427), (4000, 2669)]
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_canvas_") as tmp_name:
        tmp = Path(tmp_name)
        print(f"building {len(sizes)} pre-filled photos with {n_masks} masks ...", file=sys.stderr)
        url, project_ids = build(tmp, sizes, n_masks)
        server, base = serve(url, tmp / "data")
        results: dict[str, dict[str, list[float]]] = {}
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(base + "/#/login")
                page.wait_for_selector("#login")
                page.fill("input[name=name]", "annotator")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("button[data-id]")
                for (w, h), pid in zip(sizes, project_ids, strict=True):
                    print(f"measuring {w} x {h}, {reps} repetition(s) ...", file=sys.stderr)
                    results[f"{w}x{h}"] = measure(page, base, pid, n_masks, reps)
                browser.close()
        finally:
            server.should_exit = True
    cols = list(results)
    print(f"\nreview canvas, {n_masks} masks per image, medians of {reps} (Chromium headless)")
    print(f"{'':28}" + "".join(f"{c:>14}" for c in cols) + f"{'ratio':>9}")
    for row in ROWS:
        vals = [statistics.median(results[c][row]) for c in cols]
        ratio = vals[-1] / vals[0] if vals[0] else float("nan")
        fmt = "{:>14.0f}" if "requests" in row else "{:>14.1f}"
        print(f"{row:28}" + "".join(fmt.format(v) for v in vals) + f"{ratio:>8.1f}x")
    print(f"(ratio: {cols[-1]} / {cols[0]}; total {time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DATAENGINE_LOG_LEVEL", "WARNING")
    raise SystemExit(main())
