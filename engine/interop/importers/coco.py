"""Import COCO instances JSON (polygons, RLE, crowd RLE) as human masks.

Images are matched by ``file_name`` (see ``ImageResolver``); each COCO image's
``width``/``height`` must equal the ingested image's. Masks are rasterised
exactly as ``pycocotools.coco.COCO.annToMask`` does, so exporting them again
gives the same pixels. ``iscrowd`` is kept in ``mask.meta["iscrowd"]``.

What the COCO export needs to give the source's numbering back is kept too: each
image's COCO id in ``image.meta["coco"] = {"id", "file"}`` (the first file that names
the image wins), its ``license`` (and ``coco_url``/``flickr_url``) in ``image.meta``,
the ``licenses`` table and the categories (``id``, ``name``, ``supercategory``; the
first id seen for a name wins) in ``project.settings["licenses"]`` /
``project.settings["coco_categories"]``.

With ``options["as_proposals"]`` the masks are stored as confident model proposals of a
pre-fill round instead (``engine.interop.importers.proposals``): the score is the
annotation's ``score`` field, else ``options["score"]`` (default 1.0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db.models import Image, Project
from engine.interop.importers.common import (
    FileOutcome,
    FileRejected,
    ImageResolver,
    LabelPolicy,
    add_mask,
)
from engine.interop.importers.proposals import (
    DEFAULT_SCORE,
    ProposalRound,
    annotation_score,
    check_default_score,
)
from engine.mask_payload import check_coco_rle, check_polygons
from engine.masks import decode_rle, encode_rle, polygons_to_mask


def segmentation_to_mask(segm: Any, height: int, width: int) -> np.ndarray:
    """COCO ``segmentation`` (polygon list, or RLE with str/list counts) -> HW bool mask.

    Checked before decoding by ``engine.mask_payload`` (RLE size = the image's, runs >= 0
    summing to h*w; polygons finite, near the image, bounded outline). Raises ValueError
    naming what is wrong (odd coordinates, <3 points, wrong RLE size ...).
    """
    if isinstance(segm, list):
        return polygons_to_mask(check_polygons(segm, height=height, width=width), height, width)
    if isinstance(segm, dict):
        return decode_rle(check_coco_rle(segm, height=height, width=width))
    raise ValueError(f"segmentation must be polygons or RLE, got {type(segm).__name__}")


def _check_structure(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise FileRejected("not a COCO instances file: the top level must be an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise FileRejected(f"not a COCO instances file: {key!r} must be a list")


def _record_licence(image: Image, coco_image: dict[str, Any], file: str) -> None:
    """Keep the COCO image's id, licence id (and Flickr/COCO URLs) so exports can cite them."""
    meta = dict(image.meta or {})
    coco_id = coco_image.get("id")
    if "coco" not in meta and isinstance(coco_id, int) and not isinstance(coco_id, bool):
        meta["coco"] = {"id": coco_id, "file": file}
    if "license" not in coco_image:
        image.meta = meta
        return
    meta["license"] = coco_image["license"]
    for key in ("coco_url", "flickr_url"):
        if coco_image.get(key):
            meta[key] = coco_image[key]
    image.meta = meta


def _record_licence_table(project: Project, licenses: Any) -> None:
    """Merge the file's ``licenses`` table (id, name, url) into ``project.settings``."""
    if not isinstance(licenses, list):
        return
    settings = dict(project.settings or {})
    known = {x.get("id"): x for x in settings.get("licenses", []) if isinstance(x, dict)}
    for lic in licenses:
        if isinstance(lic, dict) and "id" in lic:
            known[lic["id"]] = {k: lic[k] for k in ("id", "name", "url") if k in lic}
    settings["licenses"] = [known[k] for k in sorted(known, key=str)]
    project.settings = settings


