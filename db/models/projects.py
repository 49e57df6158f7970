"""Projects and their images, model versions, rounds, and the pre-fill of an image by a model
version (``Prefill``) with its work claims (``PrefillClaim``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

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
        # keyset walks (db.pages): WHERE project_id AND status AND id > :last ORDER BY id
        Index("ix_image_project_status_id", "project_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(BigId, ForeignKey("image.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    status: Mapped[str] = mapped_column(String(16), default="done")  # done | failed
    reason: Mapped[str | None] = mapped_column(Text)
    n_proposals: Mapped[int] = mapped_column(Integer, default=0)
    n_confident: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PrefillClaim(Base):
    """A pre-fill worker's claim on one (image, model version) until ``expires_at``.

    One row per pair (the primary key), so at most one live claim exists; another worker
    may take the row over only once it has expired (``db.claims``). The row is deleted
    when the image's ``prefill`` row is written.
    """

    __tablename__ = "prefill_claim"
    __table_args__ = (Index("ix_prefill_claim_worker", "worker_id"),)

    image_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_version.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[str] = mapped_column(String(200))
    claimed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
