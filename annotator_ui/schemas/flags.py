"""Request and response bodies of image flags (for a reviewer) and their resolution."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


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
