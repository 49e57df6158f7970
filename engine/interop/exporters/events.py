"""`dataengine export --format events`: the raw effort log as data, plus per-image effort.

Writes into ``out`` (a temporary folder that ``write_atomically`` renames into place):

- ``events.jsonl`` | ``events.parquet``: one row per event of the project's images, in event
  id order, with its lease, round, arm, user, image and mask (``EVENT_COLUMNS``);
- ``image_effort.jsonl`` | ``image_effort.parquet``: every worked image's effort derived with
  ``--idle-seconds`` by ``engine.flywheel.effort`` (``EFFORT_COLUMNS``), the figures the
  metrics use, so a researcher can compare their own rules with ours;
- ``manifest.json``: counts, the idle cap, the format and every column's meaning.

Events are read by keyset pagination (``event.id > last`` ... ``LIMIT page``), so memory is
O(page) whatever the log's size. Column meanings are documented in ``docs/effort.md``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from db.errors import InvalidInput
from db.event_rows import event_page
from db.models import Project
from db.worked_images import worked_image_page
from engine.flywheel.effort import DEFAULT_IDLE_S
from engine.flywheel.effort_loader import load_effort
from engine.interop.exporters.atomic import write_json

FORMATS = ("jsonl", "parquet")
PAGE = 5000
EFFORT_PAGE = 500

# name -> (arrow type, meaning)
EVENT_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "event_id": (pa.int64(), "server id; increases with arrival (export order)"),
    "uuid": (pa.string(), "client-made UUID, unique"),
    "session_id": (pa.string(), "one page load (or simulated session); gaps never span two"),
    "seq": (pa.int64(), "order within the session"),
    "client_time_ms": (pa.float64(), "client clock, ms, monotonic within the session"),
    "server_time": (pa.timestamp("us", tz="UTC"), "when the server stored it (UTC)"),
    "visible": (pa.bool_(), "page visible after this event"),
    "kind": (pa.string(), "event kind (engine/flywheel/events.py)"),
    "image_id": (pa.int64(), "image"),
    "mask_id": (pa.int64(), "mask the event is about, or null"),
    "lease_id": (pa.int64(), "lease it was sent under, or null"),
    "lease_stage": (pa.string(), "annotate | generalist | specialist, or null"),
    "lease_completed": (pa.bool_(), "that lease finished the image (null: no lease)"),
    "round": (pa.int64(), "round number of the lease, or null (no round open / no lease)"),
    "arm": (pa.string(), "prefill | control of the lease, or null"),
    "user_id": (pa.int64(), "who sent it"),
    "user_name": (pa.string(), "their name"),
    "payload": (pa.string(), "the event's payload as a JSON object (text)"),
}
EFFORT_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "image_id": (pa.int64(), "image"),
    "round": (pa.int64(), "round of the finishing (else newest) annotate lease; null: none"),
    "arm": (pa.string(), "prefill | control"),
    "finished": (pa.bool_(), "an annotate lease finished (submitted) the image"),
    "lease_id": (pa.int64(), "the finishing lease, or null"),
    "seconds": (pa.float64(), "measured active seconds under every annotate lease"),
    "imported_s": (pa.float64(), "seconds imported from Label Studio lead_time (not measured)"),
    "objects": (pa.int64(), "committed objects (added or fixed masks)"),
    "object_cost_s": (pa.float64(), "sum of the committed objects' own seconds"),
    "idle_s": (pa.float64(), "the idle cap the row was derived with"),
}


class _Table:
    """Rows to ``name.jsonl`` or ``name.parquet``, written in batches (O(batch) memory)."""

    def __init__(self, out: Path, name: str, fmt: str, columns: dict[str, Any]) -> None:
        self.path = out / f"{name}.{fmt}"
        self.fmt = fmt
        self.schema = pa.schema([(c, t) for c, (t, _) in columns.items()])
        self.rows = 0
        self._fh: Any = None
        self._pq: pq.ParquetWriter | None = None
        if fmt == "jsonl":
            self._fh = self.path.open("w", encoding="utf-8")
        else:
            self._pq = pq.ParquetWriter(self.path, self.schema)

    def write(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        self.rows += len(batch)
        if self._fh is not None:
            for row in batch:
                out = {k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                       for k, v in row.items()}  # fmt: skip
                if "payload" in out:
                    out["payload"] = json.loads(out["payload"])
                self._fh.write(json.dumps(out, ensure_ascii=False, sort_keys=True) + "\n")
        elif self._pq is not None:
            self._pq.write_table(pa.Table.from_pylist(batch, schema=self.schema))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._pq is not None:
            self._pq.close()


def _event_pages(session: Session, project_id: int, page: int) -> Iterator[list[Any]]:
    """Event rows of the project's images in id order, ``page`` at a time (keyset)."""
    last = 0
    while True:
        rows = event_page(session, project_id=project_id, after_id=last, limit=page)
        if not rows:
            return
        yield rows  # plain rows, no ORM identities: memory stays O(page)
        last = rows[-1].id


