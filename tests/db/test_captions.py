"""db.captions: a caption is stored with its whitespace collapsed (newest wins), a human
caption is shown before any other, and bad texts or images are refused."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.captions import latest_caption, save_caption
from db.errors import InvalidInput, NotFound
from tests.factories import make_image, make_project


def test_newest_human_caption_wins(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        image = make_image(s, project=make_project(s))
        assert latest_caption(s, image_id=image.id) is None
        save_caption(s, image_id=image.id, text="a draft", author_id=None, source="model")
        assert latest_caption(s, image_id=image.id).text == "a draft"
        save_caption(s, image_id=image.id, text="  a  brown\ndog ", author_id=None)
        save_caption(s, image_id=image.id, text="a newer draft", author_id=None, source="model")
        assert latest_caption(s, image_id=image.id).text == "a brown dog"


def test_bad_captions_are_refused(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        image = make_image(s, project=make_project(s))
        with pytest.raises(InvalidInput, match="must not be empty"):
            save_caption(s, image_id=image.id, text=" \n ", author_id=None)
        with pytest.raises(InvalidInput, match="longer than 2000"):
            save_caption(s, image_id=image.id, text="x" * 2001, author_id=None)
        with pytest.raises(NotFound, match="no image"):
            save_caption(s, image_id=image.id + 1000, text="a dog", author_id=None)
