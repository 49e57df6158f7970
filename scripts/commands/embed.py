"""`dataengine embed`: warm the embedding cache of a project's images, with a progress bar
and a table of counts; with ``--ray`` the actors of a Ray Data pipeline write the cache
(``engine.flywheel.prefill_ray.embed_project_ray``, the ``ray`` extra)."""

from __future__ import annotations

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
from scripts.commands.prefill import configured_segmenter
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

    from engine.settings import Settings


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
        checkpoint=actor_checkpoint(seg, checkpoint, settings),
        sha256=sha256 or getattr(seg, "checkpoint_sha256", None),
        device=actor_device(ray, device, settings),
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
    """Add `embed` to the CLI."""
    app.command("embed")(embed_command)
