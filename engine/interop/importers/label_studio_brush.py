"""Import Label Studio's brush exports (``BRUSH_TO_PNG`` / ``BRUSH_TO_NUMPY``): a zip or folder
of one file per brush region, named by ``label_studio_sdk.converter.brush``::

    task-<task id>-annotation-<annotation id>-by-<user>-<from_name>-<labels>-<n>.png|.npy

The file holds the region's alpha layer, (H, W) uint8; a pixel is foreground when it is
non-zero (as the SDK's own brush-to-COCO converter reads it). ``<labels>`` is empty for an
unlabelled region (``mask--0.png``), which imports with no label.

The files name Label Studio task ids, not images: the tasks come from the project's JSON
export (``tasks``: the parsed list) or from Label Studio's API (``ls``). Each annotation's
files go through ``record_annotation`` like a JSON import (re-importing is a no-op; an
annotation the JSON import or the webhook already recorded is not recorded twice), one
transaction per annotation: a bad file is skipped with its reason and the rest import.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db.projects import get_project
from db.session import transaction
from engine.interop.importers.common import FileOutcome, ImportReport, LabelPolicy
from engine.interop.importers.label_studio_annotation import record_annotation
from engine.interop.label_studio import find_task_image, mask_to_brush
from engine.interop.label_studio_api import LabelStudio, LabelStudioError

NAME = re.compile(
    r"^task-(?P<task>\d+)-annotation-(?P<ann>\d+)-by-(?P<user>[A-Za-z0-9@.]*)-"
    r"(?P<tag>[^-]+)-(?P<labels>.*)-(?P<n>\d+)\.(?P<ext>png|npy)$"
)


def _members(paths: list[Path]) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(file name, reader) for every .png/.npy file under ``paths`` (folders, zips, files)."""
    for p in paths:
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.suffix in (".png", ".npy") and q.is_file():
                    yield q.name, q.read_bytes
        elif zipfile.is_zipfile(p):
            zf = zipfile.ZipFile(p)
            for info in zf.infolist():
                name = Path(info.filename).name
                if name.endswith((".png", ".npy")) and not info.is_dir():
                    yield name, lambda info=info, zf=zf: zf.read(info)
        else:
            yield p.name, p.read_bytes


def read_layer(name: str, data: bytes) -> np.ndarray:
    """A brush file's bytes -> (H, W) bool mask. Raises ValueError naming the problem."""
    if name.endswith(".npy"):
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    else:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "1") else im)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, 3]
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) layer, got shape {arr.shape}")
    return np.asarray(arr) > 0


def _task_lookup(
    tasks: list[dict[str, Any]] | None, ls: LabelStudio | None
) -> Callable[[int], dict[str, Any] | None]:
    by_id = {int(t["id"]): t for t in tasks or [] if isinstance(t, dict) and "id" in t}

    def lookup(task_id: int) -> dict[str, Any] | None:
        if task_id not in by_id and ls is not None:
            try:
                by_id[task_id] = ls.call("GET", f"/api/tasks/{task_id}")
            except LabelStudioError:
                return None
        return by_id.get(task_id)

    return lookup


def import_brush_export(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    paths: list[Path],
    tasks: list[dict[str, Any]] | None = None,
    ls: LabelStudio | None = None,
    add_labels: bool = False,
    user_id: int | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> ImportReport:
    """Import brush PNG/NumPy files (module docstring); one outcome per annotation."""
    if tasks is None and ls is None:
        raise ValueError(
            "brush files name Label Studio task ids: give the project's JSON export "
            "(--tasks FILE) or --ls-url/--ls-token so the tasks can be looked up"
        )
    report = ImportReport()
    groups: dict[tuple[int, int], list[tuple[str, dict[str, str], bytes]]] = defaultdict(list)
    for name, read in _members(paths):
        hit = NAME.match(name)
        if hit is None:
            bad = FileOutcome(path=name, status="rejected")
            bad.reason = "not a Label Studio brush export name (task-<id>-annotation-<id>-by-...)"
            report.files.append(bad)
            continue
        groups[(int(hit["task"]), int(hit["ann"]))].append((name, hit.groupdict(), read()))
    lookup = _task_lookup(tasks, ls)
    for (task_id, ann_id), files in sorted(groups.items()):
        outcome = FileOutcome(path=f"task {task_id} annotation {ann_id} ({len(files)} files)")
        task = lookup(task_id)
        if task is None or not isinstance(task.get("data"), dict):
            outcome.status, outcome.reason = "rejected", f"task {task_id} not found"
        else:
            _import_group(factory, project_id, task, ann_id, files, outcome, add_labels, user_id)
        report.files.append(outcome)
        if on_file:
            on_file(outcome)
    return report


def _import_group(
    factory: sessionmaker[Session],
    project_id: int,
    task: dict[str, Any],
    ann_id: int,
    files: list[tuple[str, dict[str, str], bytes]],
    outcome: FileOutcome,
    add_labels: bool,
    user_id: int | None,
) -> None:
    with transaction(factory) as s:
        project = get_project(s, project_id=project_id)
        image, reason = find_task_image(s, task["data"], project_id=project_id)
        if image is None:
            outcome.status, outcome.reason = "rejected", reason or "image not found"
            return
        outcome.images += 1
        results = []
        for name, parts, data in files:
            try:
                mask = read_layer(name, data)
            except (ValueError, OSError) as err:
                outcome.skip(name, f"unreadable brush layer: {err}")
                continue
            if mask.shape != (image.height, image.width):
                outcome.skip(
                    name,
                    f"layer is {mask.shape[1]}x{mask.shape[0]}, the image is "
                    f"{image.width}x{image.height}",
                )
                continue
            label = parts["labels"] or None
            results.append(
                {
                    "id": f"brush-{parts['tag']}-{parts['labels']}-{parts['n']}",
                    "type": "brushlabels",
                    "from_name": parts["tag"],
                    "to_name": "image",
                    "original_width": image.width,
                    "original_height": image.height,
                    "value": {
                        "format": "rle",
                        "rle": mask_to_brush(mask),
                        "brushlabels": [label] if label else [],
                    },
                }
            )
        annotation = {"id": ann_id, "result": results, "completed_by": files[0][1]["user"]}
        for ann in task.get("annotations") or []:  # the JSON export knows its version
            if isinstance(ann, dict) and ann.get("id") == ann_id:
                annotation.update({k: ann.get(k) for k in ("updated_at", "lead_time")})
        record_annotation(
            s,
            image=image,
            task=task,
            annotation=annotation,
            labels=LabelPolicy(project, add_labels=add_labels or not project.labels),
            outcome=outcome,
            user_id=user_id,
        )
