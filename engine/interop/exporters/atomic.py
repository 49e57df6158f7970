"""Never-partial exports: write into a temporary sibling folder, then rename into place."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.exports import add_export
from db.models import Export


def write_atomically(
    out: Path, write: Callable[[Path], dict[str, Any]]
) -> tuple[dict[str, Any], str]:
    """Run ``write(tmp_dir)`` and rename ``tmp_dir`` to ``out``; on any error nothing is left.

    Returns (counts from ``write``, sha256 of ``manifest.json`` or "" if none was written).
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; exports are never merged into an existing folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        counts = write(tmp)
        manifest = tmp / "manifest.json"
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else ""
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts, digest


def write_json(path: Path, data: Any) -> None:
    """Deterministic JSON (sorted keys, fixed separators) so equal states give equal bytes."""
    path.write_text(
        json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_export(
    session: Session,
    *,
    project_id: int,
    kind: str,
    out: Path,
    counts: dict[str, Any],
    manifest_sha256: str,
    params: dict[str, Any],
) -> Export:
    """Record the export written to ``out`` (its resolved path): ``db.exports.add_export``."""
    return add_export(
        session,
        project_id=project_id,
        kind=kind,
        path=str(Path(out).resolve()),
        counts=counts,
        manifest_sha256=manifest_sha256,
        params=params,
    )
