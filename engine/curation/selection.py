"""What a curated export contains: selected images with caption, rating, tags, signals,
provenance and licence, plus the manifest both curated exporters write.

Selection by stage (``db.curation.effective``): ``specialist`` (default) = every specialist
kept it; ``generalist`` = a generalist kept it; ``auto`` = the rules passed it. Captions:
the newest human caption, else a draft from the accepted masks' labels (marked
``caption_source: "draft"``). Images whose file is missing or changed since ingest are
skipped and listed in the manifest, never silently dropped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.orm import Session

from db.captions import latest_caption
from db.curation import (
    accepted_masks,
    active_decisions,
    curation_settings,
    effective,
    stage_seconds,
)
from db.errors import InvalidInput
from db.images import images_by_id
from db.models import Image, Project
from engine.curation.captions import draft_caption
from engine.interop.exporters.atomic import file_sha256
from engine.storage import StorageError, copy_to, is_remote
from engine.uris import uri_to_path

STAGE_RULES = {
    "specialist": "effective specialist keep: every specialist who saw the image kept it",
    "generalist": "effective generalist keep: at least one generalist kept the image",
    "auto": "automatic rules passed the image",
}
SUFFIXES = {".jpeg": ".jpg", ".tif": ".tiff"}
PAGE_SIZE = 200  # images per page of records


@dataclass
class Record:
    """One exported image. ``file_name`` is relative to the export's image folder."""

    image: Image
    file_name: str
    text: str
    caption_source: str
    rating: float | None
    tags: list[str]
    signals: dict[str, float]
    provenance: dict[str, Any]
    license: dict[str, Any] | None


def licence_of(image: Image, project: Project) -> dict[str, Any] | None:
    """The image's licence where known: ``image.meta["license"]`` (a COCO licence id, name or
    dict), completed from ``image.meta["license_name"/"license_url"]`` or the project's COCO
    ``settings["licenses"]`` table. None when unknown."""
    meta = image.meta or {}
    lic = meta.get("license", (meta.get("coco") or {}).get("license"))
    if lic is None:
        return None
    if isinstance(lic, dict):
        return {k: lic[k] for k in sorted(lic)}
    out: dict[str, Any] = {"id": lic}
    table = {
        str(x.get("id")): x
        for x in (project.settings or {}).get("licenses", [])
        if isinstance(x, dict)
    }
    known = table.get(str(lic), {})
    for key in ("name", "url"):
        value = meta.get(f"license_{key}", known.get(key))
        if value is not None:
            out[key] = value
    return out


def _numeric(signals: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in sorted((signals or {}).items())
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "signals_version"
    }


def select_records(session: Session, *, project: Project, stage: str | None) -> list[Record]:
    """The export's records in image-id order (see the module docstring), all at once."""
    return [r for page in record_pages(session, project=project, stage=stage) for r in page]


def record_pages(
    session: Session, *, project: Project, stage: str | None, page_size: int | None = None
) -> Iterator[list[Record]]:
    """The export's records in image-id order, ``page_size`` images at a time: the image
    rows held are one page's (the selected ids and decisions are plain values)."""
    stage = stage or "specialist"
    if stage not in STAGE_RULES:
        raise InvalidInput(f"curated exports take --stage {', '.join(STAGE_RULES)}, not {stage!r}")
    wanted = "pass" if stage == "auto" else "keep"
    chosen = sorted(
        i for i, d in effective(session, project_id=project.id, stage=stage).items() if d == wanted
    )
    if not chosen:
        return
    spec: dict[int, list[Any]] = {}
    for d in active_decisions(session, project_id=project.id, stage="specialist"):
        spec.setdefault(d.image_id, []).append(d)
    decided: dict[str, dict[int, str]] = {
        s: effective(session, project_id=project.id, stage=s)
        for s in ("auto", "generalist", "specialist")
    }
    page_size = page_size or PAGE_SIZE
    for start in range(0, len(chosen), page_size):
        ids = chosen[start : start + page_size]
        images = images_by_id(session, ids=ids)
        yield [_record(session, im, project, spec, decided) for im in images]


