"""``--copy-images``: the exported images copied into the export, byte for byte.

Each format puts them where its readers look (COCO: ``data/``, the FiftyOne
default; SA-1B: next to the ``sa_<id>.json`` files; labelme: next to each JSON).
Copies are checked against the sha256 recorded at ingest; a file whose content is
already in the export (same sha256) is hard-linked (or copied) instead of read again.
A missing or changed file is skipped with its reason, never stopping the export.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from db.models import Image
from engine.interop.exporters.atomic import file_sha256, write_json
from engine.uris import uri_to_path

ProgressFn = Callable[[int, int], None]  # (images done, images in the export)


class ImageCopier:
    """Copies exported images into ``folder`` (created on first use); see the module doc."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.by_sha: dict[str, Path] = {}
        self.files: dict[str, str] = {}  # name relative to folder -> sha256
        self.skipped: list[dict[str, Any]] = []

    def copy(self, image: Image, name: str) -> bool:
        """Copy ``image``'s file to ``folder/name``; False (and a skip reason) if it cannot."""
        self.folder.mkdir(parents=True, exist_ok=True)
        dest = self.folder / name
        same = self.by_sha.get(image.sha256 or "")
        if same is not None:
            try:
                os.link(same, dest)
            except OSError:
                shutil.copyfile(same, dest)
            self.files[name] = image.sha256 or ""
            return True
        src = Path(uri_to_path(image.uri))
        if not src.is_file():
            self.skipped.append({"image_id": image.id, "reason": f"file missing: {src}"})
            return False
        try:
            shutil.copyfile(src, dest)
        except OSError as err:
            self.skipped.append({"image_id": image.id, "reason": f"cannot copy: {err}"})
            dest.unlink(missing_ok=True)
            return False
        digest = file_sha256(dest)
        if image.sha256 and digest != image.sha256:
            dest.unlink()
            self.skipped.append(
                {"image_id": image.id, "reason": "file changed since ingest (sha256 differs)"}
            )
            return False
        self.by_sha[digest] = dest
        self.files[name] = digest
        return True

    def counts(self) -> dict[str, int]:
        return {"images_copied": len(self.files), "images_not_copied": len(self.skipped)}


def copier_for(out: Path, options: dict[str, Any], subdir: str) -> ImageCopier | None:
    """An :class:`ImageCopier` into ``out/subdir`` when ``options["copy_images"]``, else None."""
    return ImageCopier(out / subdir) if options.get("copy_images") else None


def write_manifest(
    out: Path,
    *,
    fmt: str,
    project_name: str,
    stage: str,
    options: dict[str, Any],
    counts: dict[str, Any],
    files: dict[str, str],
    copier: ImageCopier | None,
    subdir: str,
) -> dict[str, Any]:
    """Write ``out/manifest.json`` for a finished export and return its counts.

    ``counts`` (updated in place) and ``files`` (name relative to ``out`` -> sha256)
    gain the copier's figures and files, the latter under ``subdir``, when images
    were copied; ``images_not_copied`` lists the copier's skip reasons (else empty).
    """
    if copier is not None:
        counts |= copier.counts()
        files |= {f"{subdir}/{k}": v for k, v in copier.files.items()}
    write_json(
        out / "manifest.json",
        {
            "format": fmt,
            "project": project_name,
            "stage": stage,
            "options": dict(options),
            "counts": counts,
            "files": files,
            "images_not_copied": copier.skipped if copier is not None else [],
        },
    )
    return counts
