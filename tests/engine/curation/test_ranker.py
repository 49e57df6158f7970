"""The ranker learns from decisions and orders a queue better than random."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.curation.ranker import (
    RankerModel,
    decisions_to_find,
    expected_random_decisions,
    train_ranker,
)


def _signals(rng: np.random.Generator, good: bool) -> dict[str, float]:
    return {
        "sharpness": float(rng.lognormal(7 if good else 4, 0.5)),
        "noise": float(rng.normal(1 if good else 4, 0.5)),
        "colourfulness": float(rng.normal(40, 10)),
        "aspect_ratio": float(rng.uniform(1, 2)),
    }


def test_ranker_orders_kept_images_first_and_round_trips_json() -> None:
    rng = np.random.default_rng(0)
    train = [(_signals(rng, g), int(g)) for g in rng.random(60) < 0.3]
    model = train_ranker([s for s, _ in train], [y for _, y in train])
    test = [(_signals(rng, g), int(g)) for g in rng.random(100) < 0.1]
    scores = model.score([s for s, _ in test])
    order = list(np.argsort(-scores))
    best = {i for i, (_, y) in enumerate(test) if y}
    ranked = decisions_to_find(order, best)
    assert ranked <= len(best) + 2
    assert ranked < expected_random_decisions(len(test), len(best)) / 3
    again = RankerModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.score([s for s, _ in test]), scores, atol=1e-5)
    assert model.features == ["aspect_ratio", "sharpness", "colourfulness", "noise"] or set(model.features) == {
        "aspect_ratio", "sharpness", "colourfulness", "noise"
    }  # fmt: skip


def test_missing_signals_are_imputed_and_embeddings_used() -> None:
    rng = np.random.default_rng(1)
    y = [0, 1] * 10
    emb = np.array([[1.0 if v else -1.0, rng.normal()] for v in y])
    model = train_ranker([{"noise": float(rng.normal())} for _ in y], y, embeddings=emb)
    assert model.embedding_dim == 2
    s = model.score([{}, {}], np.array([[1.0, 0.0], [-1.0, 0.0]]))
    assert s[0] > s[1]


def test_too_few_or_one_sided_decisions() -> None:
    with pytest.raises(ValueError, match="both keeps and drops"):
        train_ranker([{"noise": 1.0}] * 5, [1] * 5)
    with pytest.raises(ValueError, match="at least 4"):
        train_ranker([{"noise": 1.0}] * 2, [0, 1])
    assert decisions_to_find([3, 1, 2], {1}) == 2
    assert expected_random_decisions(20, 5) == pytest.approx(17.5)


def test_train_ranker_and_agreement_cli(factory, db_url, monkeypatch) -> None:
    from db.curation import record_decision
    from db.models import Image, Project
    from db.session import transaction
    from tests.curation_helpers import run_cli
    from tests.factories import make_image, make_project, make_user

    rng = np.random.default_rng(2)
    with transaction(factory) as s:
        p = make_project(s)
        a, b = make_user(s, role="curator"), make_user(s, role="curator")
        ids = []
        for k in range(30):
            good = k % 3 == 0
            im = make_image(s, project=p, signals=_signals(rng, good))
            ids.append(im.id)
            if k < 20:
                record_decision(
                    s,
                    image_id=im.id,
                    stage="generalist",
                    decision="keep" if good else "drop",
                    user_id=a.id,
                )
                if k < 10:
                    record_decision(
                        s,
                        image_id=im.id,
                        stage="generalist",
                        decision="keep" if good or k == 1 else "drop",
                        user_id=b.id,
                    )
        name, pid = p.name, p.id
    result = run_cli(["curate", "train-ranker", "-p", name], db_url, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "20 decisions" in result.output
    with transaction(factory) as s:
        assert s.get(Project, pid).settings["curation"]["ranker"]["n_train"] == 20
        scores = {i: s.get(Image, i).signals["ranker"] for i in ids[20:]}
    top = sorted(scores, key=scores.get, reverse=True)[:3]
    assert all((ids.index(i) % 3 == 0) for i in top)  # the unseen good images come first
    result = run_cli(["curate", "agreement", "-p", name], db_url, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "generalist" in result.output and "0.9" in result.output  # 9 of 10 agree
    empty = run_cli(["curate", "train-ranker", "-p", "nope"], db_url, monkeypatch)
    assert empty.exit_code == 1 and "no project" in empty.output


def test_train_project_ranker_scores_every_image_page_by_page(
    factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scores land on every ok image (pages of 3 here), equal to the model's own scores."""
    from sqlalchemy import select

    from db.curation import record_decision
    from db.models import Image, Project
    from db.session import transaction
    from engine.curation import ranker, ranker_project
    from tests.factories import make_image, make_project, make_user

    monkeypatch.setattr(ranker_project, "SCORE_PAGE", 3)
    rng = np.random.default_rng(1)
    with transaction(factory) as s:
        p = make_project(s)
        curator = make_user(s, role="curator")
        for k in range(11):
            good = k % 2 == 0
            im = make_image(s, project=p, signals=_signals(rng, good))
            if k < 8:
                record_decision(s, image_id=im.id, stage="generalist", user_id=curator.id,
                                decision="keep" if good else "drop")  # fmt: skip
        make_image(s, project=p, status="rejected", signals=_signals(rng, True))
        pid = p.id
    with transaction(factory) as s:
        info = ranker_project.train_project_ranker(s, project=s.get(Project, pid))
    assert info["scored"] == 11 and info["n_train"] == 8
    with factory() as s:
        images = s.scalars(select(Image).where(Image.project_id == pid).order_by(Image.id)).all()
        model = ranker.RankerModel.from_dict(s.get(Project, pid).settings["curation"]["ranker"])
    ok = [im for im in images if im.status == "ok"]
    expected = model.score([{k: v for k, v in im.signals.items() if k != "ranker"} for im in ok])
    assert [im.signals["ranker"] for im in ok] == [round(float(x), 6) for x in expected]
    assert all("ranker" not in im.signals for im in images if im.status != "ok")
