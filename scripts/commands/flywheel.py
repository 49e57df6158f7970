"""`dataengine round start|list`, `metrics`, `calibrate`, `finetune-decoder`, `report`:
measure the flywheel per round and arm, and turn human decisions into the next model."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scripts.commands.common import (
    JsonFlag,
    console,
    domain_errors,
    fail,
    json_output,
    open_db,
    print_json,
)

if TYPE_CHECKING:
    from rich.table import Table

    from engine.settings import Settings

round_app = typer.Typer(help="Rounds: bind a project to a model version, with a control arm.",
                        no_args_is_help=True)  # fmt: skip


@round_app.command("start")
def round_start(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    model_version: int | None = typer.Option(
        None, "--model-version", help="Model version id that pre-fills this round (default: "
        "the previous round's, else none)."),
    control_fraction: float = typer.Option(
        0.2, "--control-fraction", help="Seeded fraction of images served WITHOUT pre-fill (0..1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the control-arm draw."),
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """Close the open round and start the next one."""
    from sqlalchemy import select

    from db.models import ModelVersion, Round
    from db.projects import get_project
    from db.rounds import start_round
    from db.session import transaction
    from engine.settings import Settings

    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = get_project(s, name=project)
        if model_version is None:
            prev = s.scalar(select(Round).where(Round.project_id == p.id)
                            .order_by(Round.number.desc()).limit(1))  # fmt: skip
            model_version = prev.model_version_id if prev else None
        elif s.get(ModelVersion, model_version) is None:
            fail(f"no model version {model_version} (list them with `dataengine models list`)")
        r = start_round(s, project_id=p.id, model_version_id=model_version,
                        control_fraction=control_fraction, seed=seed)  # fmt: skip
        if as_json:
            print_json({"project": p.name, "round": r.number, "model_version_id": r.model_version_id,
                        "control_fraction": r.control_fraction, "seed": seed})  # fmt: skip
            return
        console.print(f"round {r.number} of {p.name!r} started: model version "
                      f"{r.model_version_id}, control fraction {r.control_fraction} (seed {seed})")  # fmt: skip


@round_app.command("list")
def round_list(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    as_json: JsonFlag = False,
) -> None:
    """List a project's rounds."""
    from rich.table import Table
    from sqlalchemy import select

    from db.models import Round
    from db.projects import get_project
    from engine.settings import Settings

    factory = open_db(Settings())
    rows: list[dict[str, Any]] = []
    with domain_errors(), factory() as s:
        p = get_project(s, name=project)
        for r in s.scalars(select(Round).where(Round.project_id == p.id).order_by(Round.number)):
            rows.append({"round": r.number, "model_version_id": r.model_version_id,
                         "control_fraction": r.control_fraction, "seed": r.seed,
                         "started_at": r.started_at.isoformat(timespec="seconds"),
                         "ended_at": r.ended_at.isoformat(timespec="seconds") if r.ended_at else None})  # fmt: skip
    if as_json:
        print_json(rows)
        return
    table = Table("round", "model version", "control fraction", "seed", "started", "ended")
    for r in rows:
        table.add_row(str(r["round"]), str(r["model_version_id"]), f"{r['control_fraction']:.2f}",
                      str(r["seed"]), r["started_at"], r["ended_at"] or "open")  # fmt: skip
    console.print(table)


def metrics_table(m: dict[str, Any], title: str) -> Table:
    """One row per round x arm: value [95% CI] of every figure, then the effort outside the
    figures (seconds on unfinished images, imported seconds)."""
    from rich.table import Table

    from engine.flywheel.metrics import FIGURES
    from engine.flywheel.report import LABELS, round_name

    extra = ("released_s", "imported_s")
    table = Table("round", "arm", "images", *[LABELS[f] for f in (*FIGURES, *extra)], title=title)
    for g in m["groups"]:
        cells = []
        for f in FIGURES:
            v = g["figures"][f]
            cells.append("-" if v["value"] is None else
                         f"{v['value']:.3g}" + ("" if v["lo"] is None else f"\n[{v['lo']:.3g}, {v['hi']:.3g}]"))  # fmt: skip
        cells += [f"{g.get(f, 0.0):.1f}" for f in extra]
        table.add_row(round_name(g["round"]), g["arm"], str(g["images_done"]), *cells)
    return table


IDLE_HELP = ("Idle cap in seconds: recompute every figure from the raw events with this cap "
             "(default: DATAENGINE_IDLE_SECONDS; rules in docs/effort.md).")  # fmt: skip


def _metrics(
    settings: Settings, project: str, reps: int, seed: int, idle_seconds: float | None = None
) -> tuple[str, dict[str, Any]]:
    if idle_seconds is not None and not idle_seconds > 0:
        fail(f"--idle-seconds must be positive, got {idle_seconds}")
    idle_s = idle_seconds if idle_seconds is not None else settings.idle_seconds
    from db.projects import get_project
    from db.session import transaction
    from engine.flywheel.metrics_project import project_metrics

    factory = open_db(settings)
    with domain_errors(), transaction(factory) as s:  # commits the refreshed effort cache
        p = get_project(s, name=project)
        return p.name, project_metrics(s, project_id=p.id, idle_s=idle_s, reps=reps, seed=seed)


