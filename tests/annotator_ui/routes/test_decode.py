"""The decode endpoint: RLE, PNG, refinement through ``mask_input_id``, 422 on bad prompts,
403 without a lease."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from engine.ingest import ingest
from engine.masks import decode_rle
from tests.webapp import Web, classical_segmenter, start_web


@pytest.fixture
def live(db_url: str, tmp_path: Path, shared_data: Path) -> Iterator[tuple[Web, int, int]]:
    with start_web(db_url, tmp_path, segmenter=classical_segmenter()) as w:
        summary = ingest(w.factory, project="decode", paths=[shared_data / "samples" / "dog.jpg"])
        with w.factory() as s:
            from db.projects import get_project

            pid = get_project(s, name="decode").id
        w.client.post("/api/tasks/next", json={"project_id": pid}, headers=w.as_("annotator"))
        yield w, summary.image_ids[0], pid


def test_decode_endpoint(live: tuple[Web, int, int]) -> None:
    web, image_id, _ = live
    c, ann = web.client, web.as_("annotator")
    url = f"/api/images/{image_id}/decode"
    r = c.post(url, json={"points": [[400, 300]], "labels": [1]}, headers=ann)
    assert r.status_code == 200, r.text
    out = r.json()
    mask = decode_rle(out["rle"])
    assert mask.shape == (534, 800) and out["area"] == int(mask.sum()) > 0
    assert 0.0 <= out["score"] <= 1.0
    # refine with a negative click through mask_input_id, and a box prompt
    body = {"points": [[400, 300], [100, 100]], "labels": [1, 0]}
    if out["mask_input_id"]:
        body["mask_input_id"] = out["mask_input_id"]
    assert c.post(url, json=body, headers=ann).status_code == 200
    r = c.post(url, json={"box": [300, 150, 600, 500], "format": "png"}, headers=ann)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    png = np.asarray(PILImage.open(io.BytesIO(r.content)))
    assert png.shape == (534, 800) and float(r.headers["x-score"]) >= 0
    # bad prompts: 422 with the reason
    bad = [
        {"points": [[800, 10]], "labels": [1]},
        {"points": [[-1, 10]], "labels": [1]},
        {"points": [[10, 10]], "labels": [1, 0]},
        {"points": [], "labels": []},
        {"box": [10, 10, 5, 50]},
        {"box": [0, 0, 900, 100]},
        {"points": [[10, 10]], "labels": [1], "mask_input_id": "nope"},
    ]
    for b in bad:
        r = c.post(url, json=b, headers=ann)
        assert r.status_code == 422, (b, r.text)
    nan = '{"points": [[NaN, 10]], "labels": [1]}'
    r = c.post(url, content=nan, headers={**ann, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    # another annotator (no lease on this image) may not decode it
    _, other = web.add_user("ann-other", "annotator")
    assert (
        c.post(url, json={"points": [[1, 1]], "labels": [1]}, headers=web.as_(other)).status_code
        == 403
    )