def _event_row(row: Any) -> dict[str, Any]:
    return {
        "event_id": row.id, "uuid": row.uuid, "session_id": row.session_id, "seq": row.seq,
        "client_time_ms": float(row.client_time), "server_time": row.server_time,
        "visible": bool(row.visible), "kind": row.kind, "image_id": row.image_id,
        "mask_id": row.mask_id, "lease_id": row.lease_id, "lease_stage": row.stage,
        "lease_completed": None if row.lease_id is None else row.completed_at is not None,
        "round": row.round, "arm": row.arm, "user_id": row.user_id, "user_name": row.user_name,
        "payload": json.dumps(row.payload or {}, sort_keys=True, ensure_ascii=False),
    }  # fmt: skip


def _effort_rows(
    session: Session, project_id: int, idle_s: float
) -> Iterator[list[dict[str, Any]]]:
    last = 0
    while True:
        page = worked_image_page(
            session, project_id=project_id, after_image_id=last, limit=EFFORT_PAGE
        )
        if not page:
            return
        effort = load_effort(
            session, image_ids=[u.image_id for u in page], idle_s=idle_s, keep_gaps=False
        )
        objects: dict[int, list[float]] = {}
        for me in effort.per_mask.values():
            if me.kind == "object" and me.image_id is not None:
                objects.setdefault(me.image_id, []).append(me.seconds)
        yield [
            {"image_id": u.image_id, "round": u.round, "arm": u.arm,
             "finished": u.lease_id is not None, "lease_id": u.lease_id,
             "seconds": effort.per_image.get(u.image_id, 0.0),
             "imported_s": effort.imported.get(u.image_id, 0.0),
             "objects": len(objects.get(u.image_id, [])),
             "object_cost_s": float(sum(objects.get(u.image_id, []))), "idle_s": idle_s}
            for u in page
        ]  # fmt: skip
        last = page[-1].image_id


def export_events(
    session: Session,
    *,
    project: Project,
    out: Path,
    stage: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the project's events and per-image effort into ``out`` (see the module doc).

    options: ``events_format`` ("jsonl" | "parquet", default jsonl), ``idle_seconds``
    (float > 0, default 30), ``page`` (events per read, default 5000). Returns the counts.
    """
    options = options or {}
    fmt = options.get("events_format") or "jsonl"
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown events format {fmt!r}; choose one of {', '.join(FORMATS)}")
    idle_s = options.get("idle_seconds")
    idle_s = DEFAULT_IDLE_S if idle_s is None else float(idle_s)
    if not idle_s > 0:
        raise InvalidInput(f"--idle-seconds must be positive, got {idle_s}")
    page = int(options.get("page") or PAGE)
    events = _Table(out, "events", fmt, EVENT_COLUMNS)
    try:
        for rows in _event_pages(session, project.id, page):
            events.write([_event_row(r) for r in rows])
    finally:
        events.close()
    effort = _Table(out, "image_effort", fmt, EFFORT_COLUMNS)
    try:
        for batch in _effort_rows(session, project.id, idle_s):
            effort.write(batch)
    finally:
        effort.close()
    counts = {"events": events.rows, "images": effort.rows}
    write_json(out / "manifest.json", {
        "kind": "events", "project": project.name, "format": fmt, "idle_s": idle_s,
        "counts": counts, "files": [events.path.name, effort.path.name],
        "columns": {
            "events": {c: d for c, (_, d) in EVENT_COLUMNS.items()},
            "image_effort": {c: d for c, (_, d) in EFFORT_COLUMNS.items()},
        },
        "rules": "docs/effort.md (engine/flywheel/effort.py)",
    })  # fmt: skip
    return counts
