"""Every route in the OpenAPI schema: anonymous -> 401, a role it does not allow -> 403.

Built from ``app.openapi()`` so routes added later are covered without editing this file.
A route's allowed roles come from its ``require_roles(...)`` / ``ml_roles(...)`` dependency
(``check.roles``); routes with only ``CurrentUser`` (or, under ``/ml``, the Label Studio
backend's ``ml_user``) allow every role. Public routes are a short explicit list; ``/ml/*``
is not public (Label Studio sends its token there, ``/ml/health`` included).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from annotator_ui.deps import get_current_user
from annotator_ui.routes.ml_auth import ml_user
from db.models import ROLES
from tests.webapp import NoModel, Web, start_web

PUBLIC = {
    ("/api/health", "GET"),
    ("/api/auth/login", "POST"),
    ("/livez", "GET"),  # probes and the Prometheus scrape (annotator_ui/routes/health.py)
    ("/readyz", "GET"),
    ("/metrics", "GET"),
}
LOGINS = (get_current_user, ml_user)  # dependencies that refuse anonymous callers (401)


@pytest.fixture
def web(sqlite_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(sqlite_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """APIRoutes of the app, looking inside included routers."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):
            yield from api_routes(r.original_router.routes)
        elif hasattr(r, "routes"):
            yield from api_routes(r.routes)


def dependency_calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from dependency_calls(dep)


def allowed_roles(route: APIRoute) -> set[str] | None:
    """Roles the route's dependencies allow; None when it needs no login at all."""
    calls = list(dependency_calls(route.dependant))
    roles: set[str] | None = None
    for call in calls:
        if hasattr(call, "roles"):
            roles = set(call.roles) if roles is None else roles & set(call.roles)
    if roles is not None:
        return roles
    return set(ROLES) if any(login in calls for login in LOGINS) else None


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def is_public(route: APIRoute, path: str, method: str) -> bool:
    return (path, method) in PUBLIC


def test_every_route_needs_login_and_the_right_role(web: Web) -> None:
    spec = web.app.openapi()
    table = {
        (r.path, m): r for r in api_routes(web.app.routes) for m in r.methods or () if m != "HEAD"
    }
    anonymous = wrong_role = public = ml = 0
    problems: list[str] = []
    for path, ops in spec["paths"].items():
        for method in ops:
            method = method.upper()
            route = table[(path, method)]
            if is_public(route, path, method):
                public += 1
                continue
            roles = allowed_roles(route)
            if roles is None:
                problems.append(f"{method} {path}: no login dependency (CurrentUser/require_roles)")
                continue
            url = fill(path)
            r = web.client.request(method, url, json={})
            anonymous += 1
            ml += path.startswith("/ml")
            if r.status_code != 401:
                problems.append(f"{method} {path} anonymous: {r.status_code} {r.text[:100]}")
            for role in sorted(set(ROLES) - roles):
                r = web.client.request(method, url, json={}, headers=web.as_(role))
                wrong_role += 1
                if r.status_code != 403:
                    problems.append(f"{method} {path} as {role}: {r.status_code} {r.text[:100]}")
    print(
        f"\nroute permissions: {anonymous + public} routes in the OpenAPI schema, "
        f"{anonymous} checked anonymous -> 401, {wrong_role} wrong-role checks -> 403, "
        f"{public} public"
    )
    assert not problems, "\n".join(problems)
    assert anonymous >= 25  # the annotator API alone has this many
    assert ml >= 7  # /ml: health, /, setup, predict, webhook, metrics, versions


def test_annotators_cannot_manage_users_or_read_others_work(web: Web) -> None:
    c = web.client
    assert c.get("/api/admin/users", headers=web.as_("annotator")).status_code == 403
    r = c.post(
        "/api/admin/users",
        json={"name": "mallory", "role": "admin", "password": "12345678"},
        headers=web.as_("annotator"),
    )
    assert r.status_code == 403
    # another annotator's lease and image are out of reach
    p = c.post(
        "/api/admin/projects", json={"name": "p", "labels": ["dog"]}, headers=web.as_("admin")
    ).json()
    from db.session import transaction
    from tests.factories import make_image

    with transaction(web.factory) as s:
        from db.models import Project

        make_image(s, project=s.get(Project, p["id"]))
    task = c.post(
        "/api/tasks/next", json={"project_id": p["id"]}, headers=web.as_("annotator")
    ).json()
    _, other = web.add_user("ann2", "annotator")
    assert c.get(f"/api/tasks/{task['lease_id']}", headers=web.as_(other)).status_code == 403
    image_id = task["image"]["id"]
    for url in (f"/api/images/{image_id}", f"/api/images/{image_id}/masks"):
        assert c.get(url, headers=web.as_(other)).status_code == 403
        assert c.get(url, headers=web.as_("annotator")).status_code == 200
    assert c.get(f"/api/tasks/{task['lease_id']}", headers=web.as_("reviewer")).status_code == 200
    # nor can they post events on someone else's lease
    ev = {
        "uuid": "0123456789abcdef",
        "session_id": "s",
        "kind": "heartbeat",
        "client_time": 1.0,
        "image_id": image_id,
        "lease_id": task["lease_id"],
    }
    r = c.post("/api/events", json={"events": [ev]}, headers=web.as_(other)).json()
    assert r["stored"] == 0 and "not yours" in r["rejected"][0]["reason"]


def test_login_cookie_is_httponly_and_strict(web: Web) -> None:
    r = web.client.post("/api/auth/login", json={"name": "annotator1", "password": "x" * 8})
    assert r.status_code == 401
    from tests.factories import PASSWORD

    r = web.client.post("/api/auth/login", json={"name": "annotator1", "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert web.client.get("/api/tasks").status_code == 200  # the cookie authenticates
