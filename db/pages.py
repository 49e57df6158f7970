"""Keyset paging over a project's images: walks that hold one page in memory, not a project.

``WHERE id > :last ORDER BY id LIMIT :page`` uses the primary-key index and costs the same
on page 1 and page 10,000 (OFFSET would rescan every skipped row). Each page is read in its
own short session, so a walk over 10 million images never holds a transaction (or a
snapshot) open while the caller works on a page, and rows inserted behind the cursor
during the walk are seen when their id is above it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput
from db.models import Image

DEFAULT_PAGE = 1000


def count_images(
    session: Session,
    *,
    project_id: int,
    status: str | None = "ok",
    where: Sequence[ColumnElement[bool]] = (),
) -> int:
    """``SELECT count(*)`` of the project's images (with ``status`` unless None, and ``where``)."""
    q = select(func.count()).select_from(Image).where(Image.project_id == project_id, *where)
    if status is not None:
        q = q.where(Image.status == status)
    return int(session.scalar(q) or 0)


def image_pages(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    columns: Sequence[Any] = (Image.id, Image.uri, Image.sha256),
    status: str | None = "ok",
    where: Sequence[ColumnElement[bool]] = (),
    page_size: int = DEFAULT_PAGE,
    after_id: int = 0,
) -> Iterator[list[Row[Any]]]:
    """Yield the project's images page by page, ascending id, as rows of ``columns``.

    ``columns`` must start with ``Image.id`` (the cursor). ``where`` adds conditions (e.g.
    ``~exists(...)``). Memory: one page of rows.
    """
    if page_size < 1:
        raise InvalidInput(f"page_size must be >= 1, got {page_size}")
    if not columns or columns[0] is not Image.id:
        raise InvalidInput("columns must start with Image.id (the keyset cursor)")
    last = after_id
    while True:
        q = select(*columns).where(Image.project_id == project_id, Image.id > last, *where)
        if status is not None:
            q = q.where(Image.status == status)
        with factory() as s:
            rows = list(s.execute(q.order_by(Image.id).limit(page_size)).all())
        if not rows:
            return
        yield rows
        if len(rows) < page_size:
            return
        last = int(rows[-1][0])


def image_ids(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    status: str | None = "ok",
    page_size: int = DEFAULT_PAGE,
) -> Iterator[int]:
    """The project's image ids, ascending, one page in memory at a time."""
    for page in image_pages(
        factory, project_id=project_id, columns=(Image.id,), status=status, page_size=page_size
    ):
        for row in page:
            yield int(row[0])
