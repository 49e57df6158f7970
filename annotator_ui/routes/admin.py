"""Administration (admins only): projects with their taxonomy, users and roles, image lists."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from annotator_ui.deps import AdminUser, ReviewerUser, SessionDep
from annotator_ui.schemas import (
    Id,
    ImageOut,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    UserIn,
    UserOut,
    UserPatch,
)
from db.errors import Conflict, InvalidInput
from db.images import list_images
from db.lease_lookups import queue_counts
from db.models import Project
from db.projects import (
    check_hotkeys,
    create_project,
    get_project,
    list_projects,
    set_labels,
)
from db.users import create_user, get_user, list_users, revoke_all_tokens, set_password

router = APIRouter(prefix="/api/admin", tags=["admin"])


# --- projects ---------------------------------------------------------------------------------


@router.get("/projects")
def projects(session: SessionDep, user: AdminUser) -> list[ProjectOut]:
    return [
        ProjectOut.of(p, queue_counts(session, project_id=p.id)) for p in list_projects(session)
    ]


@router.post("/projects", status_code=201)
def create(body: ProjectIn, session: SessionDep, user: AdminUser) -> ProjectOut:
    """Create a project with its label taxonomy (``settings.hotkeys``: labels of keys 1-9)."""
    check_hotkeys(labels=body.labels, hotkeys=body.settings.hotkeys)
    p = create_project(
        session, name=body.name, labels=body.labels, settings=body.settings.as_json()
    )
    session.commit()
    return ProjectOut.of(p)


@router.get("/projects/{project_id}")
def read(project_id: Id, session: SessionDep, user: AdminUser) -> ProjectOut:
    p = get_project(session, project_id=project_id)
    return ProjectOut.of(p, queue_counts(session, project_id=p.id))


@router.patch("/projects/{project_id}")
def update(project_id: Id, body: ProjectPatch, session: SessionDep, user: AdminUser) -> ProjectOut:
    """Rename, replace the taxonomy (``labels``) or the settings."""
    p = get_project(session, project_id=project_id)
    if body.name is not None and body.name.strip() != p.name:
        taken = session.scalar(select(Project.id).where(Project.name == body.name.strip()))
        if taken is not None:
            raise Conflict(f"a project named {body.name!r} already exists")
        p.name = body.name.strip()
    if body.labels is not None:
        set_labels(session, project=p, labels=body.labels)
    if body.settings is not None:
        check_hotkeys(labels=[str(x) for x in p.labels or []], hotkeys=body.settings.hotkeys)
        p.settings = body.settings.as_json()
    session.commit()
    return ProjectOut.of(p)


@router.delete("/projects/{project_id}")
def remove(
    project_id: Id, session: SessionDep, user: AdminUser, confirm: str = ""
) -> dict[str, int]:
    """Delete a project and everything in it; ``confirm`` must repeat the project's name."""
    p = get_project(session, project_id=project_id)
    if confirm != p.name:
        raise InvalidInput(f"to delete project {p.name!r} pass confirm={p.name!r}")
    session.delete(p)
    session.commit()
    return {"deleted": project_id}


@router.get("/projects/{project_id}/images")
def images(
    project_id: Id,
    session: SessionDep,
    user: ReviewerUser,
    status: str | None = None,
    limit: int = 500,
) -> list[ImageOut]:
    """A project's images (``status`` ok | rejected to filter), reviewers and admins."""
    get_project(session, project_id=project_id)
    rows = list_images(
        session, project_id=project_id, status=status, limit=max(1, min(limit, 5000))
    )
    return [ImageOut.of(im) for im in rows]


# --- users ------------------------------------------------------------------------------------


@router.get("/users")
def users(session: SessionDep, user: AdminUser) -> list[UserOut]:
    return [UserOut.of(u) for u in list_users(session)]


@router.post("/users", status_code=201)
def add_user(body: UserIn, session: SessionDep, user: AdminUser) -> UserOut:
    """Create a user with a role (password hashed with argon2)."""
    u = create_user(session, name=body.name, role=body.role, password=body.password)
    session.commit()
    return UserOut.of(u)


@router.patch("/users/{user_id}")
def edit_user(user_id: Id, body: UserPatch, session: SessionDep, user: AdminUser) -> UserOut:
    """Change role, (de)activate, or reset the password (policy checked). A password reset
    or deactivation revokes every session and API token of the user."""
    u = get_user(session, user_id=user_id)
    if u.id == user.id and (body.active is False or (body.role and body.role != "admin")):
        raise InvalidInput("you cannot demote or deactivate yourself; ask another admin")
    if body.role is not None:
        u.role = body.role
    if body.password is not None:
        set_password(session, user=u, password=body.password)
    if body.active is not None:
        u.active = body.active
        if not body.active:
            revoke_all_tokens(session, user_id=u.id)
    session.commit()
    return UserOut.of(u)


@router.delete("/users/{user_id}")
def deactivate_user(user_id: Id, session: SessionDep, user: AdminUser) -> UserOut:
    """Deactivate a user (rows are kept: their events and masks refer to them)."""
    return edit_user(user_id, UserPatch(active=False), session, user)
