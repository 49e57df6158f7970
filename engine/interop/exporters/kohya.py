"""kohya-ss (sd-scripts) export of a curated stage.

Layout::

    OUT/img/1_<project>/00000012.jpg    original bytes (folder name: <repeats>_<concept>)
    OUT/img/1_<project>/00000012.txt    the caption
    OUT/dataset_config.toml             [general] + [[datasets]] with one subset; image_dir is
                                        relative to OUT: run sd-scripts from OUT (or make it
                                        absolute) - absolute paths would make exports differ
    OUT/manifest.json                   counts, selection rules, human seconds, sha256 per file

``options``: ``resolution`` (default 512), ``repeats`` (default 1), ``batch_size`` (1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy.orm import Session

from db.models import Project
from engine.curation.selection import Tally, build_manifest, copy_images, record_pages
from engine.interop.exporters.atomic import write_json


def _concept(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "data"


def export_kohya(
    session: Session, *, project: Project, out: Path, stage: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """Write the export into ``out`` (a fresh temporary folder); returns counts."""
    repeats = int(options.get("repeats") or 1)
    resolution = int(options.get("resolution") or 512)
    image_dir = f"img/{repeats}_{_concept(project.name)}"
    (out / image_dir).mkdir(parents=True, exist_ok=True)
    tally = Tally(image_dir=image_dir)
    skipped: list[dict[str, Any]] = []
    for page in record_pages(session, project=project, stage=stage):  # O(page) rows
        copied, page_skipped = copy_images(page, out / image_dir)
        skipped += page_skipped
        for r in copied:
            tally.add(r)
            (out / image_dir / r.file_name).with_suffix(".txt").write_text(
                r.text + "\n", encoding="utf-8"
            )
    config = {
        "general": {"caption_extension": ".txt", "shuffle_caption": False, "keep_tokens": 0},
        "datasets": [
            {
                "resolution": resolution,
                "batch_size": int(options.get("batch_size") or 1),
                "enable_bucket": True,
                "subsets": [{"image_dir": image_dir, "num_repeats": repeats}],
            }
        ],
    }
    header = (
        "# kohya-ss sd-scripts dataset config (--dataset_config). image_dir is relative to this\n"
        "# file's folder: run sd-scripts from here, or make it absolute.\n"
    )
    (out / "dataset_config.toml").write_text(header + tomli_w.dumps(config), encoding="utf-8")
    manifest = build_manifest(
        session, project=project, fmt="kohya", stage=stage, root=out,
        tally=tally, skipped=skipped,
    )  # fmt: skip
    write_json(out / "manifest.json", manifest)
    return manifest["counts"]
