"""`dataengine prefill` (model proposals for a project) and `dataengine embed` (warm the
embedding cache), both with a progress bar and a summary table; with ``--ray`` both run as
a Ray Data pipeline on a cluster (``engine.flywheel.prefill_ray``, the ``ray`` extra)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session, sessionmaker

    from db.models import ModelVersion
    from engine.flywheel.confident_rule import ConfidentRule
    from engine.flywheel.prefill import PrefillSummary
    from engine.flywheel.prefill_ray import RayOptions
    from engine.settings import Settings


# The --ray options of `prefill` and `embed` (defaults: False, None, 1, 0.0, 4).
RayFlag = Annotated[
    bool, typer.Option("--ray", help="Run on a Ray cluster (Ray Data; needs the `ray` extra).")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: DATAENGINE_RAY_ADDRESS, "
        "else a local cluster on this machine).",
    ),
]
RayActors = Annotated[
    int, typer.Option("--actors", help="With --ray: model actors (one model each).")
]
RayGpusPerActor = Annotated[
    float,
    typer.Option(
        "--gpus-per-actor", help="With --ray: GPUs each actor reserves (0: CPU; 0.5 shares)."
    ),
]
RayBatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size", help="With --ray: images per model call (the SAM encoder's batch)."
    ),
]


@dataclass(frozen=True)
class RayRun:
    """``--ray`` and its options: where the cluster is and how the pipeline uses it."""

    address: str | None
    options: RayOptions


def ray_run(
    use_ray: bool,
    settings: Settings,
    *,
    address: str | None,
    actors: int,
    gpus_per_actor: float,
    batch_size: int,
) -> RayRun | None:
    """The ``RayRun`` of the command line (None without ``--ray``); bad values exit 1."""
    if not use_ray:
        if address is not None:
            fail("--address needs --ray")
        return None
    from engine.flywheel.prefill_ray import RayOptions

    with domain_errors():
        opts = RayOptions(actors=actors, gpus_per_actor=gpus_per_actor, batch_size=batch_size)
    return RayRun(address=address or settings.ray_address or None, options=opts)


@contextmanager
def ray_session(run: RayRun) -> Iterator[None]:
    """Connect to the cluster (or start a local one, shut down at the end); Ray's failures
    exit 1 with the fix. A connection the process already has is used as it is."""
    from engine.flywheel.ray_cluster import RayUnavailable, connect, import_ray

    try:
        started = not import_ray().is_initialized()
        ray = connect(run.address)
    except RayUnavailable as err:
        fail(str(err))
    except (ConnectionError, RuntimeError, ValueError) as err:
        fail(f"cannot reach the Ray cluster at {run.address or 'local'}: {err}")
    try:
        yield
    except ray.exceptions.RayError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        fail(
            f"the Ray run stopped ({type(err).__name__}: {first}); every image written so far "
            "is kept: run the same command again to do the rest"
        )
    finally:
        if started:
            ray.shutdown()  # disconnect; a local cluster this command started stops with it


def _actor_device(run: RayRun, device: str | None, settings: Settings) -> str:
    """The torch device inside a model actor: its GPU when it reserves one (Ray sets
    CUDA_VISIBLE_DEVICES per actor), else the option / setting."""
    if run.options.gpus_per_actor > 0:
        return "cuda"
    return device or settings.device


def _actor_checkpoint(segmenter: Any, checkpoint: Path | None, settings: Settings) -> str | None:
    if segmenter.name != "sam":
        return None
    path = checkpoint or settings.sam_checkpoint
    return str(Path(path).resolve()) if path else None


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
                    checkpoint=_actor_checkpoint(segmenter, checkpoint, settings),
                    sha256=sha256 or getattr(segmenter, "checkpoint_sha256", None),
                    device=_actor_device(ray, device, settings),
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


def embed_command(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    backend: str | None = typer.Option(
        None, "--backend", "-b", help="classical | sam (default: settings)."
    ),
    model: str | None = typer.Option(None, "--model", help="SAM model type (default: settings)."),
    checkpoint: Path | None = typer.Option(None, help="SAM checkpoint .pth (default: settings)."),
    sha256: str | None = typer.Option(None, help="Expected sha256 of the checkpoint."),
    device: str | None = typer.Option(None, help="torch device for sam (default: settings)."),
    limit: int | None = typer.Option(None, help="Embed at most this many images."),
    use_ray: RayFlag = False,
    address: RayAddress = None,
    actors: RayActors = 1,
    gpus_per_actor: RayGpusPerActor = 0.0,
    batch_size: RayBatchSize = 4,
    as_json: JsonFlag = False,
) -> None:
    """Precompute the embeddings of a project's images into the cache
    (DATAENGINE_EMBEDDING_CACHE_URL, default <DATAENGINE_DATA_DIR>/cache).

    Walks the project by keyset pages (memory: one page of rows, not the project).
    --ray embeds on a Ray cluster (batched encoder); every node must see the same cache.
    """
    from db.models import Image
    from db.pages import count_images
    from db.projects import get_project
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
    if ray is not None:
        _embed_on_ray(
            settings,
            project,
            ray,
            backend=backend,
            model_type=model,
            checkpoint=checkpoint,
            sha256=sha256,
            device=device,
            limit=limit,
            as_json=as_json,
        )
        return
    factory = open_db(settings)
    try:
        with domain_errors(), factory() as s:
            project_id = get_project(s, name=project).id
            total = count_images(s, project_id=project_id, where=[Image.sha256.is_not(None)])
        _embed_all(factory, settings, project_id, total, limit, as_json, backend=backend,
                   model=model, checkpoint=checkpoint, sha256=sha256, device=device)  # fmt: skip
    finally:
        factory.kw["bind"].dispose()


def _embed_all(
    factory: sessionmaker[Session],
    settings: Settings,
    project_id: int,
    total: int,
    limit: int | None,
    as_json: bool,
    **model: Any,
) -> None:
    """``embed``'s walk: keyset pages of (id, uri, sha256), one image at a time."""

    from db.models import Image
    from db.pages import image_pages
    from engine.imageio import load_rgb

    budget = total if limit is None else min(total, max(limit, 0))
    seg = configured_segmenter(
        settings,
        backend=model["backend"],
        model_type=model["model"],
        checkpoint=model["checkpoint"],
        sha256=model["sha256"],
        device=model["device"],
    )
    counts = {"embedded": 0, "cached": 0, "failed": 0}
    pages = image_pages(factory, project_id=project_id, where=[Image.sha256.is_not(None)])
    with json_output(as_json), progress() as bar:
        task = bar.add_task("embed", total=budget, status="")
        seen = 0
        for page in pages:
            for image_id, uri, sha in page[: budget - seen]:
                if seg.is_cached(sha):
                    counts["cached"] += 1
                else:
                    try:
                        seg.embed_cached(
                            sha, lambda u=uri: load_rgb(u, max_pixels=settings.max_image_pixels)
                        )
                        counts["embedded"] += 1
                    except (OSError, ValueError) as err:
                        counts["failed"] += 1
                        console.print(f"  [red]failed[/] image {image_id}: {err}")
                bar.update(task, advance=1, status=f"image {image_id}")
            seen += len(page)
            if seen >= budget:
                break
    if as_json:
        print_json({"model_key": seg.model_key, **counts})
        return
    _print_embed_counts(seg.model_key, counts)


