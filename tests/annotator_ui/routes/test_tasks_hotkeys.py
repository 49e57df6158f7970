"""The number keys of the review page: a project's hotkey list (``settings.hotkeys``) is
checked against its taxonomy by the admin routes and handed to the page with each task;
without one, the keys take the taxonomy's first nine labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.session import transaction
from tests.factories import make_image
from tests.webapp import NoModel, Web, start_web

LABELS = [f"label{i}" for i in range(12)]


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def _project(web: Web, **settings: object) -> int:
    body = {"name": "hk", "labels": LABELS, "settings": settings}
    r = web.client.post("/api/admin/projects", json=body, headers=web.as_("admin"))
    assert r.status_code == 201, r.text
    pid = int(r.json()["id"])
    with transaction(web.factory) as s:
        from db.models import Project

        make_image(s, project=s.get(Project, pid))
    return pid


def _task_hotkeys(web: Web, pid: int) -> list[str]:
    r = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=web.as_("annotator"))
    assert r.status_code == 200, r.text
    return list(r.json()["hotkeys"])


def test_without_a_list_the_keys_take_the_first_nine_labels(web: Web) -> None:
    assert _task_hotkeys(web, _project(web)) == LABELS[:9]


def test_the_projects_list_is_handed_to_the_page_in_key_order(web: Web) -> None:
    pid = _project(web, hotkeys=["label11", "label3"])
    assert _task_hotkeys(web, pid) == ["label11", "label3"]


def test_bad_lists_are_refused_with_the_fix(web: Web) -> None:
    admin = web.as_("admin")
    r = web.client.post(
        "/api/admin/projects",
        json={"name": "x", "labels": ["a"], "settings": {"hotkeys": ["zebra"]}},
        headers=admin,
    )
    assert r.status_code == 422 and "not in the taxonomy" in r.json()["detail"]
    pid = _project(web)
    r = web.client.patch(
        f"/api/admin/projects/{pid}",
        json={"settings": {"hotkeys": ["label1", "label1"]}},
        headers=admin,
    )
    assert r.status_code == 422 and "repeat" in r.json()["detail"]
    r = web.client.patch(
        f"/api/admin/projects/{pid}", json={"settings": {"hotkeys": LABELS[:10]}}, headers=admin
    )
    assert r.status_code == 422  # ten keys for nine numbers
    # dropping a hotkey's label from the taxonomy drops it from the keys, nothing else
    r = web.client.patch(
        f"/api/admin/projects/{pid}",
        json={"settings": {"hotkeys": ["label2", "label5"]}},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = web.client.patch(
        f"/api/admin/projects/{pid}",
        json={"labels": [x for x in LABELS if x != "label2"]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert _task_hotkeys(web, pid) == ["label5"]
