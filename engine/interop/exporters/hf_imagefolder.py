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
from engine.curation.selection import Record, Tally, build_manifest, copy_images, record_pages
from engine.interop.exporters.atomic import write_json

SPLIT = "train"


def export_hf_imagefolder(
    session: Session, *, project: Project, out: Path, stage: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """Write the export into ``out`` (a fresh temporary folder); returns counts."""
    (out / SPLIT).mkdir(parents=True, exist_ok=True)
    tally = Tally(image_dir=SPLIT)
    skipped: list[dict[str, Any]] = []
    with open(out / SPLIT / "metadata.jsonl", "w", encoding="utf-8") as f:
        for page in record_pages(session, project=project, stage=stage):  # O(page) rows
            copied, page_skipped = copy_images(page, out / SPLIT)
            skipped += page_skipped
            for r in copied:
                tally.add(r)
                f.write(_row(r))
    manifest = build_manifest(
        session, project=project, fmt="hf-imagefolder", stage=stage, root=out,
        tally=tally, skipped=skipped,
    )  # fmt: skip
    write_json(out / "manifest.json", manifest)
    return manifest["counts"]


def _row(r: Record) -> str:
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
    return json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n"
