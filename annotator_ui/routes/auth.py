"""Login (throttled), logout, who-am-I, password change and bearer tokens for scripts.

Login order: refuse a throttled account or address (429 + Retry-After) before any hashing;
reserve the attempt in the database (``db.login_throttle``, shared by all processes); check
the password on a bounded worker pool (``annotator_ui.login_guard``); on success clear the
account's counter and open a session.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from annotator_ui.deps import SESSION_COOKIE, CurrentUser, SessionDep, SettingsDep, request_token
from annotator_ui.login_guard import Busy, LoginGuard
from db import login_throttle as throttle
from db.models import User, name_key, utcnow
from db.session import transaction
from db.users import (
    MAX_PASSWORD_LENGTH,
    find_login,
    issue_token,
    revoke_token,
    set_password,
    verify_password,
)
from engine.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class UserOut(BaseModel):
    id: int
    name: str
    role: str


class TokenIn(BaseModel):
    hours: float = Field(
        default=24 * 30,
        gt=0,
        allow_inf_nan=False,
        description="Lifetime in hours: finite, > 0, at most the max_token_hours setting.",
    )


class TokenOut(BaseModel):
    token: str
    user: UserOut


class PasswordIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


def get_login_guard(request: Request) -> LoginGuard:
    """The app's LoginGuard (made in ``create_app`` from the settings)."""
    return request.app.state.login_guard


LoginGuardDep = Annotated[LoginGuard, Depends(get_login_guard)]


def too_many(seconds: float) -> HTTPException:
    wait = max(1, math.ceil(seconds))
    return HTTPException(
        status_code=429,
        detail=f"too many login attempts; try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


def _keys(settings: Settings, name: str, address: str) -> list[tuple[str, throttle.Backoff]]:
    def backoff(free: int) -> throttle.Backoff:
        return throttle.Backoff(
            free=free,
            base_seconds=settings.login_backoff_seconds,
            max_seconds=settings.login_backoff_max_seconds,
        )

    return [
        (throttle.account_key(name_key(name)), backoff(settings.login_free_failures_account)),
        (throttle.address_key(address), backoff(settings.login_free_failures_address)),
    ]


def _reserve(
    factory: sessionmaker[Session], keys: list[tuple[str, throttle.Backoff]], name: str
) -> tuple[dict[str, float], float, User | None]:
    """({locked key: seconds left} when refused, seconds of the lock this attempt set on the
    account, the user), in one transaction."""
    with transaction(factory) as s:
        wait, lock = throttle.reserve_attempt(s, keys=keys)
        if wait > 0:
            locked = {k: throttle.locked_for(s, keys=[k]) for k, _ in keys}
            return {k: w for k, w in locked.items() if w > 0} or {keys[0][0]: wait}, 0.0, None
        user = find_login(s, name=name)
        if user is not None:
            s.expunge(user)
        left = (lock - utcnow()).total_seconds() if lock is not None else 0.0
        return {}, left, user


def _open_session(
    factory: sessionmaker[Session],
    user: User,
    keys: list[str],
    settings: Settings,
    rehash: str | None,
) -> str:
    with transaction(factory) as s:
        if settings.login_throttle:
            throttle.clear(s, key=keys[0])
            throttle.release(s, key=keys[1])
        if rehash is not None:
            fresh = s.get(User, user.id)
            if fresh is not None:
                fresh.password_hash = rehash
        return issue_token(
            s, user=s.get(User, user.id) or user, kind="session", hours=settings.session_hours
        )


@router.post("/login")
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    settings: SettingsDep,
    guard: LoginGuardDep,
) -> TokenOut:
    """Check the password; set an HttpOnly, SameSite=Strict session cookie (also returned as
    a token). Repeated failures per account or client address get 429 with Retry-After."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    address = request.client.host if request.client else "unknown"
    keys = _keys(settings, body.name, address)
    key_names = [k for k, _ in keys]
    if guard.busy():  # refused before it costs a database write or a hash
        raise too_many(1.0)
    if settings.login_throttle:
        known = guard.locked_for(key_names)
        if known > 0:
            raise too_many(known)
        locked, lock, user = await run_in_threadpool(_reserve, factory, keys, body.name)
        if locked:
            for key, seconds in locked.items():  # only the locked keys: not a whole address
                guard.remember_lock([key], seconds)
            raise too_many(max(locked.values()))
        if lock > 0:
            guard.remember_lock(key_names[:1], lock)
    else:
        user = await run_in_threadpool(_find, factory, body.name)
    before = user.password_hash if user is not None else None
    try:
        ok = await guard.verify(lambda: verify_password(user, body.password))
    except Busy as err:
        raise too_many(err.retry_after) from err
    if not ok or user is None:
        raise HTTPException(status_code=401, detail="wrong user name or password")
    rehash = user.password_hash if user.password_hash != before else None
    token = await run_in_threadpool(_open_session, factory, user, key_names, settings, rehash)
    _set_cookie(response, token, settings)
    return TokenOut(token=token, user=UserOut(id=user.id, name=user.name, role=user.role))


def _find(factory: sessionmaker[Session], name: str) -> User | None:
    with factory() as s:
        user = find_login(s, name=name)
        if user is not None:
            s.expunge(user)
        return user


def _set_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        max_age=int(settings.session_hours * 3600),
        path="/",
    )


@router.post("/logout")
def logout(
    request: Request, response: Response, session: SessionDep, user: CurrentUser
) -> dict[str, bool]:
    token = request_token(request)
    if token:
        revoke_token(session, token=token)
        session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"ok": True}


@router.get("/me")
def me(user: CurrentUser) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role)


@router.post("/password")
def change_password(
    body: PasswordIn,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> TokenOut:
    """Change your own password (the current one is required). Every session and API token
    of yours is revoked, here and on other devices; a new session is returned (and set as
    the cookie). 403 when ``current_password`` is wrong; 422 when the new one is too weak."""
    if not verify_password(user, body.current_password):
        raise HTTPException(status_code=403, detail="current password is wrong")
    set_password(session, user=user, password=body.new_password)
    token = issue_token(session, user=user, kind="session", hours=settings.session_hours)
    session.commit()
    _set_cookie(response, token, settings)
    return TokenOut(token=token, user=UserOut(id=user.id, name=user.name, role=user.role))


@router.post("/tokens")
def create_api_token(
    body: TokenIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TokenOut:
    """A bearer token for scripts (``Authorization: Bearer <token>``); it always expires,
    after ``hours`` (at most the max_token_hours setting, else 422)."""
    token = issue_token(
        session, user=user, kind="api", hours=body.hours, max_hours=settings.max_token_hours
    )
    session.commit()
    return TokenOut(token=token, user=UserOut(id=user.id, name=user.name, role=user.role))
