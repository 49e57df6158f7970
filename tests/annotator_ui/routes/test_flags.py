"""Flag routes: an annotator flags the image they hold, reviewers list and resolve flags;
an annotator can neither flag an image they never held nor see the list."""

from __future__ import annotations

from pathlib import Path

from db.session import transaction
from tests.factories import make_image, make_project
from tests.webapp import NoModel, start_web


def test_flag_list_resolve_over_http(db_url: str, tmp_path: Path) -> None:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as web:
        with transaction(web.factory) as s:
            p = make_project(s)
            held, other = make_image(s, project=p).id, make_image(s, project=p).id
            pid = p.id
        c, ann, rev = web.client, web.as_("annotator"), web.as_("reviewer")
        task = c.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
        assert task["image"]["id"] == held
        r = c.post(f"/api/images/{other}/flags", json={"reason": "x"}, headers=ann)
        assert r.status_code == 403, r.text
        r = c.post(f"/api/images/{held}/flags", json={"reason": ""}, headers=ann)
        assert r.status_code == 422
        r = c.post(
            f"/api/images/{held}/flags",
            json={"reason": "two dogs merged into one mask", "lease_id": task["lease_id"]},
            headers=ann,
        )
        assert r.status_code == 201, r.text
        flag = r.json()
        assert (flag["image_id"], flag["user"]) == (held, "annotator1")
        assert c.get(f"/api/projects/{pid}/flags", headers=ann).status_code == 403
        listed = c.get(f"/api/projects/{pid}/flags", headers=rev).json()
        assert [f["reason"] for f in listed] == ["two dogs merged into one mask"]
        r = c.post(f"/api/flags/{flag['id']}/resolve", json={"resolution": "split"}, headers=rev)
        assert r.status_code == 200 and r.json()["resolution"] == "split"
        assert c.get(f"/api/projects/{pid}/flags", headers=rev).json() == []
        again = c.post(f"/api/flags/{flag['id']}/resolve", json={}, headers=rev)
        assert again.status_code == 409 and "already resolved" in again.text
