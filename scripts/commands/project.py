"""`dataengine project ...`: create and list projects, set the label taxonomy."""

from __future__ import annotations

import typer

from scripts.commands.common import JsonFlag, console, domain_errors, open_db, print_json

project_app = typer.Typer(
    help="Create and list projects; edit their label taxonomy.", no_args_is_help=True
)


def _split(labels: str) -> list[str]:
    return [x.strip() for x in labels.split(",") if x.strip()]


@project_app.command("create")
def project_create(
    name: str = typer.Argument(..., help="Project name (unique)."),
    labels: str = typer.Option("", help="Comma-separated label taxonomy, e.g. 'dog,cat,car'."),
    as_json: JsonFlag = False,
) -> None:
    """Create a project."""
    from db.projects import create_project
    from db.session import transaction
    from engine.settings import Settings

    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = create_project(s, name=name, labels=_split(labels))
        created = {"id": p.id, "name": p.name, "labels": list(p.labels)}
    if as_json:
        print_json(created)
        return
    console.print(f"created project {created['name']!r} (id {created['id']})")


@project_app.command("labels")
def project_labels(
    name: str = typer.Argument(..., help="Project name."),
    labels: str = typer.Argument(
        ..., help="Comma-separated label taxonomy (replaces the old one)."
    ),
    as_json: JsonFlag = False,
) -> None:
    """Replace a project's label taxonomy."""
    from db.projects import get_project, set_labels
    from db.session import transaction
    from engine.settings import Settings

    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        p = set_labels(s, project=get_project(s, name=name), labels=_split(labels))
        shown = {"name": p.name, "labels": list(p.labels)}
    if as_json:
        print_json(shown)
    else:
        console.print(f"{shown['name']}: {', '.join(shown['labels'])}")


@project_app.command("list")
def project_list(as_json: JsonFlag = False) -> None:
    """List projects with image counts."""
    from rich.table import Table

    from db.images import count_by_status
    from db.projects import list_projects
    from engine.settings import Settings

    factory = open_db(Settings())
    rows = []
    with factory() as s:
        for p in list_projects(s):
            counts = count_by_status(s, project_id=p.id)
            rows.append(
                {
                    "id": p.id,
                    "name": p.name,
                    "images_ok": counts.get("ok", 0),
                    "rejected": counts.get("rejected", 0),
                    "labels": list(p.labels),
                }
            )
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "images ok", "rejected", "labels")
    for r in rows:
        table.add_row(
            str(r["id"]), r["name"], str(r["images_ok"]), str(r["rejected"]), ", ".join(r["labels"])
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(project_app, name="project")
