"""Hostile mask payloads against the real server: uvicorn in a subprocess with its address
space capped at 3 GB. Each payload gets a plain 422 (or is skipped with its reason, for a
Label Studio webhook region), the process survives, its peak RSS barely moves, and the next
normal request answers."""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from db.models import Lease, Mask
from db.session import make_engine, make_session_factory, transaction
from db.users import issue_token
from engine.masks import encode_rle
from tests.factories import box_mask, make_image, make_mask, make_project, make_user
from tests.webapp import free_port

ADDRESS_SPACE = 3 * 1024**3
H, W = 48, 64


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    headers: dict[str, str]
    ids: dict[str, int]
    db_url: str

    def peak_rss_kb(self) -> int:
        """VmHWM (peak resident set) of the server process, kB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc status")

    def alive(self) -> bool:
        return self.proc.poll() is None


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /api/health until it answers (or the process has died)."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        p = make_project(s, labels=[])
        im = make_image(s, project=p, width=W, height=H)
        m = make_mask(s, image=im, mask=box_mask(H, W, 2, 2, 10, 10), confident=True)
        admin = make_user(s, role="admin")
        token = issue_token(s, user=admin, kind="api", hours=1)
        ids = {"project": p.id, "image": im.id, "mask": m.id, "admin": admin.id}
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "DATAENGINE_DATABASE_URL": db_url,
        "DATAENGINE_DATA_DIR": str(tmp_path),
        "DATAENGINE_BACKEND": "classical",
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
    }
    log = tmp_path / "uvicorn.log"
    log_file = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "annotator_ui.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        preexec_fn=_cap_address_space,  # noqa: PLW1509 - only setrlimit, no threads involved
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield Server(url, proc, {"Authorization": f"Bearer {token}"}, ids, db_url)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


def _post(srv: Server, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {**srv.headers, "Content-Type": "application/json"}
    return httpx.post(f"{srv.url}{path}", content=content, headers=headers, timeout=60)


def _mask_count(srv: Server) -> int:
    engine = make_engine(srv.db_url)
    with make_session_factory(engine)() as s:
        n = int(s.scalar(select(func.count(Mask.id))) or 0)
    engine.dispose()
    return n


HOSTILE_RLES = {
    "terabyte rows (segfaulted pycocotools)": {"size": [1099511627776, 2], "counts": [1]},
    "20000x20000 in 60 bytes (cost ~760 MB)": {"size": [20000, 20000], "counts": [400000000]},
    "negative size": {"size": [-48, -64], "counts": [1]},
    "negative run": {"size": [H, W], "counts": [-5, H * W + 5]},
    "runs not summing to h*w": {"size": [H, W], "counts": [400000000]},
    "huge compressed string": {"size": [H, W], "counts": "1" * (2 * 1024 * 1024)},
    "compressed string of wrong sum": {"size": [H, W], "counts": "1" * 100_000},
    "run over uint32": {"size": [H, W], "counts": [2**40]},
}


def check_hostile_rles_get_422(server: Server) -> None:
    srv, ids = server, server.ids
    before = _mask_count(srv)
    lease = _post(srv, "/api/tasks/next", {"project_id": ids["project"]}).json()
    rss0 = srv.peak_rss_kb()
    for name, rle in HOSTILE_RLES.items():
        for path, body in (
            (f"/api/images/{ids['image']}/masks", {"rle": rle}),
            (f"/api/masks/{ids['mask']}/fix", {"rle": rle, "version": 1}),
            (f"/api/tasks/{lease['lease_id']}/submit", {"ops": [{"op": "add", "rle": rle}]}),
        ):
            r = _post(srv, path, body)
            assert r.status_code == 422, (name, path, r.status_code, r.text[:300])
            detail = r.json()["detail"]
            assert isinstance(detail, str) and "mask rejected" in detail, (name, detail)
            assert "Traceback" not in r.text
            assert srv.alive(), f"server died on {name} ({path})"
    grown_mb = (srv.peak_rss_kb() - rss0) / 1024
    # the 2 MiB string itself passes through the request body, JSON and pydantic: a few
    # copies of it; nothing proportional to the claimed 20000x20000 (400 MB) or 1 TB sizes
    assert grown_mb < 100, f"peak RSS grew by {grown_mb:.0f} MB"
    assert _mask_count(srv) == before
    engine = make_engine(srv.db_url)
    with make_session_factory(engine)() as s:
        assert s.get(Lease, lease["lease_id"]).completed_at is None  # the submit did not finish
    engine.dispose()
    # the next normal request answers
    good = encode_rle(box_mask(H, W, 20, 20, 30, 30))
    r = _post(srv, f"/api/images/{ids['image']}/masks", {"rle": good})
    assert r.status_code == 200 and r.json()["area"] == 100


def check_the_60_byte_payload_costs_no_memory(server: Server) -> None:
    """Peak RSS of the server before and after the 60-byte 20000x20000 claim, repeated."""
    srv = server
    path = f"/api/images/{srv.ids['image']}/masks"
    body = '{"rle":{"size":[20000,20000],"counts":[400000000]}}'
    assert len(body) < 60
    _post(srv, path, body)  # first request warms imports and pools
    rss0 = srv.peak_rss_kb()
    for _ in range(5):
        assert _post(srv, path, body).status_code == 422
    grown_mb = (srv.peak_rss_kb() - rss0) / 1024
    assert grown_mb < 5, f"peak RSS grew by {grown_mb:.1f} MB"
    assert srv.alive()


def check_non_finite_scores_get_422(server: Server) -> None:
    srv, ids = server, server.ids
    before = _mask_count(srv)
    good = json.dumps(encode_rle(box_mask(H, W, 20, 20, 30, 30)))
    for score in ("NaN", "Infinity", "-Infinity", "1e999"):
        r = _post(srv, f"/api/images/{ids['image']}/masks", f'{{"rle": {good}, "score": {score}}}')
        assert r.status_code == 422, (score, r.text)
        assert "finite" in json.dumps(r.json()["detail"]), r.text
    assert _mask_count(srv) == before
    listed = httpx.get(
        f"{srv.url}/api/images/{ids['image']}/masks?all_proposals=true", headers=srv.headers
    ).json()["masks"]
    assert all(m["predicted_iou"] is None or math.isfinite(m["predicted_iou"]) for m in listed)


def _brush_bytes(num: int) -> list[int]:
    bits = f"{num:032b}{7:05b}" + "".join(f"{s:04b}" for s in (2, 3, 7, 15)) + "0" * 11
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def check_webhook_skips_an_oversized_brush_header(server: Server) -> None:
    srv, ids = server, server.ids
    from engine.interop.label_studio import mask_to_brush

    def region(rle: list[int]) -> dict[str, Any]:
        return {
            "type": "brushlabels",
            "from_name": "mask",
            "to_name": "image",
            "original_width": W,
            "original_height": H,
            "value": {"format": "rle", "rle": rle, "brushlabels": ["cat"]},
        }

    good = mask_to_brush(box_mask(H, W, 5, 5, 15, 15))
    body = {
        "action": "ANNOTATION_CREATED",
        "task": {"id": 1, "data": {"dataengine_image_id": ids["image"]}},
        "annotation": {
            "id": 7,
            "result": [
                region(_brush_bytes(2**32 - 1)),
                region(_brush_bytes(4 * 20000**2 % 2**32)),
                region(good),
            ],  # fmt: skip
        },
    }
    warm = {**body, "annotation": {"id": 6, "result": [region(good)]}}
    assert _post(srv, "/ml/webhook", warm).status_code == 201  # imports the Label Studio SDK
    rss0 = srv.peak_rss_kb()
    r = _post(srv, "/ml/webhook", body)
    assert r.status_code == 201, r.text
    result = r.json()["result"]
    assert len(result["mask_ids"]) == 1  # one bad region never stops the others
    reasons = [s["reason"] for s in result["skipped"]]
    assert sum("brush RLE declares" in why for why in reasons) == 2, reasons
    assert (srv.peak_rss_kb() - rss0) / 1024 < 20
    assert srv.alive()
    assert httpx.get(f"{srv.url}/api/health", timeout=5).status_code == 200


def check_payload_length_is_bounded(server: Server) -> None:
    """A valid-but-long RLE (1-pixel runs) is refused past DATAENGINE_MASK_PAYLOAD_MAX_BYTES."""
    srv, ids = server, server.ids
    checker = np.indices((H, W)).sum(axis=0) % 2 == 0
    rle = encode_rle(checker)
    assert len(rle["counts"]) < 1024 * 1024
    r = _post(srv, f"/api/images/{ids['image']}/masks", {"rle": rle})
    assert r.status_code == 200, r.text  # within the default limit
    runs = [1] * (H * W)
    r = _post(srv, f"/api/images/{ids['image']}/masks", {"rle": {"size": [H, W], "counts": runs}})
    assert r.status_code == 200  # uncompressed counts are accepted too
    too_many = [0] * (600 * 1024) + [H * W]
    r = _post(
        srv, f"/api/images/{ids['image']}/masks", {"rle": {"size": [H, W], "counts": too_many}}
    )
    assert r.status_code == 422 and "limit" in r.json()["detail"]


def test_hostile_payloads_against_a_capped_server(server: Server) -> None:
    """One server start per database (it takes seconds), every hostile payload in turn."""
    check_the_60_byte_payload_costs_no_memory(server)
    check_hostile_rles_get_422(server)
    check_non_finite_scores_get_422(server)
    check_webhook_skips_an_oversized_brush_header(server)
    check_payload_length_is_bounded(server)
    assert server.alive()
