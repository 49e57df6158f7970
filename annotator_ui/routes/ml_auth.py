"""Who an ``/ml`` (Label Studio ML backend) request acts as, and with which role.

``ml_user`` is the router-wide dependency (the schemes are described in
``annotator_ui.routes.ml_backend``); ``ml_roles`` narrows an endpoint to some roles.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator_ui.deps import SessionDep
from db.models import User
from db.users import user_for_token

log = logging.getLogger("dataengine.ml_backend")


def _basic_user(session: Session, credentials: str, expected: str | None) -> User | None:
    """The app user named by ``ml_backend_basic_auth`` ("NAME:PASSWORD") when the basic
    credentials match it, else None."""
    if not expected:
        return None
    try:
        given = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return None
    user = session.scalar(select(User).where(User.name == expected.partition(":")[0]))
    if user is None or not user.active:
        log.warning(
            "ML backend basic auth matched, but %r is not an active app user: "
            "dataengine user add NAME --role reviewer",
            expected.partition(":")[0],
        )
        return None
    return user


def _token_as_basic(session: Session, credentials: str) -> User | None:
    """Basic auth ``NAME:<app API token of NAME>``: how Label Studio sends a token (its ML
    backend settings offer only "Basic Authentication"), else None."""
    try:
        name, _, token = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = user_for_token(session, token=token) if token else None
    if user is None or not hmac.compare_digest(user.name.encode(), name.encode()):
        return None
    return user


def ml_user(request: Request, session: SessionDep) -> User | None:
    """The user an ``/ml`` request acts as (with that user's role rights).

    ``ml_backend_auth``: "token" -> ``Authorization: Bearer <token>`` or ``Token <token>``
    (an app token: ``POST /api/auth/login`` or ``dataengine user token``), or HTTP basic
    auth with the user's name and that token as the password (Label Studio 1.23's ML
    backend form has only "Basic Authentication"); "basic" -> also
    HTTP basic auth matching ``ml_backend_basic_auth``, acting as its NAME; "none" ->
    anonymous requests act with full rights (None; only allowed on a loopback bind). No
    session cookies: Label Studio sends headers, and a cookie would let other pages post here.
    """
    settings = request.app.state.settings
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    user: User | None = None
    if scheme in ("bearer", "token") and credentials:
        user = user_for_token(session, token=credentials)
    elif scheme == "basic" and settings.ml_backend_auth in ("token", "basic"):
        user = _token_as_basic(session, credentials)
        if user is None and settings.ml_backend_auth == "basic":
            user = _basic_user(session, credentials, settings.ml_backend_basic_auth)
    if user is not None or settings.ml_backend_auth == "none":
        return user
    challenge = 'Basic realm="dataengine-ml"' if settings.ml_backend_auth == "basic" else "Bearer"
    raise HTTPException(
        status_code=401,
        detail="the Label Studio ML backend needs authentication: in Label Studio's model "
        "settings turn on 'Basic Authentication' with an app user's name and their API token "
        "(dataengine user token NAME) as the password, or send Authorization: Bearer/"
        "Token <token>"
        + (
            ", or use basic auth (DATAENGINE_ML_BACKEND_BASIC_AUTH)"
            if settings.ml_backend_auth == "basic"
            else ""
        ),
        headers={"WWW-Authenticate": challenge},
    )


MlUser = Annotated[User | None, Depends(ml_user)]


def ml_roles(*roles: str) -> Callable[[User | None], User | None]:
    """Dependency factory: the /ml user if their role is one of ``roles`` (else 403)."""

    def check(user: MlUser) -> User | None:
        if user is not None and user.role not in roles:
            raise HTTPException(
                status_code=403,
                detail=f"role {user.role!r} may not do this; needs one of: {', '.join(roles)}",
            )
        return user

    check.roles = tuple(roles)  # type: ignore[attr-defined]  # read by the route-permission test
    return check


MlWriter = Annotated[User | None, Depends(ml_roles("annotator", "reviewer", "admin"))]
