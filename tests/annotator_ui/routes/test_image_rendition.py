"""``GET /api/images/{id}/file?width=``: the reduced JPEG the review canvas shows at fit
(the full-resolution file is loaded only when zoomed in)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from db.session import transaction
from tests.factories import make_image
from tests.webapp import NoModel, Web, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def test_a_reduced_rendition_in_proportion_then_served_from_memory(
    web: Web, tmp_path: Path
) -> None:
    path = tmp_path / "photo.jpg"
    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(path, format="JPEG")
    r = web.client.post(
        "/api/admin/projects", json={"name": "p", "labels": ["a"]}, headers=web.as_("admin")
    )
    pid = int(r.json()["id"])
    with transaction(web.factory) as s:
        from db.models import Project

        image_id = make_image(
            s,
            project=s.get(Project, pid),
            uri=str(path),
            width=400,
            height=300,
            format="JPEG",
            file_size=path.stat().st_size,
        ).id
    admin = web.as_("admin")
    r = web.client.get(f"/api/images/{image_id}/file?width=100", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(r.content)).size == (100, 75)
    again = web.client.get(f"/api/images/{image_id}/file?width=100", headers=admin)
    assert again.content == r.content
    full = web.client.get(f"/api/images/{image_id}/file?width=400", headers=admin)
    assert full.content == path.read_bytes()  # not below the image's width: the file itself
    assert web.client.get(f"/api/images/{image_id}/file?width=3", headers=admin).status_code == 422
