"""Bookkeeping rows: export records, the effort cache (per image and per object) and worker
heartbeats."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import (
    Base,
    BigId,
    utcnow,
)


class Export(Base):
    __tablename__ = "export"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(Text)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EffortCache(Base):
    """Derived, recomputable: an image's active seconds from the event log (``engine.flywheel.metrics``).

    Valid while ``lease_id`` and ``idle_s`` match, no event of the image has an id above
    ``watermark`` and none of its masks was edited after ``computed_at``; the event log and
    the mask table stay the source of truth.
    """

    __tablename__ = "effort_cache"

    image_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    lease_id: Mapped[int | None] = mapped_column(BigId)
    idle_s: Mapped[float] = mapped_column(Float)
    watermark: Mapped[int] = mapped_column(BigId)
    seconds: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # per-image sums of engine.flywheel.metrics (0006_metrics_cache); NULL = not derived yet
    final: Mapped[int | None] = mapped_column(Integer)
    from_proposal: Mapped[int | None] = mapped_column(Integer)
    added: Mapped[int | None] = mapped_column(Integer)
    shown: Mapped[int | None] = mapped_column(Integer)
    accepted_as_is: Mapped[int | None] = mapped_column(Integer)
    fixed: Mapped[int | None] = mapped_column(Integer)
    fixed_iou_sum: Mapped[float | None] = mapped_column(Float)
    added_seconds: Mapped[float | None] = mapped_column(Float)
    added_clicks: Mapped[int | None] = mapped_column(Integer)
    added_timed: Mapped[int | None] = mapped_column(Integer)
    imported_s: Mapped[float | None] = mapped_column(Float)  # Label Studio lead_time (0007)
    masks_checked_at: Mapped[dt.datetime | None] = mapped_column()  # mask edits seen up to here


class EffortObject(Base):
    """Derived with ``EffortCache``: one committed object (added or fixed mask) of an image."""

    __tablename__ = "effort_object"
    __table_args__ = (
        Index("ix_effort_object_image", "image_id"),
        Index("ix_effort_object_mask", "mask_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
    mask_id: Mapped[int] = mapped_column(BigId)
    seconds: Mapped[float] = mapped_column(Float)
    clicks: Mapped[int] = mapped_column(Integer)
    iou: Mapped[float | None] = mapped_column(Float)  # fixed proposals: IoU(final, proposal)


class WorkerHeartbeat(Base):
    """Last sign of life of one pre-fill worker process (``dataengine worker``).

    ``worker_id`` is ``<hostname>:<pid>:<random>``; one row per process run, updated in
    place; ``images_done`` / ``images_failed`` count what that run pre-filled.
    """

    __tablename__ = "worker_heartbeat"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    backend: Mapped[str] = mapped_column(String(32))
    model_key: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    passes: Mapped[int] = mapped_column(Integer, default=0)
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    images_failed: Mapped[int] = mapped_column(Integer, default=0)
