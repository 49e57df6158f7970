"""`dataengine up`: the main job on embedded defaults, from nothing to a served app.

Creates/upgrades the database (SQLite by default), makes a demo project and an
admin, ingests sample photos (scikit-image's bundled photos, or folders given),
pre-fills them with the configured backend (classical without weights), then
serves the app and prints how to log in.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from scripts.commands.common import console, open_db, require_paths
from scripts.commands.ingest import print_summary, run_ingest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

# Photos that ship inside scikit-image (skimage/data), used when no folder is given.
SAMPLE_PHOTOS = [
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "horse.png",
]
DEMO_LABELS = [
    "person",
    "cat",
    "dog",
    "rocket",
    "motorcycle",
    "cup",
    "plate",
    "spoon",
    "horse",
    "building",
    "tree",
    "sky",
    "background",
]


def sample_paths() -> list[Path]:
    import skimage

    root = Path(skimage.__file__).parent / "data"
    return [root / name for name in SAMPLE_PHOTOS if (root / name).exists()]


def ensure_admin(factory: sessionmaker[Session], name: str, password: str | None) -> str | None:
    """Create the admin (or reset its password when one is given); returns a new password."""
    from sqlalchemy import select

    from db.models import User, name_key
    from db.session import transaction
    from db.users import create_user, set_password

    with transaction(factory) as s:
        user = s.scalar(select(User).where(User.name_key == name_key(name)))
        if user is None:
            pw = password or secrets.token_urlsafe(12)
            create_user(s, name=name, role="admin", password=pw)
            return pw
        if password:
            set_password(s, user=user, password=password)
            return password
    return None


def up_command(
    paths: list[Path] = typer.Argument(None, help="Image folders/files (default: sample photos)."),
    project: str = typer.Option("demo", "--project", "-p", help="Project to create or reuse."),
    admin: str = typer.Option("admin", help="Admin user name."),
    password: str | None = typer.Option(
        None,
        envvar="DATAENGINE_ADMIN_PASSWORD",
        help="Admin password (default: generated on first run and printed).",
    ),
    prefill: bool = typer.Option(True, help="Pre-fill masks after ingest."),
    serve: bool = typer.Option(True, help="Serve the app at the end."),
) -> None:
    """Set up everything on embedded defaults and serve the app."""
    from db.migrate import upgrade
    from db.projects import get_or_create_project
    from db.rounds import ensure_first_round
    from db.session import transaction
    from engine.settings import Settings

    require_paths(list(paths or []), "file or folder")
    settings = Settings()
    url = settings.resolved_database_url
    console.rule("1/4 database")
    upgrade(url)
    factory = open_db(settings)
    console.print(
        f"schema up to date at {factory.kw['bind'].url.render_as_string(hide_password=True)}"
    )
    with transaction(factory) as s:
        get_or_create_project(s, name=project, labels=DEMO_LABELS)
    new_password = ensure_admin(factory, admin, password)

    console.rule("2/4 ingest")
    print_summary(run_ingest(settings, project, list(paths or sample_paths()), copy=False))

    console.rule("3/4 pre-fill")
    if prefill:
        from scripts.commands.prefill import prefill_configured

        prefill_configured(settings, project)
    else:
        console.print("skipped (--no-prefill)")
        with transaction(factory) as s:  # work is measured in a round from the start
            p = get_or_create_project(s, name=project, labels=DEMO_LABELS)
            if ensure_first_round(s, project_id=p.id, model_version_id=None) is not None:
                console.print("round 1 opened (no model version, no control arm)")

    console.rule("4/4 serve")
    where = f"http://{settings.host}:{settings.port}"
    if new_password:
        console.print(
            f"log in at {where} as [bold]{admin}[/] with password [bold]{new_password}[/]"
        )
    else:
        console.print(
            f"log in at {where} as [bold]{admin}[/] (password set on first run; "
            "`dataengine user passwd` sets a new one)"
        )
    console.print("add annotators with: dataengine user add NAME --role annotator")
    if serve:
        from scripts.commands.serve import serve_command

        serve_command(host=None, port=None, workers=1)


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)
