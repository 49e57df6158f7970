"""The Label Studio round trip's annotation steps (``scripts/ls_roundtrip.py`` hops 3-5):
interactive prompts through Label Studio, annotations and their webhooks, the brush export;
and the product-side mask reads every hop compares with."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Image, Mask, Project
from engine.flywheel import events as event_kinds
from engine.interop.importers.label_studio_brush import import_brush_export, read_layer
from engine.interop.label_studio import brush_to_mask, mask_to_brush
from engine.interop.label_studio_api import LabelStudio
from engine.masks import decode_rle
from scripts.ls_hop import Hop


def shown_masks(s: Session, image_id: int) -> dict[int, Mask]:
    rows = s.scalars(select(Mask).where(Mask.image_id == image_id))
    return {
        m.id: m for m in rows if m.status == "accepted" or (m.status == "proposed" and m.confident)
    }


def region_mask(region: dict[str, Any]) -> np.ndarray:
    return brush_to_mask(
        region["value"]["rle"], int(region["original_height"]), int(region["original_width"])
    )


def ask_interactive(
    ls: LabelStudio, ml_id: int, task_id: int, prompt: dict[str, Any], hw: tuple[int, int]
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Send one prompt region to the ML backend's interactive endpoint through Label
    Studio; the regions it answered and the first one's mask, (H, W) bool (all False
    when it answered none)."""
    r = ls.call(
        "POST",
        f"/api/ml/{ml_id}/interactive-annotating",
        json={"task": task_id, "context": {"result": [prompt]}},
    )
    regions = (r.get("data") or {}).get("result", []) if isinstance(r, dict) else []
    mask = region_mask(regions[0]) if regions else np.zeros(hw, bool)
    return regions, mask


def live_masks(s: Session, image_id: int) -> list[np.ndarray]:
    rows = s.scalars(select(Mask).where(Mask.image_id == image_id, Mask.status == "accepted"))
    return [decode_rle(m.rle) for m in rows]


def mask_count(factory: sessionmaker[Session], image_ids: list[int]) -> int:
    with factory() as s:
        return len(s.scalars(select(Mask.id).where(Mask.image_id.in_(image_ids))).all())


