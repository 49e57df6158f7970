"""`dataengine prefill`: model proposals for a project, with a progress bar and a summary
table; with ``--ray`` it runs as a Ray Data pipeline on a cluster
(``engine.flywheel.prefill_ray``, the ``ray`` extra; options in ``ray_options``).
``configured_segmenter`` is shared with `embed` and `worker`."""

from __future__ import annotations

from dataclasses import asdict
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
    progress,
)
from scripts.commands.ray_options import (
    RayActors,
    RayAddress,
    RayBatchSize,
    RayFlag,
    RayGpusPerActor,
    RayRun,
    actor_checkpoint,
    actor_device,
    ray_run,
    ray_session,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from db.models import ModelVersion
    from engine.flywheel.confident_rule import ConfidentRule
    from engine.flywheel.prefill import PrefillSummary
    from engine.settings import Settings


def configured_segmenter(
    settings: Settings,
    *,
    backend: str | None,
    model_type: str | None,
    checkpoint: Path | None,
    sha256: str | None,
    device: str | None,
    model_version: ModelVersion | None = None,
) -> Any:
    """Build the segmenter from options, else the model version's record, else settings."""
    from engine.segment.registry import BackendError, segmenter_from_settings

    if backend is None and model_version is not None:
        backend = model_version.backend
        model_type = model_type or model_version.model_type
        if checkpoint is None and model_version.checkpoint_path:
            checkpoint = Path(model_version.checkpoint_path)
        sha256 = sha256 or model_version.checkpoint_sha256
    try:
        return segmenter_from_settings(
            settings,
            backend=backend,
            model_type=model_type,
            checkpoint=checkpoint,
            sha256=sha256,
            device=device,
        )
    except BackendError as err:
        fail(str(err))
        raise  # unreachable: fail() exits


def summary_json(summary: PrefillSummary) -> dict[str, Any]:
    """The ``--json`` document of a pre-fill run (failures as {image_id, reason})."""
    data = asdict(summary)
    data["failures"] = [{"image_id": i, "reason": r} for i, r in summary.failures]
    data["seconds_per_image"] = summary.seconds_per_image
    return data


def print_summary(summary: PrefillSummary) -> None:
    from rich.table import Table

    table = Table("", "count", title=f"pre-fill summary (model version {summary.model_version_id})")
    table.add_row("images pre-filled now", str(summary.done))
    table.add_row("images skipped (already pre-filled)", str(summary.skipped))
    if summary.claimed_elsewhere:
        table.add_row("images left to other workers (live claims)", str(summary.claimed_elsewhere))
    table.add_row("images failed", str(summary.failed))
    table.add_row("proposals stored", str(summary.proposals))
    table.add_row("confident (pre-filled for review)", str(summary.confident))
    spi = summary.seconds_per_image
    table.add_row("seconds per image", f"{spi:.2f}" if spi is not None else "-")
    console.print(table)
    for image_id, reason in summary.failures[:20]:
        console.print(f"  [red]failed[/] image {image_id}: {reason}")
    if len(summary.failures) > 20:
        console.print(f"  ... and {len(summary.failures) - 20} more failures")


def run_prefill(
    settings: Settings,
    project: str,
    *,
    backend: str | None = None,
    model_type: str | None = None,
    checkpoint: Path | None = None,
    sha256: str | None = None,
    device: str | None = None,
    model_version_id: int | None = None,
    limit: int | None = None,
    rule: ConfidentRule | None = None,
    retry_failed: bool = False,
    cache_embeddings: bool | None = None,
    ray: RayRun | None = None,
) -> PrefillSummary:
    """Resolve project/model version, load the segmenter once, pre-fill with a progress bar
    (in this process, or on Ray with ``ray``)."""
    factory = open_db(settings)
    try:
        return _run_prefill(
            factory,
            settings,
            project,
            backend=backend,
            model_type=model_type,
            checkpoint=checkpoint,
            sha256=sha256,
            device=device,
            model_version_id=model_version_id,
            limit=limit,
            rule=rule,
            retry_failed=retry_failed,
            cache_embeddings=settings.prefill_cache_embeddings
            if cache_embeddings is None
            else cache_embeddings,
            ray=ray,
        )
    finally:
        factory.kw["bind"].dispose()  # close pooled connections (the CLI may run in-process)


def _run_prefill(
    factory: sessionmaker[Session],
    settings: Settings,
    project: str,
    *,
    backend: str | None,
    model_type: str | None,
    checkpoint: Path | None,
    sha256: str | None,
    device: str | None,
    model_version_id: int | None,
    limit: int | None,
    rule: ConfidentRule | None,
    retry_failed: bool,
    cache_embeddings: bool,
    ray: RayRun | None = None,
) -> PrefillSummary:
    from db.models import ModelVersion
    from db.projects import get_project
    from db.rounds import current_round, ensure_first_round
    from db.session import transaction
    from engine.flywheel.prefill import Claims, prefill_project
    from engine.flywheel.prefill_model import ensure_model_version

    with domain_errors():
        with transaction(factory) as s:
            project_id = get_project(s, name=project).id
            mv = None
            if model_version_id is not None:
                mv = s.get(ModelVersion, model_version_id)
                if mv is None:
                    fail(f"no model version {model_version_id} (`dataengine models list`)")
            elif backend is None:
                rnd = current_round(s, project_id=project_id)
                if rnd is not None and rnd.model_version_id is not None:
                    mv = s.get(ModelVersion, rnd.model_version_id)
        segmenter = configured_segmenter(
            settings,
            backend=backend,
            model_type=model_type,
            checkpoint=checkpoint,
            sha256=sha256,
            device="cpu" if ray is not None else device,  # on Ray the actors hold the model
            model_version=mv,
        )
        if mv is None:  # explicit --backend, or no round model version: find or record one
            with transaction(factory) as s:
                mv = ensure_model_version(
                    s,
                    segmenter=segmenter,
                    checkpoint_path=checkpoint or settings.sam_checkpoint
                    if segmenter.name == "sam"
                    else None,
                    checkpoint_sha256=sha256 or settings.sam_checkpoint_sha256
                    if segmenter.name == "sam"
                    else None,
                )
        with transaction(factory) as s:
            first = ensure_first_round(s, project_id=project_id, model_version_id=mv.id)
            if first is not None:
                console.print(
                    f"round {first.number} opened (model version {mv.id}, no control arm); "
                    f"start the next with `dataengine round start --project {project}`"
                )
        console.print(
            f"backend [bold]{segmenter.name}[/] ({segmenter.model_key}), model version {mv.id}"
        )
        with progress() as bar:
            task = bar.add_task("pre-fill", total=None, status="")

            def on_total(n: int) -> None:
                bar.update(task, total=n)

            def on_image(image_id: int, outcome: str, info: dict[str, Any]) -> None:
                detail = (
                    f"{info['proposals']} proposals, {info['confident']} confident"
                    if outcome == "done"
                    else outcome
                )
                bar.update(task, advance=1, status=f"image {image_id}: {detail}")

            if ray is not None:
                from engine.flywheel.prefill_ray import prefill_project_ray
                from engine.flywheel.ray_cluster import builder

                if limit is not None:
                    fail("--limit is not supported with --ray")
                build = builder(
                    backend=segmenter.name,
                    model_type=getattr(segmenter, "model_type", None) or settings.sam_model,
                    checkpoint=actor_checkpoint(segmenter, checkpoint, settings),
                    sha256=sha256 or getattr(segmenter, "checkpoint_sha256", None),
                    device=actor_device(ray, device, settings),
                )
                del segmenter  # the driver's copy; each actor builds its own
                with ray_session(ray):
                    return prefill_project_ray(
                        settings.resolved_database_url,
                        project_id=project_id,
                        model_version_id=mv.id,
                        build=build,
                        options=ray.options,
                        rule=rule,
                        retry_failed=retry_failed,
                        on_total=on_total,
                        on_image=on_image,
                        max_pixels=settings.max_image_pixels,
                    )
            summary = prefill_project(
                factory,
                project_id=project_id,
                segmenter=segmenter,
                model_version_id=mv.id,
                rule=rule,
                limit=limit,
                retry_failed=retry_failed,
                on_total=on_total,
                on_image=on_image,
                max_pixels=settings.max_image_pixels,
                claims=Claims(seconds=settings.claim_seconds, batch=settings.claim_batch),
                cache_embeddings=cache_embeddings,
            )
    return summary


def prefill_configured(settings: Settings, project: str) -> None:
    """Pre-fill ``project`` with the configured backend and default rule (used by `up`)."""
    print_summary(run_prefill(settings, project))


def prefill_command(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    backend: str | None = typer.Option(
        None,
        "--backend",
        "-b",
        help="classical | sam (default: the current round's model version, else "
        "DATAENGINE_BACKEND).",
    ),
    model: str | None = typer.Option(
        None, "--model", help="SAM model type: vit_t, vit_b, vit_l, vit_h (default: settings)."
    ),
    checkpoint: Path | None = typer.Option(
        None, help="SAM checkpoint .pth (default: DATAENGINE_SAM_CHECKPOINT)."
    ),
    sha256: str | None = typer.Option(None, help="Expected sha256 of the checkpoint."),
    device: str | None = typer.Option(None, help="torch device for sam (default: settings)."),
    model_version: int | None = typer.Option(
        None, "--model-version", help="Pre-fill as this model version id (uses its calibration)."
    ),
    limit: int | None = typer.Option(None, help="Process at most this many images."),
    pred_iou: float | None = typer.Option(
        None,
        help="Confident: predicted IoU at least this (default: the backend's, 0.88 for sam, "
        "see engine/segment/registry.py DEFAULT_RULES for classical).",
    ),
    stability: float | None = typer.Option(
        None, help="Confident: stability score at least this (default: the backend's)."
    ),
    nms: float | None = typer.Option(
        None, help="Box NMS IoU threshold among confident proposals (default 0.7)."
    ),
    max_area_frac: float | None = typer.Option(
        None, help="Not confident when covering at least this fraction of the image (0.95)."
    ),
    min_area: int | None = typer.Option(None, help="Not confident below this many pixels (100)."),
    retry_failed: bool = typer.Option(False, help="Retry images whose pre-fill failed before."),
    cache_embeddings: bool | None = typer.Option(
        None,
        "--cache-embeddings/--no-cache-embeddings",
        help="Write each embedding to the cache (default: DATAENGINE_PREFILL_CACHE_EMBEDDINGS, "
        "off).",
    ),
    use_ray: RayFlag = False,
    address: RayAddress = None,
    actors: RayActors = 1,
    gpus_per_actor: RayGpusPerActor = 0.0,
    batch_size: RayBatchSize = 4,
    as_json: JsonFlag = False,
) -> None:
    """Store every automatic proposal as a mask and mark the confident ones.

    Resumable and idempotent per (image, model version): rerun after an interruption and only the remaining images are processed. Unreadable images are recorded as failed and never stop the batch. Images are claimed a few at a time (DATAENGINE_CLAIM_BATCH), so several `prefill`/`worker` processes share a project; a killed run's claims expire after DATAENGINE_CLAIM_SECONDS. --ray runs the same on a Ray cluster (docs/prefill.md).
    """
    from engine.flywheel.confident_rule import ConfidentRule
    from engine.settings import Settings

    settings = Settings()
    ray = ray_run(
        use_ray,
        settings,
        address=address,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        batch_size=batch_size,
    )
    with domain_errors():
        overrides = {
            "pred_iou_thresh": pred_iou,
            "stability_thresh": stability,
            "nms_thresh": nms,
            "max_area_frac": max_area_frac,
            "min_area": min_area,
        }
        rule = None  # the segmenter's own default (ConfidentRule.for_backend)
        if any(v is not None for v in overrides.values()):
            rule = ConfidentRule.for_backend(backend or settings.backend, **overrides)
    with json_output(as_json):
        summary = run_prefill(
            settings,
            project,
            backend=backend,
            model_type=model,
            checkpoint=checkpoint,
            sha256=sha256,
            device=device,
            model_version_id=model_version,
            limit=limit,
            rule=rule,
            retry_failed=retry_failed,
            cache_embeddings=cache_embeddings,
            ray=ray,
        )
    if as_json:
        print_json(summary_json(summary))
        return
    print_summary(summary)
    if summary.failed:
        console.print("rerun with --retry-failed after fixing the files to process them again")


def register(app: typer.Typer) -> None:
    """Add `prefill` to the CLI."""
    app.command("prefill")(prefill_command)
