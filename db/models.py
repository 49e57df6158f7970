"""SQLAlchemy 2.0 models: the data model of ``docs/architecture.md``.

Conventions
- Times are timezone-aware UTC (``utcnow()``); SQLite stores them naive, so
  reads go through ``UTCDateTime`` which re-attaches UTC.
- Masks are COCO RLE dicts ``{"size": [h, w], "counts": str}`` in full-resolution
  image pixels; ``bbox`` is COCO ``[x, y, w, h]`` (XYWH pixels).
- Free-form extras live in JSON columns so most features need no migration.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("annotator", "curator", "reviewer", "admin")
MASK_SOURCES = ("model", "human", "model_edited")
MASK_STATUSES = ("proposed", "accepted", "rejected", "superseded")
CURATION_STAGES = ("auto", "generalist", "specialist")


def utcnow() -> dt.datetime:
    """Timezone-aware current UTC time."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """DateTime that always returns aware UTC datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="project")


class Image(Base):
    """One ingested file. ``status`` is ``ok`` or ``rejected`` (with ``reason``)."""

    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_image_project_sha256"),
        Index("ix_image_project_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    file_size: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    mode: Mapped[str | None] = mapped_column(String(16))
    rgb_conversion: Mapped[str | None] = mapped_column(String(200))
    exif_orientation: Mapped[int | None] = mapped_column(Integer)
    phash: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="ok")
    reason: Mapped[str | None] = mapped_column(Text)
    signals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="images")


class ModelVersion(Base):
    """A segmentation model as used for pre-fill: backend + weights + calibration."""

    __tablename__ = "model_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(32))
    model_type: Mapped[str | None] = mapped_column(String(32))
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    promoted: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Round(Base):
    """A project bound to a model version for a period; a seeded control arm gets no pre-fill."""

    __tablename__ = "round"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_round_project_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    control_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column()


class Prefill(Base):
    """One pre-fill pass of one model version over one image (idempotency record)."""

    __tablename__ = "prefill"
    __table_args__ = (
        UniqueConstraint("image_id", "model_version_id", name="uq_prefill_image_model"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    status: Mapped[str] = mapped_column(String(16), default="done")  # done | failed
    reason: Mapped[str | None] = mapped_column(Text)
    n_proposals: Mapped[int] = mapped_column(Integer, default=0)
    n_confident: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def name_key(name: str) -> str:
    """The case-insensitive identity of a user name: NFKC, casefolded, NFKC again."""
    folded = unicodedata.normalize("NFKC", name).strip().casefold()
    return unicodedata.normalize("NFKC", folded)


def _default_name_key(context: Any) -> str:
    return name_key(str(context.get_current_parameters()["name"]))


class User(Base):
    """``name`` is shown as typed (NFKC); ``name_key`` (unique) makes names case-insensitive."""

    __tablename__ = "user_account"
    __table_args__ = (Index("ix_user_account_name_key", "name_key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    name_key: Mapped[str] = mapped_column(String(100), default=_default_name_key)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuthToken(Base):
    """A login session (cookie) or API token (bearer); only the sha256 of the secret is stored."""

    __tablename__ = "auth_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | api
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()


class LoginThrottle(Base):
    """Failed-login counters shared by every app process (``db.login_throttle``).

    ``key`` is ``account:<name_key>`` or ``addr:<client address>``; attempts are refused
    until ``locked_until`` (exponential back-off after a few free failures).
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Mask(Base):
    """One object mask. Edits create a new row whose ``parent_id`` is the old one."""

    __tablename__ = "mask"
    __table_args__ = (
        Index("ix_mask_image_status", "image_id", "status"),
        Index("ix_mask_model_version", "model_version_id"),
        Index("ix_mask_updated_at", "updated_at"),  # engine.flywheel.metrics: masks changed since
        # a retried add/fix (same Idempotency-Key from the same person) returns the first mask
        UniqueConstraint("author_id", "client_key", name="uq_mask_author_client_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    rle: Mapped[dict[str, Any]] = mapped_column(JSON)
    bbox: Mapped[list[Any]] = mapped_column(JSON)
    area: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id"))
    predicted_iou: Mapped[float | None] = mapped_column(Float)
    stability: Mapped[float | None] = mapped_column(Float)
    calibrated_confidence: Mapped[float | None] = mapped_column(Float)
    confident: Mapped[bool] = mapped_column(Boolean, default=False)
    point_coords: Mapped[list[Any] | None] = mapped_column(JSON)
    crop_box: Mapped[list[Any] | None] = mapped_column(JSON)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("mask.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_key: Mapped[str | None] = mapped_column(String(64))  # Idempotency-Key of its add/fix
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Lease(Base):
    """An image handed to a user in a stage; ``draft`` keeps work submitted after expiry."""

    __tablename__ = "lease"
    __table_args__ = (Index("ix_lease_image_stage", "image_id", "stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    stage: Mapped[str] = mapped_column(String(32))  # annotate | generalist | specialist
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id"))
    arm: Mapped[str] = mapped_column(String(16), default="prefill")  # prefill | control
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column()
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the submit's answer (and request hash), replayed to a retry of the same submit
    submit_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # set when the user skipped the image: it goes to the back of that user's queue
    skipped_at: Mapped[dt.datetime | None] = mapped_column()


class ImageFlag(Base):
    """An image an annotator flagged for a reviewer, with the reason; open until resolved."""

    __tablename__ = "image_flag"
    __table_args__ = (Index("ix_image_flag_image", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    lease_id: Mapped[int | None] = mapped_column(ForeignKey("lease.id"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    resolution: Mapped[str | None] = mapped_column(Text)

    image: Mapped[Image] = relationship()


class Event(Base):
    """Append-only effort log. ``uuid`` comes from the client; each is stored once."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_image_session", "image_id", "session_id", "client_time"),
        Index("ix_event_user", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    mask_id: Mapped[int | None] = mapped_column(ForeignKey("mask.id"))
    lease_id: Mapped[int | None] = mapped_column(ForeignKey("lease.id"))
    session_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_time: Mapped[float] = mapped_column(Float)  # ms, monotonic within session_id
    visible: Mapped[bool] = mapped_column(Boolean, default=True)
    server_time: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CurationDecision(Base):
    __tablename__ = "curation_decision"
    __table_args__ = (Index("ix_curation_image_stage", "image_id", "stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    stage: Mapped[str] = mapped_column(String(16))  # auto | generalist | specialist
    decision: Mapped[str] = mapped_column(String(16))  # keep | drop | pass | fail
    rating: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Caption(Base):
    __tablename__ = "caption"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))  # human | draft | import
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


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
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    lease_id: Mapped[int | None] = mapped_column(Integer)
    idle_s: Mapped[float] = mapped_column(Float)
    watermark: Mapped[int] = mapped_column(Integer)
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

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    mask_id: Mapped[int] = mapped_column(Integer)
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