def metrics(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    as_json: JsonFlag = False,
    reps: int = typer.Option(1000, "--reps", help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    idle_seconds: float | None = typer.Option(None, "--idle-seconds", help=IDLE_HELP),
) -> None:
    """Flywheel figures per round and arm with bootstrap 95% intervals (docs/effort.md)."""
    from engine.settings import Settings

    name, m = _metrics(Settings(), project, reps, seed, idle_seconds)
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        return
    console.print(metrics_table(m, f"flywheel metrics: {name} (idle cap {m['idle_s']} s)"))
    for note in m["notes"]:
        console.print(f"[yellow]note:[/] {note}")


def calibrate(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    target_precision: float = typer.Option(0.9, "--target-precision",
                                           help="Precision the threshold must reach."),
    model_version: int | None = typer.Option(
        None, "--model-version", help="Version whose proposals were judged (default: the "
        "current round's)."),
    seed: int = typer.Option(0, "--seed", help="Cross-validation seed."),
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """Fit P(accept | proposal features) on human decisions; register a calibrated version."""
    from db.projects import get_project
    from db.session import transaction
    from engine.flywheel.calibration_project import calibrate_project
    from engine.settings import Settings

    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = get_project(s, name=project)
        child = calibrate_project(s, project_id=p.id, model_version_id=model_version,
                                  target_precision=target_precision, seed=seed)  # fmt: skip
        cal = child.calibration or {}
        registered = {
            "model_version_id": child.id,
            "name": child.name,
            "parent_id": child.parent_id,
        }
    if as_json:
        print_json({**registered, "calibration": cal})
        return
    how = "target met" if cal["target_met"] else f"target NOT met, rule {cal.get('fallback_rule')}"
    if cal.get("fallback_rule") == "contribution":
        how += f" (keeps the parent's {cal['base_kept']:.1f} kept proposals)"
    elif not cal["target_met"] and cal.get("gain_s") is not None:
        how += f" ({cal['gain_s']:.1f} s saved per accept, {cal['reject_s']:.1f} s per reject)"
    console.print(
        f"model version {child.id} ({child.name}) registered, parent {child.parent_id}: "
        f"n={cal['n']} ({cal['n_positive']} accepted, {cal.get('n_kept')} kept, "
        f"{cal.get('n_shown')} shown; ranked on {cal.get('ranked_on', 'accepted')}), "
        f"threshold {cal['threshold']:.3f}, fitted precision "
        f"{'-' if cal['fitted_precision'] is None else format(cal['fitted_precision'], '.3f')}, "
        f"recall {cal['fitted_recall']:.3f}, {how}.\n"
        f"Use it: dataengine round start --project {project} --model-version {child.id}"
    )


def finetune_decoder(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    model_version: int | None = typer.Option(
        None, "--model-version", help="SAM model version to start from (default: current round's)."),
    steps: int = typer.Option(200, "--steps", help="Optimiser steps."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate."),
    holdout: float = typer.Option(0.2, "--holdout", help="Fraction of images held out for NoC/mIoU."),
    max_images: int | None = typer.Option(None, "--max-images", help="Use at most this many images."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split and prompt sampling."),
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """Flywheel step 2: train SAM's mask decoder on final masks; promote only if held-out NoC/mIoU@1 improve."""
    from db.projects import get_project
    from engine.flywheel.finetune_decoder import FinetuneConfig, finetune_project
    from engine.settings import Settings

    settings = Settings()
    factory = open_db(settings)
    with domain_errors(), json_output(as_json):
        with factory() as s:
            p = get_project(s, name=project)
            project_id = p.id
        cfg = FinetuneConfig(steps=steps, lr=lr, holdout=holdout, max_images=max_images, seed=seed)
        result = finetune_project(factory, project_id=project_id, model_version_id=model_version,
                                  models_dir=settings.data_dir / "models", config=cfg, cache_dir=settings.cache_dir,
                                  device=settings.device, progress=console.print)  # fmt: skip
    if as_json:
        print_json(result)
    else:
        console.print_json(json.dumps(result))


def report(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    reps: int = typer.Option(1000, "--reps", help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    idle_seconds: float | None = typer.Option(None, "--idle-seconds", help=IDLE_HELP),
    as_json: JsonFlag = False,
) -> None:
    """Write a self-contained HTML report (PNG plots inlined) of the flywheel metrics."""
    from engine.flywheel.report import render_html
    from engine.settings import Settings

    name, m = _metrics(Settings(), project, reps, seed, idle_seconds)
    write_atomic(out, render_html(m, title=f"Data Engine flywheel report: {name}"))
    if as_json:
        print_json({"project": name, "out": str(out), "bytes": out.stat().st_size})
        return
    console.print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file beside ``path``, then rename (never a partial report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.add_typer(round_app, name="round")
    app.command("metrics")(metrics)
    app.command("calibrate")(calibrate)
    app.command("finetune-decoder")(finetune_decoder)
    app.command("report")(report)
