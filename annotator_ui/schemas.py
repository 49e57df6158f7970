"""Request and response bodies of the annotator API (pydantic).

Coordinate frames: points are ``[x, y]`` pixels of the full-resolution image (EXIF
orientation applied), boxes XYXY pixels, masks COCO RLE ``{"size": [h, w], "counts": str}``,
bboxes COCO XYWH pixels. Times are ISO 8601 UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from db.models import Image, Lease, Mask, Project, User

Role = Literal["annotator", "curator", "reviewer", "admin"]

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID, description="A row id (1 .. 2**63-1).")]
"""Path / body id. Above the column range of the current database it is a 404 (see
``annotator_ui.errors``), never a 500."""


class RLE(BaseModel):
    size: list[int] = Field(min_length=2, max_length=2, description="[height, width] pixels")
    counts: str | list[int] = Field(description="COCO compressed string (or uncompressed list)")


# --- projects and users ------------------------------------------------------------------


class CurationSettings(BaseModel):
    """``project.settings["curation"]``: read by the curation queues and exports."""

    model_config = ConfigDict(extra="forbid")

    overlap_fraction: float | None = Field(
        default=None, ge=0.0, le=1.0, allow_inf_nan=False, description="Shown to two curators."
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Overlap sampling.")
    idle_seconds: float | None = Field(
        default=None, gt=0, le=3600, allow_inf_nan=False, description="Gap cap for effort."
    )
    rules: dict[str, Any] | None = Field(default=None, description="Auto-stage rules (curate).")
    ranker: dict[str, Any] | None = Field(default=None, description="Trained queue ranker.")


class ProjectSettings(BaseModel):
    """A project's settings. Known keys are checked; other keys are kept as given (JSON)."""

    model_config = ConfigDict(extra="allow")

    curation: CurationSettings | None = None
    licenses: list[dict[str, Any]] | None = Field(default=None, description="COCO licenses.")
    imports: list[dict[str, Any]] | None = Field(default=None, description="Import records.")
    hotkeys: list[str] | None = Field(
        default=None,
        max_length=9,
        description="Labels bound to the number keys 1-9 of the review page, in order "
        "(each must be in the taxonomy); unset: the taxonomy's first nine labels.",
    )

    def as_json(self) -> dict[str, Any]:
        """The settings to store, without unset known keys."""
        out = self.model_dump(exclude_none=True)
        if self.curation is not None:
            out["curation"] = self.curation.model_dump(exclude_none=True)
        return out


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    labels: list[str] = Field(default_factory=list, description="The label taxonomy, in order.")
    settings: ProjectSettings = Field(default_factory=ProjectSettings)


class ProjectPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    labels: list[str] | None = None
    settings: ProjectSettings | None = None


class ProjectOut(BaseModel):
    id: int
    name: str
    labels: list[str]
    settings: dict[str, Any]
    created_at: dt.datetime
    queue: dict[str, int] | None = None

    @classmethod
    def of(cls, p: Project, queue: dict[str, int] | None = None) -> ProjectOut:
        return cls(
            id=p.id,
            name=p.name,
            labels=[str(x) for x in p.labels or []],
            settings=p.settings or {},
            created_at=p.created_at,
            queue=queue,
        )


class UserIn(BaseModel):
    """A new user. The name is NFKC-normalised and unique ignoring case; the password must
    pass the policy (``db.users.check_password``), else 422 with the reason."""

    name: str = Field(min_length=1, max_length=100)
    role: Role
    password: str = Field(min_length=8, max_length=1000)


class UserPatch(BaseModel):
    """``password`` resets it (policy checked) and revokes every session and token."""

    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1000)


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    active: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(id=u.id, name=u.name, role=u.role, active=u.active, created_at=u.created_at)


# --- images and tasks ----------------------------------------------------------------------


class ImageOut(BaseModel):
    id: int
    project_id: int
    width: int | None
    height: int | None
    status: str
    reason: str | None = None
    sha256: str | None = None
    file_url: str

    @classmethod
    def of(cls, im: Image) -> ImageOut:
        return cls(
            id=im.id,
            project_id=im.project_id,
            width=im.width,
            height=im.height,
            status=im.status,
            reason=im.reason,
            sha256=im.sha256,
            file_url=f"/api/images/{im.id}/file",
        )


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


# --- masks ----------------------------------------------------------------------------------


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


# --- events ---------------------------------------------------------------------------------


