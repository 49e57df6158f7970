"""The Label Studio ML backend under /ml, driven with the JSON Label Studio sends.

Request shapes follow label-studio-ml-backend (label_studio_ml/api.py and the
segment_anything_model example's tests) and Label Studio's webhook reference.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from label_studio_sdk.converter import brush
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import Event, Image, Mask, Prefill
from db.rounds import start_round
from db.session import transaction
from engine.flywheel import events as event_kinds
from engine.ingest import ingest
from engine.interop.label_studio import image_url, mask_to_brush
from engine.masks import decode_rle, mask_iou
from tests.factories import box_mask, make_mask, make_model_version
from tests.label_studio_payloads import LABEL_CONFIG, ls_task, predict_body
from tests.webapp import Web, classical_segmenter, start_web

H, W = 120, 160
OBJECT = (30, 80, 40, 110)  # y0, y1, x0, x1 of the red rectangle


def _truth() -> np.ndarray:
    y0, y1, x0, x1 = OBJECT
    return box_mask(H, W, x0, y0, x1, y1)


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    """The app with every request authenticated as Label Studio does for an ML backend with
    an "Authentication token": ``Authorization: Token <token>`` (a reviewer's API token)."""
    with start_web(db_url, tmp_path / "var", segmenter=classical_segmenter()) as w:
        w.client.headers["Authorization"] = f"Token {w.tokens['reviewer']}"
        yield w


@pytest.fixture
def photo(web: Web, tmp_path: Path) -> Image:
    return _photo(web, tmp_path)


def _photo(web: Web, tmp_path: Path) -> Image:
    """An ingested 160x120 photo with a red rectangle (``OBJECT``), project labels Banana/Orange."""
    rgb = np.full((H, W, 3), 200, dtype=np.uint8)
    rgb[..., 2] = 180
    y0, y1, x0, x1 = OBJECT
    rgb[y0:y1, x0:x1] = (220, 30, 30)
    path = tmp_path / "photos" / "fruit.png"
    path.parent.mkdir()
    PILImage.fromarray(rgb).save(path)
    ingest(web.factory, project="fruit", paths=[path])
    with transaction(web.factory) as s:
        image = s.scalars(select(Image)).one()
        image.project.labels = ["Banana", "Orange"]
        return image


def _task(image: Image, **data: Any) -> dict[str, Any]:
    """A task as Label Studio sends it (data.image is the URL Label Studio serves)."""
    return ls_task(data.pop("url", image_url(image)), **data)


def _predict(
    web: Web, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kw: Any
):
    body = predict_body(tasks, context)
    return web.client.post("/ml/predict", json=body, **kw)


def _decode(region: dict[str, Any]) -> np.ndarray:
    """Label Studio's own decoder (label_studio_sdk.converter.brush)."""
    flat = brush.decode_rle(region["value"]["rle"])
    return flat.reshape(region["original_height"], region["original_width"], 4)[:, :, 3] > 0


def test_health_and_setup(web: Web) -> None:
    r = web.client.get("/ml/health")
    assert r.status_code == 200
    assert r.json()["status"] == "UP" and r.json()["model_class"]
    r = web.client.post(
        "/ml/setup",
        json={
            "project": "3.1714557600",
            "schema": LABEL_CONFIG,
            "hostname": "http://localhost:8080",
            "access_token": "abc",
            "model_version": None,
            "extra_params": None,
        },
    )
    assert r.status_code == 200 and r.json()["model_version"]


class CountingSegmenter:
    """The classical segmenter, counting ``propose`` and ``embed`` calls (the pre-fill work)."""

    def __init__(self) -> None:
        self.inner = classical_segmenter()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def propose(self, *a: Any, **kw: Any) -> Any:
        self.calls.append("propose")
        return self.inner.propose(*a, **kw)

    def embed(self, *a: Any, **kw: Any) -> Any:
        self.calls.append("embed")
        return self.inner.embed(*a, **kw)

    def embed_cached(self, *a: Any, **kw: Any) -> Any:
        self.calls.append("embed")
        return self.inner.embed_cached(*a, **kw)


def _prefilled(web: Web, photo: Image, *, control_fraction: float = 0.0) -> dict[str, Mask]:
    """A stored pre-fill of ``photo`` (model version "sam-test-v3", round 1) and its masks."""
    with transaction(web.factory) as s:
        image = s.get(Image, photo.id)
        mv = make_model_version(s, name="sam-test-v3")
        start_round(
            s,
            project_id=image.project_id,
            model_version_id=mv.id,
            control_fraction=control_fraction,
        )
        s.add(Prefill(image_id=image.id, model_version_id=mv.id, n_proposals=4, n_confident=2))
        common = {"model_version_id": mv.id}
        rows = {
            "confident": make_mask(
                s, image=image, mask=_truth(), predicted_iou=0.93, stability=0.97,
                confident=True, label="Banana", **common,
            ),
            "confident_unlabelled": make_mask(
                s, image=image, mask=box_mask(H, W, 0, 0, 20, 20), predicted_iou=0.9,
                confident=True, **common,
            ),
            "hidden": make_mask(
                s, image=image, mask=box_mask(H, W, 60, 60, 90, 90), predicted_iou=0.5,
                confident=False, label="Banana", **common,
            ),
            "rejected": make_mask(
                s, image=image, mask=box_mask(H, W, 0, 100, 10, 110), status="rejected",
                confident=True, **common,
            ),
            "human": make_mask(
                s, image=image, mask=box_mask(H, W, 120, 90, 150, 110), source="human",
                status="accepted",
            ),
        }  # fmt: skip
        s.expunge_all()
    return rows


def test_predict_serves_the_stored_prefill_as_the_annotator_sees_it(
    db_url: str, tmp_path: Path
) -> None:
    seg = CountingSegmenter()
    with start_web(db_url, tmp_path / "var", segmenter=seg) as web:
        web.client.headers["Authorization"] = f"Token {web.tokens['reviewer']}"
        photo = _photo(web, tmp_path)
        rows = _prefilled(web, photo)
        r = _predict(web, [_task(photo), _task(photo, url="/data/upload/3/0a1b2c3d-missing.png")])
        assert r.status_code == 200, r.text
        assert seg.calls == []  # served from the stored pre-fill, nothing computed
    results = r.json()["results"]
    assert len(results) == 2 and results[1]["result"] == []  # one prediction per task
    prediction = results[0]
    shown = {f"m{rows[k].id}": rows[k] for k in ("confident", "confident_unlabelled", "human")}
    regions = {reg["id"]: reg for reg in prediction["result"]}
    assert set(regions) == set(shown)  # not the hidden (unconfident) or rejected ones
    for rid, reg in regions.items():
        assert reg["type"] == "brushlabels" and reg["from_name"] == "tag"
        assert (reg["original_width"], reg["original_height"]) == (W, H)
        assert np.array_equal(_decode(reg), decode_rle(shown[rid].rle))
    confident = regions[f"m{rows['confident'].id}"]
    assert confident["value"]["brushlabels"] == ["Banana"]
    assert confident["score"] == pytest.approx(0.93)
    assert confident["model_version"] == "sam-test-v3"
    # unlabelled masks stay unlabelled: never the config's first label
    assert regions[f"m{rows['confident_unlabelled'].id}"]["value"]["brushlabels"] == []
    assert regions[f"m{rows['human'].id}"]["value"]["brushlabels"] == []
    assert prediction["model_version"] == "sam-test-v3"
    assert prediction["score"] == pytest.approx((0.93 + 0.9 + 1.0) / 3)


def test_predict_gives_control_arm_images_no_proposals(web: Web, photo: Image) -> None:
    rows = _prefilled(web, photo, control_fraction=1.0)
    r = _predict(web, [_task(photo)])
    assert r.status_code == 200, r.text
    (prediction,) = r.json()["results"]
    assert [reg["id"] for reg in prediction["result"]] == [f"m{rows['human'].id}"]


def test_predict_queues_images_not_prefilled_and_answers_at_once(
    db_url: str, tmp_path: Path
) -> None:
    seg = CountingSegmenter()
    with start_web(db_url, tmp_path / "var", segmenter=seg) as web:
        web.client.headers["Authorization"] = f"Token {web.tokens['reviewer']}"
        photo = _photo(web, tmp_path)
        # the TestClient runs the background task before it returns; the answer itself was
        # computed first, without the pre-fill (an empty prediction)
        r = _predict(web, [_task(photo)])
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["result"] == []
        with transaction(web.factory) as s:
            done = s.scalars(select(Prefill).where(Prefill.image_id == photo.id)).all()
            confident = s.scalars(
                select(Mask).where(Mask.image_id == photo.id, Mask.confident.is_(True))
            ).all()
            confident_ids = {f"m{m.id}" for m in confident}
        assert len(done) == 1 and done[0].status == "done"  # queued and pre-filled once
        assert seg.calls.count("propose") == 1
        again = _predict(web, [_task(photo)])
        assert {reg["id"] for reg in again.json()["results"][0]["result"]} == confident_ids
        assert seg.calls.count("propose") == 1  # the second answer is the stored one


def test_predict_leaves_queued_images_to_the_worker_when_asked(db_url: str, tmp_path: Path) -> None:
    seg = CountingSegmenter()
    with start_web(
        db_url, tmp_path / "var", segmenter=seg, ml_backend_prefill_on_predict=False
    ) as web:
        web.client.headers["Authorization"] = f"Token {web.tokens['reviewer']}"
        photo = _photo(web, tmp_path)
        assert _predict(web, [_task(photo)]).json()["results"][0]["result"] == []
        with transaction(web.factory) as s:
            assert s.scalars(select(Prefill)).all() == []
    assert seg.calls == []


def test_interactive_keypoints_give_one_mask(web: Web, photo: Image) -> None:
    y0, y1, x0, x1 = OBJECT
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    context = {
        "result": [
            {
                "original_width": W,
                "original_height": H,
                "image_rotation": 0,
                "value": {
                    "x": 100 * cx / W,
                    "y": 100 * cy / H,
                    "width": 0.3,
                    "labels": ["Banana"],
                    "keypointlabels": ["Banana"],
                },
                "is_positive": True,
                "id": "fBWv1t0S2L",
                "from_name": "tag2",
                "to_name": "image",
                "type": "keypointlabels",
                "origin": "manual",
            },
            {
                "original_width": W,
                "original_height": H,
                "image_rotation": 0,
                "value": {"x": 5.0, "y": 5.0, "width": 0.3, "keypointlabels": ["Banana"]},
                "is_positive": False,
                "id": "neg1",
                "from_name": "tag2",
                "to_name": "image",
                "type": "keypointlabels",
                "origin": "manual",
            },
        ]
    }
    r = _predict(web, [_task(photo)], context)
    assert r.status_code == 200, r.text
    (prediction,) = r.json()["results"]
    (region,) = prediction["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Banana"]
    assert region["from_name"] == "tag"
    mask = _decode(region)
    iou = mask_iou(mask, _truth())
    print(f"ML backend keypoint mask IoU {iou:.3f}")
    assert iou > 0.8
    assert not mask[int(0.05 * H), int(0.05 * W)]  # the negative click's pixel is background


def test_interactive_rectangle_gives_one_mask(web: Web, photo: Image) -> None:
    y0, y1, x0, x1 = OBJECT
    context = {
        "result": [
            {
                "original_width": W,
                "original_height": H,
                "type": "rectanglelabels",
                "value": {
                    "x": 100 * (x0 - 4) / W,
                    "y": 100 * (y0 - 4) / H,
                    "width": 100 * (x1 - x0 + 8) / W,
                    "height": 100 * (y1 - y0 + 8) / H,
                    "rectanglelabels": ["Orange"],
                },
            }
        ]
    }
    r = _predict(web, [_task(photo)], context)
    assert r.status_code == 200, r.text
    (region,) = r.json()["results"][0]["result"]
    assert region["value"]["brushlabels"] == ["Orange"]
    assert mask_iou(_decode(region), _truth()) > 0.8


def test_interactive_errors_name_the_problem(web: Web, photo: Image) -> None:
    bad = {
        "result": [
            {
                "type": "keypointlabels",
                "value": {"y": 10},
                "original_width": W,
                "original_height": H,
            }
        ]
    }
    r = _predict(web, [_task(photo)], bad)
    assert r.status_code == 422 and "x and y" in r.json()["detail"]
    ok = {
        "result": [
            {
                "type": "keypointlabels",
                "is_positive": True,
                "original_width": W,
                "original_height": H,
                "value": {"x": 50, "y": 50, "keypointlabels": ["Banana"]},
            }
        ]
    }
    r = _predict(web, [_task(photo, url="http://example.com/nowhere/other.jpg")], ok)
    assert r.status_code == 404 and "other.jpg" in r.json()["detail"]


def _webhook(
    action: str,
    image: Image,
    *,
    ann_id: int,
    updated: str,
    lead_time: float,
    result: list[dict[str, Any]],
) -> dict[str, Any]:
    task = _task(image)
    return {
        "action": action,
        "annotation": {
            "id": ann_id,
            "result": result,
            "created_username": " annotator@example.com, 1",
            "created_ago": "0 minutes",
            "completed_by": 1,
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": "2024-05-01T10:01:00.000000Z",
            "updated_at": updated,
            "draft_created_at": None,
            "lead_time": lead_time,
            "import_id": None,
            "last_action": None,
            "task": task["id"],
            "project": 3,
            "updated_by": 1,
            "parent_prediction": None,
            "parent_annotation": None,
            "last_created_by": None,
        },
        "task": task,
        "project": {"id": 3, "title": "fruit", "label_config": LABEL_CONFIG},
    }


def _brush_region(mask: np.ndarray, label: str, rid: str) -> dict[str, Any]:
    return {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_brush(mask), "brushlabels": [label]},
        "id": rid,
        "from_name": "tag",
        "to_name": "image",
        "type": "brushlabels",
        "origin": "manual",
    }


