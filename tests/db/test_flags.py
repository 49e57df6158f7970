"""Flags: open with a reason, one open flag per user and image, listed per project, resolved once."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import flags
from db.errors import Conflict, InvalidInput, NotFound
from db.session import transaction
from tests.factories import make_image, make_project, make_user


def test_flag_list_resolve(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        p, other = make_project(s), make_project(s)
        im, im2 = make_image(s, project=p), make_image(s, project=other)
        ann, rev = make_user(s), make_user(s, role="reviewer")
        with pytest.raises(InvalidInput, match="reason is empty"):
            flags.flag_image(s, image_id=im.id, user_id=ann.id, reason="   ")
        with pytest.raises(NotFound):
            flags.flag_image(s, image_id=10_000, user_id=ann.id, reason="blurry")
        f1 = flags.flag_image(s, image_id=im.id, user_id=ann.id, reason="blurry")
        again = flags.flag_image(s, image_id=im.id, user_id=ann.id, reason="  blurry, cut off ")
        assert again.id == f1.id and again.reason == "blurry, cut off"
        flags.flag_image(s, image_id=im2.id, user_id=ann.id, reason="not this project")
        rows = flags.list_flags(s, project_id=p.id)
        assert [(r["image_id"], r["user"], r["reason"]) for r in rows] == [
            (im.id, ann.name, "blurry, cut off")
        ]
        flags.resolve_flag(s, flag_id=f1.id, user_id=rev.id, resolution="fine as is")
        assert flags.list_flags(s, project_id=p.id) == []
        done = flags.list_flags(s, project_id=p.id, resolved=True)
        assert done[0]["resolution"] == "fine as is" and done[0]["resolved_at"] is not None
        with pytest.raises(Conflict, match="already resolved"):
            flags.resolve_flag(s, flag_id=f1.id, user_id=rev.id)
        with pytest.raises(NotFound):
            flags.resolve_flag(s, flag_id=999, user_id=rev.id)
