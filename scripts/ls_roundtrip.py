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
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image
from engine.interop.importers import import_files
from engine.interop.label_studio import url_to_path
from engine.interop.label_studio_api import LabelStudio
from engine.masks import decode_rle
from scripts.ls_annotate import (
    annotate,
    brush_export,
    interactive,
    live_masks,
    mask_count,
    region_mask,
    shown_masks,
)
from scripts.ls_hop import ERRORS, Hop, error_hop, guard, hop_table

ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]


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
                shown = shown_masks(s, image_id)
                want_regions += len(shown)
                for region in (predictions.get(t["id"]) or {}).get("result", []):
                    got_regions += 1
                    m = shown.get(int(str(region["id"]).lstrip("m") or 0))
                    equal += m is not None and np.array_equal(
                        region_mask(region), decode_rle(m.rle)
                    )
        hops.append(Hop("prediction regions = shown pre-fill", want_regions, got_regions))
        hops.append(Hop("prediction regions pixel-equal to masks", want_regions, equal))
    except ERRORS as err:
        hops.append(error_hop("predictions", err))

    first = ls_tasks[0]
    image0 = images[int(first["data"]["dataengine_image_id"])]
    hops += guard("interactive requests", interactive, ls, factory, ml["id"], first, image0)

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
    hops += guard(
        "annotations + webhook", annotate, ls, factory, task_of_image, predictions, images
    )

    exported: list[dict[str, Any]] = []
    export_file = work / "ls-export.json"
    before = mask_count(factory, list(images))
    try:
        exported = ls.call("GET", f"/api/projects/{pid}/export", params={"exportType": "JSON"})
        export_file.write_text(json.dumps(exported))
        annotated = [t for t in exported if t.get("annotations")]
        hops.append(Hop("annotated tasks in LS export", 3, len(annotated)))
        equal = total = 0
        with factory() as s:
            for t in annotated:
                live = live_masks(s, int(t["data"]["dataengine_image_id"]))
                for region in t["annotations"][0]["result"]:
                    total += 1
                    equal += any(np.array_equal(region_mask(region), m) for m in live)
        hops.append(Hop("LS export regions pixel-equal to product masks", total, equal))
        report = import_files(factory, fmt="label-studio", project=project, paths=[export_file])
        hops.append(Hop("re-import of the LS JSON export: new masks", 0, report.masks))
        hops.append(Hop("mask rows after re-import", before, mask_count(factory, list(images))))
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
        hops.append(error_hop("export and re-import", err))

    hops += guard("brush export", brush_export, ls, factory, pid, project, exported, work)
    hops += guard(
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
