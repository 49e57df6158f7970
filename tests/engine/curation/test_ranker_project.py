"""train_project_ranker on both databases: human labels in, model and scores stored."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.curation import curation_settings, record_decision
from db.images import get_image
from db.session import transaction
from engine.curation.ranker_project import project_labels, train_project_ranker
from tests.factories import make_image, make_project, make_user


def test_specialist_overrides_generalist_and_scores_every_ok_image(
    factory: sessionmaker[Session],
) -> None:
    rng = np.random.default_rng(0)
    with transaction(factory) as s:
        project = make_project(s)
        curator = make_user(s, role="curator")
        ids = []
        for i in range(10):
            sharp = float(rng.lognormal(7 if i % 2 == 0 else 4, 0.3))
            ids.append(make_image(s, project=project, signals={"sharpness": sharp}).id)
        rejected = make_image(s, project=project, status="rejected").id
        for i, image_id in enumerate(ids[:8]):  # even: sharp, kept
            record_decision(
                s,
                image_id=image_id,
                stage="generalist",
                decision="keep" if i % 2 == 0 else "drop",
                user_id=curator.id,
            )
        # the specialist drops one the generalist kept: the specialist decides
        record_decision(s, image_id=ids[0], stage="specialist", decision="drop", user_id=curator.id)
        project_id = project.id
    with transaction(factory) as s:
        labels = project_labels(s, project_id=project_id)
        assert labels == {ids[i]: int(i % 2 == 0 and i != 0) for i in range(8)}
        project = get_image(s, image_id=ids[0]).project
        info = train_project_ranker(s, project=project)
        assert info["n_train"] == 8 and info["n_keep"] == 3
        assert info["scored"] == 10 and info["uses_embeddings"] is False
        assert info["top_features"][0][0] == "sharpness"
        assert "ranker" in curation_settings(project)
    with transaction(factory) as s:
        scores = {i: get_image(s, image_id=i).signals["ranker"] for i in ids}
        assert "ranker" not in (get_image(s, image_id=rejected).signals or {})
    # the unlabelled sharp image (8) scores above the unlabelled blurry one (9)
    assert scores[ids[8]] > scores[ids[9]]


def test_too_few_decisions_is_a_clear_error(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        project = make_project(s)
        make_image(s, project=project)
        with pytest.raises(ValueError, match="curate more images first"):
            train_project_ranker(s, project=project)
