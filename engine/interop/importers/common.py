"""What every importer shares: the report, image matching, the label policy and mask rows.

Shapes: masks are HW bool arrays in full-resolution image pixels (the display
orientation ingest records); stored as COCO RLE with a COCO XYWH ``bbox``.
Imported masks are ``source="human"``, ``status="accepted"`` (final) unless an
importer says otherwise (Label Studio predictions become ``proposed``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db.annotation_imports import add_mask_row
from db.images import add_image, find_image, uri_page
from db.models import Image, Mask, Project, User, utcnow
from db.users import ensure_inactive_user
from engine.imageio import DEFAULT_MAX_PIXELS, probe
from engine.masks import encode_rle, rle_area, rle_bbox
from engine.uris import path_to_uri

INDEX_PAGE = 1000  # image rows a query when ImageResolver indexes a project by file name
SERVICE_USER = "label-studio"  # events imported from Label Studio are attributed to this user


class FileRejected(Exception):
    """The whole file is refused (malformed, strict mode, already imported); nothing is written."""


@dataclass
class FileOutcome:
    """What happened to one input file. ``skipped`` holds (item, reason) pairs."""

    path: str
    status: str = "imported"  # imported | rejected
    reason: str | None = None
    images: int = 0
    images_added: int = 0
    masks: int = 0
    events: int = 0
    accepted: int = 0  # Label Studio regions that kept a proposal unchanged (accepts)
    fixed: int = 0  # Label Studio regions that changed a proposal (fixes with it as parent)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append((item, reason))


@dataclass
class ImportReport:
    """Counts of one import run over many files."""

    files: list[FileOutcome] = field(default_factory=list)

    @property
    def masks(self) -> int:
        return sum(f.masks for f in self.files if f.status == "imported")

    @property
    def images(self) -> int:
        return sum(f.images for f in self.files if f.status == "imported")

    @property
    def rejected(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "rejected"]

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        """(file, item, reason) for every skipped item of every imported file."""
        return [(f.path, item, why) for f in self.files for item, why in f.skipped]

    def summary(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "files_rejected": len(self.rejected),
            "images": self.images,
            "images_added": sum(f.images_added for f in self.files if f.status == "imported"),
            "masks": self.masks,
            "events": sum(f.events for f in self.files if f.status == "imported"),
            "accepted": sum(f.accepted for f in self.files if f.status == "imported"),
            "fixed": sum(f.fixed for f in self.files if f.status == "imported"),
            "skipped": len(self.skipped),
        }


class LabelPolicy:
    """Which labels an import may use.

    With ``add_labels`` (the importer sets it for a project whose taxonomy was
    empty) unknown labels extend ``project.labels``; otherwise they are skipped.
    """

    def __init__(self, project: Project, *, add_labels: bool = False) -> None:
        self.project = project
        self.open = add_labels

    def check(self, label: str | None) -> str | None:
        """None if ``label`` may be used (adding it to the taxonomy if needed), else the reason."""
        if label is None or not str(label).strip():
            return "region has no label"
        label = str(label).strip()
        if label in self.project.labels:
            return None
        if self.open:
            self.project.labels = [*self.project.labels, label]
            return None
        return (
            f"unknown label {label!r} (project taxonomy: {', '.join(self.project.labels)}; "
            "pass --add-labels to extend it)"
        )


def _basename(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


class ImageResolver:
    """Find the ingested image a file names, or ingest it on the fly from a folder.

    Order: an existing file (``base_dir``/name, then each of ``image_dirs``) is
    probed and recorded in the project (deduplicated by sha256, so an already
    ingested copy is reused); otherwise the project's images whose ``uri`` ends
    with the name (or its basename) are used when exactly one matches.
    """

    def __init__(
        self,
        session: Session,
        *,
        project: Project,
        image_dirs: list[Path] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.session = session
        self.project = project
        self.image_dirs = [Path(d) for d in image_dirs or []]
        self.max_pixels = max_pixels
        self._by_basename: dict[str, list[int]] | None = None

    def _index(self) -> dict[str, list[int]]:
        """basename -> ids of the project's ok images, read page by page by id (keyset:
        ``id > last``, ``INDEX_PAGE`` rows a query) as (id, uri) pairs, never whole ORM rows."""
        if self._by_basename is None:
            self._by_basename = {}
            last = 0
            while True:
                rows = uri_page(
                    self.session, project_id=self.project.id, after_id=last, limit=INDEX_PAGE
                )
                for image_id, uri in rows:
                    self._by_basename.setdefault(_basename(uri), []).append(image_id)
                if len(rows) < INDEX_PAGE:
                    break
                last = rows[-1][0]
        return self._by_basename

    def _from_disk(self, path: Path, outcome: FileOutcome) -> tuple[Image | None, str | None]:
        # imported annotations are kept whatever the image's size: no too-small rule here
        res = probe(path, max_pixels=self.max_pixels, min_side=1)
        if not res.ok:
            return None, f"image file {path} is not usable: {res.reason}"
        image, created = add_image(
            self.session, project_id=self.project.id, uri=path_to_uri(path), **res.image_columns()
        )
        if image.status != "ok":
            return None, f"image {path} was rejected at ingest: {image.reason}"
        if created:
            outcome.images_added += 1
            self._index().setdefault(_basename(image.uri), []).append(image.id)
        return image, None

    def find(
        self,
        name: str,
        outcome: FileOutcome,
        *,
        base_dir: Path | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> tuple[Image | None, str | None]:
        """(image, None) or (None, reason). ``width``/``height`` (if given) must match."""
        if not name:
            return None, "no image file name given"
        rel = Path(name.replace("\\", "/"))
        candidates: list[Path] = []
        if rel.is_absolute():
            candidates.append(rel)
        for d in ([base_dir] if base_dir else []) + self.image_dirs:
            candidates += [d / rel, d / rel.name]
        image: Image | None = None
        for path in candidates:
            if path.is_file():
                image, reason = self._from_disk(path, outcome)
                if image is None:
                    return None, reason
                break
        if image is None:
            matches = [
                m
                for i in self._index().get(rel.name, [])
                if (m := find_image(self.session, image_id=i)) is not None
            ]
            if len(rel.parts) > 1:  # prefer the ones whose uri ends with the relative path
                exact = [
                    m for m in matches if m.uri.replace(os.sep, "/").endswith("/" + rel.as_posix())
                ]
                matches = exact or matches
            if not matches:
                where = ", ".join(str(d) for d in self.image_dirs) or "no --images folder given"
                return None, (
                    f"image {name!r} not found: not ingested in project {self.project.name!r} "
                    f"and not on disk ({where}); ingest it or pass --images DIR"
                )
            if len({m.sha256 for m in matches}) > 1:
                return (
                    None,
                    f"image {name!r} is ambiguous: {len(matches)} ingested files share its name",
                )
            image = matches[0]
        if (
            width is not None
            and height is not None
            and (image.width, image.height)
            != (
                int(width),
                int(height),
            )
        ):
            return None, (
                f"image {name!r} size mismatch: the file says {width}x{height}, "
                f"the ingested image is {image.width}x{image.height}"
            )
        return image, None


def add_mask(
    session: Session,
    *,
    image: Image,
    mask: np.ndarray | None = None,
    rle: dict[str, Any] | None = None,
    label: str | None,
    meta: dict[str, Any],
    source: str = "human",
    status: str = "accepted",
    author_id: int | None = None,
    **fields: Any,
) -> Mask | str:
    """Add one mask row (from a HW bool ``mask`` or a COCO ``rle``); returns it, or the reason it was not.

    The mask must have the image's (H, W) and at least one pixel.
    """
    if rle is None:
        if mask is None:
            raise ValueError("give mask or rle")
        rle = encode_rle(mask)
    h, w = int(rle["size"][0]), int(rle["size"][1])
    if (h, w) != (image.height, image.width):
        return f"mask is {w}x{h} but the image is {image.width}x{image.height}"
    area = rle_area(rle)
    if area == 0:
        return "empty region (no pixels inside the image)"
    return add_mask_row(
        session,
        image_id=image.id,
        rle=rle,
        bbox=rle_bbox(rle),
        area=area,
        label=label,
        source=source,
        status=status,
        author_id=author_id,
        meta=meta,
        **fields,
    )


def already_imported(project: Project, sha256: str) -> dict[str, Any] | None:
    """The earlier import record of a file with this sha256 in ``project.settings``, if any."""
    for rec in (project.settings or {}).get("imports", []):
        if rec.get("sha256") == sha256:
            return rec
    return None


def remember_import(project: Project, record: dict[str, Any]) -> None:
    """Append ``record`` to ``project.settings["imports"]`` (a new dict so the change is seen)."""
    settings = dict(project.settings or {})
    settings["imports"] = [*settings.get("imports", []), {**record, "at": utcnow().isoformat()}]
    project.settings = settings


def service_user(session: Session, name: str = SERVICE_USER) -> User:
    """The inactive account imported effort events are attributed to (created on first use)."""
    return ensure_inactive_user(session, name=name)