ID_MAX = 2**31 - 1  # integer ids and seq fit the database's 32-bit INTEGER columns
PAYLOAD_MAX_BYTES = 16_384  # the payload as compact JSON
PAYLOAD_MAX_DEPTH = 8  # nested objects/lists; the client's payloads are at most 2 deep
EventId = Annotated[int, Field(strict=True, ge=1, le=ID_MAX)]


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


NulFree = Annotated[str, Field(strict=True), AfterValidator(_no_nul)]


def _payload_problem(value: Any, depth: int = 1) -> str | None:
    """Why a payload (already an object) cannot be stored, or None. Recursion stops at
    ``PAYLOAD_MAX_DEPTH``, so any nesting is checked safely."""
    if depth > PAYLOAD_MAX_DEPTH:
        return f"is nested deeper than {PAYLOAD_MAX_DEPTH} levels"
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return "has a NUL character in a key"
        if isinstance(item, str) and "\x00" in item:
            return "has a NUL character in a string"
        if isinstance(item, float) and not math.isfinite(item):
            return "has a number that is not finite (NaN or Infinity)"
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > 2**53:
            return "has an integer beyond +-2**53 (not exact in JSON)"
        if isinstance(item, dict | list):
            problem = _payload_problem(item, depth + 1)
            if problem:
                return problem
    return None


class EventIn(BaseModel):
    """One effort event (vocabulary: ``engine.flywheel.events``). Types are strict (``seq``
    ``"3"`` is refused), numbers finite, strings free of NUL; ``payload`` is a JSON object of
    at most ``PAYLOAD_MAX_BYTES`` and ``PAYLOAD_MAX_DEPTH`` levels; the payload fields the
    effort rules read are typed: ``accept_all_confident`` ``mask_ids`` (list of ids),
    ``object_commit`` ``parent_id`` (id or null)."""

    uuid: NulFree = Field(min_length=8, max_length=36)
    session_id: NulFree = Field(min_length=1, max_length=64)
    seq: int = Field(default=0, strict=True, ge=0, le=ID_MAX)
    kind: NulFree = Field(min_length=1, max_length=32)
    client_time: float = Field(
        strict=True,
        allow_inf_nan=False,
        ge=-1e15,
        le=1e15,
        description="performance.now() milliseconds (monotonic within the session).",
    )
    visible: bool = Field(default=True, strict=True)
    image_id: EventId | None = None
    mask_id: EventId | None = None
    lease_id: EventId | None = None
    payload: dict[str, Any] = Field(default_factory=dict, strict=True)

    @field_validator("payload")
    @classmethod
    def _payload_shape(cls, payload: dict[str, Any]) -> dict[str, Any]:
        problem = _payload_problem(payload)
        if problem:
            raise ValueError(f"payload {problem}")
        size = len(json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
        if size > PAYLOAD_MAX_BYTES:
            raise ValueError(f"payload is {size} bytes of JSON; at most {PAYLOAD_MAX_BYTES}")
        return payload

    @model_validator(mode="after")
    def _known_payload_fields(self) -> EventIn:
        ids = self.payload.get("mask_ids")
        bad_ids = ids is not None and (not isinstance(ids, list) or not all(_is_id(m) for m in ids))
        if self.kind == "accept_all_confident" and bad_ids:
            raise ValueError("payload.mask_ids must be a list of mask ids")
        parent = self.payload.get("parent_id")
        if self.kind == "object_commit" and parent is not None and not _is_id(parent):
            raise ValueError("payload.parent_id must be a mask id or null")
        return self


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX


class EventsIn(BaseModel):
    """A batch of raw objects. Each item is validated on its own as ``EventIn`` (in the
    route), so one bad item is refused with its reason and never stops the others."""

    events: list[Any] = Field(max_length=1000)


class EventRejected(BaseModel):
    index: int = Field(description="Position of the event in the posted batch.")
    uuid: str | None = Field(description="Its uuid, when it had a readable one.")
    reason: str


class EventsOut(BaseModel):
    acknowledged: list[str] = Field(
        description="Every uuid the client may forget: stored, duplicate, or refused for "
        "good (a retry would be refused again)."
    )
    stored: int
    duplicates: int
    rejected: list[EventRejected]


class FlagIn(BaseModel):
    """Flag an image for a reviewer; ``lease_id``: the lease it was flagged under, if any."""

    reason: str = Field(min_length=1, max_length=2000)
    lease_id: int | None = None


class FlagOut(BaseModel):
    id: int
    image_id: int
    width: int
    height: int
    user: str
    reason: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None = None
    resolution: str | None = None


class ResolveIn(BaseModel):
    resolution: str | None = Field(default=None, max_length=2000)
