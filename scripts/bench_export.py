"""Peak Python memory and time of the mask exports (COCO, SA-1B, labelme) by keyset pages.

Builds a synthetic project in a fresh SQLite file (or the empty database given with
``--database-url``, migrated): ``--images`` images of 256x256, each with ``--masks``
accepted masks (random blobs, so RLEs are realistic in size). Exports it twice per format
in the same run: with the default page (``PAGE_SIZE`` images) and with one page holding
the whole project (the reference: what loading everything at once costs). Prints the peak
traced memory (``tracemalloc``) and seconds of each, and the ratio whole / paged.

    .venv/bin/python scripts/bench_export.py --images 600 --masks 8
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from db.migrate import upgrade
from db.models import Image, Mask, Project
from db.session import make_engine, make_session_factory, transaction
from engine.interop.exporters import selection
from engine.interop.exporters.atomic import write_atomically
from engine.interop.exporters.coco import export_coco
from engine.interop.exporters.labelme import export_labelme
from engine.interop.exporters.sa1b import export_sa1b
from engine.masks import encode_rle, mask_bbox

EXPORTERS = {"coco": export_coco, "sa1b": export_sa1b, "labelme": export_labelme}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=600, help="images in the project")
    ap.add_argument("--masks", type=int, default=8, help="accepted masks per image")
    ap.add_argument("--formats", default="coco,sa1b", help="comma-separated: coco,sa1b,labelme")
    ap.add_argument("--database-url", default="", help="an empty database (default: temp SQLite)")
    return ap.parse_args(argv)


def blob(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cx, cy, r = rng.uniform(40, size - 40, 2).tolist() + [rng.uniform(10, 40)]
    wobble = 1 + 0.3 * np.sin(np.arctan2(yy - cy, xx - cx) * rng.integers(2, 7))
    return (xx - cx) ** 2 + (yy - cy) ** 2 < (r * wobble) ** 2


def build(factory: Any, n_images: int, n_masks: int) -> str:
    rng = np.random.default_rng(0)
    shapes = [blob(rng) for _ in range(64)]
    rles = [(encode_rle(m), mask_bbox(m), int(m.sum())) for m in shapes]
    name = f"bench-{uuid.uuid4().hex[:6]}"
    with transaction(factory) as s:
        p = Project(name=name, labels=["a", "b", "c"])
        s.add(p)
        s.flush()
        for i in range(n_images):
            im = Image(project_id=p.id, uri=f"/bench/{i}.jpg", sha256=f"{i:064x}", width=256,
                       height=256, status="ok")  # fmt: skip
            s.add(im)
            s.flush()
            for j in range(n_masks):
                rle, bbox, area = rles[(i * 7 + j) % len(rles)]
                s.add(Mask(image_id=im.id, rle=rle, bbox=bbox, area=area, label="abc"[j % 3],
                           source="human", status="accepted"))  # fmt: skip
    return name


def measure(factory: Any, project: str, fmt: str, out: Path) -> tuple[float, float]:
    """(peak MiB traced, seconds) of one export."""
    from db.projects import get_project

    shutil.rmtree(out, ignore_errors=True)
    tracemalloc.start()
    t0 = time.perf_counter()
    with transaction(factory) as s:
        p = get_project(s, name=project)
        write_atomically(
            out, lambda tmp: EXPORTERS[fmt](s, project=p, out=tmp, stage=None, options={})
        )
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak, seconds


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        t0 = time.perf_counter()
        project = build(factory, args.images, args.masks)
        print(f"project: {args.images} images x {args.masks} masks "
              f"(built in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
        default = selection.PAGE_SIZE
        print(f"{'format':8} {'page':>6} {'peak MiB':>9} {'seconds':>8}")
        for fmt in args.formats.split(","):
            results = {}
            for label, size in (("paged", default), ("whole", args.images + 1)):
                selection.PAGE_SIZE = size
                results[label] = measure(factory, project, fmt, tmp / f"{fmt}-{label}")
                print(f"{fmt:8} {size:>6} {results[label][0]:>9.1f} {results[label][1]:>8.2f}")
            selection.PAGE_SIZE = default
            ratio = results["whole"][0] / max(results["paged"][0], 1e-9)
            print(f"{fmt:8} peak memory whole / paged = {ratio:.1f}x")
        engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
