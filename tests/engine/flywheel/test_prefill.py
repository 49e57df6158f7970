"""Pre-fill job: confident rule, idempotent and resumable per (image, model version), bad
images recorded and skipped over, concurrent workers, SIGKILL mid-run (both databases)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput
from db.mask_listing import list_masks
from db.models import Image, Mask, ModelVersion, Prefill, PrefillClaim, Project, Round, utcnow
from db.rounds import start_round
from db.session import make_engine, make_session_factory, transaction
from engine.flywheel.confident_rule import ConfidentRule
from engine.flywheel.prefill import Claims, prefill_project
from engine.flywheel.prefill_model import ensure_model_version
from engine.imageio import load_rgb
from engine.ingest import ingest
from engine.masks import decode_rle, mask_bbox
from engine.segment.embedding_cache import roundtrip
from engine.segment.protocol import DecodeResult, Embedding, Proposal
from engine.segment.registry import DEFAULT_RULES, with_cache
from tests.factories import make_image, make_model_version

REPO = Path(__file__).resolve().parents[3]


# --- a test double at the model boundary: deterministic proposals from the pixels ---------


def _proposal(mask: np.ndarray, iou: float, stab: float, point: tuple[float, float]) -> Proposal:
    return Proposal(
        mask=mask,
        predicted_iou=iou,
        stability=stab,
        bbox=mask_bbox(mask),
        area=int(mask.sum()),
        point_coords=[list(point)],
        crop_box=[0.0, 0.0, float(mask.shape[1]), float(mask.shape[0])],
    )


class FakeSegmenter:
    """Proposals: bright pixels, dark pixels, left half, an overlapping near-copy of the left
    half (loses NMS), a 3-pixel speck (too small) and the whole image (too large)."""

    name = "fake"

    def __init__(self, key: str = "fake:v1", fail_on_calls: tuple[int, ...] = ()):
        self.model_key = key
        self.fail_on_calls = fail_on_calls
        self.embed_calls = 0
        self.propose_calls = 0

    def embed(self, image: np.ndarray) -> Embedding:
        self.embed_calls += 1
        gray = image.mean(axis=2).astype(np.float32)
        return Embedding(
            self.model_key, gray.shape, {"gray": gray, "median": float(np.median(gray))}
        )

    def decode(self, embedding: Embedding, points: Any = None, labels: Any = None,
               box: Any = None, mask_input: Any = None) -> DecodeResult:  # fmt: skip
        raise NotImplementedError

    def decode_rle(self, embedding: Embedding, points: Any = None, labels: Any = None,
                   box: Any = None, mask_input: Any = None) -> Any:  # fmt: skip
        raise NotImplementedError

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        self.propose_calls += 1
        if self.propose_calls in self.fail_on_calls:
            raise RuntimeError("model exploded")
        emb = embedding or self.embed(image)
        gray, med = emb.features["gray"], emb.features["median"]
        h, w = gray.shape
        left = np.zeros((h, w), bool)
        left[:, : w // 2] = True
        near = left.copy()
        near[:, : max(w // 2 - 2, 1)] = True
        near[:, w // 2 - 2 :] = False
        speck = np.zeros((h, w), bool)
        speck[0, :3] = True
        return [
            _proposal(gray > med, 0.93, 0.97, (1, 1)),
            _proposal(gray <= med, 0.80, 0.99, (2, 2)),  # below the IoU threshold
            _proposal(left, 0.95, 0.96, (3, 3)),
            _proposal(near, 0.91, 0.98, (4, 4)),  # NMS-suppressed by `left`
            _proposal(speck, 0.99, 0.99, (0, 0)),  # below min_area
            _proposal(np.ones((h, w), bool), 0.99, 0.99, (5, 5)),  # covers the image
        ]


EXPECTED_CONFIDENT = [True, False, True, False, False, False]


def small_images(src: Path, dest: Path, n: int, side: int) -> Path:
    """Downscaled copies of ../shared/data/samples (n files, long side ``side`` px)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.iterdir() if p.suffix == ".jpg")
    for i in range(n):
        with PILImage.open(files[i % len(files)]) as im:
            im = im.convert("RGB")
            im.thumbnail((side - i, side - i))  # distinct sizes -> distinct sha256
            im.save(dest / f"img{i:02d}.png")
    return dest


