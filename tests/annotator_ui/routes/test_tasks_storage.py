"""GET /api/images/{id}/file for images on object storage: streamed through the app, or a
presigned redirect (s3), or decoded from remote bytes; missing objects are 404 with why."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import Image
from engine.ingest import ingest
from tests.object_store import http_folder, make_bucket, s3_server, sample_photos
from tests.webapp import start_web

__all__ = ["http_folder", "s3_server"]  # fixtures used below


def _ids(factory: object) -> dict[str, int]:
    with factory() as s:  # type: ignore[operator]
        return {im.uri.rsplit("/", 1)[-1]: im.id for im in s.scalars(select(Image))}


def test_file_route_streams_s3_objects(db_url: str, tmp_path: Path, s3_server: str) -> None:
    photos = sample_photos()
    rotated = io.BytesIO()
    exif = PILImage.Exif()
    exif[0x0112] = 6
    with PILImage.open(photos[0]) as im:
        im.convert("RGB").save(rotated, format="JPEG", exif=exif)
        w, h = im.size
    objects = {p.name: p.read_bytes() for p in photos} | {"rotated.jpg": rotated.getvalue()}
    make_bucket(s3_server, "imgs", objects)
    with start_web(db_url, tmp_path / "var") as web:
        summary = ingest(web.factory, project="p", paths=["s3://imgs/"], workers=2)
        assert summary.added == 4
        ids = _ids(web.factory)
        for p in photos:  # sent as stored, byte for byte
            r = web.client.get(f"/api/images/{ids[p.name]}/file", headers=web.as_("reviewer"))
            assert r.status_code == 200 and r.content == p.read_bytes()
            assert r.headers["content-type"] == "image/png"
        # EXIF-rotated: decoded from the object's bytes and sent upright as JPEG
        r = web.client.get(f"/api/images/{ids['rotated.jpg']}/file", headers=web.as_("admin"))
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        with PILImage.open(io.BytesIO(r.content)) as shown:
            assert shown.size == (h, w)
        # the object disappears: 404 naming the reason, nothing else breaks
        import boto3

        boto3.client("s3", endpoint_url=s3_server).delete_object(Bucket="imgs", Key=photos[1].name)
        r = web.client.get(f"/api/images/{ids[photos[1].name]}/file", headers=web.as_("admin"))
        assert r.status_code == 404 and "not found" in r.json()["detail"]
        assert "Traceback" not in r.text


def test_presigned_redirect(sqlite_url: str, tmp_path: Path, s3_server: str) -> None:
    photo = sample_photos()[2]
    make_bucket(s3_server, "imgs", {"c.png": photo.read_bytes()})
    with start_web(sqlite_url, tmp_path / "var", presigned_redirect=True) as web:
        ingest(web.factory, project="p", paths=["s3://imgs/c.png"])
        image_id = _ids(web.factory)["c.png"]
        r = web.client.get(
            f"/api/images/{image_id}/file", headers=web.as_("admin"), follow_redirects=False
        )
        assert r.status_code == 307 and r.headers["location"].startswith(s3_server)
        assert httpx.get(r.headers["location"]).content == photo.read_bytes()  # no credentials
        r = web.client.get(f"/api/images/{image_id}/file")  # still needs a login first
        assert r.status_code == 401


def test_file_route_over_http(
    sqlite_url: str, tmp_path: Path, http_folder: tuple[str, Path]
) -> None:
    base, folder = http_folder
    photo = sample_photos()[1]
    (folder / photo.name).write_bytes(photo.read_bytes())
    with start_web(sqlite_url, tmp_path / "var", presigned_redirect=True) as web:
        ingest(web.factory, project="p", paths=[f"{base}/{photo.name}"])
        image_id = _ids(web.factory)[photo.name]
        r = web.client.get(f"/api/images/{image_id}/file", headers=web.as_("admin"))
        assert r.status_code == 200 and r.content == photo.read_bytes()  # http: streamed
