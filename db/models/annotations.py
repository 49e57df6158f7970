"""What annotators and curators make: masks, leases on images, flags, effort events, curation
decisions and captions."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import (
    Base,
    BigId,
    utcnow,
)

if TYPE_CHECKING:
    from db.models.projects import Image


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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
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
    parent_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("mask.id"))
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
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
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    lease_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("lease.id"))
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    image_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
    mask_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("mask.id"))
    lease_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("lease.id"))
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))  # human | draft | import
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