def _record(
    session: Session,
    im: Image,
    project: Project,
    spec: dict[int, list[Any]],
    decided: dict[str, dict[int, str]],
) -> Record:
    """One selected image's record (caption: newest human one, else a draft)."""
    suffix = PurePosixPath(im.uri).suffix.lower()
    suffix = SUFFIXES.get(suffix, suffix) or ".img"
    cap = latest_caption(session, image_id=im.id)
    if cap is not None:
        text, source = cap.text, cap.source
    else:
        masks = accepted_masks(session, image_id=im.id)
        text, source = draft_caption([m.label for m in masks], [m.area for m in masks]), "draft"
    ds = spec.get(im.id, [])
    ratings = [d.rating for d in ds if d.rating is not None]
    return Record(
        image=im,
        file_name=f"{im.id:08d}{suffix}",
        text=text,
        caption_source=source,
        rating=round(sum(ratings) / len(ratings), 3) if ratings else None,
        tags=sorted({t for d in ds for t in d.tags}),
        signals=_numeric(im.signals),
        provenance={
            "image_id": im.id,
            "sha256": im.sha256,
            "source_name": PurePosixPath(im.uri).name,
            "decisions": {s: decided[s].get(im.id) for s in decided},
            "specialists": len(ds),
        },
        license=licence_of(im, project),
    )


def copy_images(records: list[Record], folder: Path) -> tuple[list[Record], list[dict[str, Any]]]:
    """Copy each record's file byte for byte into ``folder``; returns (copied, skipped).

    A file that is missing or whose sha256 differs from the one recorded at ingest is
    skipped with its reason.
    """
    folder.mkdir(parents=True, exist_ok=True)
    copied, skipped = [], []
    for r in records:
        dest = folder / r.file_name
        if is_remote(r.image.uri):  # object storage: copied through engine.storage
            try:
                copy_to(r.image.uri, dest)
            except StorageError as err:
                skipped.append({"image_id": r.image.id, "reason": f"object {err}"})
                continue
        else:
            src = Path(uri_to_path(r.image.uri))  # file:// uris: names that are not UTF-8
            if not src.is_file():
                skipped.append({"image_id": r.image.id, "reason": "file missing"})
                continue
            shutil.copyfile(src, dest)
        if r.image.sha256 and file_sha256(dest) != r.image.sha256:
            dest.unlink()
            skipped.append(
                {"image_id": r.image.id, "reason": "file changed since ingest (sha256 differs)"}
            )
            continue
        copied.append(r)
    return copied, skipped


@dataclass
class Tally:
    """What the manifest needs from the exported records, kept as they are written."""

    image_dir: str
    images: int = 0
    captions_human: int = 0
    captions_draft: int = 0
    rated: int = 0
    licences: dict[str, Any] = field(default_factory=dict)

    def add(self, r: Record) -> None:
        self.images += 1
        self.captions_human += r.caption_source == "human"
        self.captions_draft += r.caption_source == "draft"
        self.rated += r.rating is not None
        if r.license:
            self.licences[f"{self.image_dir}/{r.file_name}".lstrip("/")] = r.license


def build_manifest(
    session: Session,
    *,
    project: Project,
    fmt: str,
    stage: str | None,
    root: Path,
    tally: Tally,
    skipped: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest: counts, selection rules, human seconds, sha256 of every file under
    ``root`` (relative POSIX paths), licences. No time stamps or absolute paths, so the same
    database state gives the same bytes."""
    stage = stage or "specialist"
    cfg = curation_settings(project)
    files = {
        p.relative_to(root).as_posix(): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    seconds = stage_seconds(session, project_id=project.id, idle_seconds=float(cfg["idle_seconds"]))
    seconds["total"] = round(sum(seconds.values()), 3)
    licences = tally.licences
    return {
        "format": fmt,
        "project": project.name,
        "stage": stage,
        "selection": {
            "rule": STAGE_RULES[stage],
            "auto_rules": cfg.get("rules"),
            "overlap_fraction": cfg["overlap_fraction"],
            "seed": cfg["seed"],
        },
        "counts": {
            "images": tally.images,
            "skipped": len(skipped),
            "captions_human": tally.captions_human,
            "captions_draft": tally.captions_draft,
            "rated": tally.rated,
            "licensed": len(licences),
        },
        "human_seconds": seconds,
        "human_seconds_rule": f"gaps between a curator's consecutive decisions, capped at {cfg['idle_seconds']} s",
        "skipped": skipped,
        "licenses": licences,
        "files": files,
    }
