"""Request and response bodies of tasks: the next image, heartbeats and the submit."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from annotator_ui.schemas.masks import RLE
from annotator_ui.schemas.projects import ImageOut
from db.models import Image, Lease


class NextIn(BaseModel):
    project_id: int
    stage: Literal["annotate", "generalist", "specialist"] = "annotate"


class TaskOut(BaseModel):
    """A lease on one image. ``draft`` is work kept from an earlier lost lease, if any."""

    lease_id: int
    stage: str
    arm: str
    image: ImageOut
    labels: list[str]
    hotkeys: list[str] = Field(
        default_factory=list,
        description="Labels of the number keys 1-9 (the project's hotkey list, else the "
        "first nine labels).",
    )
    created_at: dt.datetime
    expires_at: dt.datetime
    completed_at: dt.datetime | None
    heartbeat_seconds: float = Field(description="How often the page should send heartbeats.")
    draft: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        lease: Lease,
        image: Image,
        labels: list[str],
        lease_minutes: float,
        hotkeys: list[str] | None = None,
    ) -> TaskOut:
        return cls(
            lease_id=lease.id,
            stage=lease.stage,
            arm=lease.arm,
            image=ImageOut.of(image),
            labels=labels,
            hotkeys=hotkeys if hotkeys is not None else labels[:9],
            created_at=lease.created_at,
            expires_at=lease.expires_at,
            completed_at=lease.completed_at,
            heartbeat_seconds=max(5.0, min(60.0, lease_minutes * 60 / 4)),
            draft=lease.draft,
        )


class HeartbeatIn(BaseModel):
    draft: dict[str, Any] | None = Field(
        default=None,
        description="Unsaved work to keep; at most the max_draft_bytes setting as JSON (413).",
    )


class MaskOp(BaseModel):
    """One mask operation of a submit (see ``db.masks.apply_ops``)."""

    op: Literal["accept", "reject", "fix", "add", "relabel", "delete"]
    mask_id: int | None = None
    version: int | None = None
    rle: RLE | None = None
    label: str | None = None
    score: float | None = Field(default=None, allow_inf_nan=False, description="Finite.")
    key: str | None = Field(default=None, max_length=64, description="Client id of a new mask.")


class SubmitIn(BaseModel):
    ops: list[MaskOp] = Field(default_factory=list, description="Changes not yet applied.")
    note: str | None = Field(default=None, max_length=2000)


class SubmitOut(BaseModel):
    lease_id: int
    image_id: int
    completed_at: dt.datetime
    created: dict[str, int] = Field(default_factory=dict)
    counts: dict[str, int] = Field(
        default_factory=dict,
        description="Masks by status now, counting only what the annotator was shown (hidden "
        "less confident proposals and the control arm's proposals are left out).",
    )