def _record_categories(project: Project, categories: Any) -> None:
    """Merge the file's categories (id, name, supercategory) into ``project.settings``."""
    settings = dict(project.settings or {})
    known = [c for c in settings.get("coco_categories", []) if isinstance(c, dict)]
    names = {c.get("name") for c in known}
    ids = {c.get("id") for c in known}
    for cat in categories:
        if not isinstance(cat, dict):
            continue
        cid, name = cat.get("id"), cat.get("name")
        if not isinstance(cid, int) or isinstance(cid, bool) or not isinstance(name, str):
            continue
        if name in names or cid in ids:
            continue
        sup = cat.get("supercategory")
        known.append(
            {"id": cid, "name": name, "supercategory": sup if isinstance(sup, str) else ""}
        )
        names.add(name)
        ids.add(cid)
    if known != settings.get("coco_categories"):
        settings["coco_categories"] = known
        project.settings = settings


def import_document(
    session: Session,
    *,
    project: Project,
    doc: Any,
    path: Path,
    resolver: ImageResolver,
    labels: LabelPolicy,
    outcome: FileOutcome,
    options: dict[str, Any],
) -> None:
    """Add one mask per usable annotation; see the module docstring."""
    _check_structure(doc)
    categories = {c.get("id"): c.get("name") for c in doc["categories"] if isinstance(c, dict)}
    if labels.open:  # adopt the file's whole taxonomy, in its order
        for name in categories.values():
            if isinstance(name, str) and name not in ("_background_", "__ignore__"):
                labels.check(name)
    coco_images: dict[Any, dict[str, Any]] = {}
    for im in doc["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            outcome.skip(f"image {im!r:.60}", "malformed image entry (needs id and file_name)")
            continue
        coco_images[im["id"]] = im
    resolved: dict[Any, Image | None] = {}
    for coco_id, im in coco_images.items():
        image, reason = resolver.find(
            str(im["file_name"]), outcome, width=im.get("width"), height=im.get("height")
        )
        resolved[coco_id] = image
        if image is None:
            outcome.skip(f"image {im['file_name']}", reason or "not found")
        else:
            outcome.images += 1
            _record_licence(image, im, path.name)
    _record_licence_table(project, doc.get("licenses"))
    _record_categories(project, doc["categories"])
    author = options.get("user_id")
    proposals: ProposalRound | None = None
    default_score = DEFAULT_SCORE
    per_image: dict[int, tuple[Image, int]] = {}
    if options.get("as_proposals"):
        default_score = check_default_score(options.get("score", DEFAULT_SCORE))
        proposals = ProposalRound(session, project=project, file_name=path.name)
    for ann in doc["annotations"]:
        if not isinstance(ann, dict):
            outcome.skip(f"annotation {ann!r:.40}", "malformed annotation (not an object)")
            continue
        item = f"annotation {ann.get('id')}"
        coco_id = ann.get("image_id")
        if coco_id not in coco_images:
            outcome.skip(item, f"image_id {coco_id!r} is not in 'images'")
            continue
        image = resolved.get(coco_id)
        if image is None:
            outcome.skip(item, f"its image {coco_images[coco_id]['file_name']} was not found")
            continue
        label = categories.get(ann.get("category_id"))
        if label is None:
            outcome.skip(item, f"category_id {ann.get('category_id')!r} is not in 'categories'")
            continue
        reason = labels.check(label)
        if reason:
            outcome.skip(item, reason)
            continue
        try:
            mask = segmentation_to_mask(ann.get("segmentation"), image.height, image.width)
        except ValueError as err:
            outcome.skip(item, f"malformed segmentation: {err}")
            continue
        meta = {
            "import": {"format": "coco", "file": path.name, "ann_id": ann.get("id")},
            "iscrowd": int(bool(ann.get("iscrowd", 0))),
        }
        fields: dict[str, Any] = {"author_id": author}
        if proposals is not None:
            score, why = annotation_score(ann, default_score)
            if score is None:
                outcome.skip(item, why or "bad score")
                continue
            fields = proposals.mask_fields(score)
        row = add_mask(
            session,
            image=image,
            rle=encode_rle(mask),
            label=str(label),
            meta=meta,
            **fields,
        )
        if isinstance(row, str):
            outcome.skip(item, row)
            continue
        outcome.masks += 1
        if proposals is not None:
            n = per_image.get(image.id, (image, 0))[1]
            per_image[image.id] = (image, n + 1)
    if proposals is not None:
        for image, n in per_image.values():
            proposals.mark_prefilled(image, proposals=n)
    session.flush()
