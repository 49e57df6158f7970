"""The automatic curation job: signals, composition, duplicates, rules -> auto decisions.

Walks the project by keyset pages (``db.pages``): memory is a page of rows plus one
(id, phash, quality) tuple per image for the near-duplicate clustering, never the ORM
objects of a whole project.

``run_auto(factory, project=..., rules=...)`` computes each ok image's quality signals
(``signals``), composition from its accepted masks (``composition``) and, when a CLIP
encoder and head are given, an ``aesthetic`` score, and stores them in ``Image.signals``.
It then clusters near-duplicates by perceptual hash and records one ``auto`` decision per
image (``pass`` or ``fail`` with every failure's reason). One bad image fails with its
reason and never stops the batch. Re-running supersedes the earlier auto decisions;
signals already computed are reused unless ``recompute``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db.curation import accepted_masks, record_decision, set_curation_settings
from db.models import Image
from db.pages import count_images, image_ids, image_pages
from db.projects import get_project
from db.session import transaction
from engine.curation.composition import composition_signals
from engine.curation.duplicates import cluster_ids, duplicate_of
from engine.curation.rules import Rules, evaluate
from engine.curation.signals import compute_signals
from engine.imageio import DEFAULT_MAX_PIXELS, ImageRejected, load_rgb
from engine.phash import phash

log = logging.getLogger("dataengine.curation")
SIGNALS_VERSION = 1


@dataclass
class AutoSummary:
    """Counts of one auto run; ``reasons`` counts each failure kind (text before the number)."""

    images: int = 0
    passed: int = 0
    failed: int = 0
    unreadable: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _image_signals(
    session: Session,
    image: Image,
    *,
    aesthetic: Callable[[Any], float] | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    rgb = load_rgb(image.uri, max_pixels=max_pixels)
    sig: dict[str, Any] = compute_signals(rgb)
    sig.update(composition_signals([m.rle for m in accepted_masks(session, image_id=image.id)]))
    if aesthetic is not None:
        sig["aesthetic"] = round(float(aesthetic(rgb)), 6)
    sig["signals_version"] = SIGNALS_VERSION
    if not image.phash:
        image.phash = phash(rgb)
    return sig


def run_auto(
    factory: sessionmaker[Session],
    *,
    project: str,
    rules: Rules,
    recompute: bool = False,
    aesthetic: Callable[[Any], float] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[Image, str], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> AutoSummary:
    """Run the automatic stage over the project's ok images (see the module docstring).

    ``max_pixels``: the decode limit (``Settings.max_image_pixels``).
    ``aesthetic``: optional function HWC uint8 RGB -> score (e.g. a ClipEncoder + head).
    ``on_image(image, status)`` is called after each image (status: computed, cached, error).
    """
    with transaction(factory) as s:
        p = get_project(s, name=project)
        project_id = p.id
        set_curation_settings(s, project=p, rules=rules.as_dict())
        total = count_images(s, project_id=project_id)
    if on_total:
        on_total(total)
    summary = AutoSummary(images=0)
    errors: dict[int, str] = {}
    # walk 1 (keyset, one image per transaction): the signals
    for image_id in image_ids(factory, project_id=project_id):
        summary.images += 1
        with transaction(factory) as s:
            image = s.get(Image, image_id)
            if image is None:  # deleted since the page was read
                continue
            status = "cached"
            if recompute or (image.signals or {}).get("signals_version") != SIGNALS_VERSION:
                try:
                    keep = {k: v for k, v in (image.signals or {}).items() if k == "ranker"}
                    image.signals = {
                        **_image_signals(s, image, aesthetic=aesthetic, max_pixels=max_pixels),
                        **keep,
                    }
                    status = "computed"
                except (ImageRejected, OSError, ValueError) as err:
                    errors[image_id] = f"unreadable: {err}"
                    status = "error"
                    log.warning("image %s: %s", image_id, err)
        if on_image:
            on_image(image, status)
    # near-duplicates need every hash at once: (id, phash, quality) tuples, not ORM rows
    dups: dict[int, tuple[int, int]] = {}
    if rules.drop_duplicates:
        ids: list[int] = []
        hashes: list[str] = []
        quality: list[float] = []
        cols = (Image.id, Image.phash, Image.signals)
        for page in image_pages(factory, project_id=project_id, columns=cols):
            for iid, ph, sig in page:
                if iid not in errors and ph:
                    ids.append(int(iid))
                    hashes.append(ph)
                    quality.append(float((sig or {}).get("quality", 0.0)))
        if ids:
            dups = duplicate_of(cluster_ids(ids, hashes, quality, radius=rules.radius))
    # walk 2 (keyset, one transaction per page): the decisions
    for page in image_pages(factory, project_id=project_id, columns=(Image.id, Image.signals)):
        with transaction(factory) as s:
            for iid, sig in page:
                if iid in errors:
                    reasons = [errors[iid]]
                    summary.unreadable += 1
                else:
                    reasons = evaluate(rules, sig or {})
                    if iid in dups:
                        keep_id, dist = dups[iid]
                        reasons.append(f"near-duplicate of image {keep_id} (hamming {dist})")
                        summary.duplicates += 1
                _decide(summary, s, iid, reasons)
    return summary


def _decide(summary: AutoSummary, session: Session, image_id: int, reasons: list[str]) -> None:
    """Record the auto decision of one image (fail with ``reasons``, else pass) and count it."""
    record_decision(
        session,
        image_id=image_id,
        stage="auto",
        decision="fail" if reasons else "pass",
        reasons=reasons,
    )
    if not reasons:
        summary.passed += 1
        return
    summary.failed += 1
    for r in reasons:
        key = "near-duplicate" if r.startswith("near-duplicate") else r.split(" ", 1)[0]
        summary.reasons[key] = summary.reasons.get(key, 0) + 1
