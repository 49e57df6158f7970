"""`dataengine project ...`: create and list projects, set the label taxonomy."""

from __future__ import annotations

import typer
from rich.table import Table

from annotator_ui.settings import Settings
from db.images import count_by_status
from db.projects import create_project, get_project, list_projects, set_labels
from db.session import transaction
from scripts.commands.common import console, domain_errors, open_db

project_app = typer.Typer(
    help="Create and list projects; edit their label taxonomy.", no_args_is_help=True
)


def _split(labels: str) -> list[str]:
    return [x.strip() for x in labels.split(",") if x.strip()]


@project_app.command("create")
def project_create(
    name: str = typer.Argument(..., help="Project name (unique)."),
    labels: str = typer.Option("", help="Comma-separated label taxonomy, e.g. 'dog,cat,car'."),
) -> None:
    """Create a project."""
    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = create_project(s, name=name, labels=_split(labels))
    console.print(f"created project {p.name!r} (id {p.id})")


@project_app.command("labels")
def project_labels(
    name: str = typer.Argument(..., help="Project name."),
    labels: str = typer.Argument(
        ..., help="Comma-separated label taxonomy (replaces the old one)."
    ),
) -> None:
    """Replace a project's label taxonomy."""
    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = set_labels(s, project=get_project(s, name=name), labels=_split(labels))
        console.print(f"{p.name}: {', '.join(p.labels)}")


@project_app.command("list")
def project_list() -> None:
    """List projects with image counts."""
    factory = open_db(Settings())
    table = Table("id", "name", "images ok", "rejected", "labels")
    with factory() as s:
        for p in list_projects(s):
            counts = count_by_status(s, project_id=p.id)
            table.add_row(
                str(p.id),
                p.name,
                str(counts.get("ok", 0)),
                str(counts.get("rejected", 0)),
                ", ".join(p.labels),
            )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(project_app, name="project")
