"""FastAPI dependencies and their ``Annotated`` aliases (SessionDep, CurrentUser, ...).

They are ``async``: FastAPI runs a plain ``def`` dependency in the thread pool, one hop per
dependency (five per request, a fifth of the app's CPU under load went to those hand-offs).
None of them waits on the database in the event loop: a session opens its connection on
first use, in the handler's thread; the token lookup runs in the pool unless the token
cache answers; closing a session whose handler committed sends nothing to the server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.models import User
from db.users import cached_user_for_token, user_for_token
from engine.settings import Settings

SESSION_COOKIE = "de_session"


KEEP_LOADED = "dataengine.keep_loaded"


@event.listens_for(Session, "loaded_as_persistent")
def _keep_loaded(session: Session, instance: object) -> None:
    """Hold each row a request's session loads until the session closes. The identity map
    holds objects weakly: a row a check loaded and dropped (``get_image`` in a permission
    check, the project in a stage check) was queried again by the next ``session.get``
    (mask add read its image 4 times)."""
    keep = session.info.get(KEEP_LOADED)
    if keep is not None:
        keep.append(instance)


async def get_db(request: Request) -> AsyncIterator[Session]:
    """One session per request; handlers commit explicitly, anything uncommitted rolls back
    (in the thread pool: a rollback is a round trip). Rows it loads stay in its identity
    map until it closes (``_keep_loaded``)."""
    session = request.app.state.session_factory()
    session.info[KEEP_LOADED] = []
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_segmenter(request: Request) -> Any:
    """The segmenter loaded once in the app's lifespan."""
    seg = getattr(request.app.state, "segmenter", None)
    if seg is None:
        raise HTTPException(status_code=503, detail="no segmentation model is loaded")
    return seg


SessionDep = Annotated[Session, Depends(get_db)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="A fresh id per logical action (e.g. a UUID), sent again unchanged on a "
        "retry: a retry returns the first result (same mask id and body) instead of a second "
        "mask. Unique per user; letters, digits and . _ : - only, at most 64.",
    ),
]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SegmenterDep = Annotated[Any, Depends(get_segmenter)]


def request_token(request: Request) -> str | None:
    """The session cookie, or else an ``Authorization: Bearer`` token."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE)


async def get_current_user(request: Request, session: SessionDep) -> User:
    token = request_token(request)
    cache_s = request.app.state.settings.auth_cache_seconds
    user = None
    if token:
        user = cached_user_for_token(session, token=token, cache_s=cache_s)
        if user is None:
            user = await run_in_threadpool(user_for_token, session, token=token, cache_s=cache_s)
    if user is None:
        raise HTTPException(
            status_code=401,
            detail="not logged in: POST /api/auth/login, or send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: str) -> Callable[[User], Coroutine[Any, Any, User]]:
    """Dependency factory: the current user, if their role is one of ``roles`` (else 403)."""

    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(
                status_code=403,
                detail=f"role {user.role!r} may not do this; needs one of: {', '.join(roles)}",
            )
        return user

    check.roles = tuple(roles)  # type: ignore[attr-defined]  # read by the route-permission test
    return check


AdminUser = Annotated[User, Depends(require_roles("admin"))]
ReviewerUser = Annotated[User, Depends(require_roles("reviewer", "admin"))]
AnnotatorUser = Annotated[User, Depends(require_roles("annotator", "reviewer", "admin"))]
CuratorUser = Annotated[User, Depends(require_roles("curator", "reviewer", "admin"))]
