"""Local object stores for the tests: an S3-compatible server (moto's server mode) and a plain
HTTP server, each in a thread on a free loopback port, and the sample photos to put there.

``s3_server`` sets the usual AWS variables (endpoint, fake keys, region) for the test, as a
deployment would, so the product reads its credentials from the environment.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webapp import free_port

SAMPLE_NAMES = ("astronaut.png", "chelsea.png", "coffee.png")


def sample_photos() -> list[Path]:
    """scikit-image's sample photos (shipped with the package: no download)."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return [folder / n for n in SAMPLE_NAMES]


def _clear_fsspec_caches() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server; yields its endpoint URL with AWS_* set to reach it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    _clear_fsspec_caches()
    try:
        yield endpoint
    finally:
        _clear_fsspec_caches()
        server.stop()


def make_bucket(endpoint: str, name: str, objects: dict[str, bytes]) -> None:
    """Create bucket ``name`` holding ``objects`` (key -> bytes), with boto3."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    for key, data in objects.items():
        client.put_object(Bucket=name, Key=key, Body=data)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server over a fresh folder; yields (base url, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
