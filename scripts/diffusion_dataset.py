"""The curated export a diffusion fine-tune reads: (image, caption) pairs of an
``hf-imagefolder`` (``train/metadata.jsonl``) or ``kohya`` (``dataset_config.toml`` + ``.txt``
captions) export (``dataengine export``)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path


def read_export(folder: Path) -> list[tuple[Path, str]]:
    """(image path, caption) pairs of an hf-imagefolder or kohya export."""
    meta = folder / "train" / "metadata.jsonl"
    if meta.is_file():
        rows = [
            json.loads(line)
            for line in meta.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        return [(meta.parent / r["file_name"], r.get("text") or "") for r in rows]
    config = folder / "dataset_config.toml"
    if config.is_file():
        cfg = tomllib.loads(config.read_text(encoding="utf-8"))
        ext = cfg.get("general", {}).get("caption_extension", ".txt")
        pairs = []
        for ds in cfg.get("datasets", []):
            for sub in ds.get("subsets", []):
                img_dir = Path(sub["image_dir"])
                img_dir = img_dir if img_dir.is_absolute() else folder / img_dir
                for p in sorted(img_dir.iterdir()):
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tiff"):
                        cap = p.with_suffix(ext)
                        pairs.append(
                            (p, cap.read_text(encoding="utf-8").strip() if cap.exists() else "")
                        )
        return pairs
    raise SystemExit(
        f"{folder} is not an hf-imagefolder or kohya export (no train/metadata.jsonl or dataset_config.toml)"
    )
