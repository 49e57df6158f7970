"""Round trip a project through a running Label Studio and print a hop table (hop | expected | got).

    python scripts/ls_roundtrip.py --ls-url http://127.0.0.1:8080 --ls-token TOKEN \\
        --app-url http://127.0.0.1:8000 --app-user reviewer1 --app-token APPTOKEN \\
        -p PROJECT --document-root /data/photos

Use a scratch project: the run annotates three tasks (accepting one prediction unchanged,
editing one, drawing one new region) and so changes the project. What it does, each hop
checked by counts and pixels against the product's database (``DATAENGINE_DATABASE_URL``):

1. export the project's tasks (``dataengine export -f label-studio``, task URLs relative to
   Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``), create a Label Studio project with the
   product's labeling config, a Local Storage covering the images, import the tasks, and
   fetch every image through Label Studio (bytes equal to the ingested file);
2. connect the product's ML backend (``<app-url>/ml``, basic auth NAME:<API token>),
   "retrieve predictions" for all tasks (Label Studio's data-manager action), compare every
   stored prediction region with the product's mask;
3. interactive point and box requests through Label Studio;
4. a webhook to ``<app-url>/ml/webhook``, three annotations made through Label Studio's API;
5. export from Label Studio (JSON and BRUSH_TO_PNG) and import both into the product:
   nothing duplicated, predictions listed by id fetched from Label Studio.

Exit status 1 if any hop's got differs from expected.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Image, Mask, Project
from engine.flywheel import events as event_kinds
from engine.interop.importers import import_files
from engine.interop.importers.label_studio_brush import import_brush_export, read_layer
from engine.interop.label_studio import brush_to_mask, mask_to_brush, url_to_path
from engine.interop.label_studio_api import LabelStudio, LabelStudioError
from engine.masks import decode_rle

ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]


@dataclass
class Hop:
    hop: str
    expected: Any
    got: Any

    @property
    def ok(self) -> bool:
        return bool(self.expected == self.got)


def hop_table(hops: list[Hop]) -> str:
    """The hops as a fixed-width table (hop | expected | got | ok)."""
    width = max(len(h.hop) for h in hops)
    lines = [f"{'hop':<{width}} | {'expected':>10} | {'got':>10} | ok", "-" * (width + 33)]
    lines += [
        f"{h.hop:<{width}} | {h.expected!s:>10} | {h.got!s:>10} | {'yes' if h.ok else 'NO'}"
        for h in hops
    ]
    return "\n".join(lines)


def rebase(tasks: list[dict[str, Any]], document_root: Path) -> list[dict[str, Any]]:
    """Tasks whose ``/data/local-files/?d=`` paths are relative to ``document_root``."""
    root = str(document_root.resolve()).strip("/")
    out = []
    for t in tasks:
        data = dict(t["data"])
        path = url_to_path(data["image"]).strip("/")
        if root and path.startswith(root + "/"):
            path = path[len(root) + 1 :]
        data["image"] = "/data/local-files/?d=" + quote(path)
        out.append({"data": data})
    return out


def _shown(s: Session, image_id: int) -> dict[int, Mask]:
    rows = s.scalars(select(Mask).where(Mask.image_id == image_id))
    return {
        m.id: m for m in rows if m.status == "accepted" or (m.status == "proposed" and m.confident)
    }


def _region_mask(region: dict[str, Any]) -> np.ndarray:
    return brush_to_mask(
        region["value"]["rle"], int(region["original_height"]), int(region["original_width"])
    )


def _ask_interactive(
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
    mask = _region_mask(regions[0]) if regions else np.zeros(hw, bool)
    return regions, mask


def _live_masks(s: Session, image_id: int) -> list[np.ndarray]:
    rows = s.scalars(select(Mask).where(Mask.image_id == image_id, Mask.status == "accepted"))
    return [decode_rle(m.rle) for m in rows]


def roundtrip(
    ls: LabelStudio,
    factory: sessionmaker[Session],
    *,
    project: str,
    tasks: list[dict[str, Any]],
    label_config: str,
    app_url: str,
    app_user: str,
    app_token: str,
    document_root: Path,
    image_dir: Path,
    work: Path,
) -> list[Hop]:
    """Run the round trip (module docstring); returns the hops in order.

    ``document_root``: Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``; ``image_dir``: the folder
    of the project's images, strictly under it (the Local Storage's path). A phase that fails
    adds a hop with the error and the next phases still run where they can."""
    hops: list[Hop] = []
    n = len(tasks)
    proj = ls.call("POST", "/api/projects", json={"title": project, "label_config": label_config})
    pid = proj["id"]
    ls.call(
        "POST",
        "/api/storages/localfiles",
        json={
            "project": pid,
            "path": str(image_dir),
            "title": "images",
            "use_blob_urls": False,
        },
    )
    ls.call("POST", f"/api/projects/{pid}/import", json=rebase(tasks, document_root))
    ls_tasks = list(ls.tasks(pid))
    hops.append(Hop("tasks imported into Label Studio", n, len(ls_tasks)))
    task_of_image = {int(t["data"]["dataengine_image_id"]): t for t in ls_tasks}
    with factory() as s:
        images = {i.id: i for i in s.scalars(select(Image).where(Image.id.in_(task_of_image)))}
    served = 0
    for image_id, t in task_of_image.items():
        r = ls.client.get(t["data"]["image"])
        served += r.status_code == 200 and r.content == Path(images[image_id].uri).read_bytes()
    hops.append(Hop("images served by LS Local Storage (bytes equal)", n, served))

    predictions: dict[int, dict[str, Any]] = {}
    ml = ls.call(
        "POST",
        "/api/ml",
        json={
            "project": pid,
            "url": f"{app_url}/ml",
            "title": "dataengine",
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": app_user,
            "basic_auth_pass": app_token,
            "is_interactive": True,
        },
    )
    try:
        hops.append(
            Hop("ML backend connected", "CO", ls.call("GET", f"/api/ml/{ml['id']}")["state"])
        )
        t0 = time.perf_counter()
        ls.call(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": pid},
            json={"selectedItems": {"all": True, "excluded": []}},
        )
        secs = time.perf_counter() - t0
        hops.append(Hop(f"retrieve predictions, {n} tasks: {secs:.1f} s < 100 s", True, secs < 100))
        predictions = {}
        for t in ls.tasks(pid):
            preds = ls.call("GET", "/api/predictions", params={"task": t["id"]})
            if preds:
                predictions[t["id"]] = preds[-1]
        hops.append(Hop("predictions stored by LS (tasks)", n, len(predictions)))
        want_regions = equal = 0
        got_regions = 0
        with factory() as s:
            for image_id, t in task_of_image.items():
                shown = _shown(s, image_id)
                want_regions += len(shown)
                for region in (predictions.get(t["id"]) or {}).get("result", []):
                    got_regions += 1
                    m = shown.get(int(str(region["id"]).lstrip("m") or 0))
                    equal += m is not None and np.array_equal(
                        _region_mask(region), decode_rle(m.rle)
                    )
        hops.append(Hop("prediction regions = shown pre-fill", want_regions, got_regions))
        hops.append(Hop("prediction regions pixel-equal to masks", want_regions, equal))
    except ERRORS as err:
        hops.append(_error_hop("predictions", err))

    first = ls_tasks[0]
    image0 = images[int(first["data"]["dataengine_image_id"])]
    hops += _guard("interactive requests", _interactive, ls, factory, ml["id"], first, image0)

    ls.call(
        "POST",
        "/api/webhooks",
        json={
            "project": pid,
            "url": f"{app_url}/ml/webhook",
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": ACTIONS,
            "headers": {"Authorization": f"Token {app_token}"},
            "is_active": True,
        },
    )
    hops += _guard(
        "annotations + webhook", _annotate, ls, factory, task_of_image, predictions, images
    )

    exported: list[dict[str, Any]] = []
    export_file = work / "ls-export.json"
    before = _mask_count(factory, list(images))
    try:
        exported = ls.call("GET", f"/api/projects/{pid}/export", params={"exportType": "JSON"})
        export_file.write_text(json.dumps(exported))
        annotated = [t for t in exported if t.get("annotations")]
        hops.append(Hop("annotated tasks in LS export", 3, len(annotated)))
        equal = total = 0
        with factory() as s:
            for t in annotated:
                live = _live_masks(s, int(t["data"]["dataengine_image_id"]))
                for region in t["annotations"][0]["result"]:
                    total += 1
                    equal += any(np.array_equal(_region_mask(region), m) for m in live)
        hops.append(Hop("LS export regions pixel-equal to product masks", total, equal))
        report = import_files(factory, fmt="label-studio", project=project, paths=[export_file])
        hops.append(Hop("re-import of the LS JSON export: new masks", 0, report.masks))
        hops.append(Hop("mask rows after re-import", before, _mask_count(factory, list(images))))
        refused = import_files(
            factory, fmt="label-studio", project=project, paths=[export_file],
            options={"predictions": True, "force": True},
        )  # fmt: skip
        listed_by_id = any(isinstance(p, int) for t in exported for p in t.get("predictions") or [])
        hops.append(
            Hop(
                "predictions by id without --ls-url: refused",
                "rejected" if listed_by_id else "imported",
                refused.files[0].status,
            )
        )
    except ERRORS as err:
        hops.append(_error_hop("export and re-import", err))

    hops += _guard("brush export", _brush_export, ls, factory, pid, project, exported, work)
    hops += _guard(
        "into a new project",
        _into_new_project,
        ls,
        factory,
        project,
        exported,
        export_file,
        image_dir,
    )
    return hops


def _into_new_project(
    ls: LabelStudio,
    factory: sessionmaker[Session],
    project: str,
    exported: list[dict[str, Any]],
    export_file: Path,
    image_dir: Path,
) -> list[Hop]:
    """The LS JSON export into a new project: images ingested from the folder, annotations,
    and the predictions it lists by id fetched from Label Studio."""
    pred_regions = 0
    for t in exported:
        for p in t.get("predictions") or []:
            doc = p if isinstance(p, dict) else ls.call("GET", f"/api/predictions/{int(p)}")
            pred_regions += len(doc.get("result") or [])
    ann_regions = sum(len(a["result"]) for t in exported for a in t.get("annotations") or [])
    report = import_files(
        factory,
        fmt="label-studio",
        project=f"{project}-from-ls",
        paths=[export_file],
        image_dirs=[image_dir],
        options={"predictions": True, "ls_url": ls.url, "ls_token": ls.token},
    )
    return [
        Hop("LS export into a new project: images", len(exported), report.images),
        Hop("... annotation + fetched prediction masks", ann_regions + pred_regions, report.masks),
    ]


ERRORS = (LabelStudioError, KeyError, IndexError, TypeError, ValueError, StopIteration)


def _error_hop(name: str, err: Exception) -> Hop:
    return Hop(f"{name}: ran", "ok", f"{type(err).__name__}: {str(err)[:160]}")


def _guard(name: str, phase: Any, *args: Any) -> list[Hop]:
    """``phase(*args)``'s hops, or one failing hop naming the error (the run goes on)."""
    try:
        return list(phase(*args))
    except ERRORS as err:
        return [_error_hop(name, err)]


