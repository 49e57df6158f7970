"""Ingest: walk folders, probe every file, record it once per project (sha256), never stop a batch.

Every entry walked is accounted for in the :class:`IngestSummary`: added, duplicate, rejected
(recorded in the database with its reason) or skipped (hidden files and folders, unreadable
folders: not probed, not recorded, counted with the reason). Multi-frame files (animated
GIF/WebP/PNG, multi-page TIFF) are kept, with frame 0 as the image, and flagged in
``image.meta["flags"]`` and the summary. File names that are not valid UTF-8 are stored as
percent-encoded ``file://`` uris (``engine.imageio.path_to_uri``) and shown with ``\\xff``
escapes in the summary.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import DomainError
from db.images import add_image
from db.projects import get_or_create_project
from db.session import transaction
from engine.imageio import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ProbeResult,
    display_path,
    format_suffix,
    path_to_uri,
    probe,
    safe_text,
)
from engine.walk import walk


@dataclass
class IngestSummary:
    """Counts of one ingest run. ``rejected``/``skipped``/``flagged`` map a short reason to its
    count; the ``*_files`` lists hold (printable path, full reason)."""

    added: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_files: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    flagged: Counter[str] = field(default_factory=Counter)
    flagged_files: list[tuple[str, str]] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)

    @property
    def seen(self) -> int:
        """Every entry walked: added + duplicates + rejected + skipped."""
        return self.added + self.duplicates + sum(self.rejected.values()) + self.skipped.total()


def reason_key(reason: str) -> str:
    """The category of a rejection reason: the text before the first colon."""
    return reason.split(":", 1)[0].strip()


def _store_copy(res: ProbeResult, store: Path) -> str:
    if res.sha256 is None:
        raise OSError(f"{display_path(res.path)} has no checksum; it cannot be copied")
    dest = store / res.sha256[:2] / f"{res.sha256}{format_suffix(res.format)}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        shutil.copyfile(res.path, tmp)
        tmp.replace(dest)
    return path_to_uri(dest.resolve())


def _record(
    factory: sessionmaker[Session], project_id: int, res: ProbeResult, copy_to: Path | None
) -> tuple[int | None, bool]:
    """Write one probed file; returns (image id, created). Bad storage marks ``res`` rejected."""
    try:
        uri = path_to_uri(res.path)
        if res.ok and copy_to is not None:
            uri = _store_copy(res, copy_to)
        with transaction(factory) as s:
            image, created = add_image(s, project_id=project_id, uri=uri, **res.image_columns())
            return image.id, created
    except (OSError, SQLAlchemyError, DomainError) as err:  # store not writable, database error
        first_line = (str(err) or type(err).__name__).splitlines()[0]
        res.ok, res.reason = False, f"store failed: {safe_text(first_line)}"
        return None, False


def ingest(
    factory: sessionmaker[Session],
    *,
    project: str,
    paths: list[Path],
    copy_to: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    on_file: Callable[[ProbeResult, str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest every file under ``paths`` into ``project`` (created if missing).

    Each file is probed (``max_pixels``, ``min_side``: see ``engine.imageio.probe``) and
    committed in its own transaction, so a bad or concurrent item never affects the others.
    ``on_file(result, outcome)`` is called after each walked entry with outcome ``added`` |
    ``duplicate`` | ``rejected`` | ``skipped``.
    """
    with transaction(factory) as s:
        project_id = get_or_create_project(s, name=project).id
    entries = walk([Path(p) for p in paths])
    if on_total:
        on_total(len(entries))
    summary = IngestSummary()
    for entry in entries:
        shown = display_path(entry.path)
        if entry.skipped is not None:
            summary.skipped[reason_key(entry.skipped)] += 1
            summary.skipped_files.append((shown, entry.skipped))
            if on_file:
                on_file(ProbeResult(entry.path, None, None, False, entry.skipped), "skipped")
            continue
        res = probe(entry.path, max_pixels=max_pixels, min_side=min_side)
        image_id, created = _record(factory, project_id, res, copy_to)
        if not created and image_id is not None:
            outcome = "duplicate"
            summary.duplicates += 1
        elif res.ok:
            outcome = "added"
            summary.added += 1
            for flag, note in res.flags.items():
                summary.flagged[flag] += 1
                summary.flagged_files.append((shown, note))
        else:
            outcome = "rejected"
            summary.rejected[reason_key(res.reason or "unknown")] += 1
            summary.rejected_files.append((shown, res.reason or "unknown"))
        if image_id is not None and res.ok:
            summary.image_ids.append(image_id)
        if on_file:
            on_file(res, outcome)
    return summary