def interactive(
    ls: LabelStudio, factory: sessionmaker[Session], ml_id: int, task: dict[str, Any], image: Image
) -> list[Hop]:
    """A positive click and a box through Label Studio's interactive-annotating endpoint."""
    with factory() as s:
        shown = sorted(shown_masks(s, image.id).values(), key=lambda m: -m.area)
        target = decode_rle(shown[0].rle) if shown else None
    h, w = image.height, image.width
    if target is None:  # no pre-fill on this image: click the centre
        ys, xs = np.array([h // 2]), np.array([w // 2])
    else:
        ys, xs = np.nonzero(target)
    k = len(ys) // 2
    cy, cx = int(ys[k]), int(xs[k])
    point = {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"x": 100 * (cx + 0.5) / w, "y": 100 * (cy + 0.5) / h, "width": 0.5,
                  "keypointlabels": []},
        "is_positive": True,
        "id": "click1",
        "from_name": "click",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
    }  # fmt: skip
    regions, mask = ask_interactive(ls, ml_id, task["id"], point, (h, w))
    hops = [Hop("interactive click: regions", 1, len(regions))]
    hops.append(Hop("interactive click: mask covers the click", True, bool(mask[cy, cx])))
    if target is not None:
        y0, x0 = ys.min(), xs.min()
        y1, x1 = ys.max() + 1, xs.max() + 1
    else:
        y0, x0, y1, x1 = h // 4, w // 4, 3 * h // 4, 3 * w // 4
    box = {
        "original_width": w,
        "original_height": h,
        "value": {"x": 100 * x0 / w, "y": 100 * y0 / h, "width": 100 * (x1 - x0) / w,
                  "height": 100 * (y1 - y0) / h, "rotation": 0, "rectanglelabels": []},
        "id": "box1",
        "from_name": "prompt",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
    }  # fmt: skip
    _, mask = ask_interactive(ls, ml_id, task["id"], box, (h, w))
    inside = mask[y0:y1, x0:x1].sum() / max(int(mask.sum()), 1)
    hops.append(Hop("interactive box: mask >= 90 % inside the box", True, bool(inside >= 0.9)))
    return hops


def annotate(
    ls: LabelStudio,
    factory: sessionmaker[Session],
    task_of_image: dict[int, dict[str, Any]],
    predictions: dict[int, dict[str, Any]],
    images: dict[int, Image],
) -> list[Hop]:
    """Three annotations: a prediction accepted as is, one with an edited region, one new."""
    with_regions = [
        (i, t) for i, t in task_of_image.items() if (predictions.get(t["id"]) or {}).get("result")
    ]
    if len(with_regions) < 2:
        return [Hop("tasks with predicted regions (need 2)", 2, len(with_regions))]
    (img_a, task_a), (img_b, task_b) = with_regions[0], with_regions[1]
    img_c, task_c = next((i, t) for i, t in task_of_image.items() if i not in (img_a, img_b))
    pred_a, pred_b = predictions[task_a["id"]], predictions[task_b["id"]]
    ls.call(
        "POST",
        f"/api/tasks/{task_a['id']}/annotations",
        json={"result": pred_a["result"], "lead_time": 11.5, "parent_prediction": pred_a["id"]},
    )
    edited = [dict(r) for r in pred_b["result"]]
    first = region_mask(edited[0])
    changed = first.copy()
    ys, xs = np.nonzero(first)
    changed[ys.min() : (ys.min() + ys.max()) // 2 + 1, :] = False  # cut off its top half
    if not changed.any() or np.array_equal(changed, first):
        changed = first.copy()
        changed[ys[0], xs[0]] = False
    edited[0] = {**edited[0], "value": {**edited[0]["value"], "rle": mask_to_brush(changed)}}
    ls.call(
        "POST",
        f"/api/tasks/{task_b['id']}/annotations",
        json={"result": edited, "lead_time": 20.0, "parent_prediction": pred_b["id"]},
    )
    image_c = images[img_c]
    new = np.zeros((image_c.height, image_c.width), bool)
    new[2 : image_c.height // 3, 2 : image_c.width // 3] = True
    region = {
        "id": "new1",
        "type": "brushlabels",
        "from_name": "mask",
        "to_name": "image",
        "original_width": image_c.width,
        "original_height": image_c.height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_brush(new), "brushlabels": []},
    }
    ls.call(
        "POST",
        f"/api/tasks/{task_c['id']}/annotations",
        json={"result": [region], "lead_time": 7.0},
    )
    hops = []
    with factory() as s:
        ids_a = [int(str(r["id"]).lstrip("m")) for r in pred_a["result"]]
        rows_a = [s.get(Mask, i) for i in ids_a]
        accepted = sum(
            m is not None and m.status == "accepted" and m.source in ("model", "human")
            and m.parent_id is None for m in rows_a
        )  # fmt: skip
        hops.append(Hop("webhook: unchanged prediction -> accepts", len(ids_a), accepted))
        proposals_a = sum(m is not None and m.source == "model" for m in rows_a)
        hops.append(
            Hop(
                "webhook: accepted proposals stay model masks",
                proposals_a,
                sum(
                    m is not None and m.source == "model" and m.status == "accepted" for m in rows_a
                ),
            )
        )
        edited_id = int(str(edited[0]["id"]).lstrip("m"))
        fixes = s.scalars(select(Mask).where(Mask.parent_id == edited_id)).all()
        hops.append(Hop("webhook: edited region -> 1 fix, proposal as parent", 1, len(fixes)))
        hops.append(
            Hop(
                "webhook: fix pixel-equal to the edit",
                True,
                bool(fixes) and np.array_equal(decode_rle(fixes[0].rle), changed),
            )
        )
        added = [
            m
            for m in s.scalars(select(Mask).where(Mask.image_id == img_c, Mask.source == "human"))
            if (m.meta or {}).get("label_studio", {}).get("region_id") == "new1"
        ]
        hops.append(Hop("webhook: new region -> 1 human mask (unlabelled)", 1, len(added)))
        hops.append(
            Hop(
                "webhook: new mask pixel-equal",
                True,
                bool(added) and np.array_equal(decode_rle(added[0].rle), new),
            )
        )
        lead = s.scalars(
            select(Event.payload).where(
                Event.kind == event_kinds.IMPORT_LEAD_TIME,
                Event.image_id.in_([img_a, img_b, img_c]),
            )
        ).all()
        hops.append(
            Hop("lead_time imported as effort (s)", 38.5, sum(p["seconds"] or 0 for p in lead))
        )
    return hops


def brush_export(
    ls: LabelStudio,
    factory: sessionmaker[Session],
    pid: int,
    project: str,
    exported: list[dict[str, Any]],
    work: Path,
) -> list[Hop]:
    """BRUSH_TO_PNG export: every layer equals a product mask; importing it adds nothing."""
    r = ls.client.get(f"/api/projects/{pid}/export", params={"exportType": "BRUSH_TO_PNG"})
    if r.status_code != 200:
        return [Hop("LS BRUSH_TO_PNG export", 200, r.status_code)]
    zpath = work / "ls-brush.zip"
    zpath.write_bytes(r.content)
    names = [n for n in zipfile.ZipFile(zpath).namelist() if n.endswith(".png")]
    by_task = {t["id"]: int(t["data"]["dataengine_image_id"]) for t in exported}
    equal = 0
    with factory() as s:
        for name in names:
            task_id = int(Path(name).name.split("-")[1])
            layer = read_layer(name, zipfile.ZipFile(zpath).read(name))
            equal += any(np.array_equal(layer, m) for m in live_masks(s, by_task[task_id]))
        project_id = s.scalar(select(Project.id).where(Project.name == project))
    expected = sum(len(t["annotations"][0]["result"]) for t in exported if t.get("annotations"))
    hops = [Hop("LS brush PNG layers", expected, len(names))]
    hops.append(Hop("brush PNG layers pixel-equal to product masks", len(names), equal))
    report = import_brush_export(factory, project_id=project_id, paths=[zpath], tasks=exported)
    hops.append(Hop("brush PNG import: new masks (no duplicates)", 0, report.masks))
    return hops
