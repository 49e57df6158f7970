"""No input gives a 500, on both databases: body size (413, also while streaming), JSON
depth, NUL characters, NaN/Infinity, ids out of range, project settings, task drafts."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from annotator_ui.app import create_app
from db.models import Project
from db.session import transaction
from tests.factories import make_image
from tests.webapp import NoModel, Web, serve, settings_for, start_web

LIMIT = 64 * 1024


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(
        db_url,
        tmp_path,
        segmenter=NoModel(),
        max_request_bytes=LIMIT,
        max_json_depth=16,
        max_draft_bytes=4096,
    ) as w:
        yield w


def project(web: Web, **body: Any) -> dict[str, Any]:
    r = web.client.post(
        "/api/admin/projects",
        json={"name": "p", "labels": ["dog"], **body},
        headers=web.as_("admin"),
    )
    assert r.status_code == 201, r.text
    return r.json()


def post_raw(web: Web, url: str, raw: str | bytes, role: str = "admin") -> Any:
    return web.client.post(
        url, content=raw, headers={**web.as_(role), "Content-Type": "application/json"}
    )


def test_body_over_the_limit_is_413(web: Web) -> None:
    big = {"name": "p", "labels": ["x" * 100] * (LIMIT // 100)}
    r = web.client.post("/api/admin/projects", json=big, headers=web.as_("admin"))
    assert r.status_code == 413 and "max_request_bytes" in r.json()["detail"]
    assert web.client.get("/api/admin/projects", headers=web.as_("admin")).json() == []


def test_limit_is_enforced_while_streaming(db_url: str, tmp_path: Path) -> None:
    """A chunked body without Content-Length is cut at the limit: the server answers 413
    while the client is still sending (it never reads the rest)."""
    app = create_app(settings_for(db_url, tmp_path, max_request_bytes=LIMIT), segmenter=NoModel())
    with serve(app) as base:
        host, port = base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/api/auth/login")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 16384
        sent = 0
        try:
            for _ in range(4096):  # up to 64 MiB, far past the limit, if nobody stopped us
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if sent > 4 * LIMIT:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        response = conn.getresponse()
        assert response.status == 413
        assert "max_request_bytes" in json.loads(response.read())["detail"]
        conn.close()


def test_deep_json_is_422(web: Web) -> None:
    for depth in (17, 100, 30_000):  # 30_000: past Python's recursion limit
        raw = '{"name": "p", "labels": ' + "[" * depth + "]" * depth + "}"
        r = post_raw(web, "/api/admin/projects", raw)
        assert r.status_code == 422 and "nests deeper" in r.json()["detail"], depth
    ok = '{"name": "p", "labels": [], "settings": {"a": ' + "[" * 10 + "]" * 10 + "}}"
    assert post_raw(web, "/api/admin/projects", ok).status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "a\\u0000b", "labels": []}',
        '{"name": "p", "labels": ["dog\\u0000"]}',
        '{"name": "p", "labels": [], "settings": {"k\\u0000": 1}}',
    ],
)
def test_nul_in_json_strings_is_422(web: Web, raw: str) -> None:
    r = post_raw(web, "/api/admin/projects", raw)
    assert r.status_code == 422 and "NUL" in r.json()["detail"]
    assert web.client.get("/api/admin/projects", headers=web.as_("admin")).json() == []


def test_nul_in_path_and_query_is_422(web: Web) -> None:
    admin = web.as_("admin")
    for url in ("/api/admin/projects/1%00", "/api/admin/projects/1/images?status=ok%00"):
        r = web.client.get(url, headers=admin)
        assert r.status_code == 422 and "NUL" in r.json()["detail"], url
    r = web.client.post("/api/auth/login", json={"name": "\u0000", "password": "x"})
    assert r.status_code == 422


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers_are_422(web: Web, number: str) -> None:
    p = project(web)
    r = web.client.put(
        f"/api/curation/projects/{p['id']}/settings",
        content=f'{{"overlap_fraction": {number}}}',
        headers={**web.as_("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "finite" in r.json()["detail"]


def test_huge_integers_are_422_not_500(web: Web) -> None:
    r = post_raw(web, "/api/tasks/next", '{"project_id": ' + "9" * 5000 + "}")
    assert r.status_code == 422


def _id_routes(web: Web) -> Iterator[tuple[str, str]]:
    for path, ops in web.app.openapi()["paths"].items():
        if "{" not in path or "{figure}" in path:
            continue
        for method in ops:
            yield method.upper(), path


@pytest.mark.parametrize("big", [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30])
def test_ids_out_of_range_are_404_or_422(web: Web, big: int) -> None:
    """Every route with an id in its path, as an admin, with ids past the 32- and 64-bit
    column ranges: never a 500 (a list of nothing may be 200); reading one row is 404, or
    422 past 2**63-1 where the id is validated."""
    checked = 0
    for method, path in _id_routes(web):
        url = re.sub(r"\{[^}]+\}", str(big), path)
        r = web.client.request(method, url, json={}, headers=web.as_("admin"))
        assert r.status_code < 500, (method, url, r.status_code, r.text[:200])
        assert isinstance(r.json(), list) or "detail" in r.json() or r.status_code == 200
        checked += 1
    assert checked >= 25
    for url in (f"/api/admin/projects/{big}", f"/api/images/{big}", f"/api/tasks/{big}"):
        r = web.client.get(url, headers=web.as_("admin"))
        expected = {404} if big <= 2**63 - 1 else {404, 422}
        assert r.status_code in expected, (url, r.status_code, r.text)
    r = web.client.post("/api/tasks/next", json={"project_id": big}, headers=web.as_("admin"))
    assert r.status_code in (404, 422), r.text


def test_project_settings_are_validated(web: Web) -> None:
    admin = web.as_("admin")
    p = project(web, settings={"curation": {"overlap_fraction": 0.5}, "team": "x"})
    assert p["settings"] == {"curation": {"overlap_fraction": 0.5}, "team": "x"}
    for bad in (
        {"curation": {"overlap_fraction": "abc"}},
        {"curation": {"overlap_fraction": 2}},
        {"curation": {"seed": -1}},
        {"curation": {"idle_seconds": 0}},
        {"curation": {"unknown_knob": 1}},
        {"curation": "everything"},
        {"licenses": "MIT"},
    ):
        r = web.client.patch(
            f"/api/admin/projects/{p['id']}", json={"settings": bad}, headers=admin
        )
        assert r.status_code == 422, (bad, r.text)
        assert isinstance(r.json()["detail"], list)
    r = web.client.post(
        "/api/admin/projects",
        json={"name": "q", "settings": {"curation": {"seed": "x"}}},
        headers=admin,
    )
    assert r.status_code == 422
    r = web.client.get(f"/api/curation/projects/{p['id']}/settings", headers=admin)
    assert r.status_code == 200 and r.json()["overlap_fraction"] == 0.5


def test_bad_stored_settings_do_not_break_the_curation_page(web: Web) -> None:
    """Values written before settings were validated fall back to the defaults."""
    p = project(web)
    with transaction(web.factory) as s:
        row = s.get(Project, p["id"])
        assert row is not None
        row.settings = {"curation": {"overlap_fraction": "abc", "seed": None, "idle_seconds": []}}
        make_image(s, project=row)
    admin = web.as_("admin")
    r = web.client.get(f"/api/curation/projects/{p['id']}/settings", headers=admin)
    assert r.status_code == 200
    assert r.json() == {"overlap_fraction": 0.1, "seed": 0, "idle_seconds": 30.0}
    r = web.client.get(f"/api/curation/projects/{p['id']}/generalist", headers=admin)
    assert r.status_code == 200, r.text


def test_drafts_are_bounded(web: Web) -> None:
    p = project(web)
    with transaction(web.factory) as s:
        row = s.get(Project, p["id"])
        assert row is not None
        make_image(s, project=row)
    ann = web.as_("annotator")
    task = web.client.post("/api/tasks/next", json={"project_id": p["id"]}, headers=ann).json()
    url = f"/api/tasks/{task['lease_id']}"
    big = {"draft": {"notes": "x" * 5000}}
    for action in ("heartbeat", "release"):
        r = web.client.post(f"{url}/{action}", json=big, headers=ann)
        assert r.status_code == 413 and "max_draft_bytes" in r.json()["detail"]
    r = web.client.post(f"{url}/heartbeat", json={"draft": {"notes": "small"}}, headers=ann)
    assert r.status_code == 200
    assert web.client.get(url, headers=ann).json()["draft"] == {"notes": "small"}
