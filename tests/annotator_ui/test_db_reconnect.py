"""The app after PostgreSQL ends its connections (a restart, a failover, an admin's
``pg_terminate_backend``): at most one request fails, then every request is answered.
With ``pool_pre_ping`` (the default of ``db.session.make_engine``) none fails; this is the
bar for dropping its ``SELECT 1`` per checkout (measured without a clear gain, see
``scripts/bench_load.py``'s docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.webapp import NoModel, Web, start_web


@pytest.fixture
def web(postgres_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(postgres_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def _terminate_app_connections(url: str) -> int:
    """End every other session on ``url``'s database; how many were ended."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": make_url(url).database},
                ).all()
            )
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_at_most_one_request_fails_after_the_connections_are_terminated(
    web: Web, postgres_url: str
) -> None:
    ann = web.as_("annotator")
    for _ in range(3):
        assert web.client.get("/api/projects", headers=ann).status_code == 200
    assert _terminate_app_connections(postgres_url) >= 1
    codes = [web.client.get("/api/projects", headers=ann).status_code for _ in range(6)]
    assert codes.count(200) >= len(codes) - 1, codes
    assert codes[-5:] == [200] * 5, codes
    failed = [c for c in codes if c != 200]
    assert all(c in (500, 503) for c in failed), codes
    r = web.client.post(
        "/api/admin/projects", json={"name": "after", "labels": ["a"]}, headers=web.as_("admin")
    )
    assert r.status_code == 201, r.text  # writes work again too
