"""A tiny simulated flywheel: the real app over HTTP, the classical backend, two rounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import Event, Lease, Mask, Round
from db.session import make_engine, make_session_factory
from engine.flywheel.effort import derive_effort
from scripts.sim_annotator import Costs
from scripts.simulate_flywheel import build_parser, fit_costs, main


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


def test_synthetic_proposer_is_recovered_through_the_api(db_url: str, tmp_path: Path) -> None:
    """Injected precision / contribution / seconds per mask come back out of the real
    pre-fill storage, API, event log and metrics (a tiny run; the full table is the script's)."""
    out = tmp_path / "out"
    result = main(["--dataset", "synthetic", "--synthetic-images", "6", "--proposer",
                   "synthetic", "--precision", "0.8", "--recall", "0.6", "--rounds", "1",
                   "--control-fraction", "0", "--database-url", db_url, "--data-dir",
                   str(tmp_path / "var"), "--reps", "200", "--time-jitter", "0.3", "--quiet",
                   "--power", "--out", str(out)])  # fmt: skip
    inst = result["instrument"]
    rows = {r["figure"]: r for r in inst["rows"]}
    assert inst["images"] == 6 and inst["hidden_stored"] == 12
    for name in ("precision", "contribution", "s/final mask"):
        r = rows[name]
        # the metrics see exactly what the simulated person did and spent ...
        assert r["value"] == pytest.approx(r["realised"], abs=1e-9), name
        # ... and the injected value lies in the measured interval
        assert r["inside"] and r["lo"] <= r["injected"] <= r["hi"], r
    stats = [i for i in result["per_image"] if i["prefill_arm"]]
    shown = sum(i.get("accepted", 0) + i.get("rejected", 0) + i.get("fixed", 0) for i in stats)
    (group,) = result["metrics"]["groups"]
    assert group["shown"] == shown > 0  # the hidden proposals never counted
    assert result["power"]["images_per_arm"] >= 2
    assert 0.0 < result["power"]["simulated_power"] <= 1.0

    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            masks = s.scalars(select(Mask).where(Mask.source == "model")).all()
            hidden = [m for m in masks if not m.confident]
            assert len(hidden) == 12 and all(m.status == "proposed" for m in hidden)
            assert all(m.status != "proposed" for m in masks if m.confident)  # all decided
            kinds = {e.kind for e in s.scalars(select(Event)).all()}
            assert "reveal_less_confident" not in kinds
    finally:
        engine.dispose()


def test_injected_values_outside_the_interval_are_reported(tmp_path: Path) -> None:
    """The check can fail: a proposer claiming the wrong precision is flagged."""
    from engine.flywheel.synthetic import ProposalSpec, SyntheticProposer
    from scripts.sim_instrument import instrument_rows

    result = {
        "per_image": [{"round": 1, "prefill_arm": 1, "accepted": 9, "rejected": 1,
                       "added": 3, "ledger_ms": 26000.0, "expected_ms": 24000.0}],
        "metrics": {"groups": [{"round": 1, "arm": "prefill", "figures": {
            "prefill_precision": {"value": 0.9, "lo": 0.8, "hi": 1.0},
            "prefill_contribution": {"value": 0.75, "lo": 0.6, "hi": 0.9},
            "seconds_per_final_mask": {"value": 2.0, "lo": 1.5, "hi": 2.5}}}]},
    }  # fmt: skip
    spec = ProposalSpec(precision=0.3, recall=0.7)
    proposer = SyntheticProposer(None, {}, spec)  # type: ignore[arg-type]
    rows = {r["figure"]: r for r in instrument_rows(result, spec, proposer)["rows"]}
    assert not rows["precision"]["inside"]
    assert rows["contribution"]["inside"] and rows["s/final mask"]["inside"]
    assert rows["s/final mask"]["injected"] == pytest.approx(24.0 / 12)
    assert rows["s/final mask"]["realised"] == pytest.approx(26.0 / 12)
