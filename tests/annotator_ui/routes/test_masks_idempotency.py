"""Idempotency-Key on mask add and fix: a retry (sequential, concurrent, through another app
process, after a restart) returns the first answer and never a second mask."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from annotator_ui.app import create_app
from db.models import Mask
from db.session import transaction
from engine.masks import encode_rle
from tests.factories import box_mask, make_image, make_mask, make_project
from tests.webapp import NoModel, Web, serve, settings_for, start_web

H, W = 48, 64


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def setup_image(web: Web) -> dict[str, int]:
    with transaction(web.factory) as s:
        p = make_project(s, labels=[])
        im = make_image(s, project=p, width=W, height=H)
        other = make_image(s, project=p, width=W, height=H)
        m = make_mask(s, image=im, mask=box_mask(H, W, 2, 2, 12, 12), confident=True)
        return {"project": p.id, "image": im.id, "other": other.id, "mask": m.id}


def keyed(web: Web, role: str, key: str) -> dict[str, str]:
    return {**web.as_(role), "Idempotency-Key": key}


def count(web: Web, **where: Any) -> int:
    with web.factory() as s:
        q = select(func.count(Mask.id))
        for k, v in where.items():
            q = q.where(getattr(Mask, k) == v)
        return int(s.scalar(q) or 0)


def test_openapi_documents_the_header(web: Web) -> None:
    spec = web.client.get("/openapi.json").json()
    for path in ("/api/images/{image_id}/masks", "/api/masks/{mask_id}/fix"):
        params = spec["paths"][path]["post"]["parameters"]
        header = next(p for p in params if p["name"] == "Idempotency-Key")
        assert header["in"] == "header" and "retry" in header["description"]


def test_retried_add_returns_the_first_mask(web: Web) -> None:
    ids, c = setup_image(web), web.client
    body = {"rle": encode_rle(box_mask(H, W, 20, 20, 30, 30)), "label": None}
    key = str(uuid.uuid4())
    first = c.post(f"/api/images/{ids['image']}/masks", json=body, headers=keyed(web, "admin", key))
    assert first.status_code == 200
    for _ in range(3):
        again = c.post(
            f"/api/images/{ids['image']}/masks", json=body, headers=keyed(web, "admin", key)
        )
        assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert count(web, image_id=ids["image"], source="human") == 1
    # a fresh key is a new action: a second mask
    r = c.post(f"/api/images/{ids['image']}/masks", json=body, headers=keyed(web, "admin", "k2"))
    assert r.status_code == 200 and r.json()["id"] != first.json()["id"]
    # no key: no idempotency (as before)
    r = c.post(f"/api/images/{ids['image']}/masks", json=body, headers=web.as_("admin"))
    assert r.status_code == 200
    assert count(web, image_id=ids["image"], source="human") == 3
    # the key is per user: the reviewer's "k2" is a different action
    r = c.post(f"/api/images/{ids['image']}/masks", json=body, headers=keyed(web, "reviewer", "k2"))
    assert r.status_code == 200 and r.json()["author_id"] == web.user_ids["reviewer"]
    # the same key for a different request is refused, naming the fix
    r = c.post(f"/api/images/{ids['other']}/masks", json=body, headers=keyed(web, "admin", key))
    assert r.status_code == 422 and "fresh key" in r.json()["detail"]
    assert count(web, image_id=ids["other"]) == 0


def test_bad_keys_are_refused(web: Web) -> None:
    ids, c = setup_image(web), web.client
    body = {"rle": encode_rle(box_mask(H, W, 20, 20, 30, 30))}
    for bad in ("x" * 65, "has space", "a/b"):
        r = c.post(f"/api/images/{ids['image']}/masks", json=body, headers=keyed(web, "admin", bad))
        assert r.status_code == 422, bad
    assert count(web, source="human") == 0


def test_retried_fix_returns_the_first_new_mask(web: Web) -> None:
    ids, c = setup_image(web), web.client
    body = {"rle": encode_rle(box_mask(H, W, 3, 3, 14, 14)), "version": 1}
    key = "fix-" + uuid.uuid4().hex
    first = c.post(f"/api/masks/{ids['mask']}/fix", json=body, headers=keyed(web, "admin", key))
    assert first.status_code == 200 and first.json()["parent_id"] == ids["mask"]
    again = c.post(f"/api/masks/{ids['mask']}/fix", json=body, headers=keyed(web, "admin", key))
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    # without the key the retry is a stale version (409): the key is what makes it safe
    r = c.post(f"/api/masks/{ids['mask']}/fix", json=body, headers=web.as_("admin"))
    assert r.status_code == 409
    assert count(web, parent_id=ids["mask"]) == 1
    # the key of an add cannot answer a fix
    add = {"rle": encode_rle(box_mask(H, W, 20, 20, 30, 30))}
    c.post(f"/api/images/{ids['image']}/masks", json=add, headers=keyed(web, "admin", "add-1"))
    new_id = first.json()["id"]
    r = c.post(
        f"/api/masks/{new_id}/fix",
        json={**body, "version": 1},
        headers=keyed(web, "admin", "add-1"),
    )
    assert r.status_code == 422 and "another change" in r.json()["detail"]


def test_key_survives_a_restart(db_url: str, tmp_path: Path) -> None:
    key = uuid.uuid4().hex
    with start_web(db_url, tmp_path, segmenter=NoModel()) as web:
        ids = setup_image(web)
        body = {"rle": encode_rle(box_mask(H, W, 20, 20, 30, 30))}
        first = web.client.post(
            f"/api/images/{ids['image']}/masks", json=body, headers=keyed(web, "admin", key)
        ).json()
        token = web.tokens["admin"]
    app = create_app(settings_for(db_url, tmp_path), segmenter=NoModel())
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        again = client.post(f"/api/images/{ids['image']}/masks", json=body, headers=headers)
        assert again.status_code == 200 and again.json() == first


def _race(
    urls: list[str], path: str, body: dict[str, Any], headers: dict[str, str], n: int
) -> list[httpx.Response]:
    """``n`` identical requests released together, spread over ``urls`` (app processes)."""
    barrier = threading.Barrier(n)
    for url in urls:  # warm up: FastAPI builds each route on its first request, and its
        # warnings filter (not thread-safe) would let pydantic warnings escape under pytest
        bad_key = {**headers, "Idempotency-Key": "not a key"}
        assert httpx.post(url + path, json=body, headers=bad_key, timeout=60).status_code == 422

    def one(i: int) -> httpx.Response:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=60) as client:
            barrier.wait()
            return client.post(path, json=body, headers=headers)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_retries_across_two_app_processes_give_one_mask(
    web: Web, db_url: str, tmp_path: Path
) -> None:
    """Two apps (own engines and pools, as two worker processes) on one database; identical
    keyed requests race through both: exactly one mask, every answer the same."""
    ids = setup_image(web)
    second = create_app(settings_for(db_url, tmp_path / "second"), segmenter=NoModel())
    with ExitStack() as stack:
        urls = [stack.enter_context(serve(web.app)), stack.enter_context(serve(second))]
        add = {"rle": encode_rle(box_mask(H, W, 20, 20, 30, 30))}
        answers = _race(
            urls, f"/api/images/{ids['image']}/masks", add, keyed(web, "admin", "race-add"), 8
        )
        assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
        assert count(web, client_key="race-add") == 1

        fix = {"rle": encode_rle(box_mask(H, W, 3, 3, 14, 14)), "version": 1}
        answers = _race(
            urls, f"/api/masks/{ids['mask']}/fix", fix, keyed(web, "admin", "race-fix"), 8
        )
        assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
        assert count(web, parent_id=ids["mask"]) == 1
        with web.factory() as s:
            assert s.get(Mask, ids["mask"]).version == 2  # superseded once, not eight times
