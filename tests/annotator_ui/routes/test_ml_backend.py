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

from db.models import Event, Image, Mask
from db.session import transaction
from engine.flywheel import events as event_kinds
from engine.ingest import ingest
from engine.interop.label_studio import image_url, mask_to_brush
from engine.masks import decode_rle, mask_iou
from tests.factories import box_mask, make_mask
from tests.webapp import Web, classical_segmenter, start_web

H, W = 120, 160
OBJECT = (30, 80, 40, 110)  # y0, y1, x0, x1 of the red rectangle

LABEL_CONFIG = """
<View>
    <Image name="image" value="$image" zoom="true"/>
    <BrushLabels name="tag" toName="image">
        <Label value="Banana" background="#FF0000"/>
        <Label value="Orange" background="#0d14d3"/>
    </BrushLabels>
    <KeyPointLabels name="tag2" toName="image" smart="true" >
        <Label value="Banana" background="#000000" showInline="true"/>
        <Label value="Orange" background="#000000" showInline="true"/>
    </KeyPointLabels>
    <RectangleLabels name="tag3" toName="image"  >
        <Label value="Banana" background="#000000" showInline="true"/>
        <Label value="Orange" background="#000000" showInline="true"/>
    </RectangleLabels>
</View>
"""


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
    return {
        "id": 7,
        "data": {"image": data.pop("url", image_url(image)), **data},
        "meta": {},
        "created_at": "2024-05-01T10:00:00.000000Z",
        "updated_at": "2024-05-01T10:00:00.000000Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": 7,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "project": 3,
        "updated_by": None,
        "file_upload": None,
        "annotations": [],
        "predictions": [],
    }


def _predict(
    web: Web, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kw: Any
):
    body = {
        "tasks": tasks,
        "model_version": None,
        "project": "3.1714557600",
        "label_config": LABEL_CONFIG,
        "params": {"login": None, "password": None, "context": context},
    }
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


def test_predict_returns_the_prefill_as_brushlabels(web: Web, photo: Image) -> None:
    with transaction(web.factory) as s:
        image = s.get(Image, photo.id)
        a = make_mask(s, image=image, mask=_truth(), predicted_iou=0.8, label="Banana")
        b = make_mask(s, image=image, mask=box_mask(H, W, 0, 0, 10, 10), status="rejected")
        c = make_mask(
            s,
            image=image,
            mask=box_mask(H, W, 120, 90, 150, 110),
            source="human",
            status="accepted",
        )
        want = {f"m{a.id}": a, f"m{c.id}": c}
        assert b.id not in want
    r = _predict(web, [_task(photo), _task(photo, url="/data/upload/3/0a1b2c3d-missing.png")])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and results[1]["result"] == []  # one prediction per task
    regions = results[0]["result"]
    assert {reg["id"] for reg in regions} == set(want)
    for reg in regions:
        assert (
            reg["type"] == "brushlabels" and reg["from_name"] == "tag" and reg["to_name"] == "image"
        )
        assert reg["value"]["format"] == "rle"
        assert (reg["original_width"], reg["original_height"]) == (W, H)
        assert np.array_equal(_decode(reg), decode_rle(want[reg["id"]].rle))
    by_id = {reg["id"]: reg for reg in regions}
    assert by_id[f"m{a.id}"]["value"]["brushlabels"] == ["Banana"]
    assert by_id[f"m{a.id}"]["score"] == pytest.approx(0.8)
    assert by_id[f"m{c.id}"]["value"]["brushlabels"] == ["Banana"]  # unlabelled -> first label


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
    assert r.status_code == 201 and len(r.json()["result"]["mask_ids"]) == 2
    with transaction(web.factory) as s:
        masks = list(s.scalars(select(Mask).where(Mask.image_id == photo.id).order_by(Mask.id)))
        events = list(s.scalars(select(Event).where(Event.kind == event_kinds.IMPORT_LEAD_TIME)))
    assert [m.status for m in masks] == ["superseded", "accepted", "accepted"]
    assert all(m.source == "human" for m in masks)
    assert np.array_equal(decode_rle(masks[1].rle), _truth())
    assert masks[2].label == "Orange" and masks[2].bbox == [0.0, 0.0, 16.0, 12.0]
    assert sorted(e.payload["seconds"] for e in events) == [12.5, 20.0]
    assert masks[1].meta["label_studio"]["lead_time"] == 20.0

    r = web.client.post("/ml/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 3}})
    assert r.status_code == 200 and r.json()["status"] == "Unknown event"


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