@pytest.fixture
def project(factory: sessionmaker[Session], shared_data: Path, tmp_path: Path) -> int:
    folder = small_images(shared_data / "samples", tmp_path / "photos", n=5, side=64)
    summary = ingest(factory, project="pf", paths=[folder])
    assert summary.added == 5
    with factory() as s:
        return s.scalar(select(Image.project_id).limit(1))


def count(factory: sessionmaker[Session], model: type, **where: Any) -> int:
    with factory() as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int(s.scalar(q))


# --- the rule -----------------------------------------------------------------------------


def test_confident_rule_on_hand_made_proposals() -> None:
    ramp = np.repeat(np.linspace(0, 255, 40)[:, None, None], 60, axis=1)  # dark top, bright bottom
    proposals = FakeSegmenter().propose(np.repeat(ramp, 3, axis=2).astype(np.uint8))
    assert ConfidentRule().apply(proposals, (40, 60)).tolist() == EXPECTED_CONFIDENT
    # looser thresholds let the dark mask in; no NMS keeps the near-duplicate too
    loose = ConfidentRule(pred_iou_thresh=0.5, nms_thresh=1.0)
    assert loose.apply(proposals, (40, 60)).tolist() == [True, True, True, True, False, False]
    # min_area 0 lets the speck in; covering >= max_area_frac of the image is always dropped
    tiny_ok = ConfidentRule(min_area=0, max_area_frac=1.0, nms_thresh=1.0)
    assert tiny_ok.apply(proposals, (40, 60)).tolist() == [True, False, True, True, True, False]
    # a calibration's verdict replaces the thresholds; NMS orders by its scores
    passed = np.array([False, True, True, True, True, True])
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.9, 0.9])
    got = ConfidentRule().apply(proposals, (40, 60), scores=scores, passed=passed)
    assert got.tolist() == [False, True, False, True, False, False]
    assert ConfidentRule().apply([], (40, 60)).tolist() == []
    with pytest.raises(InvalidInput, match="pred_iou_thresh"):
        ConfidentRule(pred_iou_thresh=1.5)


# --- the job -------------------------------------------------------------------------------


