"""Importers: COCO, labelme and Label Studio files into a project, one transaction per file.

Each format module exposes
    ``import_document(session, *, project, doc, path, resolver, labels, outcome, options) -> None``
which adds rows to ``session`` and records skipped items on ``outcome``; it
raises ``FileRejected`` to refuse the whole file. ``import_files`` runs every
file in its own transaction: a file is committed whole or not at all.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db.projects import get_or_create_project, get_project
from db.session import transaction
from engine.imageio import DEFAULT_MAX_PIXELS
from engine.interop.importers.common import (
    FileOutcome,
    FileRejected,
    ImageResolver,
    ImportReport,
    LabelPolicy,
    already_imported,
    remember_import,
)

log = logging.getLogger("dataengine.import")

# format name -> module under engine.interop.importers
IMPORTERS: dict[str, str] = {
    "coco": "engine.interop.importers.coco",
    "labelme": "engine.interop.importers.labelme",
    "label-studio": "engine.interop.importers.label_studio",
}


def input_files(paths: list[Path]) -> list[Path]:
    """JSON files named by ``paths`` (folders are walked recursively, sorted)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.json") if not q.name.startswith("."))
        else:
            out.append(p)
    return out


def _read_json(path: Path) -> tuple[Any, str]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FileRejected(f"cannot read: {err}") from err
    try:
        return json.loads(raw.decode("utf-8")), hashlib.sha256(raw).hexdigest()
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileRejected(f"not valid JSON: {err}") from err


def import_files(
    factory: sessionmaker[Session],
    *,
    fmt: str,
    project: str,
    paths: list[Path],
    image_dirs: list[Path] | None = None,
    options: dict[str, Any] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_file: Callable[[FileOutcome], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import every file under ``paths`` in format ``fmt`` into ``project`` (created if missing).

    options: ``add_labels`` (extend the taxonomy with unknown labels), ``strict``
    (any skipped item rejects its whole file), ``force`` (import a file again
    even if its sha256 was imported before), ``predictions`` (Label Studio:
    import predictions as proposals too), ``user_id`` (author of imported masks),
    ``as_proposals`` / ``score`` (COCO: store confident model proposals with that default
    score, see ``engine.interop.importers.proposals``).
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown import format {fmt!r}; choose one of {', '.join(IMPORTERS)}")
    module = importlib.import_module(IMPORTERS[fmt])
    options = dict(options or {})
    with transaction(factory) as s:
        proj = get_or_create_project(s, name=project)
        project_id = proj.id
        # a project without a taxonomy adopts the labels of every file of this run
        adopt = bool(options.get("add_labels")) or not proj.labels
    files = input_files(paths)
    if on_total:
        on_total(len(files))
    report = ImportReport()
    for path in files:
        outcome = FileOutcome(path=str(path))
        try:
            doc, sha = _read_json(path)
            with transaction(factory) as s:
                proj = get_project(s, project_id=project_id)
                prior = already_imported(proj, sha)
                if prior is not None and not options.get("force"):
                    raise FileRejected(
                        f"already imported on {prior.get('at')} ({prior.get('masks')} masks); "
                        "pass --force to import it again"
                    )
                resolver = ImageResolver(
                    s, project=proj, image_dirs=image_dirs, max_pixels=max_pixels
                )
                labels = LabelPolicy(proj, add_labels=adopt)
                try:
                    module.import_document(
                        s,
                        project=proj,
                        doc=doc,
                        path=path,
                        resolver=resolver,
                        labels=labels,
                        outcome=outcome,
                        options=options,
                    )
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
                    log.warning("import of %s failed", path, exc_info=err)
                    raise FileRejected(f"malformed file: {type(err).__name__}: {err}") from err
                if options.get("strict") and outcome.skipped:
                    item, why = outcome.skipped[0]
                    raise FileRejected(
                        f"strict mode: {len(outcome.skipped)} item(s) would be skipped, "
                        f"first {item}: {why}"
                    )
                remember_import(
                    proj,
                    {"format": fmt, "file": str(path), "sha256": sha, "masks": outcome.masks},
                )
        except FileRejected as err:
            outcome.status, outcome.reason = "rejected", str(err)
        report.files.append(outcome)
        if on_file:
            on_file(outcome)
    return report
