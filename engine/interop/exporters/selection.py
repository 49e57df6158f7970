"""Which images and masks a mask export (COCO, SA-1B, labelme, Label Studio) contains.

- images: the project's ``ok`` images, in id order; with ``stage`` only those
  whose latest non-superseded curation decision in that stage is keep/pass.
- masks: ``include="final"`` -> status ``accepted``; ``include="all"`` -> also
  ``proposed`` (model proposals, exported with their scores).

Exports walk the selection by **keyset pages** (``Image.id > last ORDER BY id LIMIT n``):
:func:`pages` yields ``PAGE_SIZE`` images and their masks at a time, so rows and mask
RLEs held in memory are O(page), never the whole project. :func:`survey` is the light
first pass (ids, uris, labels, source ids; no masks' RLEs) that exports need before they
write: repeated file names, the labels in use, the source COCO ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy.orm import Session

from db.export_rows import kept_image_ids, mask_labels, masks_by_image
from db.images import image_page
from db.model_versions import version_names
from db.models import Image, Mask, Project

INCLUDE = {"final": ("accepted",), "all": ("accepted", "proposed")}
PAGE_SIZE = 200  # images per keyset page


def statuses(options: dict[str, Any]) -> tuple[str, ...]:
    include = options.get("include", "final")
    if include not in INCLUDE:
        raise ValueError(f"include must be one of {', '.join(INCLUDE)}, got {include!r}")
    return INCLUDE[include]


def image_pages(
    session: Session, *, project: Project, stage: str | None, page_size: int | None = None
) -> Iterator[list[Image]]:
    """The exported images, ``page_size`` (default ``PAGE_SIZE``) ids at a time (keyset
    paging, id order; a page may hold fewer after the stage filter)."""
    page_size = page_size or PAGE_SIZE
    last = 0
    while True:
        rows = image_page(session, project_id=project.id, after_id=last, limit=page_size)
        if not rows:
            return
        last = rows[-1].id
        if stage is not None:
            kept = kept_image_ids(session, image_ids=[im.id for im in rows], stage=stage)
            rows = [im for im in rows if im.id in kept]
        if rows:
            yield rows


def masks_of(
    session: Session, *, images: list[Image], options: dict[str, Any]
) -> dict[int, list[Mask]]:
    """image id -> its exported masks (id order), for one page of images."""
    return masks_by_image(session, image_ids=[im.id for im in images], statuses=statuses(options))


@dataclass
class Page:
    """One keyset page: images (id order) and image id -> masks (id order)."""

    images: list[Image]
    masks: dict[int, list[Mask]]


def pages(
    session: Session,
    *,
    project: Project,
    stage: str | None,
    options: dict[str, Any],
    page_size: int | None = None,
) -> Iterator[Page]:
    """The exported images and their masks, a page at a time.

    The session's identity map holds only weak references to unchanged rows, so a
    page's rows are freed once the caller drops the page.
    """
    statuses(options)  # a bad ``include`` fails before anything is written
    for images in image_pages(session, project=project, stage=stage, page_size=page_size):
        yield Page(images, masks_of(session, images=images, options=options))


def basename(uri: str) -> str:
    return PurePosixPath(uri.replace("\\", "/")).name


@dataclass
class Survey:
    """What the first pass over an export's selection finds (no mask RLEs are read).

    ``name_counts``: basename -> how many exported images have it; ``labels``: mask
    labels in use (None for unlabelled), first-seen order; ``coco_ids``: source COCO
    image id -> how many exported images carry it (``image.meta["coco"]["id"]``).
    """

    images: int = 0
    name_counts: Counter[str] = field(default_factory=Counter)
    labels: list[str | None] = field(default_factory=list)
    coco_ids: Counter[int] = field(default_factory=Counter)

    def file_name(self, image: Image) -> str:
        """The file name exports use: the uri's basename, ``<id>_<name>`` when it repeats."""
        name = basename(image.uri)
        return name if self.name_counts[name] <= 1 else f"{image.id}_{name}"


def source_coco_id(image: Image) -> int | None:
    """The image id the image had in the COCO file it was imported from, if any."""
    coco = (image.meta or {}).get("coco")
    if isinstance(coco, dict) and isinstance(coco.get("id"), int):
        return int(coco["id"])
    return None


def survey(
    session: Session,
    *,
    project: Project,
    stage: str | None,
    options: dict[str, Any],
    page_size: int | None = None,
) -> Survey:
    """The light first pass: file-name counts, labels in use and source COCO ids."""
    wanted = statuses(options)
    out = Survey()
    seen: set[str | None] = set()
    for images in image_pages(
        session, project=project, stage=stage, page_size=page_size or 10 * PAGE_SIZE
    ):
        out.images += len(images)
        ids = [im.id for im in images]
        for im in images:
            out.name_counts[basename(im.uri)] += 1
            cid = source_coco_id(im)
            if cid is not None:
                out.coco_ids[cid] += 1
        for label in mask_labels(session, image_ids=ids, statuses=wanted):
            if label not in seen:
                seen.add(label)
                out.labels.append(label)
    return out


def export_images(session: Session, *, project: Project, stage: str | None) -> list[Image]:
    """Every exported image at once (small exports only; the mask exporters use :func:`pages`)."""
    return [im for page in image_pages(session, project=project, stage=stage) for im in page]


def export_masks(
    session: Session, *, images: list[Image], options: dict[str, Any]
) -> dict[int, list[Mask]]:
    """image id -> its exported masks (id order) for ``images`` (see :func:`masks_of`)."""
    out: dict[int, list[Mask]] = {}
    for start in range(0, len(images), PAGE_SIZE):
        out.update(masks_of(session, images=images[start : start + PAGE_SIZE], options=options))
    return out


def model_names(session: Session) -> dict[int, str]:
    return version_names(session)


def score(mask: Mask) -> float | None:
    """The mask's confidence: calibrated if known, else predicted IoU; None for human masks."""
    if mask.calibrated_confidence is not None:
        return float(mask.calibrated_confidence)
    if mask.predicted_iou is not None:
        return float(mask.predicted_iou)
    return None
