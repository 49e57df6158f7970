"""Cost of hostile images: what a decompression bomb costs at ingest and on the routes.

Writes a PNG that declares ``--megapixels`` (default 400 MP) of RGB in a few hundred bytes, and
a normal photo, into a temporary folder; ingests both into a fresh SQLite database; then
requests the file, thumbnail and decode routes of both in-process (FastAPI TestClient, as the
tests do) and, for the bomb, after swapping an ``ok`` image's file for it (the per-call
check). For each step it prints the wall time and the growth of the process's peak resident
memory (Linux: peak reset through /proc/self/clear_refs, VmHWM read after).

Before issue 15 the thumbnail route decoded the 400 MP bomb in full (~35 s, +2.3 GB).

    .venv/bin/python scripts/bench_hostile_images.py
    .venv/bin/python scripts/bench_hostile_images.py --megapixels 150
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--megapixels",
        type=float,
        default=400.0,
        help="Size the bomb's header declares, in MP (default 400).",
    )
    ap.add_argument(
        "--max-pixels",
        type=int,
        default=100_000_000,
        help="DATAENGINE_MAX_IMAGE_PIXELS for the run (default 100000000).",
    )
    return ap.parse_args(argv)


def write_bomb(path: Path, megapixels: float) -> None:
    """A PNG whose IHDR declares a square RGB image of ``megapixels``; tiny zlib body."""
    side = int((megapixels * 1e6) ** 0.5)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b""))


def _kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(label: str, call: Callable[[], Any]) -> Any:
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")
    before = _kb("VmRSS")
    t0 = time.perf_counter()
    out = call()
    ms = (time.perf_counter() - t0) * 1000
    status = getattr(out, "status_code", "")
    grown = (_kb("VmHWM") - before) / 1024
    print(f"{label:<44} {status!s:>4} {ms:9.1f} ms  peak RSS +{grown:7.1f} MB")
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from fastapi.testclient import TestClient
    from PIL import Image as PILImage
    from sqlalchemy import select

    from annotator_ui.app import create_app
    from db.migrate import upgrade
    from db.models import Image
    from db.session import make_engine, make_session_factory, transaction
    from db.users import create_user, issue_token
    from engine.ingest import ingest
    from engine.segment.registry import build_segmenter, with_cache
    from engine.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = root / "photos"
        photos.mkdir()
        write_bomb(photos / "bomb.png", args.megapixels)
        rng = np.random.default_rng(0)
        photo = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
        PILImage.fromarray(photo).save(photos / "photo.jpg", quality=90)
        url = f"sqlite:///{root / 'db.sqlite'}"
        upgrade(url)
        factory = make_session_factory(make_engine(url))
        print(f"bomb: {args.megapixels:.0f} MP declared, {(photos / 'bomb.png').stat().st_size} B")
        summary = measure(
            "ingest (bomb + photo)",
            lambda: ingest(factory, project="p", paths=[photos], max_pixels=args.max_pixels),
        )
        print(f"  rejected: {dict(summary.rejected)}  added: {summary.added}")
        with transaction(factory) as s:
            admin = create_user(s, name="admin", role="admin", password="hostile-bench-Pangolin-42")
            token = issue_token(s, user=admin, kind="api", hours=1)
            ids = {Path(r.uri).name: r.id for r in s.scalars(select(Image))}
        settings = Settings(
            database_url=url,
            data_dir=root / "var",
            max_image_pixels=args.max_pixels,
            _env_file=None,  # type: ignore[call-arg]
        )
        seg = with_cache(build_segmenter("classical"), None, 4)
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(settings, segmenter=seg)) as client:
            for name in ("bomb.png", "bomb.png", "photo.jpg"):  # the first calls warm up
                i = ids[name]
                measure(
                    f"GET file  {name}",
                    lambda i=i: client.get(f"/api/images/{i}/file", headers=headers),
                )
                measure(
                    f"GET thumb {name}",
                    lambda i=i: client.get(f"/api/curation/images/{i}/thumb", headers=headers),
                )
                measure(
                    f"POST decode {name}",
                    lambda i=i: client.post(
                        f"/api/images/{i}/decode",
                        json={"points": [[5, 5]], "labels": [1]},
                        headers=headers,
                    ),
                )
            (photos / "photo.jpg").write_bytes((photos / "bomb.png").read_bytes())
            i = ids["photo.jpg"]
            measure(
                "GET thumb 256 (ok image, file now the bomb)",
                lambda: client.get(f"/api/curation/images/{i}/thumb?size=256", headers=headers),
            )


if __name__ == "__main__":
    main()