def _mask_count(factory: sessionmaker[Session], image_ids: list[int]) -> int:
    with factory() as s:
        return len(s.scalars(select(Mask.id).where(Mask.image_id.in_(image_ids))).all())


def _interactive(
    ls: LabelStudio, factory: sessionmaker[Session], ml_id: int, task: dict[str, Any], image: Image
) -> list[Hop]:
    """A positive click and a box through Label Studio's interactive-annotating endpoint."""
    with factory() as s:
        shown = sorted(_shown(s, image.id).values(), key=lambda m: -m.area)
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
    regions, mask = _ask_interactive(ls, ml_id, task["id"], point, (h, w))
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
    _, mask = _ask_interactive(ls, ml_id, task["id"], box, (h, w))
    inside = mask[y0:y1, x0:x1].sum() / max(int(mask.sum()), 1)
    hops.append(Hop("interactive box: mask >= 90 % inside the box", True, bool(inside >= 0.9)))
    return hops


def _annotate(
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
    first = _region_mask(edited[0])
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


def _brush_export(
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
            equal += any(np.array_equal(layer, m) for m in _live_masks(s, by_task[task_id]))
        project_id = s.scalar(select(Project.id).where(Project.name == project))
    expected = sum(len(t["annotations"][0]["result"]) for t in exported if t.get("annotations"))
    hops = [Hop("LS brush PNG layers", expected, len(names))]
    hops.append(Hop("brush PNG layers pixel-equal to product masks", len(names), equal))
    report = import_brush_export(factory, project_id=project_id, paths=[zpath], tasks=exported)
    hops.append(Hop("brush PNG import: new masks (no duplicates)", 0, report.masks))
    return hops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ls-url", required=True, help="Label Studio base URL")
    ap.add_argument("--ls-token", required=True, help="Label Studio access token")
    ap.add_argument("--app-url", required=True, help="the app's URL as Label Studio reaches it")
    ap.add_argument("--app-user", required=True, help="app user (reviewer) for /ml and webhooks")
    ap.add_argument("--app-token", required=True, help="that user's API token")
    ap.add_argument("-p", "--project", required=True, help="product project (a scratch one)")
    ap.add_argument(
        "--document-root", required=True, type=Path, help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT"
    )
    ap.add_argument(
        "--image-dir",
        required=True,
        type=Path,
        help="the project's image folder (under the document root): the Local Storage path",
    )
    args = ap.parse_args(argv)
    from db.projects import get_project
    from db.session import make_engine, make_session_factory
    from engine.interop.exporters.label_studio import export_label_studio
    from engine.settings import Settings

    factory = make_session_factory(make_engine(Settings().database_url))
    with tempfile.TemporaryDirectory() as tmp, LabelStudio(args.ls_url, args.ls_token) as ls:
        work = Path(tmp)
        with factory() as s:
            proj = get_project(s, name=args.project)
            export_label_studio(s, project=proj, out=work, stage=None, options={"include": "all"})
        hops = roundtrip(
            ls,
            factory,
            project=args.project,
            tasks=json.loads((work / "tasks.json").read_text()),
            label_config=(work / "label_config.xml").read_text(),
            app_url=args.app_url.rstrip("/"),
            app_user=args.app_user,
            app_token=args.app_token,
            document_root=args.document_root,
            image_dir=args.image_dir,
            work=work,
        )
    print(hop_table(hops))
    return 0 if all(h.ok for h in hops) else 1


if __name__ == "__main__":
    sys.exit(main())
