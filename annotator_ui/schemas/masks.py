"""Request and response bodies of masks: review decisions, edits and the decode endpoint.

Masks are COCO RLE ``{"size": [h, w], "counts": str}``, bboxes COCO XYWH pixels; decode
points ``[x, y]`` and boxes XYXY in full-resolution pixels.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from db.models import Mask


class RLE(BaseModel):
    size: list[int] = Field(min_length=2, max_length=2, description="[height, width] pixels")
    counts: str | list[int] = Field(description="COCO compressed string (or uncompressed list)")


class MaskOut(BaseModel):
    id: int
    image_id: int
    rle: dict[str, Any]
    bbox: list[float]
    area: int
    label: str | None
    source: str
    status: str
    confident: bool
    predicted_iou: float | None
    stability: float | None
    calibrated_confidence: float | None
    confidence: float | None = Field(description="Calibrated if known, else predicted IoU.")
    parent_id: int | None
    author_id: int | None
    version: int

    @classmethod
    def of(cls, m: Mask) -> MaskOut:
        conf = m.calibrated_confidence if m.calibrated_confidence is not None else m.predicted_iou
        return cls(
            id=m.id,
            image_id=m.image_id,
            rle=m.rle,
            bbox=[float(v) for v in m.bbox],
            area=m.area,
            label=m.label,
            source=m.source,
            status=m.status,
            confident=bool(m.confident),
            predicted_iou=m.predicted_iou,
            stability=m.stability,
            calibrated_confidence=m.calibrated_confidence,
            confidence=conf,
            parent_id=m.parent_id,
            author_id=m.author_id,
            version=m.version,
        )


class MasksOut(BaseModel):
    image_id: int
    arm: str
    masks: list[MaskOut]


class VersionIn(BaseModel):
    version: int = Field(description="The mask version you saw; 409 if it changed since.")
    lease_id: int | None = None


class AcceptIn(VersionIn):
    label: str | None = None


class RelabelIn(VersionIn):
    label: str | None


class RevertIn(VersionIn):
    status: Literal["proposed", "accepted", "rejected", "superseded"]


class NewMaskIn(BaseModel):
    rle: RLE = Field(description="COCO RLE of the image's [height, width]; runs sum to h*w.")
    label: str | None = None
    score: float | None = Field(default=None, allow_inf_nan=False, description="Finite.")
    lease_id: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class FixIn(NewMaskIn):
    version: int


class LeaseIn(BaseModel):
    lease_id: int | None = None


class StatusChange(BaseModel):
    mask_id: int
    version: int = Field(description="The mask version you saw; 409 if it changed since.")
    status: Literal["proposed", "accepted", "rejected", "superseded"]


class BulkStatusIn(LeaseIn):
    """Status changes of several masks of one image, applied all or nothing (undo / redo of
    an accept-all in one request)."""

    changes: list[StatusChange] = Field(min_length=1, max_length=2000)


class DecodeIn(BaseModel):
    """A prompt. ``mask_input_id`` refines a previous decode; ``mask_id`` refines a stored mask."""

    points: list[list[float]] = Field(default_factory=list, description="[[x, y], ...] pixels")
    labels: list[int] = Field(default_factory=list, description="1 positive, 0 negative")
    box: list[float] | None = Field(default=None, description="[x0, y0, x1, y1] pixels")
    mask_input_id: str | None = None
    mask_id: int | None = None
    format: Literal["rle", "png"] = "rle"


class DecodeOut(BaseModel):
    rle: dict[str, Any]
    score: float
    area: int
    bbox: list[float]
    mask_input_id: str | None = Field(description="Pass back to refine this mask.")
    embed_ms: float
    decode_ms: float
