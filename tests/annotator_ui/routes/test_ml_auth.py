"""The Label Studio ML backend's trust boundary: no anonymous access by default (``/ml/health``
included: Label Studio sends the model's token there too), each request acts as the token's
user with that user's rights, no server-file probe through ``task.data.image``, and no
anonymous backend on a reachable address (app lifespan and ``dataengine serve``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import func, select

from annotator_ui.app import create_app
from db.models import Event, Image, Mask, Prefill
from db.session import transaction
from engine.ingest import ingest
from engine.interop.label_studio import image_url
from engine.settings import UnsafeBinding
from tests.annotator_ui.routes.test_permissions import api_routes
from tests.factories import box_mask, make_mask, make_model_version
from tests.label_studio_payloads import LABEL_CONFIG, click, ls_task, predict_body
from tests.webapp import Web, classical_segmenter, settings_for, start_web

ROOT = Path(__file__).resolve().parents[3]
H, W = 48, 64
CLICK = click(50, 50, width=W, height=H)


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path / "var", segmenter=classical_segmenter()) as w:
        yield w


@pytest.fixture
def photo(web: Web, tmp_path: Path) -> Image:
    """One ingested photo (a red square on grey), pre-filled with one confident proposal."""
    rgb = np.full((H, W, 3), 200, dtype=np.uint8)
    rgb[10:30, 20:40] = (220, 30, 30)
    path = tmp_path / "photos" / "fruit.png"
    path.parent.mkdir()
    PILImage.fromarray(rgb).save(path)
    ingest(web.factory, project="fruit", paths=[path])
    with transaction(web.factory) as s:
        image = s.scalars(select(Image)).one()
        mv = make_model_version(s)
        s.add(Prefill(image_id=image.id, model_version_id=mv.id, n_proposals=1, n_confident=1))
        make_mask(
            s,
            image=image,
            mask=box_mask(H, W, 20, 10, 40, 30),
            label="Banana",
            confident=True,
            model_version_id=mv.id,
        )
        return image


def predict(web: Web, url: str, headers: dict[str, str], context: Any = None) -> Any:
    return web.client.post(
        "/ml/predict", json=predict_body([ls_task(url)], context), headers=headers
    )


def webhook(web: Web, image: Image, headers: dict[str, str], ann_id: int = 1) -> Any:
    region = {
        "original_width": W,
        "original_height": H,
        "value": {"x": 25, "y": 25, "width": 25, "height": 25, "rectanglelabels": ["Banana"]},
        "id": f"r{ann_id}",
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
    }
    body = {
        "action": "ANNOTATION_CREATED",
        "task": ls_task(image_url(image)),
        "annotation": {
            "id": ann_id,
            "result": [region],
            "lead_time": 4.0,
            "updated_at": f"2024-05-01T10:0{ann_id}:00Z",
        },
        "project": {"id": 3, "label_config": LABEL_CONFIG},
    }
    return web.client.post("/ml/webhook", json=body, headers=headers)


def ml_routes(web: Web) -> list[tuple[str, str]]:
    return sorted(
        (r.path, m)
        for r in api_routes(web.app.routes)
        if r.path.startswith("/ml")
        for m in r.methods or ()
        if m != "HEAD"
    )


def test_every_ml_route_needs_a_token_and_works_with_one(web: Web, photo: Image) -> None:
    routes = ml_routes(web)
    assert {("/ml/health", "GET"), ("/ml/predict", "POST"), ("/ml/webhook", "POST")} <= set(routes)
    for path, method in routes:
        r = web.client.request(method, path, json={})
        assert r.status_code == 401, (path, r.text)
        assert "token" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
        r = web.client.request(method, path, json={}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401, path
    # a session cookie is not an ML backend credential
    web.client.cookies.set("de_session", web.tokens["reviewer"])
    assert web.client.get("/ml/health").status_code == 401
    web.client.cookies.clear()
    # Label Studio's "Token <token>" and the usual "Bearer <token>" both authenticate
    token = web.tokens["reviewer"]
    for header in (f"Token {token}", f"Bearer {token}", f"token  {token} "):
        r = web.client.get("/ml/health", headers={"Authorization": header})
        assert r.status_code == 200 and r.json()["status"] == "UP", header
    r = predict(web, image_url(photo), web.as_("reviewer"))
    assert r.status_code == 200 and len(r.json()["results"][0]["result"]) == 1


def test_annotators_read_and_write_only_images_they_lease(web: Web, photo: Image) -> None:
    url = image_url(photo)
    ann = web.as_("annotator")
    # no lease: the image answers as if it were not there (no regions; 404 interactive)
    assert predict(web, url, ann).json()["results"][0]["result"] == []
    missing = url.replace("fruit.png", "nothere.png")
    r1, r2 = predict(web, url, ann, CLICK), predict(web, missing, ann, CLICK)
    assert r1.status_code == r2.status_code == 404
    assert r1.json()["detail"].replace("fruit", "X") == r2.json()["detail"].replace("nothere", "X")
    assert webhook(web, photo, ann).status_code == 404
    # curators may read (as everywhere in the app) but never write through the webhook
    assert len(predict(web, url, web.as_("curator")).json()["results"][0]["result"]) == 1
    r = webhook(web, photo, web.as_("curator"))
    assert r.status_code == 403 and "curator" in r.json()["detail"]

    lease = web.client.post(
        "/api/tasks/next", json={"project_id": photo.project_id}, headers=ann
    ).json()
    assert lease["image"]["id"] == photo.id
    assert len(predict(web, url, ann).json()["results"][0]["result"]) == 1
    assert predict(web, url, ann, CLICK).status_code == 200
    # while the annotator holds it, nobody else writes into it, not even a reviewer
    r = webhook(web, photo, web.as_("reviewer"))
    assert r.status_code == 409 and "live lease" in r.json()["detail"]
    r = webhook(web, photo, ann)
    assert r.status_code == 201, r.text
    with web.factory() as s:
        human = s.scalars(select(Mask).where(Mask.source == "human")).one()
        assert human.author_id == web.user_ids["annotator"]
        ev = s.scalars(select(Event)).one()
        assert ev.user_id == web.user_ids["annotator"] and ev.kind == "import_lead_time"
    # another annotator gets nothing back from the image and cannot write into it
    _, other = web.add_user("ann2", "annotator")
    assert predict(web, url, web.as_(other)).json()["results"][0]["result"] == []
    assert webhook(web, photo, web.as_(other), ann_id=2).status_code == 404
    with web.factory() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 1
    # once submitted, a reviewer's webhook may write
    assert web.client.post(
        f"/api/tasks/{lease['lease_id']}/submit", json={"ops": []}, headers=ann
    ).is_success
    assert webhook(web, photo, web.as_("reviewer"), ann_id=3).status_code == 201


def test_a_local_files_path_is_never_probed_on_the_server(web: Web, tmp_path: Path) -> None:
    """The same answer whether the named file exists on the server or not."""
    real = tmp_path / "secret" / "exists.png"
    real.parent.mkdir()
    real.write_bytes(b"not for you")
    ghost = tmp_path / "secret" / "absent.png"
    assert real.is_file() and not ghost.exists()

    def answers(path: Path) -> list[tuple[int, str]]:
        rel = str(path).lstrip("/")
        url = f"/data/local-files/?d={rel}"
        out = []
        for ctx in (None, CLICK):
            r = predict(web, url, web.as_("admin"), ctx)
            out.append((r.status_code, r.text.replace(rel, "<path>")))
        body = {"action": "ANNOTATION_CREATED", "task": ls_task(url), "annotation": {"id": 1},
                "project": {"label_config": LABEL_CONFIG}}  # fmt: skip
        r = web.client.post("/ml/webhook", json=body, headers=web.as_("admin"))
        out.append((r.status_code, r.text.replace(rel, "<path>")))
        return out

    found, missing = answers(real), answers(ghost)
    assert [code for code, _ in found] == [200, 404, 404]
    assert found == missing


def test_basic_auth_acts_as_its_user(db_url: str, tmp_path: Path) -> None:
    with start_web(
        db_url,
        tmp_path / "var",
        segmenter=classical_segmenter(),
        ml_backend_auth="basic",
        ml_backend_basic_auth="curator1:s3cret-pass",
    ) as web:
        assert web.client.get("/ml/health", auth=("curator1", "s3cret-pass")).status_code == 200
        assert web.client.get("/ml/health", auth=("admin1", "s3cret-pass")).status_code == 401
        r = web.client.post("/ml/webhook", json={}, auth=("curator1", "s3cret-pass"))
        assert r.status_code == 403  # the curator's rights, not a service account's


def test_no_auth_only_on_loopback(db_url: str, tmp_path: Path) -> None:
    with start_web(
        db_url, tmp_path / "var", segmenter=classical_segmenter(), ml_backend_auth="none"
    ) as web:
        assert web.client.get("/ml/health").status_code == 200  # 127.0.0.1: allowed
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        settings = settings_for(db_url, tmp_path / "var", ml_backend_auth="none", host=host)
        app = create_app(settings, segmenter=classical_segmenter())
        with pytest.raises(UnsafeBinding, match="DATAENGINE_ML_BACKEND_AUTH=none"):  # noqa: SIM117
            with TestClient(app):  # runs the lifespan
                pass


def test_serve_refuses_an_anonymous_backend_on_all_interfaces(sqlite_url: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAENGINE_DATABASE_URL": sqlite_url,
        "DATAENGINE_ML_BACKEND_AUTH": "none",
    }
    cmd = [sys.executable, "-m", "scripts.cli", "serve", "--host", "0.0.0.0", "--port", "1"]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve on 0.0.0.0" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
