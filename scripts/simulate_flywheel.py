"""Simulate flywheel rounds with a scripted annotator on ground-truth data.

Drives the REAL engine and the REAL HTTP API: the app runs in-process (FastAPI TestClient),
the simulated annotator logs in with a bearer token, takes leases (``POST /api/tasks/next``),
reads masks, accepts / rejects / fixes proposals and adds objects through the same endpoints
the browser uses (``/api/masks/{id}/accept|reject|fix``, ``/api/images/{id}/masks``,
``/api/images/{id}/decode``), posts its events to ``/api/events`` with simulated
``client_time`` and submits. The metrics therefore see simulated rounds exactly as human ones.

Each round: new images arrive (an equal share of the dataset is ingested), a round starts on
the current model version with a seeded control arm, pre-fill runs, the annotator works
through the queue, then ``calibrate`` fits a calibrated child version for the next round.

Policy (issue 5): each SHOWN proposal (largest first) is accepted if its IoU with an unmatched
ground-truth instance is >= 0.85, fixed with the RITM clicker (decode with the proposal as
``mask_id`` prior, then ``mask_input_id``) if >= 0.5, else rejected; then missed instances are
added, largest first, with the RITM clicker until IoU 0.85 or 20 clicks.

Default time model (seconds; ``--fit-from-db`` replaces it with medians of real sessions):
  open 2.0   look over a new image before the first action
  accept 1.5 / reject 1.0   a yes/no verification of a highlighted mask; box verification was
             measured at ~1.6 s (Papadopoulos et al., "We don't need no bounding-boxes", CVPR 2016)
  click 2.5  one positive/negative click incl. looking at the result (interactive-segmentation
             user studies report ~2-3 s per click; extreme clicking ~1.75 s per click,
             Papadopoulos et al. ICCV 2017)
  fix_start 1.0 / commit 1.0 / label 1.5 / submit 1.0   UI actions (assumption)
These are assumptions, not measurements of this tool; fit them on real sessions when you have
them. The first click of an added object includes finding it (``click`` + ``open``/2).

    .venv/bin/python scripts/simulate_flywheel.py --dataset tiny-coco --rounds 2 --out var/sim

The instrument check (``--proposer synthetic``): proposals are built from the ground truth with
injected precision, recall, boundary noise and score correlation
(``engine.flywheel.synthetic``), stored by the real ``prefill_project``, reviewed over the real
API and measured by the real metrics; ``--check-table`` runs three settings and prints injected
vs measured (``scripts/sim_instrument.py``), ``--power`` the images per arm needed to detect
``--power-delta`` in seconds per mask (``engine.flywheel.power``). See docs/simulation.md.

    .venv/bin/python scripts/simulate_flywheel.py --check-table --synthetic-images 60 \
        --time-jitter 0.3 --quiet --power --out var/instrument
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from annotator_ui.app import create_app
from db.errors import InvalidInput
from db.events import EFFORT_COLUMNS
from db.migrate import upgrade
from db.models import Event, Image, ModelVersion
from db.projects import get_or_create_project
from db.rounds import start_round
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user, issue_token
from engine.flywheel import events as ek
from engine.flywheel.calibration_project import calibrate_project
from engine.flywheel.confident_rule import ConfidentRule
from engine.flywheel.effort import derive_effort
from engine.flywheel.metrics_project import per_image_table, project_metrics
from engine.flywheel.power import power_analysis
from engine.flywheel.prefill import prefill_project
from engine.flywheel.prefill_model import ensure_model_version
from engine.flywheel.report import render_html
from engine.flywheel.synthetic import ProposalSpec, SyntheticProposer
from engine.imageio import load_rgb
from engine.ingest import ingest
from engine.segment.registry import image_key
from engine.settings import Settings
from scripts.sim_annotator import SIM_PREFIX, Annotator, Costs, Policy
from scripts.sim_dataset import load_dataset, load_mask_folder
from scripts.sim_instrument import format_instrument, format_power, instrument_rows, write_scenes

# --- cost model from real sessions ------------------------------------------------------


def fit_costs(factory: Any, idle_s: float, min_samples: int = 5) -> tuple[Costs, dict[str, int]]:
    """Medians of the counted (capped) gaps before each action in real, non-simulated
    sessions, as ``engine.flywheel.effort`` counts them (hidden, post-submit and clock-restart
    gaps left out)."""
    kind_to_field = {ek.MASK_ACCEPT: "accept", ek.MASK_REJECT: "reject", ek.PROMPT_CLICK: "click",
                     ek.FIX_START: "fix_start", ek.OBJECT_COMMIT: "commit", ek.LABEL_SET: "label",
                     ek.SUBMIT: "submit"}  # fmt: skip
    gaps: dict[str, list[float]] = defaultdict(list)
    with factory() as s:
        rows = s.execute(
            select(*EFFORT_COLUMNS)
            .where(~Event.session_id.startswith(SIM_PREFIX), Event.image_id.is_not(None))
        ).all()  # fmt: skip
    for g in derive_effort(rows, idle_s).gaps:  # the one effort definition (docs/effort.md)
        if g.to_kind in kind_to_field and g.reason in ("counted", "capped"):
            gaps[kind_to_field[g.to_kind]].append(g.counted_s)
    costs = Costs()
    used = {}
    for name, vals in gaps.items():
        if len(vals) >= min_samples:
            setattr(costs, name, float(statistics.median(vals)))
            used[name] = len(vals)
    return costs, used


# --- the driver -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="sim-flywheel-"))
    if args.dataset == "synthetic":
        folder = write_scenes(data_dir / "synthetic", args.synthetic_images, args.seed)
        dataset = load_mask_folder(folder)
    else:
        dataset = load_dataset(args.dataset, args.images_dir)
    paths = sorted(dataset)
    if args.max_images:
        paths = paths[: args.max_images]
    if not paths:
        sys.exit("the dataset has no images with ground truth")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{(data_dir / 'sim.db').resolve()}"
    upgrade(url)
    settings = Settings(database_url=url, data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    engine = make_engine(url)
    factory = make_session_factory(engine)
    from engine.segment.registry import build_segmenter, with_cache

    seg = with_cache(build_segmenter(args.backend), None, 64)
    # Round 1's "confident" rule: the backend's fixed thresholds (engine.segment.registry
    # DEFAULT_RULES); calibrated versions replace the threshold test, area and NMS rules stay.
    # The synthetic proposer shows exactly the proposals it generated as shown.
    proposer: Any = seg
    spec = None
    if args.proposer == "synthetic":
        spec = ProposalSpec(precision=args.precision, recall=args.recall,
                            noise_px=args.boundary_noise, rho=args.score_corr,
                            hidden=args.hidden_proposals)  # fmt: skip
        truth = {image_key(load_rgb(p)): [i.mask for i in dataset[p]] for p in paths}
        proposer = SyntheticProposer(seg, truth, spec, seed=args.seed)
        rule = spec.rule()
    else:
        rule = ConfidentRule.for_backend(seg.name, pred_iou_thresh=args.pred_iou_thresh,
                                         stability_thresh=args.stability_thresh)  # fmt: skip
    costs, used = fit_costs(factory, settings.idle_seconds) if args.fit_from_db else (Costs(), {})
    labels = sorted({i.label for p in paths for i in dataset[p]})
    project_name = args.project or f"sim-{Path(args.dataset).stem}-{uuid.uuid4().hex[:6]}"
    with transaction(factory) as s:
        project = get_or_create_project(s, name=project_name, labels=labels)
        user = create_user(s, name=f"sim-annotator-{uuid.uuid4().hex[:6]}", role="annotator",
                           password=uuid.uuid4().hex)  # fmt: skip
        token = issue_token(s, user=user, kind="api", hours=24)
        mv_id = ensure_model_version(s, segmenter=proposer).id
        project_id = project.id
    chunks = np.array_split(np.arange(len(paths)), args.rounds)
    rounds_log = []
    per_image: list[dict[str, Any]] = []
    app = create_app(settings, segmenter=seg)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        for r, idx in enumerate(chunks, start=1):
            t0 = time.perf_counter()
            with transaction(factory) as s:
                start_round(s, project_id=project_id, model_version_id=mv_id,
                            control_fraction=args.control_fraction, seed=args.seed)  # fmt: skip
                mv = s.get(ModelVersion, mv_id)
                mv_desc = {"id": mv_id, "name": mv.name, "calibrated": bool(mv.calibration)}
            new_paths = [paths[i] for i in idx]
            ingest(factory, project=project_name, paths=new_paths)
            with factory() as s:
                uris = {
                    img.uri: img.id
                    for img in s.scalars(select(Image).where(Image.project_id == project_id))
                }
            gt_by_uri = {str(p.absolute()): dataset[p] for p in new_paths}
            ids = [uris[u] for u in gt_by_uri if u in uris]
            pf = prefill_project(factory, project_id=project_id, segmenter=proposer,
                                 model_version_id=mv_id, image_ids=ids, rule=rule)  # fmt: skip
            ann = Annotator(client, token, costs, Policy(min_area=args.min_area),
                            jitter=args.time_jitter, seed=args.seed + r)  # fmt: skip
            totals: dict[str, int] = defaultdict(int)

            def tally(
                _image_id: int, stats: dict[str, int], totals: dict[str, int] = totals, r: int = r
            ) -> None:
                for k, v in stats.items():
                    totals[k] += v
                per_image.append({"image_id": _image_id, "round": r, **stats})
                if not args.quiet:
                    print(f"  round {r}: image {_image_id} {dict(stats)}", flush=True)

            n_done = ann.work(
                project_id, {uris[u]: g for u, g in gt_by_uri.items() if u in uris}, on_image=tally
            )
            entry = {"round": r, "model_version": mv_desc, "images": n_done,
                     "prefill": {"proposals": pf.proposals, "confident": pf.confident},
                     "actions": dict(totals), "decodes": ann.decodes,
                     "wall_s": time.perf_counter() - t0}  # fmt: skip
            if r < args.rounds:
                try:
                    with transaction(factory) as s:
                        child = calibrate_project(s, project_id=project_id, model_version_id=mv_id,
                                                  target_precision=args.target_precision, seed=args.seed)  # fmt: skip
                        mv_id = child.id
                        entry["calibration"] = child.calibration
                except InvalidInput as err:
                    entry["calibration_error"] = str(err)
                    if not args.quiet:
                        print(f"  calibration skipped: {err}", flush=True)
            rounds_log.append(entry)
    with factory() as s:
        metrics = project_metrics(s, project_id=project_id, idle_s=settings.idle_seconds,
                                  reps=args.reps, seed=args.seed)  # fmt: skip
        table_rows = per_image_table(s, project_id=project_id, idle_s=settings.idle_seconds)
        s.commit()
    engine.dispose()
    prefill = table_rows.arms == "prefill"
    measured_rows = {"seconds": table_rows.cols["seconds"][prefill].tolist(),
                     "final": table_rows.cols["final"][prefill].tolist()}  # fmt: skip
    result = {"dataset": args.dataset, "project": project_name, "database_url": url,
              "costs": asdict(costs), "costs_fitted_from": used, "policy": asdict(Policy(min_area=args.min_area)),
              "rounds": rounds_log, "metrics": metrics, "per_image": per_image,
              "per_image_measured_prefill": measured_rows,
              "proposer": {"kind": args.proposer, **(asdict(spec) if spec else {})}}  # fmt: skip
    if spec is not None:
        result["instrument"] = instrument_rows(result, spec, proposer)
    (out_dir / "simulation.json").write_text(json.dumps(result, indent=2, default=str))
    page = render_html(metrics, title=f"Simulated flywheel: {args.dataset}",
                       extra={"cost model (s)": asdict(costs), "rounds": [
                           {k: e[k] for k in ("round", "model_version", "images", "actions")} for e in rounds_log]})  # fmt: skip
    (out_dir / "report.html").write_text(page)
    return result


def table(result: dict[str, Any]) -> str:
    """Round-by-round table of the headline figures (value [95% CI])."""
    names = [("prefill_precision", "precision"), ("prefill_contribution", "contribution"),
             ("seconds_per_final_mask", "s/final mask"), ("final_masks_per_image", "masks/image"),
             ("seconds_per_added_mask", "s/added mask"), ("masks_per_annotator_hour", "masks/hour")]  # fmt: skip
    lines = [
        f"{'round':>5} {'arm':<8} {'model version':<20} {'imgs':>4} {'shown':>5} "
        + " ".join(f"{n:>22}" for _, n in names)
    ]
    mvs = {
        e["round"]: f"#{e['model_version']['id']} "
        + ("calibrated" if e["model_version"]["calibrated"] else "fixed thresholds")
        for e in result["rounds"]
    }
    for g in result["metrics"]["groups"]:
        cells = []
        for key, _ in names:
            v = g["figures"][key]
            cells.append(f"{'-':>22}" if v["value"] is None else
                         f"{v['value']:>7.3f} [{v['lo']:.3f},{v['hi']:.3f}]".rjust(22))  # fmt: skip
        lines.append(f"{g['round']:>5} {g['arm']:<8} {mvs.get(g['round'], '')[:20]:<20} "
                     f"{g['images_done']:>4} {g['shown']:>5} " + " ".join(cells))  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="tiny-coco",
                    help="tiny-coco (../shared/data), a COCO instances JSON (with --images-dir), "
                         "a folder with images and masks/<stem>.png, or synthetic (generated "
                         "flat-coloured scenes, see --synthetic-images)")  # fmt: skip
    ap.add_argument("--synthetic-images", type=int, default=40,
                    help="Images generated for --dataset synthetic.")  # fmt: skip
    ap.add_argument("--proposer", choices=("model", "synthetic"), default="model",
                    help="model: the backend's own proposals; synthetic: proposals built from "
                         "the ground truth with --precision/--recall/--boundary-noise/"
                         "--score-corr (engine/flywheel/synthetic.py), to check that the "
                         "metrics recover the injected values.")  # fmt: skip
    ap.add_argument("--precision", type=float, default=0.9,
                    help="Synthetic proposer: share of shown proposals that are correct.")  # fmt: skip
    ap.add_argument("--recall", type=float, default=0.7,
                    help="Synthetic proposer: share of objects with a correct proposal.")  # fmt: skip
    ap.add_argument("--boundary-noise", type=int, default=2,
                    help="Synthetic proposer: px of dilation/erosion/shift on correct proposals "
                         "(their IoU stays >= 0.86).")  # fmt: skip
    ap.add_argument("--score-corr", type=float, default=0.6,
                    help="Synthetic proposer: correlation of the latent predicted-IoU score with "
                         "the true IoU.")  # fmt: skip
    ap.add_argument("--hidden-proposals", type=int, default=2,
                    help="Synthetic proposer: wrong, less confident proposals per image (stored, "
                         "hidden, never revealed).")  # fmt: skip
    ap.add_argument("--time-jitter", type=float, default=0.0,
                    help="Log-normal sd of each simulated action's time (0: the fixed cost "
                         "model; the synthetic checks use 0.3).")  # fmt: skip
    ap.add_argument("--check-table", action="store_true",
                    help="Run the synthetic proposer at precision/recall 0.9/0.7, 0.6/0.5 and "
                         "0.3/0.2 (one round each, no control arm) and print injected vs "
                         "measured.")  # fmt: skip
    ap.add_argument("--power", action="store_true",
                    help="Report images per arm to detect --power-delta in seconds per final "
                         "mask at 80%% power (analytic, checked by simulation).")  # fmt: skip
    ap.add_argument("--power-delta", type=float, default=0.1,
                    help="Relative change in seconds per final mask to detect (0.1 = 10%%).")  # fmt: skip
    ap.add_argument("--quiet", action="store_true", help="No per-image lines.")
    ap.add_argument("--images-dir", type=Path, default=None, help="Images of a COCO JSON dataset.")
    ap.add_argument("--rounds", type=int, default=2, help="Rounds; the images are split evenly.")
    ap.add_argument("--max-images", type=int, default=None, help="Use at most this many images.")
    ap.add_argument("--backend", default="classical", help="Segmentation backend (classical|sam).")
    ap.add_argument("--control-fraction", type=float, default=0.2, help="Control-arm fraction.")
    ap.add_argument("--target-precision", type=float, default=0.9, help="Calibration target.")
    ap.add_argument("--pred-iou-thresh", type=float, default=None,
                    help="Uncalibrated confident rule: predicted IoU threshold (default: the "
                         "backend's, engine/segment/registry.py DEFAULT_RULES)")  # fmt: skip
    ap.add_argument("--stability-thresh", type=float, default=None,
                    help="Uncalibrated confident rule: stability threshold.")  # fmt: skip
    ap.add_argument(
        "--min-area", type=int, default=0, help="Ignore GT instances below this many px."
    )
    ap.add_argument("--fit-from-db", action="store_true",
                    help="Fit the time model on real (non-simulated) sessions in the database.")  # fmt: skip
    ap.add_argument("--database-url", default=None, help="Database (default: a new SQLite file).")
    ap.add_argument("--data-dir", default=None, help="Data dir (default: a new temp dir).")
    ap.add_argument("--project", default=None, help="Project name (default: sim-<dataset>-<id>).")
    ap.add_argument("--reps", type=int, default=1000, help="Bootstrap resamples.")
    ap.add_argument("--seed", type=int, default=0, help="Seed (control arm, CV, bootstrap).")
    ap.add_argument(
        "--out", default="var/simulation", help="Folder for simulation.json and report.html."
    )
    return ap


SETTINGS = ((0.9, 0.7), (0.6, 0.5), (0.3, 0.2))


def _power(result: dict[str, Any], args: argparse.Namespace) -> str:
    rows = result["per_image_measured_prefill"]
    res = power_analysis(np.asarray(rows["seconds"]), np.asarray(rows["final"]),
                         delta=args.power_delta, seed=args.seed)  # fmt: skip
    result["power"] = asdict(res)
    return format_power(res, result["proposer"].get("kind", "model") if "instrument" not in
                        result else result["instrument"]["spec"])  # fmt: skip


def check_table(args: argparse.Namespace) -> dict[str, Any]:
    """The synthetic proposer at each of ``SETTINGS``: one round, prefill arm only."""
    checks, results = [], []
    for k, (p, r) in enumerate(SETTINGS):
        sub = argparse.Namespace(**{**vars(args), "precision": p, "recall": r, "rounds": 1,
                                    "control_fraction": 0.0, "proposer": "synthetic",
                                    "out": str(Path(args.out) / f"p{p}-r{r}"),
                                    "data_dir": str(Path(args.data_dir) / f"s{k}")
                                    if args.data_dir else None,
                                    "database_url": None})  # fmt: skip
        res = run(sub)
        checks.append(res["instrument"])
        results.append(res)
    out: dict[str, Any] = {"checks": checks}
    print()
    print(format_instrument(checks))
    if args.power:
        print()
        print(_power(results[0], args))
        out["power"] = results[0]["power"]
    (Path(args.out)).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "instrument.json").write_text(json.dumps(out, indent=1, default=str))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.check_table:
        if args.dataset == "tiny-coco":
            args.dataset = "synthetic"
        return check_table(args)
    result = run(args)
    print()
    print(table(result))
    if "instrument" in result:
        print()
        print(format_instrument([result["instrument"]]))
    if args.power:
        print()
        print(_power(result, args))
    (Path(args.out) / "simulation.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {Path(args.out) / 'simulation.json'} and {Path(args.out) / 'report.html'}")
    return result


if __name__ == "__main__":
    main()
