"""Skip and previous over HTTP: skip hands out a different image, previous comes back."""

from __future__ import annotations

from pathlib import Path

from db.session import transaction
from tests.factories import make_image, make_project
from tests.webapp import NoModel, start_web


def test_skip_then_previous(db_url: str, tmp_path: Path) -> None:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as web:
        with transaction(web.factory) as s:
            p = make_project(s)
            images = [make_image(s, project=p).id for _ in range(3)]
            pid = p.id
        c, ann = web.client, web.as_("annotator")
        r = c.post("/api/tasks/previous", json={"project_id": pid}, headers=ann)
        assert r.status_code == 404 and "no earlier image" in r.text
        first = c.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
        draft = {"object": {"points": [[3, 4, 1]]}}
        r = c.post(f"/api/tasks/{first['lease_id']}/skip", json={"draft": draft}, headers=ann)
        assert r.status_code == 200, r.text
        second = c.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
        assert (first["image"]["id"], second["image"]["id"]) == (images[0], images[1])
        back = c.post("/api/tasks/previous", json={"project_id": pid}, headers=ann)
        assert back.status_code == 200, back.text
        assert back.json()["image"]["id"] == images[0] and back.json()["draft"] == draft
        # the image given back is free again: next resumes the reopened one
        again = c.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
        assert again["lease_id"] == back.json()["lease_id"]
        r = c.post("/api/tasks/previous", json={"project_id": pid}, headers=web.as_("curator"))
        assert r.status_code == 403
