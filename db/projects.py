"""Project data functions (keyword-only; raise domain errors)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.errors import Conflict, InvalidInput, NotFound
from db.models import Project


def create_project(
    session: Session,
    *,
    name: str,
    labels: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Project:
    """Create a project; Conflict if the name is taken."""
    name = name.strip()
    if not name:
        raise InvalidInput("project name must not be empty")
    project = Project(name=name, labels=list(labels or []), settings=dict(settings or {}))
    try:
        with session.begin_nested():
            session.add(project)
    except IntegrityError as err:
        raise Conflict(f"a project named {name!r} already exists") from err
    return project


def get_project(
    session: Session, *, name: str | None = None, project_id: int | None = None
) -> Project:
    """Find a project by name or id; NotFound names the ones that exist."""
    if project_id is not None:
        project = session.get(Project, project_id)
    else:
        project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        names = session.scalars(select(Project.name).order_by(Project.name)).all()
        raise NotFound(
            f"no project {name or project_id!r}; existing: {', '.join(names) or 'none'} "
            "(create one with `dataengine project create NAME`)"
        )
    return project


def project_name(session: Session, *, project_id: int) -> str | None:
    """The project's name (None: no such project)."""
    return session.scalar(select(Project.name).where(Project.id == project_id))


def get_or_create_project(
    session: Session, *, name: str, labels: list[str] | None = None
) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is not None:
        if labels:
            merged = list(dict.fromkeys([*project.labels, *labels]))
            if merged != project.labels:
                project.labels = merged
        return project
    try:
        return create_project(session, name=name, labels=labels)
    except Conflict:  # created concurrently
        return get_project(session, name=name)


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def set_labels(session: Session, *, project: Project, labels: list[str]) -> Project:
    cleaned = [lbl.strip() for lbl in labels if lbl and lbl.strip()]
    project.labels = list(dict.fromkeys(cleaned))
    session.flush()
    return project


HOTKEY_COUNT = 9  # the number keys 1-9 of the review page


def check_hotkeys(*, labels: list[str], hotkeys: list[str] | None) -> None:
    """InvalidInput when a hotkey label is not in the taxonomy, repeats, or there are more
    than nine (``settings.hotkeys`` of a project)."""
    if hotkeys is None:
        return
    if len(hotkeys) > HOTKEY_COUNT:
        raise InvalidInput(
            f"{len(hotkeys)} hotkeys given; the number keys 1-{HOTKEY_COUNT} take at most "
            f"{HOTKEY_COUNT}"
        )
    unknown = [h for h in hotkeys if h not in labels]
    if unknown:
        raise InvalidInput(
            f"hotkey label(s) {', '.join(map(repr, unknown))} are not in the taxonomy "
            f"{labels!r}; add them to labels first"
        )
    if len(set(hotkeys)) != len(hotkeys):
        raise InvalidInput(f"hotkeys {hotkeys!r} repeat a label; give each label once")


def hotkeys_of(*, project: Project) -> list[str]:
    """The labels of the number keys 1-9, in key order: the project's ``settings.hotkeys``
    (labels since removed from the taxonomy are dropped), else its first nine labels."""
    labels = [str(x) for x in project.labels or []]
    chosen = (project.settings or {}).get("hotkeys")
    if not chosen:
        return labels[:HOTKEY_COUNT]
    return [str(h) for h in chosen if str(h) in labels][:HOTKEY_COUNT]
