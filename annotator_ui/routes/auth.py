"""Login, logout, who-am-I, and bearer tokens for scripts."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from annotator_ui.deps import SESSION_COOKIE, CurrentUser, SessionDep, SettingsDep, request_token
from db.users import authenticate, issue_token, revoke_token

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class UserOut(BaseModel):
    id: int
    name: str
    role: str


class TokenIn(BaseModel):
    hours: float | None = Field(default=24 * 30, gt=0, description="Lifetime; null = no expiry.")


class TokenOut(BaseModel):
    token: str
    user: UserOut


@router.post("/login")
def login(
    body: LoginIn, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenOut:
    """Check the password; set an HttpOnly, SameSite=Strict session cookie (also returned as a token)."""
    user = authenticate(session, name=body.name, password=body.password)
    if user is None:
        raise HTTPException(status_code=401, detail="wrong user name or password")
    token = issue_token(session, user=user, kind="session", hours=settings.session_hours)
    session.commit()
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        max_age=int(settings.session_hours * 3600),
        path="/",
    )
    return TokenOut(token=token, user=UserOut(id=user.id, name=user.name, role=user.role))


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


@router.post("/tokens")
def create_api_token(body: TokenIn, session: SessionDep, user: CurrentUser) -> TokenOut:
    """A bearer token for scripts (``Authorization: Bearer <token>``)."""
    token = issue_token(session, user=user, kind="api", hours=body.hours)
    session.commit()
    return TokenOut(token=token, user=UserOut(id=user.id, name=user.name, role=user.role))
