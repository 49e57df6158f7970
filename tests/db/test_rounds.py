"""Rounds and the seeded control arm."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput
from db.rounds import arm_for_image, current_round, start_round
from tests.factories import make_project


def test_rounds_and_arms(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p = make_project(s)
        assert current_round(s, project_id=p.id) is None
        assert arm_for_image(None, 1) == "prefill"
        r1 = start_round(s, project_id=p.id, model_version_id=None, control_fraction=0.25, seed=7)
        r2 = start_round(s, project_id=p.id, model_version_id=None, control_fraction=0.25, seed=7)
        assert r1.ended_at is not None and current_round(s, project_id=p.id) is r2
        assert r2.number == 2
        arms = [arm_for_image(r2, i) for i in range(4000)]
        assert arms == [arm_for_image(r2, i) for i in range(4000)]  # deterministic
        assert 0.22 < arms.count("control") / 4000 < 0.28
        with pytest.raises(InvalidInput):
            start_round(s, project_id=p.id, model_version_id=None, control_fraction=1.5)


def test_first_round_opens_once(factory: sessionmaker[Session]) -> None:
    from db.rounds import ensure_first_round

    with factory() as s:
        p = make_project(s)
        r1 = ensure_first_round(s, project_id=p.id, model_version_id=None)
        assert r1 is not None and (r1.number, r1.control_fraction, r1.ended_at) == (1, 0.0, None)
        assert ensure_first_round(s, project_id=p.id, model_version_id=None) is None
        r1.ended_at = r1.started_at  # closed rounds stay closed: no silent new round either
        assert ensure_first_round(s, project_id=p.id, model_version_id=None) is None
        assert current_round(s, project_id=p.id) is None
