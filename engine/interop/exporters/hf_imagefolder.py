"""Hugging Face ``imagefolder`` export of a curated stage.

Layout (``datasets.load_dataset("imagefolder", data_dir=OUT)`` reads it)::

    OUT/train/00000012.jpg ...          original bytes, unchanged
    OUT/train/metadata.jsonl            one row per image: file_name, text, caption_source,
                                        rating, tags, signals, provenance, license
    OUT/manifest.json                   counts, selection rules, human seconds, sha256 per file

Rows are in image-id order and JSON keys are sorted, so equal database states give equal
bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Project
from engine.curation.selection import build_manifest, copy_images, select_records
from engine.interop.exporters.atomic import write_json

SPLIT = "train"


def export_hf_imagefolder(
    session: Session, *, project: Project, out: Path, stage: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """Write the export into ``out`` (a fresh temporary folder); returns counts."""
    records = select_records(session, project=project, stage=stage)
    copied, skipped = copy_images(records, out / SPLIT)
    with open(out / SPLIT / "metadata.jsonl", "w", encoding="utf-8") as f:
        for r in copied:
            row = {
                "file_name": r.file_name,
                "text": r.text,
                "caption_source": r.caption_source,
                "rating": r.rating,
                "tags": r.tags,
                "signals": r.signals,
                "provenance": r.provenance,
                "license": r.license,
            }
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
    manifest = build_manifest(
        session, project=project, fmt="hf-imagefolder", stage=stage, root=out,
        records=copied, skipped=skipped, image_dir=SPLIT,
    )  # fmt: skip
    write_json(out / "manifest.json", manifest)
    return manifest["counts"]
