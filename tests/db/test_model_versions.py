"""Model version data functions."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.errors import NotFound
from db.model_versions import (
    add_model_version,
    find_by_name,
    find_model_version,
    get_model_version,
    version_names,
    versions_of_backend,
    versions_sharing_weights,
)
from tests.factories import make_model_version


def test_versions_sharing_weights_and_lookups(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        parent = make_model_version(s, backend="sam", params={"model_key": "k1"})
        child = add_model_version(s, name="child", backend="sam", params={"model_key": "k1"},
                                  parent_id=parent.id)  # fmt: skip
        make_model_version(s, backend="sam", params={"model_key": "k2"})
        make_model_version(s, backend="classical", params={"model_key": "k1"})
        assert child.id is not None
        assert sorted(versions_sharing_weights(s, parent=parent)) == sorted([parent.id, child.id])
        keyless = make_model_version(s, backend="sam", params={})
        assert versions_sharing_weights(s, parent=keyless) == [keyless.id]
        assert [mv.id for mv in versions_of_backend(s, backend="sam")] == sorted(
            mv.id for mv in versions_of_backend(s, backend="sam")
        )
        assert {mv.backend for mv in versions_of_backend(s, backend="sam")} == {"sam"}
        assert len(versions_of_backend(s, backend="sam")) == 4
        assert get_model_version(s, model_version_id=child.id) is child
        assert find_model_version(s, model_version_id=10**9) is None
        with pytest.raises(NotFound, match="no model version with id"):
            get_model_version(s, model_version_id=10**9)


def test_find_by_name_and_version_names(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        first = add_model_version(s, name="import:a.json", backend="import", params={})
        add_model_version(s, name="import:a.json", backend="import", params={})
        sam = add_model_version(s, name="import:a.json", backend="sam", params={})
        assert find_by_name(s, backend="import", name="import:a.json") is first
        assert find_by_name(s, backend="import", name="import:b.json") is None
        assert version_names(s, ids=[sam.id, 10_000]) == {sam.id: "import:a.json"}
        assert version_names(s, ids=[]) == {}
        assert set(version_names(s)) >= {first.id, sam.id}
