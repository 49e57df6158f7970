"""Report: PNG plots per figure and a self-contained HTML page."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from PIL import Image

from engine.flywheel.metrics import FIGURES
from engine.flywheel.report import PLOTS, plot_png, render_html


def _metrics() -> dict[str, Any]:
    def fig(v: float | None) -> dict[str, Any]:
        return {"value": v, "lo": None if v is None else v * 0.9, "hi": None if v is None else v * 1.1,
                "num": 0.0, "den": 0.0}  # fmt: skip

    groups = []
    for rnd in (1, 2):
        for arm in ("prefill", "control"):
            figures = {f: fig(float(rnd * 10)) for f in FIGURES}
            if arm == "control":
                figures["prefill_precision"] = fig(None)
            groups.append({"round": rnd, "arm": arm, "images_done": 5, "figures": figures})
    return {
        "idle_s": 30.0,
        "bootstrap": {"reps": 100, "seed": 0, "level": 0.95},
        "rounds": [
            {
                "round": r,
                "model_version_id": r,
                "control_fraction": 0.2,
                "seed": 0,
                "started_at": "2024-01-01T00:00:00+00:00",
            }
            for r in (1, 2)
        ],  # fmt: skip
        "groups": groups,
    }


@pytest.mark.parametrize("figure", list(PLOTS))
def test_every_plot_is_a_png(figure: str) -> None:
    png = plot_png(_metrics(), figure)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (640, 380)


def test_empty_metrics_still_plot_and_unknown_figure_is_refused() -> None:
    assert plot_png({"groups": []}, "prefill_precision").startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="choose one of"):
        plot_png(_metrics(), "nope")


def test_html_is_self_contained_with_table_and_references() -> None:
    page = render_html(_metrics(), title="Flywheel <test>", extra={"note": "a & b"})
    assert "Flywheel &lt;test&gt;" in page and "a &amp; b" in page
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == len(PLOTS)
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in imgs)
    assert "http://" not in page and "https://" not in page  # nothing fetched when opened
    assert page.count("<tr>") == 1 + 4  # header + 2 rounds x 2 arms
    assert "SAM" in page


def test_metrics_api_plots_and_dashboard(sqlite_url: str, tmp_path: Any) -> None:
    from tests.engine.flywheel.test_metrics_project import build
    from tests.webapp import NoModel, start_web

    with start_web(sqlite_url, tmp_path, segmenter=NoModel()) as web:
        build(web.factory)
        with web.factory() as s:
            from db.models import Project

            name = s.query(Project).one().name
        r = web.client.get(
            "/api/metrics", params={"project": name, "reps": 50}, headers=web.as_("reviewer")
        )
        assert r.status_code == 200, r.text
        groups = {(g["round"], g["arm"]): g for g in r.json()["groups"]}
        assert groups[(1, "prefill")]["figures"]["prefill_precision"]["value"] == 0.5
        assert (
            web.client.get(
                "/api/metrics", params={"project": name}, headers=web.as_("annotator")
            ).status_code
            == 403
        )
        assert (
            web.client.get(
                "/api/metrics", params={"project": "nope"}, headers=web.as_("admin")
            ).status_code
            == 404
        )
        png = web.client.get("/api/metrics/plots/prefill_precision.png", params={"project": name, "reps": 20},
                             headers=web.as_("admin"))  # fmt: skip
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        assert web.client.get("/api/metrics/plots/nope.png", params={"project": name},
                              headers=web.as_("admin")).status_code == 404  # fmt: skip
        page = web.client.get("/api/metrics/report.html", params={"project": name, "reps": 20},
                              headers=web.as_("admin"))  # fmt: skip
        assert page.status_code == 200 and "data:image/png;base64," in page.text
        assert [
            p["name"]
            for p in web.client.get("/api/metrics/projects", headers=web.as_("reviewer")).json()
        ] == [name]
        dash = web.client.get("/static/dashboard.html")
        assert dash.status_code == 200 and "/static/dashboard.js" in dash.text
        assert "/api/metrics" in web.client.get("/static/dashboard.js").text


def _blue_pixels(png: bytes) -> int:
    """Pixels close to matplotlib's tab:blue (the prefill arm), drawn at full or 0.8 alpha."""
    import numpy as np

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    full = (np.abs(rgb - [31, 119, 180]).sum(axis=2) < 40).sum()
    faded = (np.abs(rgb - [76, 146, 195]).sum(axis=2) < 40).sum()  # 0.8 alpha on white
    return int(full + faded)


def test_one_round_is_bars_many_rounds_are_lines() -> None:
    from engine.flywheel.report import plot_kind

    one = _metrics()
    one["groups"] = [g for g in one["groups"] if g["round"] == 1]
    assert plot_kind(one) == "bars"
    # a bar, not a dot: thousands of the arm's pixels
    assert _blue_pixels(plot_png(one, "final_masks_per_image", references=False)) > 3000
    many = _metrics()
    many["groups"] = [
        {**g, "round": r} for r in (1, 2, 3, 4) for g in _metrics()["groups"] if g["round"] == 1
    ]
    assert plot_kind(many) == "lines"
    assert plot_png(many, "final_masks_per_image").startswith(b"\x89PNG")
