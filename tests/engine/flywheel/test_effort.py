"""Timing rules of docs/effort.md, applied to hand-written event streams."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.models import Event
from db.session import transaction
from engine.flywheel import events as ek
from engine.flywheel.effort import derive_effort
from engine.flywheel.effort_loader import image_effort
from tests.factories import make_image, make_project, make_user


def stream(
    *rows: tuple[Any, ...], image_id: int = 1, session_id: str = "s"
) -> list[dict[str, Any]]:
    """rows: (t_ms, kind[, mask_id[, visible[, payload]]])."""
    out = []
    for seq, row in enumerate(rows):
        t, kind, *rest = row
        out.append({
            "session_id": session_id, "seq": seq, "client_time": t, "kind": kind,
            "image_id": image_id, "mask_id": rest[0] if rest else None,
            "visible": rest[1] if len(rest) > 1 else True,
            "payload": rest[2] if len(rest) > 2 else {},
        })  # fmt: skip
    return out


def test_gaps_are_capped_at_the_idle_limit() -> None:
    ev = stream((0, ek.IMAGE_OPEN), (5000, ek.MASK_ACCEPT, 7), (95000, ek.MASK_REJECT, 8))
    eff = derive_effort(ev, idle_s=30)
    assert eff.per_image == {1: 35.0}
    assert eff.per_mask[7].seconds == 5.0 and eff.per_mask[8].seconds == 30.0
    assert [g.reason for g in eff.gaps] == ["counted", "capped"]
    assert derive_effort(ev, idle_s=60).per_image == {1: 65.0}


def test_hidden_time_never_counts() -> None:
    ev = stream(
        (0, ek.IMAGE_OPEN),
        (1000, ek.VISIBILITY, None, False),
        (20000, ek.VISIBILITY, None, True),
        (22000, ek.SUBMIT),
    )
    eff = derive_effort(ev)
    assert eff.per_image == {1: 3.0}
    assert [g.reason for g in eff.gaps] == ["counted", "hidden", "counted"]


def test_clock_stops_at_submit_and_restarts_at_open() -> None:
    ev = stream((0, ek.IMAGE_OPEN), (2000, ek.SUBMIT), (9000, ek.IMAGE_OPEN), (10000, ek.SUBMIT))
    assert derive_effort(ev).per_image == {1: 3.0}


def test_added_mask_runs_from_first_prompt_to_commit() -> None:
    ev = stream(
        (0, ek.IMAGE_OPEN),
        (4000, ek.PROMPT_CLICK),  # looking for the object: image time, not the mask's
        (6000, ek.PROMPT_CLICK),
        (6500, ek.UNDO),
        (9000, ek.PROMPT_BOX),
        (10000, ek.OBJECT_COMMIT, 42, True, {"parent_id": None, "clicks": 3}),
        (13000, ek.LABEL_SET, 42),
    )
    eff = derive_effort(ev)
    m = eff.per_mask[42]
    assert (m.kind, m.seconds, m.clicks, m.parent_id) == ("object", 6.0, 3, None)
    assert eff.per_image == {1: 13.0}


def test_cancel_discards_the_object_and_fix_start_opens_one() -> None:
    ev = stream(
        (0, ek.IMAGE_OPEN),
        (1000, ek.PROMPT_CLICK),
        (3000, ek.OBJECT_CANCEL),
        (4000, ek.FIX_START, 5),
        (6000, ek.PROMPT_CLICK),
        (7000, ek.OBJECT_COMMIT, 9, True, {"parent_id": 5}),
    )
    eff = derive_effort(ev)
    assert eff.cancelled_objects == 1
    assert (eff.per_mask[9].seconds, eff.per_mask[9].clicks, eff.per_mask[9].parent_id) == (
        3.0,
        1,
        5,
    )


def test_accept_all_splits_its_gap() -> None:
    ev = stream(
        (0, ek.IMAGE_OPEN), (3000, ek.ACCEPT_ALL_CONFIDENT, None, True, {"mask_ids": [1, 2, 3]})
    )
    eff = derive_effort(ev)
    assert [eff.per_mask[i].seconds for i in (1, 2, 3)] == [1.0, 1.0, 1.0]


def test_sessions_and_images_are_separate_streams_and_order_uses_seq() -> None:
    a = stream((0, ek.IMAGE_OPEN), (1000, ek.MASK_ACCEPT, 1), session_id="x")
    b = stream((500, ek.IMAGE_OPEN), (2500, ek.MASK_ACCEPT, 2), session_id="y")
    c = stream((0, ek.IMAGE_OPEN), (0, ek.MASK_ACCEPT, 3), (4000, ek.SUBMIT), image_id=2)
    eff = derive_effort(list(reversed(a + b + c)))
    assert eff.per_image == {1: 3.0, 2: 4.0}
    assert eff.per_mask[3].seconds == 0.0


def test_events_without_image_are_not_timed_and_idle_must_be_positive() -> None:
    ev = stream((0, ek.HEARTBEAT), image_id=None)  # type: ignore[arg-type]
    assert derive_effort(ev).per_image == {}
    with pytest.raises(ValueError, match="idle_s"):
        derive_effort([], idle_s=0)


def test_derivation_is_json_ready() -> None:
    ev = stream((0, ek.IMAGE_OPEN), (45000, ek.MASK_ACCEPT, 1))
    d = json.loads(json.dumps(derive_effort(ev).as_dict()))
    assert d["total_s"] == 30.0 and d["gaps"][0]["reason"] == "capped"
    assert d["per_mask"][0]["mask_id"] == 1 and "idle" in d["rules"]


def test_image_effort_reads_the_database(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        image = make_image(s, project=make_project(s))
        user = make_user(s)
        for seq, (t, kind) in enumerate(
            [(0, ek.IMAGE_OPEN), (2500, ek.PROMPT_CLICK), (4000, ek.SUBMIT)]
        ):
            s.add(Event(uuid=str(uuid.uuid4()), user_id=user.id, image_id=image.id,
                        session_id="s1", seq=seq, kind=kind, payload={}, client_time=t))  # fmt: skip
        image_id = image.id
    with factory() as s:
        assert image_effort(s, image_id=image_id).per_image == {image_id: 4.0}


def test_clock_stays_stopped_after_submit_whatever_follows() -> None:
    ev = stream(
        (0, ek.IMAGE_OPEN),
        (2000, ek.SUBMIT),
        (3000, ek.VISIBILITY, None, False),
        (33000, ek.VISIBILITY, None, True),
        (40000, ek.MASK_SELECT),
        (41000, ek.SESSION_START),
        (42500, ek.MASK_SELECT),
    )
    eff = derive_effort(ev)
    assert eff.per_image == {1: 3.5}
    assert [g.reason for g in eff.gaps] == [
        "counted", "after_submit", "after_submit", "after_submit", "clock_restart", "counted",
    ]  # fmt: skip


def test_cost_follows_the_mask_tables_parent_links() -> None:
    ev = stream(
        (0, ek.IMAGE_OPEN),
        (1000, ek.PROMPT_CLICK),
        (4000, ek.OBJECT_COMMIT, 10, True, {"parent_id": None}),  # 3 s, 1 click
        (5000, ek.FIX_START, 10),
        (7000, ek.PROMPT_BOX),
        (8000, ek.OBJECT_COMMIT, 11, True, {}),  # 3 s, 1 prompt; parent only in the table
        (9000, ek.FIX_START, 11),
        (10000, ek.BRUSH),
        (10500, ek.OBJECT_COMMIT, 12, True, {"parent_id": 11}),  # 1.5 s, 0 clicks
    )
    eff = derive_effort(ev, parents={12: 11, 11: 10, 10: None})
    assert [(eff.per_mask[m].cost_s, eff.per_mask[m].cost_clicks) for m in (10, 11, 12)] == [
        (3.0, 1), (6.0, 2), (7.5, 2),
    ]  # fmt: skip
    without_table = derive_effort(ev).per_mask
    assert without_table[11].cost_s == 3.0  # no link in the payload nor a table: own time only
    assert without_table[12].cost_s == 4.5


def test_imported_lead_time_is_not_timed() -> None:
    ev = stream((0, ek.IMAGE_OPEN), (2000, ek.SUBMIT))
    ev.append({"session_id": "s", "seq": 9, "client_time": 1000, "kind": ek.IMPORT_LEAD_TIME,
               "image_id": 1, "payload": {"seconds": 90.0}})  # fmt: skip
    eff = derive_effort(ev)
    assert (eff.per_image, eff.imported) == ({1: 2.0}, {1: 90.0})
