"""Image rows on both databases: only storable text goes in; rejected rows serve no pixels."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput, NotFound
from db.images import (
    add_image,
    find_image,
    find_ok_image,
    get_image,
    image_ids,
    images_by_id,
    ok_images_named,
    require_ok,
    uri_page,
)
from db.session import transaction
from engine.uris import path_to_uri, uri_to_path
from tests.factories import make_image, make_project


def test_text_that_postgres_cannot_hold_is_refused_with_the_fix(
    factory: sessionmaker[Session],
) -> None:
    odd = os.fsdecode(b"/photos/\xff.jpg")  # what os.walk gives for a non-UTF-8 name
    with transaction(factory) as s:
        project_id = make_project(s).id
        with pytest.raises(InvalidInput, match="path_to_uri"):
            add_image(s, project_id=project_id, uri=odd, sha256=None, ok=False, reason="x")
        with pytest.raises(InvalidInput, match="NUL"):
            add_image(s, project_id=project_id, uri="/a.jpg", sha256=None, ok=False, reason="a\0")
        image, created = add_image(
            s, project_id=project_id, uri=path_to_uri(odd), sha256=None, ok=False, reason="x"
        )
        assert created
        image_id = image.id
    with factory() as s:
        stored = get_image(s, image_id=image_id)
        assert os.fsencode(uri_to_path(stored.uri)) == b"/photos/\xff.jpg"


def test_require_ok(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        project_id = make_project(s).id
        bad, _ = add_image(
            s, project_id=project_id, uri="/b.png", sha256="b" * 64, ok=False, reason="too large: x"
        )
        good, _ = add_image(s, project_id=project_id, uri="/g.png", sha256="g" * 64, ok=True)
        with pytest.raises(NotFound, match=r"rejected at ingest \(too large: x\)"):
            require_ok(image=bad)
        assert require_ok(image=good) is good


def test_image_ids_and_images_by_id_keep_id_order(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        project = make_project(s)
        other = make_project(s)
        a = make_image(s, project=project).id
        bad = make_image(s, project=project, status="rejected").id
        b = make_image(s, project=project).id
        make_image(s, project=other)
        assert image_ids(s, project_id=project.id) == [a, b]
        assert image_ids(s, project_id=project.id, status=None) == [a, bad, b]
        assert [im.id for im in images_by_id(s, ids={b, a, 10**9})] == [a, b]
        assert images_by_id(s, ids=[]) == []


def test_uri_pages_and_task_lookups(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p, other = make_project(s), make_project(s)
        a = make_image(s, project=p, uri="/d/one/cat_1.jpg")
        b = make_image(s, project=p, uri="/d/two/cat_1.jpg")
        c = make_image(s, project=p, uri="/d/catx1.jpg")  # '_' must not match as a wildcard
        bad = make_image(s, project=p, uri="/d/bad/cat_1.jpg", status="rejected")
        far = make_image(s, project=other, uri="/e/cat_1.jpg", sha256=a.sha256)
        assert uri_page(s, project_id=p.id, after_id=0, limit=2) == [(a.id, a.uri), (b.id, b.uri)]
        assert uri_page(s, project_id=p.id, after_id=b.id, limit=5) == [(c.id, c.uri)]
        assert find_ok_image(s, project_id=p.id, sha256=a.sha256) is a
        assert find_ok_image(s, project_id=None, sha256=far.sha256) is a  # the lowest id
        assert find_ok_image(s, project_id=other.id, sha256=a.sha256) is far
        assert find_ok_image(s, project_id=p.id, image_id=bad.id) is None
        assert find_ok_image(s, project_id=p.id, image_id=b.id) is b
        assert find_ok_image(s, project_id=p.id) is None
        named = ok_images_named(s, project_id=p.id, basename="cat_1.jpg")
        assert [im.id for im in named] == [a.id, b.id]
        anywhere = ok_images_named(s, project_id=None, basename="cat_1.jpg")
        assert [im.id for im in anywhere] == [a.id, b.id, far.id]


def test_find_image_is_none_for_an_unknown_id(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        image = make_image(s, project=make_project(s))
        assert find_image(s, image_id=image.id) is image
        assert find_image(s, image_id=image.id + 1000) is None
