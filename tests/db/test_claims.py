"""Pre-fill claims (db/claims.py) on both engines: one live claim per (image, model
version), taken over only after expiry, renewed and released by their owner."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.claims import (
    claim_images,
    live_claims_by_worker,
    purge_expired,
    release_claims,
    renew_claim,
)
from db.errors import InvalidInput
from db.models import PrefillClaim, utcnow
from db.session import transaction
from tests.factories import make_image, make_model_version, make_project

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _setup(factory: sessionmaker[Session], n: int = 4) -> tuple[list[int], int]:
    with transaction(factory) as s:
        p = make_project(s)
        ids = [make_image(s, project=p).id for _ in range(n)]
        mv = make_model_version(s).id
    return ids, mv


def _claim(factory: sessionmaker[Session], ids: list[int], mv: int, who: str, **kw) -> list[int]:
    with transaction(factory) as s:
        return claim_images(s, image_ids=ids, model_version_id=mv, worker_id=who, **kw)


def test_a_live_claim_is_never_taken_and_an_expired_one_is(
    factory: sessionmaker[Session],
) -> None:
    ids, mv = _setup(factory)
    assert _claim(factory, ids[:2], mv, "a", seconds=60, now=T0) == ids[:2]
    # b asks for all four: gets the two free ones only
    assert _claim(factory, ids, mv, "b", seconds=60, now=T0 + dt.timedelta(seconds=59)) == ids[2:]
    # a renews its own claim inside the same call (asking again is idempotent)
    assert (
        _claim(factory, ids[:2], mv, "a", seconds=60, now=T0 + dt.timedelta(seconds=30))
        == (ids[:2])
    )
    # past a's (renewed) expiry, b takes a's images over; a's renewal then fails
    late = T0 + dt.timedelta(seconds=91)
    assert _claim(factory, ids[:2], mv, "b", seconds=60, now=late) == ids[:2]
    with transaction(factory) as s:
        assert not renew_claim(s, image_id=ids[0], model_version_id=mv, worker_id="a", seconds=60)
        assert renew_claim(s, image_id=ids[0], model_version_id=mv, worker_id="b", seconds=60)
    with factory() as s:
        assert live_claims_by_worker(s, now=late) == {"b": 4}
        # claims are per model version: another version's claims are independent
    with transaction(factory) as s:
        other = make_model_version(s, name="other").id
    assert _claim(factory, ids, other, "a", seconds=60) == ids
    with transaction(factory) as s:
        assert release_claims(s, worker_id="a", model_version_id=mv, image_ids=ids) == 0
        assert release_claims(s, worker_id="b", model_version_id=mv, image_ids=ids[:3]) == 3
        assert release_claims(s, worker_id="b", model_version_id=mv, image_ids=[]) == 0
    with factory() as s:
        n = s.scalar(select(func.count()).select_from(PrefillClaim))
        assert n == 5  # b's last one + a's four on the other version
    with transaction(factory) as s:
        assert purge_expired(s, older_than=utcnow() + dt.timedelta(hours=1)) == 5


def test_concurrent_claims_never_overlap(factory: sessionmaker[Session]) -> None:
    """Four threads claim the same 40 images in batches: every image goes to exactly one."""
    ids, mv = _setup(factory, n=40)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(who: str) -> None:
        try:
            start.wait()
            mine: list[int] = []
            for i in range(0, len(ids), 5):
                mine += _claim(factory, ids[i : i + 5], mv, who, seconds=60)
            got[who] = mine
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(f"w{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    claimed = sorted(i for mine in got.values() for i in mine)
    assert claimed == ids


def test_claims_check_their_input(factory: sessionmaker[Session]) -> None:
    ids, mv = _setup(factory, n=1)
    with pytest.raises(InvalidInput, match="worker_id"):
        _claim(factory, ids, mv, "", seconds=60)
    with pytest.raises(InvalidInput, match="DATAENGINE_CLAIM_SECONDS"):
        _claim(factory, ids, mv, "a", seconds=0)
    assert _claim(factory, [], mv, "a", seconds=60) == []
