"""ImageResolver: the by-name index is read page by page (keyset on id), and finds every image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from db.projects import get_project
from db.session import transaction
from engine.ingest import ingest
from engine.interop.importers import common
from engine.interop.importers.common import FileOutcome, ImageResolver


def test_index_pages_through_the_project_by_keyset(
    factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(5):
        PILImage.fromarray(np.full((40, 40, 3), 20 * i, dtype=np.uint8)).save(folder / f"f{i}.png")
    ingest(factory, project="k", paths=[folder])
    monkeypatch.setattr(common, "INDEX_PAGE", 2)
    statements: list[str] = []
    with transaction(factory) as s:
        listen = lambda conn, cur, sql, *a: statements.append(sql)  # noqa: E731
        event.listen(s.get_bind(), "before_cursor_execute", listen)
        try:
            resolver = ImageResolver(s, project=get_project(s, name="k"))
            found = [resolver.find(f"f{i}.png", FileOutcome(path="x"))[0] for i in range(5)]
        finally:
            event.remove(s.get_bind(), "before_cursor_execute", listen)
    assert [im.uri.rsplit("/", 1)[-1] for im in found] == [f"f{i}.png" for i in range(5)]
    pages = [q for q in statements if "image.id >" in q and "LIMIT" in q.upper()]
    assert len(pages) == 3  # 2 + 2 + 1 rows
    assert all("image.sha256" not in q.split("FROM")[0] for q in pages)  # (id, uri) pairs only