def test_prefill_stores_every_proposal_once(
    factory: sessionmaker[Session], project: int, tmp_path: Path
) -> None:
    seg = with_cache(FakeSegmenter(), tmp_path / "cache")
    seen: list[tuple[int, str]] = []
    summary = prefill_project(
        factory,
        project_id=project,
        segmenter=seg,
        model_version_id=None,
        rule=ConfidentRule(),
        on_image=lambda i, outcome, info: seen.append((i, outcome)),
        cache_embeddings=True,
    )
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (5, 5, 0, 0)
    assert summary.proposals == 30 and summary.confident == 10
    assert [o for _, o in seen] == ["done"] * 5
    assert summary.seconds_per_image is not None and summary.seconds_per_image > 0
    mv_id = summary.model_version_id
    with factory() as s:
        mv = s.get(ModelVersion, mv_id)
        assert (mv.backend, mv.params["model_key"]) == ("fake", "fake:v1")
        # the project's first pre-fill opened round 1 on this model version, no control arm
        (first,) = s.scalars(select(Round).where(Round.project_id == project)).all()
        assert (first.number, first.model_version_id, first.control_fraction) == (1, mv_id, 0)
        for image in s.scalars(select(Image)):
            masks = s.scalars(select(Mask).where(Mask.image_id == image.id).order_by(Mask.id)).all()
            pixels = load_rgb(image.uri)
            fake = FakeSegmenter()  # proposals from the fp16-cached embedding, as the job saw it
            expected = fake.propose(pixels, roundtrip(image.sha256, fake.embed(pixels)))
            assert [m.confident for m in masks] == EXPECTED_CONFIDENT
            for m, p in zip(masks, expected, strict=True):
                np.testing.assert_array_equal(decode_rle(m.rle), p.mask)
                assert (m.source, m.status, m.model_version_id) == ("model", "proposed", mv_id)
                assert m.bbox == p.bbox and m.area == p.area
                assert m.predicted_iou == pytest.approx(p.predicted_iou)
                assert m.stability == pytest.approx(p.stability)
                assert m.point_coords == p.point_coords and m.crop_box == p.crop_box
                assert m.calibrated_confidence is None and m.round_id == first.id
            pf = s.scalars(select(Prefill).where(Prefill.image_id == image.id)).one()
            assert (pf.status, pf.n_proposals, pf.n_confident) == ("done", 6, 2)
    # idempotent: a rerun adds nothing and computes nothing
    seg.inner.embed_calls = seg.inner.propose_calls = 0
    again = prefill_project(
        factory, project_id=project, segmenter=seg, model_version_id=mv_id, rule=ConfidentRule()
    )
    assert (again.done, again.skipped, again.failed) == (0, 5, 0)
    assert seg.inner.propose_calls == 0
    assert count(factory, Mask) == 30 and count(factory, Prefill) == 5
    # the embeddings went through the cache: a second model version reuses them
    other = make_mv(factory, "fake:v1", name="fake calibrated")
    prefill_project(factory, project_id=project, segmenter=seg, model_version_id=other)
    assert seg.inner.embed_calls == 0 and seg.inner.propose_calls == 5
    assert count(factory, Mask, model_version_id=other) == 30


def test_prefill_writes_embeddings_only_when_asked(
    factory: sessionmaker[Session], project: int, tmp_path: Path
) -> None:
    """Bulk pre-fill leaves the cache alone by default; the masks are the same either way."""
    off = with_cache(FakeSegmenter(), tmp_path / "off", cache_items=0)
    a = prefill_project(factory, project_id=project, segmenter=off, model_version_id=None)
    assert a.done == 5 and not list((tmp_path / "off").rglob("*.npz"))
    on = with_cache(FakeSegmenter(), tmp_path / "on", cache_items=0)
    other = make_mv(factory, "fake:v1", name="second")
    b = prefill_project(
        factory, project_id=project, segmenter=on, model_version_id=other, cache_embeddings=True
    )
    assert b.done == 5 and len(list((tmp_path / "on").rglob("*.npz"))) == 5
    with factory() as s:
        rles = {
            mv: [
                m.rle
                for m in s.scalars(
                    select(Mask).where(Mask.model_version_id == mv).order_by(Mask.id)
                )
            ]
            for mv in (a.model_version_id, other)
        }
    assert rles[a.model_version_id] == rles[other]


def make_mv(factory: sessionmaker[Session], key: str, **kw: Any) -> int:
    kw.setdefault("backend", "fake")
    with transaction(factory) as s:
        return make_model_version(s, params={"model_key": key}, **kw).id


def test_limit_then_resume(factory: sessionmaker[Session], project: int) -> None:
    seg = FakeSegmenter()
    first = prefill_project(
        factory, project_id=project, segmenter=seg, model_version_id=None, limit=2
    )
    assert (first.done, first.total) == (2, 5)
    rest = prefill_project(factory, project_id=project, segmenter=seg, model_version_id=None)
    assert (rest.done, rest.skipped) == (3, 2)
    assert rest.model_version_id == first.model_version_id
    assert count(factory, Prefill) == 5 and count(factory, Mask) == 30