def test_webhook_records_annotation_and_lead_time(web: Web, photo: Image) -> None:
    first = _webhook(
        "ANNOTATION_CREATED",
        photo,
        ann_id=41,
        updated="2024-05-01T10:01:00.000000Z",
        lead_time=12.5,
        result=[_brush_region(_truth(), "Banana", "r1")],
    )
    r = web.client.post("/ml/webhook", json=first)
    assert r.status_code == 201, r.text
    assert len(r.json()["result"]["mask_ids"]) == 1
    assert (
        web.client.post("/ml/webhook", json=first).json()["result"]["mask_ids"] == []
    )  # same version

    polygon = {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {
            "points": [[0, 0], [10, 0], [10, 10], [0, 10]],
            "closed": True,
            "polygonlabels": ["Orange"],
        },
        "id": "p1",
        "from_name": "poly",
        "to_name": "image",
        "type": "polygonlabels",
        "origin": "manual",
    }
    second = _webhook(
        "ANNOTATION_UPDATED",
        photo,
        ann_id=41,
        updated="2024-05-01T10:02:00.000000Z",
        lead_time=20.0,
        result=[_brush_region(_truth(), "Banana", "r1"), polygon],
    )
    r = web.client.post("/ml/webhook", json=second)
    # the unchanged region r1 keeps its row; only the polygon is new
    assert r.status_code == 201 and len(r.json()["result"]["mask_ids"]) == 1
    with transaction(web.factory) as s:
        masks = list(s.scalars(select(Mask).where(Mask.image_id == photo.id).order_by(Mask.id)))
        events = list(s.scalars(select(Event).where(Event.kind == event_kinds.IMPORT_LEAD_TIME)))
    assert [m.status for m in masks] == ["accepted", "accepted"]
    assert all(m.source == "human" for m in masks)
    assert np.array_equal(decode_rle(masks[0].rle), _truth())
    assert masks[1].label == "Orange" and masks[1].bbox == [0.0, 0.0, 16.0, 12.0]
    assert sorted(e.payload["seconds"] for e in events) == [12.5, 20.0]
    assert masks[1].meta["label_studio"]["lead_time"] == 20.0
    # an older version arriving late changes nothing
    stale = _webhook(
        "ANNOTATION_UPDATED",
        photo,
        ann_id=41,
        updated="2024-05-01T10:01:30Z",
        lead_time=3.0,
        result=[],
    )
    assert web.client.post("/ml/webhook", json=stale).json()["result"]["events"] == 0

    r = web.client.post("/ml/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 3}})
    assert r.status_code == 200 and r.json()["status"] == "Unknown event"


def test_webhook_accepts_kept_proposals_fixes_edited_ones_and_adds_new(
    web: Web, photo: Image
) -> None:
    rows = _prefilled(web, photo)
    kept, edited = rows["confident"], rows["confident_unlabelled"]
    served = {
        reg["id"]: reg for reg in _predict(web, [_task(photo)]).json()["results"][0]["result"]
    }
    fixed_pixels = box_mask(H, W, 0, 0, 30, 25)
    edited_region = {**served[f"m{edited.id}"]}
    edited_region["value"] = {
        "format": "rle",
        "rle": mask_to_brush(fixed_pixels),
        "brushlabels": ["Orange"],
    }
    unlabelled = {**_brush_region(box_mask(H, W, 100, 5, 140, 25), "Banana", "new1")}
    unlabelled["value"] = {**unlabelled["value"], "brushlabels": []}
    body = _webhook(
        "ANNOTATION_CREATED",
        photo,
        ann_id=77,
        updated="2024-05-01T10:05:00.000000Z",
        lead_time=42.0,
        result=[served[f"m{kept.id}"], edited_region, served[f"m{rows['human'].id}"], unlabelled],
    )
    body["annotation"]["parent_prediction"] = 5
    r = web.client.post("/ml/webhook", json=body)
    assert r.status_code == 201, r.text
    with transaction(web.factory) as s:
        by_id = {m.id: m for m in s.scalars(select(Mask).where(Mask.image_id == photo.id))}
        n_before = len(by_id)
        accepted = by_id[kept.id]
        assert (accepted.status, accepted.source) == ("accepted", "model")  # an accept
        assert by_id[edited.id].status == "superseded"
        (fix,) = [m for m in by_id.values() if m.parent_id == edited.id]
        assert (fix.source, fix.status, fix.label) == ("model_edited", "accepted", "Orange")
        assert np.array_equal(decode_rle(fix.rle), fixed_pixels)
        (new,) = [m for m in by_id.values() if (m.meta or {}).get("label_studio", {}).get(
            "region_id") == "new1"]  # fmt: skip
        assert (new.source, new.label) == ("human", None)  # the unlabelled region imported
        assert by_id[rows["human"].id].status == "accepted"  # kept as it was
        assert by_id[rows["hidden"].id].status == "proposed"  # never shown: untouched
        (event,) = s.scalars(select(Event).where(Event.kind == event_kinds.IMPORT_LEAD_TIME))
        assert event.payload["seconds"] == 42.0
    # the same annotation again (a retried webhook): nothing changes
    again = web.client.post("/ml/webhook", json=body)
    assert again.status_code == 201 and again.json()["result"]["mask_ids"] == []
    with transaction(web.factory) as s:
        assert len(s.scalars(select(Mask).where(Mask.image_id == photo.id)).all()) == n_before


def test_webhook_rejects_confident_proposals_the_annotator_deleted(web: Web, photo: Image) -> None:
    rows = _prefilled(web, photo)
    served = {
        reg["id"]: reg for reg in _predict(web, [_task(photo)]).json()["results"][0]["result"]
    }
    body = _webhook(
        "ANNOTATION_CREATED",
        photo,
        ann_id=78,
        updated="2024-05-01T10:05:00Z",
        lead_time=5.0,
        result=[served[f"m{rows['confident'].id}"]],
    )
    assert web.client.post("/ml/webhook", json=body).status_code == 201
    with transaction(web.factory) as s:
        status = {m.id: m.status for m in s.scalars(select(Mask))}
    assert status[rows["confident"].id] == "accepted"
    assert status[rows["confident_unlabelled"].id] == "rejected"
    assert status[rows["hidden"].id] == "proposed"


def test_basic_auth_with_an_api_token_as_password(web: Web) -> None:
    """Label Studio 1.23's model form offers only basic auth: NAME + that user's API token."""
    web.client.headers.pop("Authorization")
    assert (
        web.client.get("/ml/health", auth=("reviewer1", web.tokens["reviewer"])).status_code == 200
    )
    for wrong in (("annotator1", web.tokens["reviewer"]), ("reviewer1", "not-a-token")):
        r = web.client.get("/ml/health", auth=wrong)
        assert r.status_code == 401 and "Basic Authentication" in r.json()["detail"]


def test_basic_auth(db_url: str, tmp_path: Path) -> None:
    with start_web(
        db_url,
        tmp_path / "var",
        segmenter=classical_segmenter(),
        ml_backend_basic_auth="reviewer1:s3cret-pass",
    ) as web:
        assert web.app.state.settings.ml_backend_auth == "basic"  # implied by the credentials
        r = web.client.get("/ml/health")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        wrong = base64.b64encode(b"reviewer1:nope").decode()
        assert (
            web.client.get("/ml/health", headers={"Authorization": f"Basic {wrong}"}).status_code
            == 401
        )
        r = web.client.get("/ml/health", auth=("reviewer1", "s3cret-pass"))
        assert r.status_code == 200 and r.json()["status"] == "UP"
        assert web.client.post("/ml/predict", json={"tasks": []}).status_code == 401
        # the app's own tokens work as well
        assert web.client.get("/ml/health", headers=web.as_("annotator")).status_code == 200
