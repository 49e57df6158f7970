"""Curation routes on both databases: grid pages with overlap, decisions, undo, specialist, agreement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.curation import record_decision, set_curation_settings
from db.projects import get_project
from db.session import transaction
from tests.curation_helpers import add_photos
from tests.factories import make_mask, make_project
from tests.webapp import NoModel, Web, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


@pytest.fixture
def project(web: Web, shared_data: Path) -> dict:
    """8 photos; image 0 failed the auto stage; overlap 0.5 (seed 3); 'dog' masks on image 1."""
    with transaction(web.factory) as s:
        p = make_project(s)
        images = add_photos(s, p, shared_data, 8)
        for k, im in enumerate(images):
            im.signals = {"quality": float(k)}  # later images rank higher
        record_decision(
            s,
            image_id=images[0].id,
            stage="auto",
            decision="fail",
            reasons=["sharpness 3 < min 60"],
        )
        set_curation_settings(s, project=p, overlap_fraction=0.5, seed=3)
        make_mask(s, image=images[1], status="accepted", label="dog")
        return {"id": p.id, "ids": [im.id for im in images]}


def test_generalist_grid_overlap_keep_drop_undo(web: Web, project: dict) -> None:
    pid, ids = project["id"], project["ids"]
    c1, t1 = web.add_user("cur-a", "curator")
    c2, t2 = web.add_user("cur-b", "curator")
    page = web.client.get(
        f"/api/curation/projects/{pid}/generalist?limit=4", headers=web.as_(t1)
    ).json()
    got = [it["image_id"] for it in page["items"]]
    assert got == ids[7:3:-1]  # ranked by quality, best first; the auto fail never shows
    assert page["items"][0]["thumb"].endswith("size=384")
    nxt = web.client.get(
        f"/api/curation/projects/{pid}/generalist?limit=4&exclude={','.join(map(str, got))}",
        headers=web.as_(t1),
    ).json()
    assert [it["image_id"] for it in nxt["items"]] == ids[3:0:-1]  # preloaded next page
    again = web.client.get(
        f"/api/curation/projects/{pid}/generalist?limit=4", headers=web.as_(t1)
    ).json()
    assert [it["image_id"] for it in again["items"]] == got + []  # a reload shows my page first
    # the second curator only gets overlap images the first one holds
    overlap = {it["image_id"] for it in page["items"] + nxt["items"] if it["overlap"]}
    other = web.client.get(
        f"/api/curation/projects/{pid}/generalist?limit=50", headers=web.as_(t2)
    ).json()
    assert {it["image_id"] for it in other["items"]} == overlap and 0 < len(overlap) < 7
    for i, image_id in enumerate(got):
        r = web.client.post("/api/curation/decisions", json={"image_id": image_id, "stage": "generalist",
                            "decision": "keep" if i % 2 == 0 else "drop"}, headers=web.as_(t1))  # fmt: skip
        assert r.status_code == 200, r.text
    r = web.client.post(
        "/api/curation/undo", json={"project_id": pid, "stage": "generalist"}, headers=web.as_(t1)
    )
    assert r.json() == {"image_id": got[-1], "decision": "drop"}
    mine = web.client.get(
        f"/api/curation/projects/{pid}/generalist?limit=50", headers=web.as_(t1)
    ).json()
    assert got[-1] in [it["image_id"] for it in mine["items"]] and got[0] not in [
        it["image_id"] for it in mine["items"]
    ]
    bad = web.client.post("/api/curation/decisions", json={"image_id": got[0], "stage": "generalist",
                          "decision": "keep", "rating": 4}, headers=web.as_(t1))  # fmt: skip
    assert bad.status_code == 422
    assert (
        web.client.get(
            f"/api/curation/projects/{pid}/generalist", headers=web.as_("annotator")
        ).status_code
        == 403
    )


def test_specialist_only_sees_generalist_keeps_and_writes_caption(web: Web, project: dict) -> None:
    pid, ids = project["id"], project["ids"]
    gen, spec = web.tokens["curator"], web.tokens["reviewer"]
    for image_id, d in [(ids[1], "keep"), (ids[2], "drop"), (ids[3], "keep")]:
        web.client.post(
            "/api/curation/decisions",
            json={"image_id": image_id, "stage": "generalist", "decision": d},
            headers=web.as_(gen),
        )
    page = web.client.get(
        f"/api/curation/projects/{pid}/specialist?limit=5", headers=web.as_(spec)
    ).json()
    items = {it["image_id"]: it for it in page["items"]}
    assert set(items) == {ids[1], ids[3]}
    assert items[ids[1]]["draft_caption"] == "a photo of a dog" and items[ids[1]]["labels"] == [
        "dog"
    ]
    assert "lighting" in page["tag_categories"]
    r = web.client.post(
        "/api/curation/decisions",
        json={"image_id": ids[2], "stage": "specialist", "decision": "keep"},
        headers=web.as_(spec),
    )
    assert r.status_code == 409 and "generalist" in r.json()["detail"]
    r = web.client.post(
        "/api/curation/decisions",
        json={"image_id": ids[1], "stage": "specialist", "decision": "keep", "rating": 5,
              "tags": ["lighting:good", "subject:good"], "caption": "  a brown dog  on grass "},
        headers=web.as_(spec),
    )  # fmt: skip
    assert (
        r.status_code == 200
        and r.json()["rating"] == 5
        and r.json()["tags"] == ["lighting:good", "subject:good"]
    )
    r = web.client.post(
        "/api/curation/decisions",
        json={"image_id": ids[3], "stage": "specialist", "decision": "keep", "tags": ["mood:good"]},
        headers=web.as_(spec),
    )
    assert r.status_code == 422 and "category" in r.json()["detail"]
    with transaction(web.factory) as s:
        from db.captions import latest_caption

        assert latest_caption(s, image_id=ids[1]).text == "a brown dog on grass"
    thumb = web.client.get(items[ids[1]]["thumb"], headers=web.as_(spec))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(_size(thumb.content)) == 384
    assert (
        web.client.get(
            f"/api/curation/images/{ids[1]}/thumb?size=999", headers=web.as_(spec)
        ).status_code
        == 422
    )


def _size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size


def test_agreement_endpoint_and_settings(web: Web, project: dict) -> None:
    pid, ids = project["id"], project["ids"]
    a, b = web.tokens["curator"], web.tokens["reviewer"]
    for image_id, da, db_ in [
        (ids[1], "keep", "keep"),
        (ids[2], "drop", "drop"),
        (ids[3], "keep", "drop"),
        (ids[4], "keep", "keep"),
    ]:
        for token, d in ((a, da), (b, db_)):
            web.client.post(
                "/api/curation/decisions",
                json={"image_id": image_id, "stage": "generalist", "decision": d},
                headers=web.as_(token),
            )
    out = web.client.get(f"/api/curation/projects/{pid}/agreement", headers=web.as_(a)).json()
    g = out["generalist"]
    assert g["items"] == 4 and g["percent_agreement"] == 0.75
    assert g["pairs"][0]["cohen"] == pytest.approx(0.5)  # po 0.75, pe 0.5
    assert out["specialist"]["items"] == 0 and out["human_seconds"]["generalist"] >= 0
    r = web.client.put(
        f"/api/curation/projects/{pid}/settings", json={"overlap_fraction": 0.2}, headers=web.as_(a)
    )
    assert r.status_code == 403
    r = web.client.put(
        f"/api/curation/projects/{pid}/settings",
        json={"overlap_fraction": 0.2},
        headers=web.as_("admin"),
    )
    assert r.json()["overlap_fraction"] == 0.2 and r.json()["seed"] == 3
    with transaction(web.factory) as s:
        assert get_project(s, project_id=pid).settings["curation"]["overlap_fraction"] == 0.2


def test_pages_are_served(web: Web) -> None:
    for page in ("curate_generalist", "curate_specialist"):
        assert web.client.get(f"/static/{page}.html").status_code == 200
        js = web.client.get(f"/static/{page}.js")
        assert js.status_code == 200 and "import" in js.text
