"""Hostile images on the routes that decode pixels, on both databases: the file, thumbnail,
decode and mask-add routes answer 404 for images not ingested ``ok`` (the 400 MP PNG bomb,
EPS, text, truncated, empty, too small) without decoding them: each request returns fast and
the process's peak resident memory does not grow (measured with /proc: peak RSS reset through
``clear_refs`` before the request, ``VmHWM`` read after). A file swapped for a bomb after
ingest is refused by the per-call check of ``engine.imageio.open_image``."""

from __future__ import annotations

import ctypes
import gc
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from httpx import Response
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import Image
from engine.imageio import load_rgb
from engine.ingest import ingest
from engine.interop.label_studio import image_url
from engine.masks import encode_rle
from engine.uris import uri_to_path
from tests.ingest_zoo import hostile_zoo, png_header_bomb
from tests.label_studio_payloads import click, ls_task, predict_body
from tests.webapp import Web, classical_segmenter, start_web

FAST_S = 2.0  # generous on a loaded 2-core machine; a decode of the bomb takes ~35 s
GROWTH_MB = 50.0  # the bomb decoded would need 1,200 MB


def _kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


_LIBC = ctypes.CDLL("libc.so.6")


def measured(call: Callable[[], Response]) -> tuple[Response, float, float]:
    """(response, seconds, MB of peak-RSS growth over the RSS before the call).

    Freed memory is first handed back to the kernel (``malloc_trim``): pages an earlier test
    freed but the C heap kept mapped would otherwise be reused by a decode without raising
    the resident size, and a real decode would read as no growth (seen in a run where this
    module shared a pytest-xdist worker with heavier tests)."""
    gc.collect()
    _LIBC.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _kb("VmRSS")
    t0 = time.perf_counter()
    r = call()
    seconds = time.perf_counter() - t0
    return r, seconds, (_kb("VmHWM") - before) / 1024


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path / "var", segmenter=classical_segmenter()) as w:
        yield w


@pytest.fixture
def zoo(web: Web, tmp_path: Path, shared_data: Path) -> dict[str, Image]:
    """The hostile zoo ingested; file name -> image row (ok and rejected)."""
    root = tmp_path / "zoo"
    hostile_zoo(root, shared_data)
    (root / "locked").chmod(0o755)  # not under test here
    ingest(web.factory, project="zoo", paths=[root])
    with web.factory() as s:
        rows = list(s.scalars(select(Image)))
        s.expunge_all()
    return {Path(uri_to_path(r.uri)).name: r for r in rows}


def test_the_memory_probe_sees_a_real_decode(tmp_path: Path) -> None:
    """Control: the measure used below does catch a 48 MB decode."""
    PILImage.new("RGB", (4000, 4000), (1, 2, 3)).save(tmp_path / "big.png")
    _, _, grown = measured(lambda: load_rgb(tmp_path / "big.png"))  # type: ignore[arg-type,return-value]
    assert grown > 40, grown


def _ml_predict(web: Web, image: Image) -> Response:
    """Label Studio's interactive predict: one positive keypoint on the task's image."""
    body = predict_body([ls_task(image_url(image))], click(10.0, 10.0, width=40, height=40))
    return web.client.post("/ml/predict", json=body, headers=web.as_("reviewer"))


def _routes(web: Web, image_id: int) -> dict[str, Callable[[], Response]]:
    rle = encode_rle(np.ones((40, 40), dtype=bool))
    return {
        "file": lambda: web.client.get(f"/api/images/{image_id}/file", headers=web.as_("admin")),
        "thumb": lambda: web.client.get(
            f"/api/curation/images/{image_id}/thumb?size=256", headers=web.as_("curator")
        ),
        "decode": lambda: web.client.post(
            f"/api/images/{image_id}/decode",
            json={"points": [[5, 5]], "labels": [1]},
            headers=web.as_("admin"),
        ),
        "add mask": lambda: web.client.post(
            f"/api/images/{image_id}/masks",
            json={"rle": {"size": rle["size"], "counts": rle["counts"]}},
            headers=web.as_("admin"),
        ),
    }


def test_rejected_images_are_404_without_decoding(web: Web, zoo: dict[str, Image]) -> None:
    rejected = ["bomb.png", "drawing.eps", "notes.png", "truncated.jpg", "empty.jpg", "tiny.png"]
    assert all(zoo[n].status == "rejected" for n in rejected)
    for name in rejected:
        for route, call in _routes(web, zoo[name].id).items():
            r, seconds, grown = measured(call)
            assert r.status_code == 404, (name, route, r.text)
            detail = r.json()["detail"]
            assert "rejected at ingest" in detail and zoo[name].reason[:20] in detail
            assert "Traceback" not in r.text
            assert seconds < FAST_S and grown < GROWTH_MB, (name, route, seconds, grown)
        r, seconds, grown = measured(lambda name=name: _ml_predict(web, zoo[name]))
        assert r.status_code == 404 and "Traceback" not in r.text, (name, r.text)
        assert seconds < FAST_S and grown < GROWTH_MB, (name, "ml", seconds, grown)


def test_a_file_swapped_for_a_bomb_after_ingest_is_refused(web: Web, zoo: dict[str, Image]) -> None:
    dog = zoo["dog.jpg"]
    assert dog.status == "ok"
    png_header_bomb(Path(dog.uri), 20_000, 20_000)  # same path, now 400 MP declared
    for route in ("file", "thumb", "decode"):
        r, seconds, grown = measured(_routes(web, dog.id)[route])
        assert r.status_code == 404, (route, r.text)
        assert seconds < FAST_S and grown < GROWTH_MB, (route, seconds, grown)
    r, seconds, grown = measured(lambda: _ml_predict(web, dog))
    assert r.status_code == 404 and "too large" in r.json()["detail"], r.text
    assert seconds < FAST_S and grown < GROWTH_MB, ("ml", seconds, grown)
    r = _routes(web, dog.id)["thumb"]()
    assert "too large" in r.json()["detail"]


def test_ok_images_still_served_including_odd_names_and_first_frames(
    web: Web, zoo: dict[str, Image]
) -> None:
    odd = next(r for r in zoo.values() if r.uri.startswith("file://"))
    assert odd.status == "ok"
    r = _routes(web, odd.id)["file"]()
    assert r.status_code == 200 and r.content == Path(uri_to_path(odd.uri)).read_bytes()
    r = _routes(web, odd.id)["thumb"]()
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    r = _routes(web, odd.id)["decode"]()
    assert r.status_code == 200, r.text
    r = _ml_predict(web, odd)
    assert r.status_code == 200 and r.json()["results"][0]["result"], r.text
    anim = zoo["anim.gif"]
    assert (anim.meta or {}).get("flags", {}).get("multi-frame")
    r = _routes(web, anim.id)["file"]()
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"  # not the GIF
    with PILImage.open(io.BytesIO(r.content)) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape == (64, 64, 3) and rgb[..., 0].mean() > 200  # frame 0 is red
