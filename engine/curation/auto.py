"""The automatic curation job: signals, composition, duplicates, rules -> auto decisions.

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
from db.images import get_image, image_ids, images_by_id
from db.models import Image
from db.projects import get_project
from db.session import transaction
from engine.curation.composition import composition_signals
from engine.curation.duplicates import cluster_ids, duplicate_of
from engine.curation.rules import Rules, evaluate
from engine.curation.signals import compute_signals
from engine.imageio import DEFAULT_MAX_PIXELS, ImageRejected, load_rgb, phash

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
        ids = image_ids(s, project_id=project_id, status="ok")
    if on_total:
        on_total(len(ids))
    summary = AutoSummary(images=len(ids))
    errors: dict[int, str] = {}
    for image_id in ids:
        with transaction(factory) as s:
            image = get_image(s, image_id=image_id)  # listed above; never deleted mid-run
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
    with transaction(factory) as s:
        images = images_by_id(s, ids=ids)
        usable = [im for im in images if im.id not in errors and im.phash]
        dups: dict[int, tuple[int, int]] = {}
        if rules.drop_duplicates and usable:
            clusters = cluster_ids(
                [im.id for im in usable],
                [im.phash for im in usable],
                [float((im.signals or {}).get("quality", 0.0)) for im in usable],
                radius=rules.radius,
            )
            dups = duplicate_of(clusters)
        for im in images:
            if im.id in errors:
                reasons = [errors[im.id]]
                summary.unreadable += 1
            else:
                reasons = evaluate(rules, im.signals or {})
                if im.id in dups:
                    keep_id, dist = dups[im.id]
                    reasons.append(f"near-duplicate of image {keep_id} (hamming {dist})")
                    summary.duplicates += 1
            record_decision(
                s,
                image_id=im.id,
                stage="auto",
                decision="fail" if reasons else "pass",
                reasons=reasons,
            )
            if reasons:
                summary.failed += 1
                for r in reasons:
                    key = (
                        r.split(" ", 1)[0]
                        if not r.startswith("near-duplicate")
                        else "near-duplicate"
                    )
                    summary.reasons[key] = summary.reasons.get(key, 0) + 1
            else:
                summary.passed += 1
    return summary
