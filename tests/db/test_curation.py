"""db.curation queues: concurrent curators never claim the same page."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session, sessionmaker

from db import curation as cur
from db.models import Project
from tests.factories import make_image, make_project, make_user


def test_concurrent_curators_get_disjoint_pages(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        project = make_project(s)
        for _ in range(40):
            make_image(s, project=project)
        users = [make_user(s, role="curator").id for _ in range(4)]
        s.commit()
        project_id = project.id
    pages: dict[int, list[int]] = {}
    barrier = threading.Barrier(len(users))

    def claim(user_id: int) -> None:
        with factory() as s:
            barrier.wait()
            p = s.get(Project, project_id)
            pages[user_id] = [
                im.id
                for im in cur.queue(s, project=p, user_id=user_id, stage="generalist", limit=8)
            ]
            s.commit()

    threads = [threading.Thread(target=claim, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for page in pages.values() for i in page]
    assert len(claimed) == 32
    # overlap images may go to two curators by design; every other image goes to one
    with factory() as s:
        p = s.get(Project, project_id)
        cfg = cur.curation_settings(p)
    single = [
        i
        for i in claimed
        if not cur.in_overlap(
            i, stage="generalist", fraction=float(cfg["overlap_fraction"]), seed=int(cfg["seed"])
        )
    ]
    assert len(single) == len(set(single))
