"""Bulk pre-fill on a local Ray cluster (one per module, 2 CPUs), SQLite and PostgreSQL:
one prefill row per image, mask counts equal to the in-process path on a twin database, a
re-run is a no-op, deleting k results redoes exactly k, an actor killed mid-run (it
``os._exit``s on a chosen image the first time) and a re-run completes, embed warms the
cache. The classical backend: real model code, no weights."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.models import Image, Mask, Prefill
from db.session import make_engine, make_session_factory, transaction
from engine.flywheel.prefill import prefill_project
from engine.flywheel.prefill_model import ensure_model_version
from engine.ingest import ingest
from engine.segment.classical.segmenter import ClassicalSegmenter
from engine.segment.protocol import Embedding, Proposal
from tests.engine.flywheel.test_prefill import small_images

try:
    import ray
except ImportError:
    if os.environ.get("CI") == "1":
        raise
    pytest.skip("Ray is not installed: pip install -e '.[ray]'", allow_module_level=True)

from engine.flywheel.prefill_ray import RayOptions, embed_project_ray, prefill_project_ray
from engine.flywheel.prefill_ray_stages import page_bounds
from engine.flywheel.ray_cluster import builder, connect

N = 8


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    repo = str(Path(__file__).resolve().parents[3])
    if repo not in os.environ.get("PYTHONPATH", "").split(os.pathsep):  # workers import tests.*
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (repo, os.environ.get("PYTHONPATH")) if p
        )
    yield connect(num_cpus=2)
    ray.shutdown()


@pytest.fixture
def twin_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second fresh database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'twin.db'}"
        upgrade(url)
        yield url
        return
    from tests.conftest import _admin_engine, _drop_database, _pg_template

    name = f"de_twin_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template()}"'))
    try:
        yield make_url(db_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)
        admin.dispose()


_open: list[sessionmaker[Session]] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    while _open:
        _open.pop().kw["bind"].dispose()


def _ingest(url: str, folder: Path) -> tuple[sessionmaker[Session], int]:
    factory = make_session_factory(make_engine(url))
    _open.append(factory)
    assert ingest(factory, project="bulk", paths=[folder]).added == N
    with factory() as s:
        return factory, int(s.scalar(select(Image.project_id).limit(1)))


def _model_version(factory: sessionmaker[Session]) -> int:
    with transaction(factory) as s:
        return ensure_model_version(s, segmenter=ClassicalSegmenter()).id


def _per_image(factory: sessionmaker[Session]) -> dict[str, tuple[str, int, int]]:
    """sha256 -> (prefill status, masks, confident masks)."""
    with factory() as s:
        per_mask = select(Mask.image_id, func.count()).group_by(Mask.image_id)
        masks = {i: n for i, n in s.execute(per_mask).all()}
        conf = {i: n for i, n in s.execute(per_mask.where(Mask.confident)).all()}
        rows = s.execute(select(Image.id, Image.sha256, Prefill.status).join(Prefill)).all()
        n_prefill = s.scalar(select(func.count(Prefill.id)))
    assert n_prefill == len(rows)
    return {sha: (status, masks.get(i, 0), conf.get(i, 0)) for i, sha, status in rows}


def test_prefill_on_ray_equals_in_process_and_resumes(
    cluster: Any, db_url: str, twin_url: str, shared_data: Path, tmp_path: Path
) -> None:
    folder = small_images(shared_data / "samples", tmp_path / "photos", n=N, side=72)
    ray_factory, ray_project = _ingest(db_url, folder)
    twin_factory, twin_project = _ingest(twin_url, folder)
    gone = sorted(folder.iterdir())[2]
    gone.unlink()  # one unreadable image: recorded as failed, the batch goes on

    in_process = prefill_project(
        twin_factory,
        project_id=twin_project,
        segmenter=ClassicalSegmenter(),
        model_version_id=None,
    )
    assert in_process.done == N - 1 and in_process.failed == 1

    mv_id = _model_version(ray_factory)
    seen: list[tuple[int, str]] = []
    totals: list[int] = []
    # several pages, batches and actors; half a CPU each leaves room for the CPU stages
    opts = RayOptions(actors=2, cpus_per_actor=0.5, batch_size=3, page_size=3)
    summary = prefill_project_ray(
        db_url,
        project_id=ray_project,
        model_version_id=mv_id,
        build=builder(backend="classical"),
        options=opts,
        on_total=totals.append,
        on_image=lambda i, outcome, _info: seen.append((i, outcome)),
    )
    assert totals == [N]
    assert summary.done == N - 1 and summary.failed == 1 and summary.skipped == 0
    assert summary.proposals == in_process.proposals > 0
    assert summary.confident == in_process.confident
    assert sorted(i for i, _ in seen) == sorted(set(i for i, _ in seen)) and len(seen) == N
    assert gone.name in summary.failures[0][1]
    ours = _per_image(ray_factory)
    assert len(ours) == N  # one prefill row per image
    assert ours == _per_image(twin_factory)  # same masks per image as the in-process path

    # a re-run is a no-op
    again = prefill_project_ray(
        db_url, project_id=ray_project, model_version_id=mv_id,
        build=builder(backend="classical"), options=opts,
    )  # fmt: skip
    assert (again.done, again.failed, again.skipped) == (0, 0, N)
    assert _per_image(ray_factory) == ours

    # deleting k results redoes exactly k
    with transaction(ray_factory) as s:
        victims = list(
            s.scalars(select(Prefill.image_id).where(Prefill.status == "done").order_by(Prefill.id))
        )[1:4]
        s.execute(delete(Mask).where(Mask.image_id.in_(victims)))
        s.execute(delete(Prefill).where(Prefill.image_id.in_(victims)))
    redone: list[int] = []
    third = prefill_project_ray(
        db_url, project_id=ray_project, model_version_id=mv_id,
        build=builder(backend="classical"), options=opts,
        on_image=lambda i, outcome, _info: redone.append(i),
    )  # fmt: skip
    assert third.done == 3 and third.skipped == N - 3
    assert sorted(redone) == sorted(victims)
    assert _per_image(ray_factory) == ours


class _DiesOnce:
    """The classical segmenter, except that the process exits (as a killed actor or a lost
    node would) when it reaches ``victim_shape`` while ``marker`` does not exist yet."""

    def __init__(self, marker: str, victim_shape: tuple[int, int]):
        self.inner = ClassicalSegmenter()
        self.name, self.model_key = self.inner.name, self.inner.model_key
        self.marker, self.victim_shape = Path(marker), victim_shape

    def embed(self, image: np.ndarray) -> Embedding:
        return self.inner.embed(image)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.decode(*args, **kwargs)

    def decode_rle(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.decode_rle(*args, **kwargs)

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        if tuple(image.shape[:2]) == self.victim_shape and not self.marker.exists():
            self.marker.write_text("killed")
            os._exit(1)
        return self.inner.propose(image, embedding)


def _dies_once(marker: str, victim_shape: tuple[int, int]) -> _DiesOnce:
    return _DiesOnce(marker, victim_shape)


def test_actor_killed_mid_run_then_rerun_completes(
    cluster: Any, db_url: str, shared_data: Path, tmp_path: Path
) -> None:
    import functools

    folder = small_images(shared_data / "samples", tmp_path / "photos", n=N, side=72)
    factory, project_id = _ingest(db_url, folder)
    with factory() as s:
        victim = s.execute(
            select(Image.height, Image.width).order_by(Image.id).offset(5).limit(1)
        ).one()
    mv_id = _model_version(factory)
    marker = tmp_path / "killed.marker"
    build = functools.partial(_dies_once, str(marker), (int(victim[0]), int(victim[1])))
    opts = RayOptions(actors=1, cpus_per_actor=0.5, batch_size=2, page_size=4)
    first_done = 0
    try:
        first = prefill_project_ray(
            db_url, project_id=project_id, model_version_id=mv_id, build=build, options=opts
        )
        first_done = first.done  # Ray restarted the actor and retried the batch
    except ray.exceptions.RayError:
        pass  # the run stopped with the actor; whole images written so far stay
    assert marker.exists(), "the actor never died"
    with factory() as s:
        assert s.scalar(select(func.count(Prefill.id))) >= first_done
    second = prefill_project_ray(
        db_url, project_id=project_id, model_version_id=mv_id, build=build, options=opts
    )
    assert first_done + second.done == N
    per_image = _per_image(factory)
    assert len(per_image) == N and all(v[0] == "done" for v in per_image.values())


def test_page_bounds_walk_pending_ids_by_keyset(factory: sessionmaker[Session]) -> None:
    from tests.factories import make_image, make_model_version, make_project

    with transaction(factory) as s:
        proj = make_project(s)
        ids = [make_image(s, project=proj).id for _ in range(7)]
        mv = make_model_version(s)
        s.add(Prefill(image_id=ids[2], model_version_id=mv.id))
        project_id, mv_id = proj.id, mv.id
    pages = list(page_bounds(factory, project_id=project_id, model_version_id=mv_id, page_size=3))
    pending = [i for i in ids if i != ids[2]]
    assert pages == [(pending[0], pending[2]), (pending[3], pending[5])]
    everything = list(page_bounds(factory, project_id=project_id, model_version_id=None))
    assert everything == [(ids[0], ids[-1])]


def test_options_are_checked() -> None:
    from db.errors import InvalidInput

    for bad in ({"actors": 0}, {"batch_size": 0}, {"gpus_per_actor": -1}, {"page_size": 0}):
        with pytest.raises(InvalidInput):
            RayOptions(**bad)


def test_embed_on_ray_warms_the_cache(
    cluster: Any, sqlite_url: str, shared_data: Path, tmp_path: Path
) -> None:
    folder = small_images(shared_data / "samples", tmp_path / "photos", n=4, side=64)
    factory = make_session_factory(make_engine(sqlite_url))
    assert ingest(factory, project="emb", paths=[folder]).added == 4
    with factory() as s:
        project_id = int(s.scalar(select(Image.project_id).limit(1)))
    factory.kw["bind"].dispose()
    cache = tmp_path / "cache"
    build = builder(backend="classical", cache_dir=cache)
    key = ClassicalSegmenter().model_key
    kwargs = {"project_id": project_id, "build": build, "model_key": key, "cache_dir": str(cache)}
    first = embed_project_ray(
        sqlite_url, options=RayOptions(cpus_per_actor=0.5, batch_size=2), **kwargs
    )
    assert first == {"embedded": 4, "cached": 0, "failed": 0}
    second = embed_project_ray(sqlite_url, options=RayOptions(cpus_per_actor=0.5), **kwargs)
    assert second == {"embedded": 0, "cached": 4, "failed": 0}
