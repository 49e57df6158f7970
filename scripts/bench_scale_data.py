"""Scratch data for ``scripts/bench_scale.py``: a throw-away PostgreSQL database, small
synthetic photos, a million generated image rows and their prefill rows (server-side SQL:
``INSERT ... SELECT generate_series``)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any


def scratch_db(url: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(url).set(database=name).render_as_string(hide_password=False), admin


def work_images_folder(folder: Path, n: int, side: int) -> Path:
    """``n`` distinct synthetic photos: a gradient with a few bright and dark shapes."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        img = np.dstack([(xx * 255 // side), (yy * 255 // side), np.full_like(xx, 60)])
        for _ in range(4):
            cx, cy, r = rng.integers(8, side - 8, 2).tolist() + [int(rng.integers(5, side // 4))]
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"w{i:04d}.png")
    return folder


def classical_version(session: Any) -> int:
    """The classical backend's model version id (created if missing)."""
    from engine.flywheel.prefill_model import ensure_model_version
    from engine.segment.registry import build_segmenter

    return ensure_model_version(session, segmenter=build_segmenter("classical")).id


def generate_rows(url: str, n: int) -> tuple[int, int, float]:
    """A project of ``n`` generated ok image rows (no files) + a model version."""
    from sqlalchemy import text

    from db.models import Project
    from db.session import make_engine, make_session_factory, transaction

    engine = make_engine(url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        p = Project(name="generated", labels=[], settings={})
        s.add(p)
        s.flush()
        pid, mv_id = p.id, classical_version(s)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO image (project_id, uri, sha256, status, signals, meta, created_at) "
                "SELECT :pid, '/generated/' || g || '.jpg', md5(g::text) || md5((-g)::text), "
                "'ok', '{}', '{}', now() FROM generate_series(1, :n) g"
            ),
            {"pid": pid, "n": n},
        )
        conn.execute(text("ANALYZE image"))
    engine.dispose()
    return pid, mv_id, time.perf_counter() - t0


def mark_all_done(url: str, pid: int, mv_id: int) -> None:
    from sqlalchemy import text

    from db.session import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO prefill (image_id, model_version_id, status, n_proposals, "
                "n_confident, seconds, created_at) SELECT id, :mv, 'done', 0, 0, 0, now() "
                "FROM image WHERE project_id = :pid"
            ),
            {"mv": mv_id, "pid": pid},
        )
        conn.execute(text("ANALYZE prefill"))
    engine.dispose()