def test_bad_images_are_recorded_and_the_batch_continues(
    factory: sessionmaker[Session], project: int, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 20)
    with transaction(factory) as s:
        proj = s.get(Project, project)
        bad_ids = [
            make_image(s, project=proj, uri=str(corrupt)).id,
            make_image(s, project=proj, uri=str(tmp_path / "gone.png")).id,
        ]
    seg = FakeSegmenter(fail_on_calls=(2,))  # the model itself fails on one image
    summary = prefill_project(factory, project_id=project, segmenter=seg, model_version_id=None)
    assert summary.total == 7 and summary.done + summary.failed == 7
    reasons = dict(summary.failures)
    assert set(bad_ids) <= set(reasons)
    assert "cannot decode" in reasons[bad_ids[0]] or "corrupt" in reasons[bad_ids[0]]
    assert "gone.png" in reasons[bad_ids[1]]
    model_failures = [r for i, r in reasons.items() if i not in bad_ids]
    assert len(model_failures) == 1 and "model exploded" in model_failures[0]
    assert summary.done >= 1, "the good images are pre-filled despite the bad ones"
    with factory() as s:
        rows = s.scalars(select(Prefill).where(Prefill.status == "failed")).all()
        assert {r.image_id for r in rows} == set(reasons)
        assert all(r.reason and r.n_proposals == 0 for r in rows)
        assert (
            s.scalar(select(func.count()).select_from(Mask).where(Mask.image_id.in_(bad_ids))) == 0
        )
    # a rerun skips them; --retry-failed tries again (still one row per image)
    again = prefill_project(factory, project_id=project, segmenter=seg, model_version_id=None)
    assert (again.done, again.failed, again.skipped) == (0, 0, 7)
    fixed = FakeSegmenter()
    retry = prefill_project(
        factory, project_id=project, segmenter=fixed, model_version_id=None, retry_failed=True
    )
    assert retry.failed == 2 and retry.done == len(model_failures)
    assert count(factory, Prefill) == 7


def test_round_sets_model_version_and_round_id(
    factory: sessionmaker[Session], project: int
) -> None:
    mv_id = make_mv(factory, "fake:v1", name="round model")
    make_mv(factory, "fake:v1", name="older duplicate is not chosen")
    with transaction(factory) as s:
        rnd = start_round(s, project_id=project, model_version_id=mv_id)
        round_id = rnd.id
    summary = prefill_project(
        factory, project_id=project, segmenter=FakeSegmenter(), model_version_id=None
    )
    assert summary.model_version_id == mv_id
    with factory() as s:
        assert set(s.scalars(select(Mask.round_id))) == {round_id}
    with pytest.raises(InvalidInput, match="model version"):
        prefill_project(
            factory, project_id=project, segmenter=FakeSegmenter("fake:v2"), model_version_id=None
        )


