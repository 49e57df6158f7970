"""Ingest: walk folders, bucket prefixes and manifests, probe every file, record it once per
project (sha256), never stop a batch.

Every entry walked is accounted for in the :class:`IngestSummary`: added, duplicate, rejected
(recorded in the database with its reason) or skipped (hidden files and folders, unreadable
folders: not probed, not recorded, counted with the reason). Multi-frame files (animated
GIF/WebP/PNG, multi-page TIFF) are kept, with frame 0 as the image, and flagged in
``image.meta["flags"]`` and the summary. File names that are not valid UTF-8 are stored as
percent-encoded ``file://`` uris (``engine.uris.path_to_uri``) and shown with ``\\xff``
escapes in the summary.
"""

from __future__ import annotations

import shutil
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import DomainError
from db.images import add_image
from db.projects import get_or_create_project
from db.session import transaction
from engine.imageio import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, ProbeResult, format_suffix, probe
from engine.manifest import read_manifest
from engine.storage import (
    DEFAULT_MAX_BYTES,
    StorageError,
    filesystem,
    is_remote,
    list_objects,
    scheme_of,
)
from engine.storage import copy_to as copy_object
from engine.uris import display_path, path_to_uri, safe_text, uri_to_path
from engine.walk import WalkEntry, walk


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


def _store_copy(res: ProbeResult, store: Path, max_bytes: int) -> str:
    if res.sha256 is None:
        raise OSError(f"{display_path(res.path)} has no checksum; it cannot be copied")
    dest = store / res.sha256[:2] / f"{res.sha256}{format_suffix(res.format)}"
    if not dest.exists():
        if isinstance(res.path, str) and is_remote(res.path):
            copy_object(res.path, dest, max_bytes=max_bytes)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(dest.suffix + ".part")
            shutil.copyfile(res.path, tmp)
            tmp.replace(dest)
    return path_to_uri(dest.resolve())


def _uri_of(res: ProbeResult) -> str:
    """The stored uri: a remote uri as given, a local file as ``path_to_uri`` writes it."""
    if isinstance(res.path, str) and is_remote(res.path):
        return res.path
    return path_to_uri(res.path)


def _record(
    factory: sessionmaker[Session],
    project_id: int,
    res: ProbeResult,
    copy_to: Path | None,
    max_bytes: int,
) -> tuple[int | None, bool]:
    """Write one probed file; returns (image id, created). Bad storage marks ``res`` rejected."""
    try:
        uri = _uri_of(res)
        if res.ok and copy_to is not None:
            uri = _store_copy(res, copy_to, max_bytes)
        with transaction(factory) as s:
            image, created = add_image(s, project_id=project_id, uri=uri, **res.image_columns())
            return image.id, created
    except (OSError, SQLAlchemyError, DomainError) as err:  # store not writable, database error
        first_line = (str(err) or type(err).__name__).splitlines()[0]
        res.ok, res.reason = False, f"store failed: {safe_text(first_line)}"
        return None, False


def _remote_entries(prefix: str) -> list[WalkEntry]:
    """One entry per object under a bucket prefix, or the uri itself for one object."""
    if scheme_of(prefix) in ("http", "https"):
        return [WalkEntry(prefix)]
    try:
        fs, path = filesystem(prefix)
        if not prefix.endswith("/") and not fs.isdir(path):
            return [WalkEntry(prefix)]
        return [WalkEntry(uri) for uri in list_objects(prefix)]
    except StorageError as err:
        return [WalkEntry(prefix, f"unreadable folder: {err}")]
    except OSError as err:
        return [WalkEntry(prefix, f"unreadable folder: {err.strerror or err}")]


def collect(paths: list[Path | str], manifest: Path | None = None) -> list[WalkEntry]:
    """Every entry to ingest: local paths walked (``engine.walk``), ``file://`` uris as their
    path, remote prefixes listed (``engine.storage``), then the manifest's rows (a row
    without a uri is an entry skipped with the reason). Raises ``ManifestError`` when the
    manifest itself cannot be read."""
    local = [Path(uri_to_path(p)) for p in paths if not is_remote(p)]
    out = walk(local) if local else []
    for p in paths:
        if is_remote(p):
            out += _remote_entries(str(p))
    if manifest is not None:
        for row in read_manifest(manifest):
            if row.uri is None:
                out.append(WalkEntry(f"{manifest}:{row.line}", row.problem))
            elif is_remote(row.uri):
                out.append(WalkEntry(row.uri))
            else:
                out.append(WalkEntry(Path(uri_to_path(row.uri))))
    return out


def _safe_probe(entry: WalkEntry, max_pixels: int, min_side: int, max_bytes: int) -> ProbeResult:
    """``probe`` that turns any error of a storage backend into a rejection reason."""
    try:
        return probe(entry.path, max_pixels=max_pixels, min_side=min_side, max_bytes=max_bytes)
    except Exception as err:  # noqa: BLE001  # a storage backend's own error types (botocore...)
        reason = safe_text(f"unreadable: {(str(err) or type(err).__name__).splitlines()[0]}")
        return ProbeResult(entry.path, None, None, False, reason)


def ingest(
    factory: sessionmaker[Session],
    *,
    project: str,
    paths: list[Path | str],
    manifest: Path | None = None,
    copy_to: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = 1,
    on_file: Callable[[ProbeResult, str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest every file under ``paths`` (local paths, ``file://`` uris, remote uris or
    bucket prefixes) and every row of ``manifest`` into ``project`` (created if missing).

    Each file is probed (``max_pixels``, ``min_side``, ``max_bytes``: see
    ``engine.imageio.probe``) on a pool of ``workers`` threads (objects are read over the
    network, so more threads than cores pay off) and committed in its own transaction, in
    the order walked, so a bad or concurrent item never affects the others.
    ``on_file(result, outcome)`` is called after each walked entry with outcome ``added`` |
    ``duplicate`` | ``rejected`` | ``skipped``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    with transaction(factory) as s:
        project_id = get_or_create_project(s, name=project).id
    entries = collect(paths, manifest)
    if on_total:
        on_total(len(entries))
    summary = IngestSummary()

    def handle(entry: WalkEntry, res: ProbeResult) -> None:
        shown = display_path(entry.path)
        if entry.skipped is not None:
            summary.skipped[reason_key(entry.skipped)] += 1
            summary.skipped_files.append((shown, entry.skipped))
            if on_file:
                on_file(res, "skipped")
            return
        image_id, created = _record(factory, project_id, res, copy_to, max_bytes)
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

    window: deque[tuple[WalkEntry, Future[ProbeResult] | None]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        for entry in entries:
            job = None
            if entry.skipped is None:
                job = pool.submit(_safe_probe, entry, max_pixels, min_side, max_bytes)
            window.append((entry, job))
            while len(window) > 4 * workers:
                _finish(window.popleft(), handle)
        while window:
            _finish(window.popleft(), handle)
    return summary


def _finish(
    item: tuple[WalkEntry, Future[ProbeResult] | None],
    handle: Callable[[WalkEntry, ProbeResult], None],
) -> None:
    entry, job = item
    if job is None:
        handle(entry, ProbeResult(entry.path, None, None, False, entry.skipped))
    else:
        handle(entry, job.result())
