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
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
from engine.flywheel.clicker import next_click
from engine.flywheel.effort import derive_effort
from engine.flywheel.metrics_project import per_image_table, project_metrics
from engine.flywheel.power import power_analysis
from engine.flywheel.confident_rule import ConfidentRule
from engine.flywheel.prefill import prefill_project
from engine.flywheel.prefill_model import ensure_model_version
from engine.flywheel.report import render_html
from engine.flywheel.synthetic import ProposalSpec, SyntheticProposer
from engine.imageio import load_rgb, open_image
from engine.ingest import ingest
from engine.interop.importers.coco import segmentation_to_mask
from engine.masks import decode_rle, encode_rle, mask_iou
from engine.segment.registry import image_key
from engine.settings import Settings
from scripts.sim_instrument import format_instrument, format_power, instrument_rows, write_scenes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SIM_PREFIX = "sim-"


@dataclass
class Costs:
    """Seconds per simulated action (see the module docstring for sources)."""

    open: float = 2.0
    accept: float = 1.5
    reject: float = 1.0
    click: float = 2.5
    fix_start: float = 1.0
    commit: float = 1.0
    label: float = 1.5
    submit: float = 1.0


@dataclass
class Policy:
    accept_iou: float = 0.85
    fix_iou: float = 0.5
    target_iou: float = 0.85
    max_clicks: int = 20
    min_area: int = 0


# --- ground truth -------------------------------------------------------------------------


@dataclass
class Instance:
    mask: np.ndarray  # HW bool
    label: str
    ignore: np.ndarray | None = None


def load_coco(ann_files: list[Path], image_dirs: list[Path]) -> dict[Path, list[Instance]]:
    """COCO instances JSON(s) -> {image path: non-crowd instances}."""
    out: dict[Path, list[Instance]] = {}
    for ann_file, img_dir in zip(ann_files, image_dirs, strict=True):
        data = json.loads(ann_file.read_text())
        cats = {c["id"]: c["name"] for c in data.get("categories", [])}
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a in data["annotations"]:
            if not a.get("iscrowd"):
                by_image[a["image_id"]].append(a)
        for im in data["images"]:
            path = img_dir / im["file_name"]
            if not path.exists():
                continue
            h, w = im["height"], im["width"]
            insts = []
            for a in by_image.get(im["id"], []):
                try:
                    m = segmentation_to_mask(a["segmentation"], h, w)
                except ValueError as err:  # a malformed instance never stops the dataset
                    print(f"  skipped annotation {a.get('id')} of {path.name}: {err}")
                    continue
                insts.append(Instance(m, cats.get(a["category_id"], "object")))
            out[path] = insts
    return out


def load_mask_folder(folder: Path) -> dict[Path, list[Instance]]:
    """``folder/<images>`` + ``folder/masks/<stem>.png|bmp``: 0 background, 128 ignore (GrabCut),
    other values are instance ids (a binary 255 mask is one instance)."""
    masks = {
        p.stem: p for p in (folder / "masks").iterdir() if p.suffix.lower() in (".png", ".bmp")
    }
    out: dict[Path, list[Instance]] = {}
    for img in sorted(folder.rglob("*")):
        if img.parent.name == "masks" or img.suffix.lower() not in (
            ".jpg",
            ".jpeg",
            ".png",
            ".bmp",
        ):
            continue
        mp = masks.get(img.stem)
        if mp is None:
            continue
        with open_image(mp) as mask_img:
            arr = np.asarray(mask_img.convert("L"))
        ignore = arr == 128
        insts = [Instance(arr == v, "object", ignore if ignore.any() else None)
                 for v in np.unique(arr) if v not in (0, 128)]  # fmt: skip
        out[img] = insts
    return out


def load_dataset(spec: str, images_dir: Path | None) -> dict[Path, list[Instance]]:
    if spec == "tiny-coco":
        root = SHARED / "tiny-coco"
        if not root.is_dir():
            sys.exit(f"tiny-coco not found at {root} (the shared test data)")
        splits = ["train2017", "val2017"]
        return load_coco([root / "annotations" / f"instances_{s}.json" for s in splits],
                         [root / s for s in splits])  # fmt: skip
    path = Path(spec)
    if path.is_file() and path.suffix == ".json":
        if images_dir is None:
            sys.exit("--images-dir is required with a COCO JSON dataset")
        return load_coco([path], [images_dir])
    if path.is_dir() and (path / "masks").is_dir():
        return load_mask_folder(path)
    sys.exit(f"--dataset must be tiny-coco, a COCO instances JSON, or a folder with masks/: {spec}")


