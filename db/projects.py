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
