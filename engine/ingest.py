"""Ingest: walk folders, probe every file, record it once per project (sha256), never stop a batch."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.images import add_image
from db.projects import get_or_create_project
from db.session import transaction
from engine.imageio import DEFAULT_MAX_PIXELS, ProbeResult, probe, walk_files


@dataclass
class IngestSummary:
    """Counts of one ingest run. ``rejected`` maps a short reason to its count."""

    added: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_files: list[tuple[str, str]] = field(default_factory=list)  # (path, full reason)
    image_ids: list[int] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.added + self.duplicates + sum(self.rejected.values())


def reason_key(reason: str) -> str:
    """The category of a rejection reason: the text before the first colon."""
    return reason.split(":", 1)[0].strip()


def _store_copy(res: ProbeResult, store: Path) -> str:
    assert res.sha256 is not None  # only called for readable files
    dest = store / res.sha256[:2] / f"{res.sha256}{res.path.suffix.lower()}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        shutil.copyfile(res.path, tmp)
        tmp.replace(dest)
    return str(dest.resolve())


def ingest(
    factory: sessionmaker[Session],
    *,
    project: str,
    paths: list[Path],
    copy_to: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_file: Callable[[ProbeResult, str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest every file under ``paths`` into ``project`` (created if missing).

    Each file is probed and committed in its own transaction, so a bad or
    concurrent item never affects the others. ``on_file(result, outcome)`` is
    called after each file with outcome ``added`` | ``duplicate`` | ``rejected``.
    """
    with transaction(factory) as s:
        project_id = get_or_create_project(s, name=project).id
    files = walk_files([Path(p) for p in paths])
    if on_total:
        on_total(len(files))
    summary = IngestSummary()
    for path in files:
        res = probe(path, max_pixels=max_pixels)
        try:
            uri = str(path.absolute())
            if res.ok and copy_to is not None:
                uri = _store_copy(res, copy_to)
            with transaction(factory) as s:
                image, created = add_image(
                    s,
                    project_id=project_id,
                    uri=uri,
                    sha256=res.sha256,
                    ok=res.ok,
                    reason=res.reason,
                    file_size=res.file_size,
                    width=res.width,
                    height=res.height,
                    format=res.format,
                    mode=res.mode,
                    rgb_conversion=res.rgb_conversion,
                    exif_orientation=res.exif_orientation,
                    phash=res.phash,
                )
                image_id = image.id
        except OSError as err:  # e.g. the managed store is not writable
            res.ok, res.reason = False, f"store failed: {err}"
            created, image_id = False, None
        if not created and image_id is not None:
            outcome = "duplicate"
            summary.duplicates += 1
        elif res.ok:
            outcome = "added"
            summary.added += 1
        else:
            outcome = "rejected"
            summary.rejected[reason_key(res.reason or "unknown")] += 1
            summary.rejected_files.append((str(path), res.reason or "unknown"))
        if image_id is not None and res.ok:
            summary.image_ids.append(image_id)
        if on_file:
            on_file(res, outcome)
    return summary