# --- the annotator ------------------------------------------------------------------------


class Annotator:
    """One simulated person working through the queue over HTTP."""

    def __init__(self, client: Any, token: str, costs: Costs, policy: Policy,
                 jitter: float = 0.0, seed: int = 0) -> None:  # fmt: skip
        self.c, self.costs, self.policy = client, costs, policy
        self.jitter, self.rng = jitter, np.random.default_rng([seed, 7])
        self.expected_ms = 0.0
        self.h = {"Authorization": f"Bearer {token}"}
        self.session_id = f"{SIM_PREFIX}{uuid.uuid4().hex[:16]}"
        self.t_ms, self.seq = 0.0, 0
        self.buffer: list[dict[str, Any]] = []
        self.decodes = 0

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        r = self.c.request(method, url, headers=self.h, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {url} -> {r.status_code}: {r.text[:300]}")
        return r.json()

    def event(self, kind: str, cost: float, image_id: int, lease_id: int,
              mask_id: int | None = None, **payload: Any) -> None:  # fmt: skip
        self.expected_ms += cost * 1000.0  # the cost model's mean, before the noise
        if self.jitter and cost:  # mean-preserving log-normal noise on each action's time
            cost *= float(self.rng.lognormal(-(self.jitter**2) / 2, self.jitter))
        self.t_ms += cost * 1000.0
        self.seq += 1
        self.buffer.append({
            "uuid": str(uuid.uuid4()), "session_id": self.session_id, "seq": self.seq,
            "kind": kind, "client_time": self.t_ms, "visible": True, "image_id": image_id,
            "mask_id": mask_id, "lease_id": lease_id, "payload": payload,
        })  # fmt: skip

    def flush(self) -> None:
        if self.buffer:
            out = self._call("POST", "/api/events", json={"events": self.buffer})
            if out.get("rejected"):
                raise RuntimeError(f"events rejected: {out['rejected']}")
            self.buffer = []

    def _clicks(self, image_id: int, inst: Instance, start: np.ndarray, prior_id: int | None,
                ev: Callable[..., None], target: str) -> tuple[np.ndarray, int]:  # fmt: skip
        """RITM clicks through the decode endpoint; returns (best mask, clicks)."""
        pred, best, best_iou = start, start, mask_iou(start, inst.mask, inst.ignore)
        points: list[list[float]] = []
        labels: list[int] = []
        not_clicked = np.ones_like(inst.mask)
        input_id: str | None = None
        n = 0
        while n < self.policy.max_clicks and best_iou < self.policy.target_iou:
            x, y, positive = next_click(inst.mask, pred, inst.ignore, not_clicked)
            not_clicked[int(y), int(x)] = False
            points.append([x, y])
            labels.append(1 if positive else 0)
            n += 1
            extra = self.costs.open / 2 if (n == 1 and target == "new") else 0.0
            ev(
                ek.PROMPT_CLICK,
                self.costs.click + extra,
                x=x,
                y=y,
                positive=positive,
                target=target,
            )
            body: dict[str, Any] = {"points": points, "labels": labels}
            if input_id:
                body["mask_input_id"] = input_id
            elif prior_id is not None:
                body["mask_id"] = prior_id
            out = self._call("POST", f"/api/images/{image_id}/decode", json=body)
            self.decodes += 1
            input_id = out.get("mask_input_id")
            pred = decode_rle(out["rle"])
            iou = mask_iou(pred, inst.mask, inst.ignore)
            if iou > best_iou:
                best, best_iou = pred, iou
        return best, n

    def do_image(self, task: dict[str, Any], gt: list[Instance]) -> dict[str, int]:
        lease_id, image_id = task["lease_id"], task["image"]["id"]
        c, p = self.costs, self.policy
        stats = defaultdict(int)

        def ev(kind: str, cost: float, mask_id: int | None = None, **payload: Any) -> None:
            self.event(kind, cost, image_id, lease_id, mask_id, **payload)

        ev(ek.IMAGE_OPEN, 0.0, arm=task["arm"])
        t_open, e_open = self.t_ms, self.expected_ms
        masks = self._call("GET", f"/api/images/{image_id}/masks")["masks"]
        shown = [m for m in masks if m["status"] == "proposed"]
        gt = [g for g in gt if g.mask.sum() >= max(p.min_area, 1)]
        unmatched = list(range(len(gt)))
        first = True
        for m in sorted(shown, key=lambda m: -m["area"]):
            pm = decode_rle(m["rle"])
            ious = [(mask_iou(pm, gt[i].mask, gt[i].ignore), i) for i in unmatched]
            best_iou, gi = max(ious) if ious else (0.0, -1)
            look = c.open if first else 0.0
            first = False
            body = {"version": m["version"], "lease_id": lease_id}
            if best_iou >= p.accept_iou:
                self._call("POST", f"/api/masks/{m['id']}/accept", json=body)
                ev(ek.MASK_ACCEPT, c.accept + look, m["id"])
                unmatched.remove(gi)
                stats["accepted"] += 1
            elif best_iou >= p.fix_iou:
                ev(ek.FIX_START, c.fix_start + look, m["id"])
                fixed, n = self._clicks(image_id, gt[gi], pm, m["id"],
                                        lambda k, s, **kw: ev(k, s, **kw), "fix")  # fmt: skip
                new = self._call("POST", f"/api/masks/{m['id']}/fix",
                                 json={**body, "rle": encode_rle(fixed), "label": gt[gi].label})  # fmt: skip
                ev(
                    ek.OBJECT_COMMIT,
                    c.commit,
                    new["id"],
                    parent_id=m["id"],
                    label=gt[gi].label,
                    clicks=n,
                )
                unmatched.remove(gi)
                stats["fixed"] += 1
                stats["fix_clicks"] += n
            else:
                self._call("POST", f"/api/masks/{m['id']}/reject", json=body)
                ev(ek.MASK_REJECT, c.reject + look, m["id"])
                stats["rejected"] += 1
        for gi in sorted(unmatched, key=lambda i: -int(gt[i].mask.sum())):
            inst = gt[gi]
            empty = np.zeros_like(inst.mask)
            drawn, n = self._clicks(image_id, inst, empty, None,
                                    lambda k, s, **kw: ev(k, s, **kw), "new")  # fmt: skip
            if not drawn.any():
                ev(ek.OBJECT_CANCEL, c.commit)
                stats["gave_up"] += 1
                continue
            ev(ek.LABEL_SET, c.label, label=inst.label)
            new = self._call("POST", f"/api/images/{image_id}/masks",
                             json={"rle": encode_rle(drawn), "label": inst.label, "lease_id": lease_id})  # fmt: skip
            ev(ek.OBJECT_COMMIT, c.commit, new["id"], parent_id=None, label=inst.label, clicks=n)
            stats["added"] += 1
            stats["add_clicks"] += n
        ev(ek.SUBMIT, c.submit)
        stats["ledger_ms"] = self.t_ms - t_open  # the simulated person's own clock
        stats["expected_ms"] = self.expected_ms - e_open  # its cost model's mean
        stats["prefill_arm"] = int(task["arm"] == "prefill")
        self.flush()
        self._call("POST", f"/api/tasks/{lease_id}/submit", json={"ops": []})
        self.t_ms += 5000.0  # next image loads; gaps ending at image_open never count
        return dict(stats)

    def work(self, project_id: int, gt_by_id: dict[int, list[Instance]],
             on_image: Callable[[int, dict[str, int]], None] | None = None) -> int:  # fmt: skip
        done = 0
        self.event(ek.SESSION_START, 0.0, None, None)  # type: ignore[arg-type]
        while True:
            r = self.c.post("/api/tasks/next", json={"project_id": project_id}, headers=self.h)
            if r.status_code == 404:
                break
            if r.status_code >= 400:
                raise RuntimeError(f"tasks/next -> {r.status_code}: {r.text[:300]}")
            task = r.json()
            stats = self.do_image(task, gt_by_id.get(task["image"]["id"], []))
            done += 1
            if on_image:
                on_image(task["image"]["id"], stats)
        self.flush()
        return done


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
