"""Request and response bodies of projects, users and images (the admin routes).

``Id`` is the path / body id type of every route.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from db.models import Image, Project, User

Role = Literal["annotator", "curator", "reviewer", "admin"]

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID, description="A row id (1 .. 2**63-1).")]
"""Path / body id. Above the column range of the current database it is a 404 (see
``annotator_ui.errors``), never a 500."""


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
