"""The product against a real Label Studio server (``tests/label_studio_server.py``), on SQLite
and PostgreSQL: ``scripts/ls_roundtrip.py`` drives Label Studio's REST API through every hop
(tasks and images, ML backend and "retrieve predictions" for 22 tasks, interactive click and
box, annotations and the webhook, JSON and brush PNG exports back into the product) and
each hop's expected and got are printed as a table and must agree.

The first run installs Label Studio into its own virtualenv (minutes); later runs reuse it
and a migrated database, and take about a minute per database. Never skipped: a machine
that cannot install Label Studio fails this test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from annotator_ui.app import create_app
from db.models import Prefill, Project
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user, issue_token
from engine.flywheel.confident_rule import ConfidentRule
from engine.flywheel.prefill import prefill_project
from engine.ingest import ingest
from engine.interop.exporters.label_studio import export_label_studio
from engine.interop.label_studio_api import LabelStudio
from scripts.ls_hop import hop_table
from scripts.ls_roundtrip import roundtrip
from tests.factories import PASSWORD
from tests.label_studio_server import LabelStudioServer, start_label_studio
from tests.webapp import classical_segmenter, serve, settings_for

N_IMAGES = 22
H, W = 120, 160


@pytest.fixture(scope="module")
def document_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ls-images")


@pytest.fixture(scope="module")
def label_studio(
    tmp_path_factory: pytest.TempPathFactory, document_root: Path
) -> Iterator[LabelStudioServer]:
    with start_label_studio(tmp_path_factory.mktemp("label-studio"), document_root) as server:
        yield server


def _photos(folder: Path) -> list[Path]:
    """``N_IMAGES`` 160x120 PNGs: a textured background and two flat-coloured objects each."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(N_IMAGES):
        rgb = (rng.normal(128, 6, (H, W, 3))).clip(0, 255).astype(np.uint8)
        y0, x0 = 10 + (i * 7) % 30, 10 + (i * 11) % 40
        rgb[y0 : y0 + 45, x0 : x0 + 55] = (220, 40, 40)
        yy, xx = np.mgrid[:H, :W]
        rgb[(yy - 85) ** 2 + (xx - 120) ** 2 < 18**2] = (40, 60, 220)
        path = folder / f"photo_{i:02d}.png"
        PILImage.fromarray(rgb).save(path)
        paths.append(path)
    return paths


def test_round_trip_through_a_real_label_studio(
    db_url: str,
    tmp_path: Path,
    document_root: Path,
    label_studio: LabelStudioServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "ls-" + db_url.split(":")[0].split("+")[0]
    image_dir = document_root / "photos" / name
    paths = _photos(image_dir)
    factory = make_session_factory(make_engine(db_url))
    assert ingest(factory, project=name, paths=paths).added == N_IMAGES
    with transaction(factory) as s:
        project = s.scalars(select(Project).where(Project.name == name)).one()
        project.labels = ["thing", "round"]
        project_id = project.id
        reviewer = create_user(s, name="lsreviewer", role="reviewer", password=PASSWORD)
        token = issue_token(s, user=reviewer, kind="api", hours=2)
    segmenter = classical_segmenter()
    summary = prefill_project(
        factory,
        project_id=project_id,
        segmenter=segmenter,
        model_version_id=None,
        rule=ConfidentRule.for_backend("classical", pred_iou_thresh=0.5, stability_thresh=0.5),
    )
    assert summary.done == N_IMAGES and summary.confident >= N_IMAGES, summary
    out = tmp_path / "export"
    out.mkdir()
    with factory() as s:
        project = s.get(Project, project_id)
        export_label_studio(s, project=project, out=out, stage=None, options={})
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == N_IMAGES

    app = create_app(settings_for(db_url, tmp_path / "var"), segmenter=segmenter)
    with serve(app) as app_url, LabelStudio(label_studio.url, label_studio.token) as ls:
        hops = roundtrip(
            ls,
            factory,
            project=name,
            tasks=tasks,
            label_config=(out / "label_config.xml").read_text(),
            app_url=app_url,
            app_user="lsreviewer",
            app_token=token,
            document_root=document_root,
            image_dir=image_dir,
            work=tmp_path,
        )
    with capsys.disabled():
        print(f"\nLabel Studio round trip ({name}):\n{hop_table(hops)}")
    with factory() as s:  # nothing was pre-filled at request time: still one row per image
        assert len(s.scalars(select(Prefill)).all()) == N_IMAGES
    bad = [h for h in hops if not h.ok]
    assert not bad, hop_table(hops)
    assert len(hops) >= 20
