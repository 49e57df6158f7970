"""Bulk pre-fill throughput: Ray Data (``dataengine prefill --ray``) vs the in-process path.

The same photos (../shared/data/samples, else scikit-image's, downscaled to distinct sizes)
are ingested into two fresh SQLite databases; the classical backend pre-fills one in this
process (``prefill_project``) and the other on a local Ray cluster
(``prefill_project_ray``). Prints images/s of each, the ratio, the cluster's start-up time
(not counted in Ray's images/s; a real cluster is started once for many runs) and whether
both paths stored the same number of masks per image.

    .venv/bin/python scripts/bench_ray.py                       # 24 photos, 256 px, 2 actors
    .venv/bin/python scripts/bench_ray.py --images 40 --actors 2 --json out.json
    .venv/bin/python scripts/bench_ray.py --tiny                # 6 photos, 64 px (the test)

Both timings include building the model (the in-process one once, each actor once) and
the classical backend's first-call compilation; on a 2-core machine Ray's processes share
the same two cores as everything else, so expect a ratio near 1 there (decode overlapping
the model is what Ray adds on one machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples"


def _write_photos(dest: Path, n: int, side: int) -> Path:
    """n PNGs with distinct sizes (distinct sha256) under ``dest``."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(SAMPLES.glob("*.jpg")) if SAMPLES.is_dir() else []
    if files:
        sources = [Image.open(f).convert("RGB") for f in files]
    else:
        from skimage import data

        sources = [Image.fromarray(a) for a in (data.astronaut(), data.chelsea(), data.coffee())]
    for i in range(n):
        im = sources[i % len(sources)].copy()
        im.thumbnail((side - i, side - i))
        im.save(dest / f"img{i:03d}.png")
    return dest


def _database(path: Path, photos: Path) -> tuple[str, Any, int]:
    from sqlalchemy import select

    from db.migrate import upgrade
    from db.models import Image
    from db.session import make_engine, make_session_factory
    from engine.ingest import ingest

    url = f"sqlite:///{path}"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    ingest(factory, project="bench", paths=[photos])
    with factory() as s:
        return url, factory, int(s.scalar(select(Image.project_id).limit(1)))


def _masks_per_image(factory: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from db.models import Image, Mask

    with factory() as s:
        rows = s.execute(
            select(Image.sha256, func.count(Mask.id)).outerjoin(Mask).group_by(Image.sha256)
        ).all()
    return {sha: n for sha, n in rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both paths over the same photos; the figures as a dict."""
    from db.session import transaction
    from engine.flywheel.prefill import prefill_project
    from engine.flywheel.prefill_model import ensure_model_version
    from engine.flywheel.prefill_ray import RayOptions, prefill_project_ray
    from engine.flywheel.ray_cluster import builder, connect
    from engine.segment.classical.segmenter import ClassicalSegmenter

    with tempfile.TemporaryDirectory() as tmp:
        photos = _write_photos(Path(tmp) / "photos", args.images, args.side)
        _, local_factory, local_project = _database(Path(tmp) / "local.db", photos)
        ray_url, ray_factory, ray_project = _database(Path(tmp) / "ray.db", photos)

        t0 = time.perf_counter()
        local = prefill_project(
            local_factory,
            project_id=local_project,
            segmenter=ClassicalSegmenter(),
            model_version_id=None,
        )
        t_local = time.perf_counter() - t0

        t0 = time.perf_counter()
        ray = connect(num_cpus=args.cpus)
        t_start = time.perf_counter() - t0
        try:
            with transaction(ray_factory) as s:
                mv_id = ensure_model_version(s, segmenter=ClassicalSegmenter()).id
            t0 = time.perf_counter()
            on_ray = prefill_project_ray(
                ray_url,
                project_id=ray_project,
                model_version_id=mv_id,
                build=builder(backend="classical"),
                options=RayOptions(
                    actors=args.actors,
                    cpus_per_actor=args.cpus_per_actor,
                    batch_size=args.batch_size,
                ),
            )
            t_ray = time.perf_counter() - t0
        finally:
            ray.shutdown()
        same = _masks_per_image(local_factory) == _masks_per_image(ray_factory)
        for f in (local_factory, ray_factory):
            f.kw["bind"].dispose()
    n = local.done + local.failed
    return {
        "images": n,
        "side": args.side,
        "actors": args.actors,
        "cluster_cpus": args.cpus,
        "in_process_seconds": t_local,
        "ray_seconds": t_ray,
        "ray_cluster_start_seconds": t_start,
        "in_process_images_per_s": n / t_local,
        "ray_images_per_s": (on_ray.done + on_ray.failed) / t_ray,
        "ray_over_in_process": t_local / t_ray,
        "same_masks_per_image": same,
        "ray_done": on_ray.done,
        "in_process_done": local.done,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24, help="photos (default 24)")
    parser.add_argument("--side", type=int, default=256, help="long side, px (default 256)")
    parser.add_argument("--actors", type=int, default=2, help="model actors (default 2)")
    parser.add_argument("--cpus", type=int, default=2, help="local cluster CPUs (default 2)")
    parser.add_argument(
        "--cpus-per-actor", type=float, default=0.5, help="CPUs each actor reserves (0.5)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call (4)")
    parser.add_argument("--tiny", action="store_true", help="6 photos of 64 px (for tests)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.images, args.side = 6, 64
    if args.images < 1 or args.side - args.images < 32:
        parser.error("need --images >= 1 and --side at least --images + 32 px")
    out = run(args)
    print(
        f"{out['images']} images (long side <= {out['side']} px), classical backend, "
        f"local cluster of {out['cluster_cpus']} CPUs, {out['actors']} actors"
    )
    print(f"  in-process  {out['in_process_images_per_s']:7.3f} images/s")
    print(f"  Ray Data    {out['ray_images_per_s']:7.3f} images/s")
    print(f"  Ray / in-process: {out['ray_over_in_process']:.2f}x")
    print(f"  cluster start-up (not counted above): {out['ray_cluster_start_seconds']:.1f} s")
    print(f"  same masks per image on both paths: {out['same_masks_per_image']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out["same_masks_per_image"] else 1


if __name__ == "__main__":
    sys.exit(main())