def test_ensure_model_version_finds_or_creates(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        a = ensure_model_version(s, segmenter=FakeSegmenter(), checkpoint_sha256="ab" * 32)
        b = ensure_model_version(s, segmenter=FakeSegmenter())
        c = ensure_model_version(s, segmenter=FakeSegmenter("fake:v2"))
        assert a.id == b.id != c.id
        assert a.checkpoint_sha256 == "ab" * 32 and a.backend == "fake"


def test_calibrated_rule_decides_and_is_stored(
    factory: sessionmaker[Session], project: int
) -> None:
    # p = sigmoid(20 * predicted_iou - 18), confident when p >= 0.1: the dark proposal
    # (IoU 0.80, rejected by the default 0.88 rule) becomes confident; area limits still hold.
    calibration = {
        "kind": "logistic",
        "features": ["predicted_iou"],
        "coef": [20.0],
        "intercept": -18.0,
        "threshold": 0.1,
    }
    mv_id = make_mv(factory, "fake:v1", name="calibrated", calibration=calibration)
    no_nms = ConfidentRule(nms_thresh=1.0)  # bright/dark boxes overlap on real photos
    summary = prefill_project(
        factory, project_id=project, segmenter=FakeSegmenter(), model_version_id=mv_id, rule=no_nms
    )
    assert summary.done == 5
    with factory() as s:
        masks = s.scalars(select(Mask).order_by(Mask.id)).all()
        for m in masks:
            expected = 1 / (1 + np.exp(-(20 * m.predicted_iou - 18)))
            assert m.calibrated_confidence == pytest.approx(expected)
        first = masks[:6]
        assert [m.confident for m in first] == [True, True, True, True, False, False]
    bad = make_mv(factory, "fake:v1", name="bad calibration", calibration={"kind": "logistic"})
    with pytest.raises(InvalidInput, match="calibration"):
        prefill_project(
            factory, project_id=project, segmenter=FakeSegmenter(), model_version_id=bad
        )
    with pytest.raises(InvalidInput, match="calibration kind"):
        mv = make_mv(factory, "fake:v1", calibration={"kind": "forest"})
        prefill_project(factory, project_id=project, segmenter=FakeSegmenter(), model_version_id=mv)
    assert count(factory, Prefill) == 5


class SlowSegmenter(FakeSegmenter):
    """FakeSegmenter whose ``propose`` takes ``delay`` s (workers overlap) and, with ``gate``,
    first waits for it (a stalled worker); ``entered`` is set on the first call."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        super().__init__()
        self.delay, self.gate, self.entered = delay, gate, threading.Event()

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=60)
        time.sleep(self.delay)
        return super().propose(image, embedding)


def _in_thread(fn: Any, results: list[Any], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(fn())
        except BaseException as err:  # noqa: BLE001 - reported by the caller's assertion
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_two_concurrent_workers_compute_each_image_once(
    factory: sessionmaker[Session], project: int
) -> None:
    """Two workers on one project, claiming one image at a time: every image is computed
    by exactly one of them (the segmenters' call counts add up to the image count)."""
    mv_id = make_mv(factory, "fake:v1")
    segs = [SlowSegmenter(delay=0.05), SlowSegmenter(delay=0.05)]
    results: list[Any] = []
    errors: list[BaseException] = []
    threads = [
        _in_thread(
            lambda seg=seg: prefill_project(
                factory,
                project_id=project,
                segmenter=seg,
                model_version_id=mv_id,
                claims=Claims(seconds=60, batch=1),
            ),
            results,
            errors,
        )
        for seg in segs
    ]
    for t in threads:
        t.join()
    assert not errors
    assert sum(seg.propose_calls for seg in segs) == 5, "no image computed twice"
    assert sum(seg.embed_calls for seg in segs) == 5
    assert sum(r.done for r in results) == 5
    with factory() as s:
        per_image = s.execute(
            select(Prefill.image_id, func.count()).group_by(Prefill.image_id)
        ).all()
        assert sorted(n for _, n in per_image) == [1] * 5
        assert s.scalar(select(func.count()).select_from(PrefillClaim)) == 0, "claims released"
    assert count(factory, Mask) == 30


def test_a_stalled_workers_claims_expire_and_another_takes_them(
    factory: sessionmaker[Session], project: int
) -> None:
    """Worker a claims two images and stalls inside the model; b leaves them alone while the
    claims live, takes them over once expired, and a's late result is dropped."""
    mv_id = make_mv(factory, "fake:v1")
    gate = threading.Event()
    a_seg, b_seg = SlowSegmenter(gate=gate), SlowSegmenter()
    results: list[Any] = []
    errors: list[BaseException] = []
    a_claims = Claims(worker_id="a", seconds=3.0, batch=2)
    a = _in_thread(
        lambda: prefill_project(
            factory, project_id=project, segmenter=a_seg, model_version_id=mv_id, claims=a_claims
        ),
        results,
        errors,
    )
    try:
        assert a_seg.entered.wait(timeout=60)
        with factory() as s:
            rows = s.execute(
                select(PrefillClaim.image_id, PrefillClaim.expires_at).where(
                    PrefillClaim.worker_id == "a"
                )
            ).all()
        held, expires = {r[0] for r in rows}, max(r[1] for r in rows)
        assert len(held) == 2
        b_claims = Claims(worker_id="b", seconds=3.0, batch=2)
        first = prefill_project(
            factory, project_id=project, segmenter=b_seg, model_version_id=mv_id, claims=b_claims
        )
        assert utcnow() < expires, "the machine is too slow for a 3 s claim"
        assert first.done == 3 and b_seg.propose_calls == 3  # a's two images left to it
        time.sleep(max(0.0, (expires - utcnow()).total_seconds() + 0.1))
        second = prefill_project(
            factory, project_id=project, segmenter=b_seg, model_version_id=mv_id, claims=b_claims
        )
        assert second.done == 2 and b_seg.propose_calls == 5
    finally:
        gate.set()
        a.join()
    assert not errors
    (late,) = results
    # its in-flight image lost to b's row, the next one's claim lost to b, the rest found done
    assert (late.done, late.skipped, late.claimed_elsewhere) == (0, 4, 1)
    assert a_seg.propose_calls == 1  # the one in flight when it stalled; its result is dropped
    with factory() as s:
        per_image = dict(
            s.execute(select(Prefill.image_id, func.count()).group_by(Prefill.image_id)).all()
        )
        assert sorted(per_image.values()) == [1] * 5 and held <= set(per_image)
    assert count(factory, Mask) == 30


def test_cli_prefill_and_embed(
    factory: sessionmaker[Session],
    db_url: str,
    project: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from engine.segment import registry as backends
    from scripts.cli import app

    fakes: list[FakeSegmenter] = []
    monkeypatch.setitem(
        backends.BACKENDS, "fake", lambda **kw: fakes.append(FakeSegmenter()) or fakes[-1]
    )
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["embed", "--project", "pf", "--backend", "fake"])
    assert res.exit_code == 0, res.output
    assert fakes[0].embed_calls == 5 and "embedded" in res.output
    res = runner.invoke(
        app, ["prefill", "-p", "pf", "--backend", "fake", "--limit", "2", "--nms", "0.5"]
    )
    assert res.exit_code == 0, res.output
    assert "pre-fill summary" in res.output and "seconds per image" in res.output
    assert fakes[1].embed_calls == 0, "embeddings come from the cache `embed` filled"
    assert count(factory, Prefill) == 2
    res = runner.invoke(app, ["prefill", "-p", "pf", "--backend", "fake"])
    assert res.exit_code == 0 and count(factory, Prefill) == 5 and count(factory, Mask) == 30
    with factory() as s:
        assert len(set(s.scalars(select(Prefill.model_version_id)))) == 1
    res = runner.invoke(app, ["prefill", "-p", "pf", "--backend", "sam"])
    assert res.exit_code == 1 and "DATAENGINE_SAM_CHECKPOINT" in res.output
    res = runner.invoke(app, ["prefill", "-p", "nope", "--backend", "fake"])
    assert res.exit_code == 1 and "no project" in res.output
    res = runner.invoke(app, ["prefill", "-p", "pf", "--backend", "fake", "--pred-iou", "2"])
    assert res.exit_code == 1 and "pred_iou_thresh" in res.output


# --- SIGKILL mid-run, then resume (real CLI, real classical backend) ------------------------


N_KILL = 6


def _cli(db_url: str, data_dir: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`dataengine ARGS` in a child process on ``db_url``; output goes to ``log``."""
    env = {**os.environ, "DATAENGINE_DATABASE_URL": db_url, "DATAENGINE_DATA_DIR": str(data_dir)}
    env.pop("COLUMNS", None)
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", *args],
            cwd=data_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if it still runs and wait for it (a test finaliser)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_sigkill_mid_run_then_resume(
    db_url: str,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    engine = make_engine(db_url)
    request.addfinalizer(engine.dispose)
    factory = make_session_factory(engine)
    folder = small_images(shared_data / "samples", tmp_path / "photos", n=N_KILL, side=112)
    assert ingest(factory, project="kill", paths=[folder]).added == N_KILL
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    args = ("prefill", "--project", "kill", "--backend", "classical")
    monkeypatch.setenv("DATAENGINE_CLAIM_SECONDS", "2")  # the killed run's claims: 2 s
    proc = _cli(db_url, data_dir, tmp_path / "first.log", *args)
    request.addfinalizer(lambda: _reap(proc))  # never leak the child, whatever fails below
    # poll for the condition (two images stored) while the child lives; no deadline: a slow,
    # loaded machine only makes this take longer, and a child that dies ends the loop
    n = 0
    while proc.poll() is None and (n := count(factory, Prefill)) < 2:
        time.sleep(0.02)
    log = (tmp_path / "first.log").read_text(errors="replace")
    assert proc.poll() is None, (
        f"the job ended (exit {proc.returncode}) with {n} images stored before it could be "
        f"killed: use bigger images or more of them. Its log:\n{log}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed = time.monotonic()
    killed_at = count(factory, Prefill)
    assert 2 <= killed_at < N_KILL
    # every stored prefill row has its full set of masks (one transaction per image)
    with factory() as s:
        for pf in s.scalars(select(Prefill)):
            n_masks = s.scalar(
                select(func.count()).select_from(Mask).where(Mask.image_id == pf.image_id)
            )
            assert n_masks == pf.n_proposals
    # resume in-process (same CLI entry point, no second interpreter start-up)
    from typer.testing import CliRunner

    from scripts.cli import app

    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(data_dir)
    time.sleep(max(0.0, 2.2 - (time.monotonic() - killed)))  # the dead run's claims expire
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    assert "pre-fill summary" in res.output and "other workers" not in res.output
    with factory() as s:
        per_image = dict(
            s.execute(select(Prefill.image_id, func.count()).group_by(Prefill.image_id)).all()
        )
        assert sorted(per_image.values()) == [1] * N_KILL
        assert (
            s.scalar(select(func.count()).select_from(Prefill).where(Prefill.status != "done")) == 0
        )
        for pf in s.scalars(select(Prefill)):
            rles = [
                (m.rle["counts"], m.model_version_id)
                for m in s.scalars(select(Mask).where(Mask.image_id == pf.image_id))
            ]
            assert len(rles) == pf.n_proposals
            assert len(set(rles)) == len(rles), "no duplicated masks"
        assert len(set(s.scalars(select(Prefill.model_version_id)))) == 1


# --- the per-backend default rule and the less confident proposals ------------------------


class ScaledSegmenter(FakeSegmenter):
    """FakeSegmenter named ``classical`` with its scores shifted down onto the classical
    scale: SAM's 0.88 lands on the classical default threshold."""

    name = "classical"

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        shift = 0.88 - DEFAULT_RULES["classical"]["pred_iou_thresh"]
        out = super().propose(image, embedding)
        for p in out:
            p.predicted_iou -= shift
        return out


def test_prefill_without_a_rule_uses_the_backends_and_keeps_the_rest_hidden(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        PILImage.fromarray(rng.integers(0, 255, (40 + i, 56, 3), dtype=np.uint8)).save(
            folder / f"p{i}.png"
        )
    assert ingest(factory, project="scaled", paths=[folder]).added == 2
    with factory() as s:
        project_id = s.scalar(select(Project.id).where(Project.name == "scaled"))
    seg = ScaledSegmenter(key="scaled:v1")
    summary = prefill_project(factory, project_id=project_id, segmenter=seg, model_version_id=None)
    # SAM's 0.88 would keep nothing on this scale; the classical default keeps the same
    # proposals as 0.88 does on SAM's scale
    assert summary.done == 2 and summary.proposals == 12
    assert summary.confident == 2 * sum(EXPECTED_CONFIDENT)
    with factory() as s:
        rows = s.scalars(select(Mask).order_by(Mask.id)).all()
        assert len(rows) == 12 and all(m.status == "proposed" for m in rows)
        assert [m.confident for m in rows[:6]] == EXPECTED_CONFIDENT
        hidden = [m for m in rows if not m.confident]
        assert len(hidden) == 8  # stored for the reveal and for calibration, not shown
        listed = list_masks(s, image_id=rows[0].image_id)
        assert {m.id for m in listed} == {m.id for m in rows[:6] if m.confident}
        assert len(list_masks(s, image_id=rows[0].image_id, all_proposals=True)) == 6
