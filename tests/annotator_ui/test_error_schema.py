"""The error bodies the app sends are the ones its OpenAPI schema declares (``ErrorOut``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from annotator_ui.errors import ErrorOut
from tests.factories import PASSWORD
from tests.webapp import NoModel, Web, start_web

CODES = ("401", "403", "404", "409", "413", "422", "429")


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(
        db_url,
        tmp_path,
        segmenter=NoModel(),
        max_request_bytes=4096,
        login_free_failures_account=1,
        login_backoff_seconds=600,
    ) as w:
        yield w


def test_every_operation_declares_the_error_model(web: Web) -> None:
    spec = web.app.openapi()
    assert "ErrorOut" in spec["components"]["schemas"]
    count = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code in CODES:
                content = op["responses"].get(code, {}).get("content", {})
                schema = content.get("application/json", {}).get("schema", {})
                assert schema.get("$ref") == "#/components/schemas/ErrorOut", (method, path, code)
            count += 1
    assert count >= 40
    detail = spec["components"]["schemas"]["ErrorOut"]["properties"]["detail"]
    kinds = {x.get("type") for x in detail["anyOf"]}
    assert kinds == {"string", "array"}


def check(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"}
    ErrorOut.model_validate(body)  # exactly the declared shape
    if isinstance(body["detail"], list):
        for item in body["detail"]:
            assert set(item) == {"loc", "msg", "type"}
    return body


def test_error_bodies_match_the_schema(web: Web) -> None:
    c, admin = web.client, web.as_("admin")
    check(c.get("/api/auth/me"), 401)
    check(c.get("/api/admin/users", headers=web.as_("annotator")), 403)
    check(c.get("/api/admin/projects/12345", headers=admin), 404)
    check(c.get("/api/admin/projects/2147483648", headers=admin), 404)
    check(c.get("/no/such/route"), 404)
    assert c.post("/api/admin/projects", json={"name": "p"}, headers=admin).status_code == 201
    check(c.post("/api/admin/projects", json={"name": "p"}, headers=admin), 409)
    check(c.post("/api/admin/projects", content=b"{" * 5000, headers=admin), 413)
    body = check(c.post("/api/admin/projects", json={"labels": 3}, headers=admin), 422)
    assert isinstance(body["detail"], list) and body["detail"][0]["loc"][0] == "body"
    check(c.post("/api/admin/projects", json={"name": "\u0000"}, headers=admin), 422)
    check(c.get("/api/admin/projects/-1", headers=admin), 422)
    check(c.post("/api/auth/login", json={"name": "admin1", "password": "wrong-one"}), 401)
    r = c.post("/api/auth/login", json={"name": "admin1", "password": PASSWORD})
    check(r, 429)
    assert int(r.headers["retry-after"]) > 0
    assert "traceback" not in r.text.lower()
