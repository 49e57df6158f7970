"""``GET /api/images/{id}/file?width=``: the reduced JPEG the review canvas shows at fit
(the full-resolution file is loaded only when zoomed in)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PILImage

from db.session import transaction
from tests.factories import make_image
from tests.webapp import NoModel, Web, start_web


@pytest.fixture(autouse=True)
def _fresh_scale() -> Iterator[None]:
    """The reduction last asked is per process: each test starts and ends without one."""
    from annotator_ui import renditions

    renditions._LAST_SCALE.clear()
    yield
    renditions._LAST_SCALE.clear()


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


def test_next_prepares_the_renditions_of_the_leased_image_and_the_next_ones(
    web: Web, tmp_path: Path
) -> None:
    """After ``next`` leases an image and the app goes idle, that image's rendition and those
    of the next images (RENDER_AHEAD in all) are in the cache, at the reduction the canvas
    last asked for; the request then gets the same bytes."""
    from annotator_ui import renditions
    from db.models import Project

    r = web.client.post(
        "/api/admin/projects", json={"name": "p", "labels": ["a"]}, headers=web.as_("admin")
    )
    pid = int(r.json()["id"])
    rng = np.random.default_rng(1)
    images = []
    with transaction(web.factory) as s:
        project = s.get(Project, pid)
        for i in range(renditions.RENDER_AHEAD + 2):
            path = tmp_path / f"photo{i}.jpg"
            rgb = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
            PILImage.fromarray(rgb).save(path, format="JPEG")
            image = make_image(
                s,
                project=project,
                uri=str(path),
                width=400,
                height=300,
                format="JPEG",
                file_size=path.stat().st_size,
            )
            images.append((image.id, image.sha256))
    last_id = images[-1][0]
    asked = web.client.get(f"/api/images/{last_id}/file?width=100", headers=web.as_("admin"))
    assert asked.status_code == 200  # the canvas asks W/4: the look-ahead prepares W/4

    def cached() -> list[bool]:
        return [renditions.RENDITIONS.get((i, sha, 100)) is not None for i, sha in images]

    assert cached() == [False] * (len(images) - 1) + [True]
    ann = web.as_("annotator")
    task = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    assert task["image"]["id"] == images[0][0]
    assert web.app.state.idle_work.wait_idle(timeout=60)
    assert cached() == [True] * renditions.RENDER_AHEAD + [False, True]
    assert web.app.state.idle_work.status()["failed"] == 0
    r = web.client.get(f"/api/images/{images[0][0]}/file?width=100", headers=ann)
    assert r.content == renditions.RENDITIONS.get((images[0][0], images[0][1], 100))
    assert PILImage.open(io.BytesIO(r.content)).size == (100, 75)


def test_ahead_width_follows_the_last_reduction_asked() -> None:
    from annotator_ui import renditions

    assert renditions.ahead_width(64) is None  # small, nothing asked: sent whole
    assert renditions.ahead_width(4000) == 2000  # a large photo: W/2 before any request
    photo = SimpleNamespace(width=4000)
    renditions.note_request(photo, 500)  # type: ignore[arg-type]
    assert renditions.ahead_width(4000) == 500 and renditions.ahead_width(64) is None
    renditions.note_request(photo, 1234)  # type: ignore[arg-type]  # not W/2**k: ignored
    assert renditions.ahead_width(1000) == 125
