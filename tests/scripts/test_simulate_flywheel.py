"""A tiny simulated flywheel: the real app over HTTP, the classical backend, two rounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import Event, Lease, Mask, Round
from db.session import make_engine, make_session_factory
from engine.flywheel.effort import derive_effort
from scripts.simulate_flywheel import Costs, build_parser, fit_costs, main


def _mask_folder(root: Path, n: int = 4) -> Path:
    """n 64x80 images with two flat-coloured rectangles each; masks/<stem>.png instance ids."""
    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        img = np.full((64, 80, 3), 30, np.uint8) + rng.integers(0, 8, (64, 80, 3), dtype=np.uint8)
        ids = np.zeros((64, 80), np.uint8)
        for v, (x0, y0, x1, y1, colour) in enumerate(
            [(6, 8, 34, 40, (220, 40, 40)), (44, 18 + k, 74, 56, (40, 200, 60))], start=1
        ):
            img[y0:y1, x0:x1] = colour
            ids[y0:y1, x0:x1] = v
        PILImage.fromarray(img).save(root / f"img{k}.png")
        PILImage.fromarray(ids).save(root / "masks" / f"img{k}.png")
    return root


def test_tiny_simulation_goes_through_the_api(sqlite_url: str, tmp_path: Path) -> None:
    data = _mask_folder(tmp_path / "data")
    out = tmp_path / "out"
    result = main(["--dataset", str(data), "--rounds", "2", "--database-url", sqlite_url,
                   "--data-dir", str(tmp_path / "var"), "--reps", "50", "--out", str(out),
                   "--control-fraction", "0.25", "--pred-iou-thresh", "0.3"])  # fmt: skip
    assert [r["images"] for r in result["rounds"]] == [2, 2]
    groups = result["metrics"]["groups"]
    assert {g["round"] for g in groups} == {1, 2}
    assert sum(g["images_done"] for g in groups) == 4
    assert sum(g["final_masks"] for g in groups) >= 4
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert json.loads((out / "simulation.json").read_text())["rounds"][0]["round"] == 1

    factory = make_session_factory(make_engine(sqlite_url))
    with factory() as s:
        # every lease was served by the app (with its round and arm) and completed by submit
        leases = s.scalars(select(Lease)).all()
        assert len(leases) == 4 and all(lease.completed_at for lease in leases)
        assert {lease.round_id for lease in leases} == set(s.scalars(select(Round.id)))
        # every decision came through the API: each accepted / rejected proposal has the
        # annotator's matching event; added or fixed masks carry their author
        events = s.scalars(select(Event)).all()
        assert events and all(e.session_id.startswith("sim-") for e in events)
        decided = {(e.mask_id, e.kind) for e in events if e.mask_id is not None}
        masks = s.scalars(select(Mask)).all()
        proposals = [m for m in masks if m.source == "model" and m.status != "proposed"]
        assert len([m for m in masks if m.status == "accepted"]) >= 4 and proposals
        for m in proposals:
            kind = {"accepted": "mask_accept", "rejected": "mask_reject"}.get(m.status)
            assert kind is None or (m.id, kind) in decided, (m.id, m.status)
        assert all(m.author_id is not None for m in masks if m.source != "model")
        # the metrics' seconds equal the effort derivation over the same raw events
        total = sum(g["active_seconds"] for g in groups)
        assert abs(derive_effort(events).total_s - total) < 1e-9
    costs, used = fit_costs(factory, 30.0)
    assert used == {} and costs == Costs()  # simulated sessions never feed the fitted model


def test_every_flag_has_help() -> None:
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.dest
