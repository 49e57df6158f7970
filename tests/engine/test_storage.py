"""engine/storage.py against a local S3 server (moto) and a local HTTP server."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

from engine import storage
from engine.imageio import ImageRejected, load_rgb, open_image
from tests.object_store import http_folder, make_bucket, s3_server, sample_photos

__all__ = ["http_folder", "s3_server"]  # fixtures used below


def test_schemes() -> None:
    assert storage.is_remote("s3://b/k.jpg") and storage.is_remote("HTTPS://h/x.png")
    assert not storage.is_remote("/data/x.jpg") and not storage.is_remote("file:///data/x.jpg")
    assert storage.scheme_of("gs://b/x") == "gs" and storage.scheme_of("relative/x.jpg") == ""


def test_read_list_and_sign_on_s3(s3_server: str) -> None:
    photo = sample_photos()[0].read_bytes()
    make_bucket(
        s3_server,
        "photos",
        {"a/one.png": photo, "a/sub/two.png": photo, "a/.hidden.png": b"x", "b/other.png": b"y"},
    )
    assert storage.read_bytes("s3://photos/a/one.png") == photo
    assert storage.object_size("s3://photos/a/one.png") == len(photo)
    assert storage.list_objects("s3://photos/a/") == [
        "s3://photos/a/one.png",
        "s3://photos/a/sub/two.png",
    ]
    url = storage.presigned_url("s3://photos/a/one.png", expires_s=60)
    assert url is not None and url.startswith(s3_server) and "Signature" in url
    assert httpx.get(url).content == photo  # the presigned URL works without credentials
    assert storage.presigned_url("https://host/x.png", expires_s=60) is None


def test_missing_object_and_size_limit_on_s3(s3_server: str) -> None:
    make_bucket(s3_server, "photos", {"big.png": b"\x89PNG" + b"0" * 5000})
    with pytest.raises(storage.StorageError, match="unreadable: not found"):
        storage.read_bytes("s3://photos/nope.png")
    with pytest.raises(storage.StorageError, match="too large: 5004 bytes .* 1000 byte limit"):
        storage.read_bytes("s3://photos/big.png", max_bytes=1000)
    # the checked open gives the same reasons as rejections
    with pytest.raises(ImageRejected, match="not found"):
        load_rgb("s3://photos/nope.png")
    with (
        pytest.raises(ImageRejected, match="too large"),
        open_image("s3://photos/big.png", max_bytes=100),
    ):
        pass


def test_checked_open_applies_to_remote_bytes(s3_server: str) -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    make_bucket(s3_server, "photos", {"x.jpg": eps, "ok.png": sample_photos()[1].read_bytes()})
    with pytest.raises(ImageRejected, match="unsupported format: PostScript"):
        load_rgb("s3://photos/x.jpg")
    rgb = load_rgb("s3://photos/ok.png")
    assert rgb.shape == (300, 451, 3) and rgb.dtype.name == "uint8"
    with pytest.raises(ImageRejected, match="too large: 451x300"):
        load_rgb("s3://photos/ok.png", max_pixels=1000)


def test_http_read_and_errors(http_folder: tuple[str, Path]) -> None:
    base, folder = http_folder
    data = sample_photos()[2].read_bytes()
    (folder / "coffee.png").write_bytes(data)
    assert storage.read_bytes(f"{base}/coffee.png") == data
    assert b"".join(storage.iter_chunks(f"{base}/coffee.png")) == data
    with pytest.raises(storage.StorageError, match="unreadable: not found"):
        storage.read_bytes(f"{base}/missing.png")
    with pytest.raises(storage.StorageError, match="too large"):
        storage.read_bytes(f"{base}/coffee.png", max_bytes=10)
    with pytest.raises(storage.StorageError, match="cannot be listed.*--manifest"):
        storage.list_objects(f"{base}/")


def test_copy_to_local(s3_server: str, tmp_path: Path) -> None:
    data = sample_photos()[0].read_bytes()
    make_bucket(s3_server, "photos", {"one.png": data})
    storage.local_copy("s3://photos/one.png", tmp_path / "out" / "one.png")
    assert (tmp_path / "out" / "one.png").read_bytes() == data
    with pytest.raises(storage.StorageError, match="not found"):
        storage.copy_to("s3://photos/two.png", tmp_path / "two.png")
    assert not (tmp_path / "two.png").exists() and not (tmp_path / "two.png.part").exists()


def test_missing_backend_names_the_package() -> None:
    if importlib.util.find_spec("adlfs") is not None:
        pytest.skip("adlfs is installed here; the message for a missing backend cannot show")
    with pytest.raises(storage.StorageError, match="pip install adlfs"):
        storage.read_bytes("az://container/x.png")


def test_unknown_scheme() -> None:
    with pytest.raises(storage.StorageError, match="unsupported uri scheme 'ftp'"):
        storage.filesystem("ftp://host/x.png")
