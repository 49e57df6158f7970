"""Time of one ``POST /api/events`` batch (the client sends up to 1,000 events per batch).

Builds the app in-process (FastAPI TestClient) over a fresh SQLite file, or the database
given with ``--database-url`` (it must be empty; it is migrated), leases one image to an
annotator and posts ``--n`` heartbeats three ways: under the annotator's lease, naming only
the image (the lease is looked up), and from a curator without a lease (every event refused).
Prints seconds per batch and events per second for each.

    .venv/bin/python scripts/bench_events.py
    .venv/bin/python scripts/bench_events.py --n 1000 --database-url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from annotator_ui.app import create_app
from db.migrate import upgrade
from db.models import Image, Project
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user, issue_token
from engine.settings import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="events per batch (at most 1000)")
    ap.add_argument("--database-url", default="", help="an empty database (default: temp SQLite)")
    return ap.parse_args(argv)


def heartbeats(n: int, image_id: int, lease_id: int | None) -> list[dict[str, Any]]:
    return [
        {"uuid": str(uuid.uuid4()), "session_id": "bench", "seq": i, "kind": "heartbeat",
         "client_time": 10.0 * i, "image_id": image_id, "lease_id": lease_id}
        for i in range(n)
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_events_"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        project = Project(name=f"bench-{uuid.uuid4().hex[:6]}", labels=["x"])
        s.add(project)
        s.flush()
        s.add(Image(project_id=project.id, uri="/bench.jpg", sha256="0" * 64, width=64,
                    height=48, status="ok"))  # fmt: skip
        tokens = {}
        for role in ("annotator", "curator"):
            user = create_user(
                s,
                name=f"{role}-{uuid.uuid4().hex[:6]}",
                role=role,
                password="heartbeat-bench-Quokka-71",
            )
            tokens[role] = {"Authorization": f"Bearer {issue_token(s, user=user, hours=1)}"}
        project_id = project.id
    settings = Settings(database_url=url, data_dir=tmp, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings, segmenter=object())) as client:
        task = client.post(
            "/api/tasks/next", json={"project_id": project_id}, headers=tokens["annotator"]
        ).json()
        image_id, lease_id = task["image"]["id"], task["lease_id"]
        runs = [
            ("under the annotator's lease", heartbeats(args.n, image_id, lease_id), "annotator"),
            ("image only (lease looked up)", heartbeats(args.n, image_id, None), "annotator"),
            ("curator, no lease (all refused)", heartbeats(args.n, image_id, None), "curator"),
        ]
        for name, events, who in runs:
            t = time.perf_counter()
            r = client.post("/api/events", json={"events": events}, headers=tokens[who])
            dt = time.perf_counter() - t
            out = r.json()
            print(f"{name:34s} {dt:6.2f} s per batch of {args.n}  {args.n / dt:7.0f} events/s  "
                  f"stored {out['stored']}, rejected {len(out['rejected'])}")  # fmt: skip
    engine.dispose()


if __name__ == "__main__":
    main()
