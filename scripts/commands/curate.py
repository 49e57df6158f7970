"""`dataengine curate auto|agreement|train-ranker|settings`: the curation stages' CLI."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

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

curate_app = typer.Typer(
    help="Curation for diffusion fine-tuning: automatic stage, agreement, ranker.",
    no_args_is_help=True,
)


def _pairs(values: list[str], flag: str) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, raw = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(raw)
        except ValueError:
            fail(f"{flag} takes SIGNAL=NUMBER (e.g. {flag} sharpness=80), got {item!r}")
    return out


def _aesthetic(head: Path | None, clip_model: str | None, clip_weights: Path | None) -> Any:
    if head is None and clip_weights is None:
        return None
    if head is None or clip_model is None or clip_weights is None:
        fail("the aesthetic score needs all of --aesthetic-head, --clip-model and --clip-weights")
    from engine.curation.aesthetic import ClipEncoder, load_head

    try:
        h = load_head(head)
        enc = ClipEncoder(clip_model, clip_weights)
    except (RuntimeError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    return lambda rgb: float(h.score(enc.encode([rgb]))[0])


@curate_app.command("auto")
def auto_command(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    rules: Path | None = typer.Option(
        None, "--rules", help="Rules TOML file (default: engine/curation/default_rules.toml)."
    ),
    min_sharpness: float | None = typer.Option(
        None, help="Override [min] sharpness (variance of Laplacian)."
    ),
    min_short_side: float | None = typer.Option(None, help="Override [min] short_side in pixels."),
    max_aspect_ratio: float | None = typer.Option(
        None, help="Override [max] aspect_ratio (long/short side)."
    ),
    max_noise: float | None = typer.Option(None, help="Override [max] noise (sigma, 0..255)."),
    minimum: list[str] = typer.Option(
        [], "--min", help="Any [min] rule as SIGNAL=NUMBER (repeatable)."
    ),
    maximum: list[str] = typer.Option(
        [], "--max", help="Any [max] rule as SIGNAL=NUMBER (repeatable)."
    ),
    duplicates: str = typer.Option(
        "rules", help="Drop near-duplicates: 'rules' (as the file says), 'yes' or 'no'."
    ),
    recompute: bool = typer.Option(False, help="Recompute signals already stored."),
    aesthetic_head: Path | None = typer.Option(
        None, help="LAION/SAC aesthetic head .pth (needs open_clip)."
    ),
    clip_model: str | None = typer.Option(
        None, help="open_clip model name for the aesthetic score, e.g. ViT-L-14."
    ),
    clip_weights: Path | None = typer.Option(
        None, help="Local CLIP weights file (never downloaded)."
    ),
    as_json: JsonFlag = False,
) -> None:
    """Compute quality signals and apply the rules: one auto pass/fail decision per image, with reasons."""
    from rich.table import Table

    from engine.curation.auto import run_auto
    from engine.curation.rules import load_rules
    from engine.settings import Settings

    try:
        r = load_rules(rules)
    except ValueError as err:
        fail(str(err))
    lo = {
        k: v
        for k, v in {"sharpness": min_sharpness, "short_side": min_short_side}.items()
        if v is not None
    }
    hi = {
        k: v
        for k, v in {"aspect_ratio": max_aspect_ratio, "noise": max_noise}.items()
        if v is not None
    }
    r = r.with_overrides(
        minimum={**lo, **_pairs(minimum, "--min")}, maximum={**hi, **_pairs(maximum, "--max")}
    )
    if duplicates not in ("rules", "yes", "no"):
        fail("--duplicates takes rules, yes or no")
    if duplicates != "rules":
        from dataclasses import replace

        r = replace(r, drop_duplicates=duplicates == "yes")
    scorer = _aesthetic(aesthetic_head, clip_model, clip_weights)
    settings = Settings()
    factory = open_db(settings)
    with json_output(as_json), progress() as bar, domain_errors():
        task = bar.add_task("auto curation", total=None, status="")
        summary = run_auto(
            factory,
            project=project,
            rules=r,
            recompute=recompute,
            aesthetic=scorer,
            on_total=lambda n: bar.update(task, total=n),
            on_image=lambda im, st: bar.update(task, advance=1, status=st),
            max_pixels=settings.max_image_pixels,
        )
    if as_json:
        print_json({"project": project, "rules": r.source, **asdict(summary)})
        return
    table = Table("what", "count", title=f"auto curation of {project}")
    for k in ("images", "passed", "failed", "unreadable", "duplicates"):
        table.add_row(k, str(getattr(summary, k)))
    for k, v in sorted(summary.reasons.items()):
        table.add_row(f"  fail: {k}", str(v))
    console.print(table)


@curate_app.command("agreement")
def agreement_command(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    as_json: JsonFlag = False,
) -> None:
    """Cohen's and Fleiss' kappa per human stage on the images two curators decided."""
    from rich.table import Table

    from db.curation import HUMAN_STAGES, ratings_for_agreement
    from db.projects import get_project
    from db.session import transaction
    from engine.curation.agreement import agreement
    from engine.settings import Settings

    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = get_project(s, name=project)
        results = {}
        for stage in HUMAN_STAGES:
            results[stage] = agreement(ratings_for_agreement(s, project_id=p.id, stage=stage))
        results["specialist rating"] = agreement(
            ratings_for_agreement(s, project_id=p.id, stage="specialist", field="rating"),
            weights="quadratic",
        )
    if as_json:
        print_json({"project": project, "stages": results})
        return
    table = Table(
        "stage",
        "overlap items",
        "raters",
        "% agree",
        "Fleiss kappa",
        "Cohen kappa per pair",
        title=f"agreement in {project}",
    )
    for stage, a in results.items():
        pairs = ", ".join(
            f"{x['raters'][0]}-{x['raters'][1]}: {x['cohen']} (n={x['items']})" for x in a["pairs"]
        )  # type: ignore[index,union-attr]
        table.add_row(
            stage,
            str(a["items"]),
            str(a["raters"]),
            str(a["percent_agreement"]),
            str(a["fleiss"]),
            pairs or "-",
        )
    console.print(table)


@curate_app.command("train-ranker")
def train_ranker_command(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    as_json: JsonFlag = False,
) -> None:
    """Train the ranker on the human decisions; it then orders the generalist queue."""
    from db.projects import get_project
    from db.session import transaction
    from engine.curation.ranker_project import train_project_ranker
    from engine.settings import Settings

    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = get_project(s, name=project)
        try:
            info = train_project_ranker(s, project=p)
        except ValueError as err:
            fail(str(err))
    if as_json:
        print_json(info)
        return
    console.print(
        f"ranker trained on {info['n_train']} decisions ({info['n_keep']} keeps), "
        f"scored {info['scored']} images; embeddings: {'yes' if info['uses_embeddings'] else 'no'}"
    )
    console.print("strongest features: " + ", ".join(f"{n} {c:+}" for n, c in info["top_features"]))


@curate_app.command("settings")
def settings_command(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    overlap: float | None = typer.Option(
        None, help="Fraction (0..1) of images shown to two curators per stage."
    ),
    seed: int | None = typer.Option(None, help="Seed of the overlap choice."),
    as_json: JsonFlag = False,
) -> None:
    """Show or change the project's curation settings (overlap fraction and seed)."""
    from db.curation import curation_settings, set_curation_settings
    from db.projects import get_project
    from db.session import transaction
    from engine.settings import Settings

    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = get_project(s, name=project)
        values = {
            k: v for k, v in {"overlap_fraction": overlap, "seed": seed}.items() if v is not None
        }
        cfg = set_curation_settings(s, project=p, **values) if values else curation_settings(p)
    shown = {k: v for k, v in cfg.items() if k not in ("ranker", "rules")}
    if as_json:
        print_json(shown)
        return
    console.print(shown)


def register(app: typer.Typer) -> None:
    """Add the ``curate`` command group to the CLI."""
    app.add_typer(curate_app, name="curate")