def _print_embed_counts(model_key: str, counts: dict[str, int]) -> None:
    from rich.table import Table

    table = Table("", "images", title=f"embedding cache ({model_key})")
    for k, v in counts.items():
        table.add_row(k, str(v))
    console.print(table)


def _embed_on_ray(
    settings: Settings,
    project: str,
    ray: RayRun,
    *,
    backend: str | None,
    model_type: str | None,
    checkpoint: Path | None,
    sha256: str | None,
    device: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """`dataengine embed --ray`: the cache is written by the actors, the bar from the stream."""
    from db.projects import get_project
    from engine.flywheel.prefill_ray import embed_project_ray
    from engine.flywheel.ray_cluster import builder

    if limit is not None:
        fail("--limit is not supported with --ray")
    factory = open_db(settings)
    try:
        with domain_errors(), factory() as s:
            project_id = get_project(s, name=project).id
    finally:
        factory.kw["bind"].dispose()
    seg = configured_segmenter(
        settings,
        backend=backend,
        model_type=model_type,
        checkpoint=checkpoint,
        sha256=sha256,
        device="cpu",
    )
    cache_dir = settings.embedding_cache_location  # a folder or an fsspec URL every node sees
    build = builder(
        backend=seg.name,
        model_type=getattr(seg, "model_type", None) or settings.sam_model,
        checkpoint=_actor_checkpoint(seg, checkpoint, settings),
        sha256=sha256 or getattr(seg, "checkpoint_sha256", None),
        device=_actor_device(ray, device, settings),
        cache_dir=cache_dir,
    )
    model_key = seg.model_key
    del seg
    with json_output(as_json), progress() as bar, ray_session(ray), domain_errors():
        task = bar.add_task("embed (ray)", total=None, status="")

        def on_image(image_id: int, outcome: str, reason: str | None) -> None:
            if outcome == "failed":
                console.print(f"  [red]failed[/] image {image_id}: {reason}")
            bar.update(task, advance=1, status=f"image {image_id}: {outcome}")

        counts = embed_project_ray(
            settings.resolved_database_url,
            project_id=project_id,
            build=build,
            model_key=model_key,
            cache_dir=cache_dir,
            options=ray.options,
            on_total=lambda n: bar.update(task, total=n),
            on_image=on_image,
            max_pixels=settings.max_image_pixels,
        )
    if as_json:
        print_json({"model_key": model_key, **counts})
        return
    _print_embed_counts(model_key, counts)


def register(app: typer.Typer) -> None:
    """Add `prefill` and `embed` to the CLI."""
    app.command("prefill")(prefill_command)
    app.command("embed")(embed_command)
